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

from collections.abc import Callable
from typing import Any

import numpy as np

from fastcls import _validation as V
from fastcls._config import num_threads, resolve_n_jobs
from fastcls.base import BaseEstimator, ClassifierMixin

BACKENDS = ("numba", "numpy", "faiss", "dask")
WEIGHTS = ("uniform", "distance")

#: rows of the training set read per streamed tile, by default: ~64 MiB of data
_TRAIN_TILE_BYTES = 64 * 2**20
#: queries per tile for the numpy reference backend (bounds its distance matrix)
_NUMPY_QUERY_TILE = 256


def _surrogate(metric: str) -> str:
    return "sqeuclidean" if metric == "l2" else metric


def _family(dtype: np.dtype) -> str:
    return "uint8" if dtype == np.uint8 else "float"


def _default_train_tile(X: np.ndarray) -> int:
    row_bytes = max(1, X.shape[1] * X.dtype.itemsize)
    return max(1024, _TRAIN_TILE_BYTES // row_bytes)


def _check_train(X: Any, name: str = "X") -> Any:
    """Validate training rows: an array (memmaps kept on disk) or a lazy row source."""
    from fastcls.backends import LazyRows, is_row_source

    if is_row_source(X):  # h5py / zarr / dask ...: shape and dtype now, values per tile
        return LazyRows(X, name)
    return V.check_array(X, name)


def _promote_query(Q: np.ndarray, X: Any) -> np.ndarray:
    """Bring the queries to the kernel dtype shared with ``X``; ``X`` converts per tile.

    Same rule as :func:`fastcls._validation.common_dtype`, without converting (and
    so loading) a memory-mapped or lazy training set as a whole.
    """
    if Q.dtype == X.dtype:
        return Q
    return np.ascontiguousarray(Q, dtype=V.shared_kernel_dtype(Q.dtype, X.dtype))


def _validate_pair(Q: Any, X: Any, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    Qa = V.check_array(Q, names[0])
    Xa = V.check_array(X, names[1])
    V.check_same_n_features(Qa, Xa, names)
    return V.common_dtype(Qa, Xa, names)


# --------------------------------------------------------------------------- backends
def _kneighbors_numba(
    Q: np.ndarray,
    X: np.ndarray,
    k: int,
    metric: str,
    train_tile: int | None = None,
    progress: bool | None = False,
) -> tuple[np.ndarray, np.ndarray]:
    from fastcls._progress import Progress
    from fastcls.backends import iter_row_tiles
    from fastcls.kernels.knn import TOPK_KERNELS
    from fastcls.kernels.topk import new_topk

    kernel = TOPK_KERNELS[(_surrogate(metric), _family(Q.dtype))]
    best_d, best_i = new_topk(Q.shape[0], k)
    rows = train_tile or _default_train_tile(X)
    # a memmap (or any row-sliceable array) is read one tile at a time, converted to
    # the queries' dtype; a memmap tile's pages are released once it is searched
    n_tiles = -(-X.shape[0] // rows)
    with Progress(n_tiles, f"k-NN search ({metric})", enabled=progress) as bar:
        for start, tile in iter_row_tiles(X, rows, Q.dtype):
            kernel(Q, tile, start, best_d, best_i)
            bar.update()
    if metric == "l2":
        np.sqrt(best_d, out=best_d)
    return best_d, best_i


def _kneighbors_numpy(
    Q: np.ndarray, X: np.ndarray, k: int, metric: str, train_tile: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    from fastcls.reference.knn import kneighbors_reference

    X = X[0 : X.shape[0]] if not isinstance(X, np.ndarray) else X  # a LazyRows source
    dist = np.empty((Q.shape[0], k))
    idx = np.empty((Q.shape[0], k), dtype=np.int64)
    for s in range(0, Q.shape[0], _NUMPY_QUERY_TILE):
        dist[s : s + _NUMPY_QUERY_TILE], idx[s : s + _NUMPY_QUERY_TILE] = kneighbors_reference(
            Q[s : s + _NUMPY_QUERY_TILE], X, k, metric
        )
    return dist, idx


def _kneighbors_faiss(
    Q: np.ndarray, X: Any, k: int, metric: str, train_tile: int | None = None, **options: Any
) -> tuple[np.ndarray, np.ndarray]:
    from fastcls.backends.faiss import kneighbors_faiss

    return kneighbors_faiss(Q, X, k, metric, train_tile, **options)


def _kneighbors_dask(
    Q: np.ndarray, X: Any, k: int, metric: str, train_tile: int | None = None, **options: Any
) -> tuple[np.ndarray, np.ndarray]:
    from fastcls.distributed import search_shards

    return search_shards(Q, X, k, metric, train_tile=train_tile, **options)


#: backend name -> search(Q, X, k, metric, train_tile) -> (distances, indices)
SEARCH_BACKENDS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "numba": _kneighbors_numba,
    "numpy": _kneighbors_numpy,
    "faiss": _kneighbors_faiss,
    "dask": _kneighbors_dask,
}

#: keyword options each backend accepts beyond (Q, X, k, metric, train_tile)
BACKEND_OPTIONS: dict[str, tuple[str, ...]] = {
    "numba": ("progress",),
    "numpy": (),
    "faiss": ("index", "nprobe", "efSearch"),
    "dask": ("client",),
}


def _check_backend(backend: Any) -> str:
    if not isinstance(backend, str) or backend not in SEARCH_BACKENDS:
        raise ValueError(f"backend must be one of {tuple(SEARCH_BACKENDS)}, got {backend!r}")
    return backend


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
        Threads (None: all cores).

    Returns
    -------
    ndarray (n_X, n_Y)
        float32 for float32 inputs, float64 otherwise. uint8 inputs give exact
        integer values for ``"l1"`` and ``"sqeuclidean"``.

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
        Xa, Ya = _validate_pair(X, Y, ("X", "Y"))
    from fastcls.kernels.knn import PAIRWISE_KERNELS

    out_dtype = np.float32 if Xa.dtype == np.float32 else np.float64
    out = np.empty((Xa.shape[0], Ya.shape[0]), dtype=out_dtype)
    with num_threads(n_jobs):
        PAIRWISE_KERNELS[(_surrogate(metric), _family(Xa.dtype))](Xa, np.asarray(Ya), out)
    if metric == "l2":
        np.sqrt(out, out=out)
    return out


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
        Threads (None: all cores).
    train_tile : int, optional
        Training rows per streamed tile (default: about 64 MiB of rows). Results do
        not depend on it.
    **backend_options
        ``backend="numba"``: ``progress`` (a progress bar on stderr, one step per
        training tile; ``None`` shows it when stderr is a terminal; default off).
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
    backend = _check_backend(backend)
    unknown = sorted(set(backend_options) - set(BACKEND_OPTIONS.get(backend, ())))
    if unknown:
        raise TypeError(
            f"backend {backend!r} takes no option(s) {unknown}; its options are "
            f"{list(BACKEND_OPTIONS.get(backend, ()))}"
        )
    Xa = _check_train(X, "X")
    Qa = V.check_array(Q, "Q")
    V.check_same_n_features(Qa, Xa, ("Q", "X"))
    Qa = _promote_query(Qa, Xa)
    k = V.check_k(k, Xa.shape[0])
    if train_tile is not None:
        train_tile = V.check_int(train_tile, "train_tile", min_value=1)
    with num_threads(n_jobs):
        return SEARCH_BACKENDS[backend](Qa, Xa, k, metric, train_tile, **backend_options)


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
        Threads (None: all cores); governs numba's and FAISS's thread pools.
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
        self._metric = V.check_metric(self.metric)
        V.check_choice(self.weights, "weights", WEIGHTS)
        _check_backend(self.backend)
        V.check_int(self.k, "k", min_value=1)
        resolve_n_jobs(self.n_jobs)
        for name in ("nprobe", "efSearch"):
            if getattr(self, name) is not None:
                V.check_int(getattr(self, name), name, min_value=1)
        Xa = _check_train(X, "X")
        classes, y_enc = V.check_labels(y, Xa.shape[0])
        if self.backend == "faiss":
            from fastcls.backends.faiss import build_index

            with num_threads(self.n_jobs):
                self._faiss_index = build_index(Xa, self._metric, self.index)
        self._fit_X = Xa
        self._y = y_enc
        self.classes_ = classes
        self.n_features_in_ = int(Xa.shape[1])
        self.n_samples_fit_ = int(Xa.shape[0])
        return self

    def _check_query(self, X: Any) -> np.ndarray:
        V.check_is_fitted(self, ("classes_",))
        Xa = V.check_array(X, "X")
        V.check_n_features(Xa, self)
        return Xa

    def kneighbors(
        self, X: Any, k: int | None = None, return_distance: bool = True
    ) -> tuple[np.ndarray, np.ndarray] | np.ndarray:
        """Nearest training rows of each query.

        Parameters
        ----------
        X : array-like (n_queries, D) or images
        k : int, optional
            Defaults to the model's ``k``.
        return_distance : bool, default True

        Returns
        -------
        distances : ndarray (n_queries, k), float64 (only if ``return_distance``)
        indices : ndarray (n_queries, k), int64, into the training set
        """
        Qa = self._check_query(X)
        k = V.check_k(self.k if k is None else k, self.n_samples_fit_)
        with num_threads(self.n_jobs):
            dist, idx = self._search(Qa, k)
        return (dist, idx) if return_distance else idx

    def _search(self, Qa: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.backend == "faiss":  # the index built at fit (or loaded)
            from fastcls.backends.faiss import search_index

            return search_index(
                self._faiss_index, Qa, k, self._metric, nprobe=self.nprobe, efSearch=self.efSearch
            )
        Qa = _promote_query(Qa, self._fit_X)
        return SEARCH_BACKENDS[self.backend](Qa, self._fit_X, k, self._metric, None)

    def save(self, path: Any) -> None:
        """Save the fitted model to ``path`` (``.npz`` + JSON metadata, never pickle).

        Reload with :func:`fastcls.load`; see :func:`fastcls.io.save` for the format.
        """
        from fastcls.io import save

        save(self, path)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Vote shares per class, columns ordered as ``classes_``.

        Returns
        -------
        ndarray (n_queries, n_classes), rows sum to 1
        """
        from fastcls.kernels.vote import vote_proba

        dist, idx = self.kneighbors(X)
        labels = self._y[idx]
        with num_threads(self.n_jobs):
            proba = vote_proba(labels, dist, len(self.classes_), self.weights == "distance")
        missing = idx < 0  # approximate FAISS indexes may find fewer than k rows
        if missing.any():
            from fastcls.reference.knn import knn_vote_reference

            for q in np.flatnonzero(missing.any(axis=1)):
                found = ~missing[q]
                if found.any():
                    proba[q] = knn_vote_reference(
                        labels[q : q + 1, found],
                        dist[q : q + 1, found],
                        len(self.classes_),
                        self.weights,
                    )[0]
                else:  # nothing found: no information, uniform shares
                    proba[q] = 1.0 / len(self.classes_)
        return proba

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels (ties in the vote -> the smallest label).

        Returns
        -------
        ndarray (n_queries,), same kind as the labels given to ``fit``
        """
        from fastcls.kernels.vote import argmax_rows

        proba = self.predict_proba(X)
        return self.classes_[argmax_rows(proba)]
