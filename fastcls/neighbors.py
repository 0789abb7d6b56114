"""Exact k-nearest neighbours: distance matrices, fused top-k search, the classifier.

Public entry points validate once and dispatch to a backend by name:

* ``"numba"`` (default): fused distance + top-k kernels from :mod:`fastcls.kernels`,
  parallel over queries, streaming the training rows tile by tile, so memory stays
  O(tile) and an ``n_queries x n_train`` matrix is never built.
* ``"numpy"``: the plain NumPy reference of :mod:`fastcls.reference`, per query tile.

Distances returned by :func:`kneighbors` are float64 and exact: ``"l2"`` is the true
Euclidean distance (ranked on squared distances, square root of the k winners only),
``"sqeuclidean"`` the squared one, ``"l1"`` the Manhattan one. uint8 inputs are
compared as integers (no wrap-around). Ties: equal distances -> lower training index
first; equal votes -> smallest label.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fastcls import _validation as V
from fastcls._config import num_threads, resolve_n_jobs
from fastcls.backends import (
    build_backend,
    check_backend,
    check_train_rows,
    get_backend,
    tiny_data_scale,
)
from fastcls.base import BaseEstimator, ClassifierMixin, FittedState

WEIGHTS = ("uniform", "distance")


# --------------------------------------------------------------------------- functions
def pairwise_distances(
    X: Any, Y: Any | None = None, metric: str = "l2", *, n_jobs: int | None = None
) -> np.ndarray:
    """Full distance matrix between the rows of ``X`` and ``Y``.

    Builds an ``n_X x n_Y`` matrix: use :func:`kneighbors` when only the nearest
    rows are needed.

    Parameters
    ----------
    X : array-like (n_X, D) or images (n_X, H, W[, C])
        float32, float64 or uint8 (other numeric dtypes are converted exactly).
    Y : array-like (n_Y, D), optional
        Defaults to ``X``.
    metric : {"l2", "sqeuclidean", "l1"}
    n_jobs : int, optional
        Threads (None: the current :func:`fastcls.num_threads` setting, all cores
        by default; -1: all cores).

    Returns
    -------
    ndarray (n_X, n_Y)
        float32 for float32 inputs, float64 otherwise. uint8 inputs give exact
        integer values for ``"l1"`` and ``"sqeuclidean"``. For float32 inputs,
        ``"l2"`` and ``"sqeuclidean"`` are computed in float64 and rounded once to
        float32 (so 1e20 or 1e-30 apart gives 1e20 or 1e-30, not inf or 0).

    Raises
    ------
    ValueError
        A float32 result that float32 cannot hold (beyond about 3.4e38, or a non-zero
        ``"sqeuclidean"`` value below about 1.2e-38): pass float64 inputs for such data.

    Examples
    --------
    >>> import numpy as np, fastcls
    >>> fastcls.pairwise_distances(np.array([[0, 0]], np.uint8), np.array([[3, 4]], np.uint8))
    array([[5.]])
    """
    metric = V.check_metric(metric)
    if Y is None:
        Xa = V.check_array(X, "X")
        Ya = Xa
    else:
        Xa = V.check_array(X, "X")
        Ya = V.check_array(Y, "Y")
        V.check_same_n_features(Xa, Ya, ("X", "Y"))
        Xa, Ya = V.common_dtype(Xa, Ya)
    from fastcls.kernels.knn import pairwise_kernel

    out_dtype = np.float32 if Xa.dtype == np.float32 else np.float64
    out = np.empty((Xa.shape[0], Ya.shape[0]), dtype=out_dtype)
    kernel = pairwise_kernel(metric, Xa.dtype)
    # float64 data too small for squared distances: computed exactly rescaled
    scale = tiny_data_scale(Xa, Ya) if metric != "l1" else 1.0
    if scale != 1.0:
        Xs = Xa * scale
        Xa, Ya = Xs, (Xs if Y is None else Ya * scale)
    with num_threads(n_jobs):
        if out_dtype == np.float32 and metric != "l1":
            overflow = _pairwise_sq_via_float64(kernel, Xa, np.asarray(Ya), out, metric == "l2")
        else:
            kernel(Xa, np.asarray(Ya), out)
            if metric == "l2":
                np.sqrt(out, out=out)
            overflow = out_dtype == np.float32 and not np.isfinite(out).all()
    if overflow:
        # finite inputs: only a distance beyond float32's range gives inf here
        raise ValueError(
            f"pairwise distances ({metric}) of these float32 inputs exceed float32's range "
            f"({float(np.finfo(np.float32).max):.3g}); pass X and Y as float64 to get them"
        )
    if scale != 1.0:
        out /= scale
        if metric == "sqeuclidean":  # twice rather than by scale**2, which can overflow
            out /= scale
    return out


#: bytes of the float64 row block used for float32 squared distances (at least one
#: query tile of the kernel)
_PAIRWISE_BLOCK_BYTES = 256 << 20


def _pairwise_sq_via_float64(
    kernel: Any, X: np.ndarray, Y: np.ndarray, out: np.ndarray, take_sqrt: bool
) -> bool:
    """Squared distances of float32 rows into float64 blocks, rounded once into ``out``.

    A squared distance between float32 values can leave float32's range (1e20 apart:
    1e40; 1e-30 apart: 1e-60) while the distance itself is a float32: storing the
    squares in float32 gave inf and 0. Blocks of whole query tiles keep the
    kernel's per-call set-up (centring ``Y``) negligible next to its GEMM. Returns
    whether some entry exceeds float32's range (stored as ``inf``).
    """
    from fastcls._config import settings
    from fastcls.kernels.narrow import F32_TINY, narrow_to_float32

    # whole query tiles of the kernel (1024 rows by default): smaller calls cost more
    # set-up than the narrowing saves (838-row blocks: +34% on 2000 x 5000 x 256)
    tile = max(1, int(settings.l2_query_tile_rows))
    rows = max(1, _PAIRWISE_BLOCK_BYTES // max(1, 8 * Y.shape[0]) // tile) * tile
    block = np.empty((min(rows, X.shape[0]), Y.shape[0]))
    overflow = False
    for s in range(0, X.shape[0], rows):
        e = min(X.shape[0], s + rows)
        b = block[: e - s]
        kernel(X[s:e], Y, b)
        # one pass: square root, one rounding; inf entries are reported by the caller
        n_over, n_under = narrow_to_float32(b, out[s:e], take_sqrt)
        overflow = overflow or n_over > 0
        if n_under:
            # a squared distance below float32's normal range would read as 0 (or a
            # few-bit subnormal): rows that differ would look identical
            raise ValueError(
                "squared distances (sqeuclidean) of these float32 inputs fall below "
                f"float32's normal range ({F32_TINY:.3g}); pass X and Y as float64, or "
                "use metric='l2'"
            )
    return overflow


def kneighbors(
    Q: Any,
    X: Any,
    k: int = 1,
    metric: str = "l2",
    *,
    backend: str = "numba",
    n_jobs: int | None = None,
    train_tile: int | None = None,
    **backend_options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest training rows of every query, fused and tiled.

    Parameters
    ----------
    Q : array-like (n_queries, D) or images
        Queries: float32, float64 or uint8.
    X : array-like (n_train, D) or images, a ``np.memmap``, or a row-sliceable array-like
        Training rows. A memmap (or any object with ``shape``, ``dtype`` and row
        slicing: h5py, zarr, dask ...) is streamed ``train_tile`` rows at a time.
    k : int
        Number of neighbours, ``1 <= k <= n_train``.
    metric : {"l2", "sqeuclidean", "l1"}
    backend : {"numba", "numpy", "faiss", "dask"}
        ``"faiss"`` (extra ``fastcls[faiss]``) searches a FAISS index built on ``X``
        in float32; ``"dask"`` (extra ``fastcls[dask]``) shards ``X`` over the
        workers of the current Dask client (see :mod:`fastcls.distributed`).
    n_jobs : int, optional
        Threads (None: the current :func:`fastcls.num_threads` setting, all cores
        by default; -1: all cores).
    train_tile : int, optional
        Training rows per streamed tile (default: about 64 MiB of rows). Results do
        not depend on it.
    **backend_options
        ``backend="numba"``: ``progress`` (progress on stderr over training tiles
        and query blocks, saying when kernels compile on first use; ``None`` shows
        it when stderr is a terminal; default off).
        ``backend="faiss"``: ``index`` (an ``index_factory`` string, default
        ``"Flat"``), ``nprobe``, ``efSearch``. ``backend="dask"``: ``client``.

    Returns
    -------
    distances : ndarray (n_queries, k), float64, ascending
    indices : ndarray (n_queries, k), int64
        Equal distances list the lower training index first.

    Examples
    --------
    >>> import numpy as np, fastcls
    >>> X = np.array([[0.0], [1.0], [3.0]])
    >>> d, i = fastcls.kneighbors(np.array([[0.9]]), X, k=2, metric="l1")
    >>> i
    array([[1, 0]])
    """
    metric = V.check_metric(metric)
    cls = get_backend(backend)
    build_options = {n: v for n, v in backend_options.items() if n not in cls.search_options}
    search_options = {n: v for n, v in backend_options.items() if n in cls.search_options}
    unknown = sorted(set(build_options) - set(cls.build_options))
    if unknown:
        raise TypeError(
            f"backend {backend!r} takes no option(s) {unknown}; its options are "
            f"{list(cls.build_options + cls.search_options)}"
        )
    Xa = check_train_rows(X, "X")
    Qa = V.check_array(Q, "Q")
    V.check_same_n_features(Qa, Xa, ("Q", "X"))
    k = V.check_k(k, Xa.shape[0])
    if train_tile is not None:
        train_tile = V.check_int(train_tile, "train_tile", min_value=1)
    with num_threads(n_jobs):
        index = build_backend(backend, Xa, metric, train_tile=train_tile, **build_options)
        return index.search(Qa, k, **search_options)


