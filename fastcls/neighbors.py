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

BACKENDS = ("numba", "numpy")
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


def _validate_pair(Q: Any, X: Any, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    Qa = V.check_array(Q, names[0])
    Xa = V.check_array(X, names[1])
    V.check_same_n_features(Qa, Xa, names)
    return V.common_dtype(Qa, Xa, names)


# --------------------------------------------------------------------------- backends
def _kneighbors_numba(
    Q: np.ndarray, X: np.ndarray, k: int, metric: str, train_tile: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    from fastcls.kernels.knn import TOPK_KERNELS
    from fastcls.kernels.topk import new_topk

    kernel = TOPK_KERNELS[(_surrogate(metric), _family(Q.dtype))]
    best_d, best_i = new_topk(Q.shape[0], k)
    rows = train_tile or _default_train_tile(X)
    for start in range(0, X.shape[0], rows):
        # a memmap (or any row-sliceable array) is read one tile at a time
        tile = np.ascontiguousarray(X[start : start + rows])
        kernel(Q, tile, start, best_d, best_i)
    if metric == "l2":
        np.sqrt(best_d, out=best_d)
    return best_d, best_i


def _kneighbors_numpy(
    Q: np.ndarray, X: np.ndarray, k: int, metric: str, train_tile: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    from fastcls.reference.knn import kneighbors_reference

    X = np.asarray(X)
    dist = np.empty((Q.shape[0], k))
    idx = np.empty((Q.shape[0], k), dtype=np.int64)
    for s in range(0, Q.shape[0], _NUMPY_QUERY_TILE):
        dist[s : s + _NUMPY_QUERY_TILE], idx[s : s + _NUMPY_QUERY_TILE] = kneighbors_reference(
            Q[s : s + _NUMPY_QUERY_TILE], X, k, metric
        )
    return dist, idx


#: backend name -> search(Q, X, k, metric, train_tile) -> (distances, indices)
SEARCH_BACKENDS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "numba": _kneighbors_numba,
    "numpy": _kneighbors_numpy,
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
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest training rows of every query, fused and tiled.

    Parameters
    ----------
    Q : array-like (n_queries, D) or images
        Queries: float32, float64 or uint8.
    X : array-like (n_train, D) or images, or a ``np.memmap``
        Training rows. A memmap is streamed ``train_tile`` rows at a time.
    k : int
        Number of neighbours, ``1 <= k <= n_train``.
    metric : {"l2", "sqeuclidean", "l1"}
    backend : {"numba", "numpy"}
    n_jobs : int, optional
        Threads (None: all cores).
    train_tile : int, optional
        Training rows per streamed tile (default: about 64 MiB of rows). Results do
        not depend on it.

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
    Qa, Xa = _validate_pair(Q, X, ("Q", "X"))
    k = V.check_k(k, Xa.shape[0])
    if train_tile is not None:
        train_tile = V.check_int(train_tile, "train_tile", min_value=1)
    with num_threads(n_jobs):
        return SEARCH_BACKENDS[backend](Qa, Xa, k, metric, train_tile)


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
    backend : {"numba", "numpy"}, default "numba"
        ``"numpy"`` runs the plain reference path.
    n_jobs : int, optional
        Threads (None: all cores).

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
    ) -> None:
        self.k = k
        self.metric = metric
        self.weights = weights
        self.backend = backend
        self.n_jobs = n_jobs

    # -- fitting
    def fit(self, X: Any, y: Any) -> KNearestNeighbor:
        """Memorise the training data.

        Parameters
        ----------
        X : array-like (n_samples, D) or images (n_samples, H, W[, C]), or a memmap
            Kept by reference when already C-contiguous with a kernel dtype (no copy),
            so a memmap stays on disk.
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
        Xa = V.check_array(X, "X")
        classes, y_enc = V.check_labels(y, Xa.shape[0])
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
        Qa, Xa = V.common_dtype(Qa, self._fit_X, ("X", "training data"))
        with num_threads(self.n_jobs):
            dist, idx = SEARCH_BACKENDS[self.backend](Qa, Xa, k, self._metric, None)
        return (dist, idx) if return_distance else idx

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
            return vote_proba(labels, dist, len(self.classes_), self.weights == "distance")

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels (ties in the vote -> the smallest label).

        Returns
        -------
        ndarray (n_queries,), same kind as the labels given to ``fit``
        """
        from fastcls.kernels.vote import argmax_rows

        proba = self.predict_proba(X)
        return self.classes_[argmax_rows(proba)]