# --------------------------------------------------------------------------- classifier
class KNearestNeighbor(ClassifierMixin, BaseEstimator):
    """k-nearest-neighbour classifier (majority or distance-weighted vote).

    Parameters
    ----------
    k : int, default 1
        Neighbours that vote.
    metric : {"l2", "l1", "sqeuclidean"}, default "l2"
    weights : {"uniform", "distance"}, default "uniform"
        ``"distance"`` weighs votes by ``1/d``; a query with training rows at
        distance 0 takes its vote from those rows only.
    backend : {"numba", "numpy", "faiss", "dask"}, default "numba"
        ``"numpy"`` runs the plain reference path; ``"faiss"`` builds a FAISS index
        at fit (float32; extra ``fastcls[faiss]``); ``"dask"`` shards the training
        rows over the workers of the current Dask client (extra ``fastcls[dask]``).
    n_jobs : int, optional
        Threads (None: the current :func:`fastcls.num_threads` setting, all cores
        by default; -1: all cores); governs numba's and FAISS's thread pools.
    index : str, default "Flat"
        ``backend="faiss"`` only: a ``faiss.index_factory`` string. ``"Flat"`` is
        exact; ``"IVF1024,Flat"``, ``"HNSW32"``, ``"IVF256,PQ16"`` ... are approximate
        (trained at fit when they need it).
    nprobe : int, optional
        ``backend="faiss"``, IVF indexes: inverted lists visited per query.
    efSearch : int, optional
        ``backend="faiss"``, HNSW indexes: size of the search beam.

    Attributes
    ----------
    classes_ : ndarray (n_classes,)
        Sorted labels seen at fit (ints or strings).
    n_features_in_ : int
    n_samples_fit_ : int

    Examples
    --------
    >>> import numpy as np, fastcls
    >>> X = np.array([[0, 0], [0, 1], [9, 9], [9, 8]], dtype=np.uint8)
    >>> clf = fastcls.KNearestNeighbor(k=3, metric="l1").fit(X, ["cat", "cat", "dog", "dog"])
    >>> clf.predict(np.array([[1, 1], [8, 8]], dtype=np.uint8)).tolist()
    ['cat', 'dog']
    """

    def __init__(
        self,
        k: int = 1,
        metric: str = "l2",
        weights: str = "uniform",
        backend: str = "numba",
        n_jobs: int | None = None,
        index: str = "Flat",
        nprobe: int | None = None,
        efSearch: int | None = None,
    ) -> None:
        self.k = k
        self.metric = metric
        self.weights = weights
        self.backend = backend
        self.n_jobs = n_jobs
        self.index = index
        self.nprobe = nprobe
        self.efSearch = efSearch

    # -- fitting
    def fit(self, X: Any, y: Any) -> KNearestNeighbor:
        """Memorise the training data.

        Parameters
        ----------
        X : array-like (n_samples, D) or images (n_samples, H, W[, C]), or a memmap
            Kept by reference when already C-contiguous with a kernel dtype (no copy),
            so a memmap stays on disk. Any 2-D row-sliceable array-like (h5py, zarr,
            dask ...) is kept lazily and read tile by tile at search time. With
            ``backend="faiss"`` the FAISS index is built (and trained) here.
        y : array-like (n_samples,)
            Integer or string labels.

        Returns
        -------
        self
        """
        metric = V.check_metric(self.metric)
        V.check_choice(self.weights, "weights", WEIGHTS)
        check_backend(self.backend)
        V.check_int(self.k, "k", min_value=1)
        resolve_n_jobs(self.n_jobs)
        self._backend_options("search")  # validated now, read at each search
        Xa = check_train_rows(X, "X")
        classes, y_enc = V.check_labels(y, Xa.shape[0])
        with num_threads(self.n_jobs):
            index = build_backend(self.backend, Xa, metric, **self._backend_options())
            index.prepare()  # what every search of this model would otherwise redo
        self._metric = metric
        self._index = index
        self._y = y_enc
        self.classes_ = classes
        self.n_features_in_ = int(Xa.shape[1])
        self.n_samples_fit_ = int(Xa.shape[0])
        # for the query checks (one image given for a batch, queries on another scale)
        self._fit_profile = V.FitProfile(index, V.value_range(Xa), V.image_shape(X))
        return self

    def _backend_options(self, kind: str = "build") -> dict[str, Any]:
        """This model's parameters that the chosen backend takes as options of ``kind``.

        Search options (e.g. FAISS's ``nprobe``) are read at each search, so
        ``set_params`` after ``fit`` takes effect without refitting.
        """
        cls = get_backend(self.backend)
        names = cls.build_options if kind == "build" else cls.search_options
        params = self.get_params()
        options = {name: params[name] for name in names if name in params}
        for name, value in options.items():
            if kind == "search" and value is not None:
                V.check_int(value, name, min_value=1)
        return options

    def _check_query(self, X: Any) -> np.ndarray:
        V.check_is_fitted(self, ("classes_",))
        profile = getattr(self, "_fit_profile", None)
        # a state restored since fit has another index: what fit saw no longer applies
        profile = profile.for_owner(self._index) if profile is not None else None
        return V.check_query(X, self, "X", profile)

    def kneighbors(
        self,
        X: Any,
        k: int | None = None,
        return_distance: bool = True,
        *,
        progress: bool | None = False,
    ) -> tuple[np.ndarray, np.ndarray] | np.ndarray:
        """Nearest training rows of each query.

        Parameters
        ----------
        X : array-like (n_queries, D) or images
        k : int, optional
            Defaults to the model's ``k``.
        return_distance : bool, default True
        progress : bool or None, default False
            Progress on stderr over the search's steps (training tiles x query
            blocks), saying when kernels compile on first use; ``None`` shows it when
            stderr is a terminal. Backends that cannot report progress ignore it.

        Returns
        -------
        distances : ndarray (n_queries, k), float64 (only if ``return_distance``)
        indices : ndarray (n_queries, k), int64, into the training set
        """
        Qa = self._check_query(X)
        k = V.check_k(self.k if k is None else k, self.n_samples_fit_)
        options = self._backend_options("search")
        if progress is not False and "progress" in type(self._index).search_options:
            options["progress"] = progress
        with num_threads(self.n_jobs):
            dist, idx = self._index.search(Qa, k, **options)
        return (dist, idx) if return_distance else idx

    # -- fitted state
    def get_fitted_state(self, include_data: bool | None = None) -> FittedState:
        """Everything ``fit`` learned, as arrays plus JSON-able metadata.

        Parameters
        ----------
        include_data : bool, optional
            Store the training rows. Default: yes, except for backends that keep
            their own index (``"faiss"``: its serialised index holds what search needs).

        Returns
        -------
        FittedState
            Arrays ``classes``, ``y`` (encoded labels) and the backend's arrays
            (``fit_X`` and/or ``faiss_index``); metadata ``n_features_in_``,
            ``n_samples_fit_``, the label kind and the backend's array names.
        """
        from fastcls.base import classes_to_state, profile_to_state

        V.check_is_fitted(self, ("classes_",))
        classes, label_meta = classes_to_state(self.classes_)
        backend_arrays = self._index.export_arrays(include_data)
        arrays = {"classes": classes, "y": np.asarray(self._y, dtype=np.int64), **backend_arrays}
        meta = {
            "n_features_in_": int(self.n_features_in_),
            "n_samples_fit_": int(self.n_samples_fit_),
            "backend_arrays": sorted(backend_arrays),
            **label_meta,
            **profile_to_state(getattr(self, "_fit_profile", None), self._index),
        }
        return FittedState(arrays, meta)

    def set_fitted_state(self, state: FittedState) -> KNearestNeighbor:
        """Restore a state from :meth:`get_fitted_state` (checked first); returns ``self``.

        Nothing is assigned before everything is checked: the parameters as ``fit``
        checks them (and ``k <= n_samples_fit_``); labels (kind, dtype, sorted,
        distinct); ``y`` integer codes of shape ``(n_samples_fit_,)`` inside
        ``0..n_classes-1`` with every class present; ``fit_X`` of a kernel dtype and
        of shape exactly ``(n_samples_fit_, n_features_in_)``, finite and in range;
        the backend's own arrays (a FAISS index's bytes before faiss reads them) and
        that search options apply to the restored index.

        Raises
        ------
        TypeError
            ``state`` is not a ``(arrays, metadata)`` pair of dicts.
        fastcls.base.FittedStateError
            (a ``ValueError``) The state is inconsistent with itself or with this
            model's parameters; ``.field`` names the field.
        """
        from fastcls.base import (
            FittedStateError,
            check_state_fields,
            classes_from_state,
            profile_from_state,
            state_array,
            state_int,
            state_param,
        )

        # which backend arrays are stored is itself part of the state: read it first
        meta0 = state[1] if isinstance(state, tuple) and len(state) == 2 else None
        backend_names = meta0.get("backend_arrays", []) if isinstance(meta0, dict) else []
        if (
            not isinstance(backend_names, list)
            or not all(isinstance(b, str) for b in backend_names)
            or len(set(backend_names)) != len(backend_names)
            or not set(backend_names) <= {"fit_X", "faiss_index"}
        ):
            raise FittedStateError(
                f"fitted state field 'backend_arrays' is malformed: {backend_names!r}",
                "backend_arrays",
            )
        arrays, meta = check_state_fields(
            state,
            ("classes", "y", *backend_names),
            ("n_samples_fit_", "n_features_in_", "backend_arrays"),
        )
        n = state_int(meta, "n_samples_fit_", 1)
        d = state_int(meta, "n_features_in_", 1)
        # the parameters, checked as fit and predict check them (k against the stored n)
        metric = state_param("metric", V.check_metric, self.metric)
        state_param("weights", V.check_choice, self.weights, "weights", WEIGHTS)
        backend = state_param("backend", check_backend, self.backend)
        state_param("k", V.check_k, self.k, n)
        state_param("n_jobs", resolve_n_jobs, self.n_jobs)
        build_options = state_param("index", self._backend_options, "build")
        search_options = state_param("search options", self._backend_options, "search")
        cls = get_backend(backend)
        classes = classes_from_state(arrays["classes"], meta)
        y = arrays["y"]
        if y.dtype.kind not in "iu" or y.shape != (n,):
            raise FittedStateError(
                f"fitted state field 'y' must be {n} integer labels, got {y.dtype} of shape "
                f"{y.shape}",
                "y",
            )
        n_classes = classes.shape[0]
        # codes index the vote's per-class counters: one outside 0..C-1 writes out of bounds
        if y.min() < 0 or y.max() >= n_classes:
            raise FittedStateError(
                f"fitted state field 'y' holds codes outside 0..{n_classes - 1}", "y"
            )
        if not np.bincount(y.astype(np.int64), minlength=n_classes).all():
            raise FittedStateError(
                "fitted state field 'classes' names a label that no training row has", "classes"
            )
        backend_arrays = {name: arrays[name] for name in backend_names}
        if "fit_X" in backend_arrays:
            fit_X = state_array(arrays, "fit_X", (n, d), V.KERNEL_DTYPES)
            try:
                V.assert_all_finite(fit_X, "fit_X")
            except ValueError as exc:
                raise FittedStateError(f"fitted state field 'fit_X': {exc}", "fit_X") from exc
            backend_arrays["fit_X"] = np.ascontiguousarray(fit_X)
        try:
            index = cls.from_arrays(
                backend_arrays, metric, n_samples=n, n_features=d, **build_options
            )
        except FittedStateError:
            raise
        except (TypeError, ValueError) as exc:
            field = backend_names[-1] if backend_names else "backend_arrays"
            raise FittedStateError(f"fitted state field {field!r}: {exc}", field) from exc
        state_param("search options", index.check_search_options, **search_options)
        if (index.n_samples, index.n_features) != (n, d):
            raise FittedStateError(
                f"the stored {self.backend} index holds {index.n_samples} x {index.n_features} "
                f"rows, expected {n} x {d}",
                backend_names[-1] if backend_names else "backend_arrays",
            )
        profile = profile_from_state(meta, index, d)
        with num_threads(self.n_jobs):
            index.prepare()
        self._metric = metric
        self._fit_profile = profile
        self._index = index
        self._y = y.astype(np.int64, copy=False)
        self.classes_ = classes
        self.n_features_in_ = d
        self.n_samples_fit_ = n
        return self

    def save(self, path: Any, *, include_data: bool | None = None, compress: bool = False) -> None:
        """Save the fitted model to exactly ``path`` (``.npz`` layout + JSON, never pickle).

        Atomic; reload with :func:`fastcls.load`. See :func:`fastcls.io.save` for the
        options and ``docs/saving.md`` for the format.
        """
        from fastcls.io import save

        save(self, path, include_data=include_data, compress=compress)

    def predict_proba(self, X: Any, *, progress: bool | None = False) -> np.ndarray:
        """Vote shares per class, columns ordered as ``classes_``.

        ``progress`` as in :meth:`kneighbors`.

        Returns
        -------
        ndarray (n_queries, n_classes), rows sum to 1
        """
        from fastcls.kernels.vote import vote_proba

        dist, idx = self.kneighbors(X, progress=progress)
        # approximate backends may find fewer than k rows (index -1): those slots get
        # label -1, which the vote skips (a query with none found gets uniform shares)
        labels = np.where(idx >= 0, self._y[np.maximum(idx, 0)], -1)
        with num_threads(self.n_jobs):
            return vote_proba(labels, dist, len(self.classes_), self.weights == "distance")

    def predict(self, X: Any, *, progress: bool | None = False) -> np.ndarray:
        """Predicted labels (ties in the vote -> the smallest label).

        ``progress`` as in :meth:`kneighbors`.

        Returns
        -------
        ndarray (n_queries,), same kind as the labels given to ``fit``
        """
        from fastcls.kernels.vote import argmax_rows

        proba = self.predict_proba(X, progress=progress)
        return self.classes_[argmax_rows(proba)]
