"""FAISS backend: exact ``Flat`` search and approximate ``index_factory`` indexes.

Optional extra: ``pip install fastcls[faiss]`` (faiss-cpu). faiss is imported on first
use only; without it, every entry point raises an ``ImportError`` naming the extra.

Conversions (explicit, documented):

* FAISS works in float32. uint8 inputs are converted to float32 exactly (every
  integer 0..255 is a float32). float64 inputs are *rounded* to float32: distances and
  rankings then hold to float32 precision only (use ``backend="numba"`` for exact
  float64 search).
* ``metric="l2"`` returns true Euclidean distances (square root of FAISS's squared
  ones), ``"sqeuclidean"`` the squared ones, ``"l1"`` Manhattan (``METRIC_L1``).
  Distances are returned as float64 arrays, each row sorted by ``(distance, index)``
  so equal distances list the lower training index first (as every fastcls backend).
* Approximate indexes may find fewer than ``k`` neighbours for a query (e.g. IVF with
  a small ``nprobe``): missing slots hold index ``-1`` and distance ``inf``.
* Ranges: FAISS accumulates distances in float32, so data (at fit) and queries (at
  search) whose largest ``|value|`` would overflow them (or, for training data, make
  every distance underflow to 0) are refused with a ``ValueError`` naming the accepted
  range (:func:`float32_safe_range`), never silently turned into ``inf`` / ``-1``.
* ``metric="l1"`` works only with flat-vector indexes (:data:`L1_INDEX_TYPES`:
  ``"Flat"``, ``"IVF<n>,Flat"``, ``"HNSW<M>"``, ``"NSG<R>,Flat"``); other index
  strings are refused when built, with the reason.

Threads: faiss's OpenMP pool follows :func:`fastcls.set_num_threads` / ``n_jobs``
(set at import and on every :func:`fastcls.num_threads` change). faiss and numba each
load their own OpenMP runtime, whose idle threads busy-wait after a parallel region
and steal the cores of the other runtime's next region. Before faiss is first
imported, fastcls therefore caps the spin of faiss's runtime with
``GOMP_SPINCOUNT`` (:data:`GOMP_SPINCOUNT`, unless the user set ``GOMP_SPINCOUNT`` or
``OMP_WAIT_POLICY`` already); see ``docs/large-scale.md`` for the measurements.
"""

from __future__ import annotations

import os
import struct
import sys
from typing import Any

import numpy as np

from fastcls import _validation as V
from fastcls.backends.base import TRUST_INDEX_BYTES, SearchBackend

__all__ = [
    "FaissBackend",
    "EXTRA_HINT",
    "import_faiss",
    "to_float32",
    "build_index",
    "search_index",
    "recall_at_k",
    "serialize_index",
    "deserialize_index",
    "check_index_bytes",
    "check_index_structure",
]

#: what to install when faiss is missing
EXTRA_HINT = "pip install fastcls[faiss]"

#: spin count set for faiss's OpenMP runtime before its first import (libgomp reads
#: it at load). libgomp's default is 300000 spins (tens of ms of a busy core after
#: each parallel region); this keeps a short spin (~tens of microseconds) and then
#: sleeps, so idle faiss threads do not compete with numba's kernels.
GOMP_SPINCOUNT = "10000"

#: index_factory prefixes that need ``index.train`` before ``add``
_FAISS_METRICS = {"l2": "METRIC_L2", "sqeuclidean": "METRIC_L2", "l1": "METRIC_L1"}


def import_faiss() -> Any:
    """Import faiss lazily, or raise an ``ImportError`` that names the extra to install.

    On the first import the OpenMP spin of faiss's runtime is capped (see
    :data:`GOMP_SPINCOUNT`) and faiss's thread count is set to fastcls's.
    """
    mod = sys.modules.get("faiss")
    if mod is not None:
        return mod
    if "faiss" not in sys.modules and not (
        "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ
    ):
        os.environ["GOMP_SPINCOUNT"] = GOMP_SPINCOUNT
        _set_env_restore = True
    else:
        _set_env_restore = False
    try:
        import faiss
    except ImportError as exc:
        raise ImportError(
            "backend='faiss' needs the optional dependency faiss; install it with "
            f"`{EXTRA_HINT}` (or `pip install faiss-cpu`)"
        ) from exc
    finally:
        if _set_env_restore:  # only faiss's runtime (loaded just now) reads it
            os.environ.pop("GOMP_SPINCOUNT", None)
    from fastcls._config import get_num_threads

    faiss.omp_set_num_threads(get_num_threads())
    return faiss


def to_float32(A: Any) -> np.ndarray:
    """C-contiguous float32 copy (or view) of ``A``, the dtype FAISS computes in.

    uint8 converts exactly; float64 is rounded to float32.
    """
    return np.ascontiguousarray(A, dtype=np.float32)


def _metric_type(faiss: Any, metric: str) -> int:
    return getattr(faiss, _FAISS_METRICS[metric])


#: index classes whose distance code honours ``METRIC_L1`` (checked against brute
#: force on faiss-cpu 1.x): flat vectors, searched exhaustively, by inverted lists
#: or by a graph. Quantised codes (PQ, SQ, ...), refinement and pre-transforms are
#: L2 / inner-product only: faiss builds them for METRIC_L1, then raises a C++
#: error at search (IVF-PQ, IVF-SQ, Refine) or aborts the process (HNSW-SQ), or
#: silently compares another distance (PQ, a rotation before Flat).
L1_INDEX_TYPES = ("IndexFlat", "IndexFlatL1", "IndexIVFFlat", "IndexHNSWFlat", "IndexNSGFlat")


def _index_parts(faiss: Any, index: Any) -> list[str]:
    """Class names of ``index`` and of the indexes it contains (quantiser, storage ...)."""
    names: list[str] = []
    todo = [index]
    while todo and len(names) < 16:
        idx = faiss.downcast_index(todo.pop())
        names.append(type(idx).__name__)
        for attr in ("quantizer", "storage", "index", "base_index", "refine_index"):
            sub = getattr(idx, attr, None)
            if sub is not None and hasattr(sub, "ntotal"):
                todo.append(sub)
    return names


def check_metric_support(faiss: Any, index: Any, index_string: str, metric: str) -> None:
    """Refuse an index that FAISS builds for ``metric`` but cannot search with it.

    Called on the empty index right after ``index_factory``, before any training or
    adding (some unsupported combinations abort the process there).
    """
    if metric != "l1":
        return
    unsupported = [n for n in _index_parts(faiss, index) if n not in L1_INDEX_TYPES]
    if unsupported:
        raise ValueError(
            f"index={index_string!r} cannot be used with metric='l1': it is built from "
            f"{', '.join(sorted(set(unsupported)))}, whose codes FAISS compares in L2 or inner "
            "product only (its search would fail or rank by another distance). With "
            "metric='l1' use 'Flat' (exact), 'IVF<nlist>,Flat', 'HNSW<M>' or 'NSG<R>,Flat', "
            "or backend='numba' (exact)"
        )


#: FAISS accumulates distances in float32: data magnitudes (largest ``|value|``) it can
#: compare for ``D`` features without overflow or total underflow, by metric family.
def float32_safe_range(metric: str, n_features: int) -> tuple[float, float]:
    """``(smallest, largest)`` non-zero data magnitude FAISS compares correctly.

    Largest: every distance between rows of magnitude ``<= M`` stays below float32's
    maximum (``D (2M)^2 <= 2^126`` for squared L2, ``2DM <= 2^126`` for L1). Smallest:
    below it every squared L2 (or L1) distance underflows float32, so all distances
    would read 0 and the ranking would be arbitrary.
    """
    d = max(1, int(n_features))
    if metric == "l1":
        return 2.0**-100, 2.0**125 / d
    return 2.0**-60, 2.0**62 / float(np.sqrt(d))


def check_float32_range(A: Any, metric: str, name: str) -> float:
    """Refuse rows whose magnitude overflows FAISS's float32 distances; return it.

    The magnitude (largest ``|value|``) is taken before any float32 cast, so 1e100
    is reported as such rather than as ``inf``.
    """
    arr = np.asarray(A)
    peak = float(max(abs(float(arr.max())), abs(float(arr.min())))) if arr.size else 0.0
    check_magnitude(peak, metric, arr.shape[-1], name, lower=False)
    return peak


def check_magnitude(peak: float, metric: str, n_features: int, name: str, *, lower: bool) -> None:
    """``ValueError`` naming ``name`` and the accepted range unless ``peak`` is in it.

    ``lower``: also refuse a non-zero ``peak`` below the underflow limit (checked on
    the whole training set; tiny queries against normal data are fine).
    """
    lo, hi = float32_safe_range(metric, n_features)
    if peak > hi or (lower and 0.0 < peak < lo):
        family = "L1" if metric == "l1" else "squared L2"
        raise ValueError(
            f"{name}: values of magnitude up to {peak:.3g}; backend='faiss' computes "
            f"{family} distances in float32, which {'overflow' if peak > hi else 'underflow'} "
            f"for such data; with {n_features} features it accepts data whose largest "
            f"|value| lies in [{lo:.3g}, {hi:.3g}] (or all zeros). Rescale the data, or use "
            "backend='numba' (exact float64)"
        )


def _check_index_string(index: Any) -> str:
    if not isinstance(index, str) or not index.strip():
        raise ValueError(
            "index must be a faiss index_factory string such as 'Flat', 'IVF1024,Flat', "
            f"'HNSW32' or 'IVF256,PQ16', got {index!r}"
        )
    return index.strip()


def build_index(
    X: Any,
    metric: str = "l2",
    index: str = "Flat",
    *,
    train_size: int | None = None,
    seed: int = 0,
) -> Any:
    """Build (train when needed, then fill) a FAISS index on the rows of ``X``.

    Parameters
    ----------
    X : ndarray, np.memmap or :class:`fastcls.backends.LazyRows` (n_train, D)
        Validated training rows (uint8, float32 or float64). Rows are converted to
        float32 and added in chunks, so a memmap is never converted as a whole (the
        index itself holds the vectors in RAM, as FAISS does).
    metric : {"l2", "sqeuclidean", "l1"}
    index : str
        A ``faiss.index_factory`` string: ``"Flat"`` (exact), ``"IVF1024,Flat"``,
        ``"HNSW32"``, ``"IVF256,PQ16"`` ...
    train_size : int, optional
        Rows used to train the index (IVF centroids, PQ codebooks). Default: every
        row up to 256 per centroid-sized budget (``min(n_train, 100000)``), taken as an
        evenly spaced deterministic sample.
    seed : int
        Seed of the k-means training (deterministic for a fixed thread count).

    Returns
    -------
    faiss.Index
    """
    faiss = import_faiss()
    index = _check_index_string(index)
    n, d = X.shape
    try:
        idx = faiss.index_factory(int(d), index, _metric_type(faiss, metric))
    except Exception as exc:  # faiss raises RuntimeError with its own message
        raise ValueError(
            f"faiss could not build index {index!r} for metric {metric!r}: {exc}"
        ) from exc
    check_metric_support(faiss, idx, index, metric)
    if not idx.is_trained:
        budget = min(n, 100_000) if train_size is None else int(train_size)
        budget = max(1, min(n, budget))
        if budget == n:
            raw = X[0:n]
        else:
            rows = np.linspace(0, n - 1, budget).round().astype(np.int64)
            raw = np.concatenate([np.asarray(X[r : r + 1]) for r in rows])
        check_float32_range(raw, metric, "X")
        sample = to_float32(raw)
        del raw
        _set_training_seed(faiss, idx, seed)
        try:
            idx.train(sample)
        except Exception as exc:
            raise ValueError(
                f"faiss could not train index {index!r} on {sample.shape[0]} rows: {exc}"
            ) from exc
        del sample
    from fastcls._config import settings

    # chunks bound the float32 copy of a memmap / uint8 source
    chunk = max(1, int(settings.faiss_add_chunk_rows))
    peak = 0.0
    for start in range(0, n, chunk):
        rows = X[start : start + chunk]
        # before the float32 cast: 1e100 would become inf, and every search -1
        peak = max(peak, check_float32_range(rows, metric, "X"))
        try:
            idx.add(to_float32(rows))
        except Exception as exc:  # e.g. an IDMap index, which needs ids
            raise ValueError(f"faiss could not add rows to index {index!r}: {exc}") from exc
    check_magnitude(peak, metric, d, "X", lower=True)
    return idx


def _set_training_seed(faiss: Any, idx: Any, seed: int) -> None:
    """Seed the k-means of IVF quantisers / PQ codebooks where faiss exposes it."""
    try:
        ivf = faiss.extract_index_ivf(idx)
    except Exception:
        ivf = None
    if ivf is not None:
        ivf.cp.seed = int(seed)
    inner = ivf if ivf is not None else idx
    for attr in ("pq", "sq"):
        obj = getattr(faiss.downcast_index(inner), attr, None) if inner is not None else None
        cp = getattr(obj, "cp", None)
        if cp is not None:
            cp.seed = int(seed)


def set_search_parameters(
    index: Any, *, nprobe: int | None = None, efSearch: int | None = None
) -> None:
    """Set ``nprobe`` (IVF) / ``efSearch`` (HNSW) on ``index`` where it has them.

    Raises ``ValueError`` when a parameter is given for an index that lacks it.
    """
    faiss = import_faiss()
    ps = faiss.ParameterSpace()
    for name, value in (("nprobe", nprobe), ("efSearch", efSearch)):
        if value is None:
            continue
        value = V.check_int(value, name, min_value=1)
        try:
            ps.set_index_parameter(index, name, value)
        except Exception as exc:
            raise ValueError(
                f"{name} does not apply to this faiss index ({type(index).__name__}): {exc}"
            ) from exc


def search_index(
    index: Any,
    Q: np.ndarray,
    k: int,
    metric: str = "l2",
    *,
    nprobe: int | None = None,
    efSearch: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours of the rows of ``Q`` in a built FAISS ``index``.

    Parameters
    ----------
    index : faiss.Index
    Q : ndarray (n_queries, D), validated (uint8, float32 or float64)
    k : int
    metric : {"l2", "sqeuclidean", "l1"}
        The metric the index was built with; ``"l2"`` takes the square root.
    nprobe, efSearch : int, optional
        Search parameters of IVF / HNSW indexes.

    Returns
    -------
    distances : ndarray (n_queries, k), float64
    indices : ndarray (n_queries, k), int64
        Rows sorted by ``(distance, index)``; unfound slots are ``(inf, -1)``.
    """
    set_search_parameters(index, nprobe=nprobe, efSearch=efSearch)
    check_float32_range(Q, metric, "the queries")
    dist32, idx = index.search(to_float32(Q), int(k))
    dist = dist32.astype(np.float64)
    idx = idx.astype(np.int64, copy=False)
    missing = idx < 0
    dist[missing] = np.inf
    if metric == "l2":
        np.sqrt(np.maximum(dist, 0.0, out=dist), out=dist)
    # equal distances -> lower index first; unfound (-1) slots last
    key_idx = np.where(missing, np.iinfo(np.int64).max, idx)
    order = np.lexsort((key_idx, dist), axis=-1)
    return np.take_along_axis(dist, order, axis=1), np.take_along_axis(idx, order, axis=1)


def recall_at_k(approx_indices: Any, exact_indices: Any, k: int | None = None) -> float:
    """Mean fraction of the exact k nearest neighbours that an approximate search found.

    ``recall@k = mean over queries of |approx[q, :k] & exact[q, :k]| / k``.

    Parameters
    ----------
    approx_indices : array-like of int (n_queries, k_approx)
        Indices from an approximate search (``-1`` marks an unfound slot).
    exact_indices : array-like of int (n_queries, k_exact)
        Indices from an exact search.
    k : int, optional
        Compare the first ``k`` columns of each (default: ``exact_indices.shape[1]``,
        which must not exceed ``approx_indices.shape[1]``).

    Returns
    -------
    float in [0, 1]

    Examples
    --------
    >>> import numpy as np, fastcls
    >>> fastcls.recall_at_k(np.array([[0, 1], [2, 9]]), np.array([[1, 0], [2, 3]]))
    0.75
    """
    A = np.asarray(approx_indices)
    E = np.asarray(exact_indices)
    for arr, name in ((A, "approx_indices"), (E, "exact_indices")):
        if arr.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n_queries, k), got shape {arr.shape}")
        if arr.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integer indices, got dtype {arr.dtype}")
    if A.shape[0] != E.shape[0]:
        raise ValueError(
            f"approx_indices has {A.shape[0]} queries but exact_indices has {E.shape[0]}"
        )
    if k is None:
        k = E.shape[1]
    k = V.check_int(k, "k", min_value=1, max_value=min(A.shape[1], E.shape[1]))
    if A.shape[0] == 0:
        raise ValueError("recall_at_k needs at least one query")
    a = A[:, :k].astype(np.int64)
    e = E[:, :k].astype(np.int64)
    # matches of each exact neighbour among the approximate ones (-1 never matches)
    hits = ((a[:, :, None] == e[:, None, :]) & (a[:, :, None] >= 0)).any(axis=1)
    return float(hits.sum() / (k * A.shape[0]))


def serialize_index(index: Any) -> np.ndarray:
    """Bytes of a FAISS index as a uint8 array (``faiss.serialize_index``)."""
    faiss = import_faiss()
    return np.asarray(faiss.serialize_index(index), dtype=np.uint8)


def deserialize_index(data: np.ndarray) -> Any:
    """Inverse of :func:`serialize_index` (no checks: see :func:`check_index_bytes`)."""
    faiss = import_faiss()
    return faiss.deserialize_index(np.ascontiguousarray(data, dtype=np.uint8))


#: the header every serialised FAISS index starts with (``write_index_header``):
#: fourcc, d (int32), ntotal (int64), two dummies (int64, 1 << 20), is_trained (uint8),
#: metric_type (int32); a float32 metric_arg follows when metric_type > 1
_HEADER = struct.Struct("<4siqqqBi")
_HEADER_DUMMY = 1 << 20
#: fourcc of a flat index by faiss metric type (L2 / inner product have their own)
_FLAT_FOURCC = {0: b"IxFI", 1: b"IxF2"}
_FAISS_METRIC_TYPES = {"l2": 1, "sqeuclidean": 1, "l1": 2}


def check_index_bytes(
    data: Any,
    metric: str,
    n_samples: int,
    n_features: int,
    *,
    flat: bool,
    trusted: bool = False,
) -> None:
    """Check serialised index bytes before faiss reads them; ``ValueError`` if wrong.

    faiss's reader trusts the sizes it reads: tampered bytes can make it allocate
    without bound (a flipped list size in an IVF index hung it, zero-filling memory)
    or build a structure that reads out of bounds at search time. So the bytes of the
    index families fastcls documents are walked here, every size bounded by the bytes
    that remain and every value checked, so faiss reads nothing unchecked:

    * ``"Flat"`` (``IxF2`` / ``IxFI`` / ``IxFl``): ``ntotal x d`` finite float32 values;
    * ``"IVF<n>,Flat"`` (``IwFl``): a flat quantizer of ``nlist`` centroids, no direct
      map, array inverted lists (``ilar``, full or sparse sizes) of ``d`` floats per
      code holding each training row exactly once;
    * ``"HNSW<M>"`` (``IHNf``): levels, offsets and links in range, then flat storage.

    Every index must match the model: ``d == n_features``, ``ntotal == n_samples``, the
    metric, ``is_trained``, and the family that the ``index`` parameter names
    (``flat``). Other families (PQ, SQ, refinement, transforms ...) are refused unless
    ``trusted`` (``fastcls.load(..., trust_index=True)``), in which case only their
    header is checked before faiss parses the rest.
    """
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 1:
        raise ValueError("faiss_index must be a 1-D uint8 array (faiss.serialize_index bytes)")
    reader = _IndexBytes(data)
    fourcc = reader.index_header(_FAISS_METRIC_TYPES[metric], n_samples, n_features)
    if flat != (fourcc in _FLAT_FOURCCS):
        raise ValueError(
            f"faiss_index is a {fourcc.decode('ascii')} index, but the model's index "
            f"parameter says {'Flat' if flat else 'an approximate index'}"
        )
    if fourcc not in _WALKERS:
        if trusted:
            return
        raise ValueError(
            f"faiss_index is a {fourcc.decode('ascii')} index, whose bytes fastcls cannot "
            "check before faiss reads them (it checks Flat, IVF<n>,Flat and HNSW<M>); "
            "load a file from a trusted source with fastcls.load(path, trust_index=True)"
        )
    _WALKERS[fourcc](reader, n_samples, n_features)
    if reader.pos != data.shape[0]:
        raise ValueError(f"faiss_index has {data.shape[0] - reader.pos} bytes after the index")


class _IndexBytes:
    """A cursor over serialised index bytes; every read bounded by what remains."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.pos = 0
        self.metric_type = -1

    def take(self, n: int, what: str) -> np.ndarray:
        if n < 0 or self.pos + n > self.data.shape[0]:
            raise ValueError(f"faiss_index is truncated (reading {what})")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def scalar(self, fmt: str, what: str) -> Any:
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.take(size, what).tobytes())[0]

    def vector(self, dtype: Any, what: str, count: int | None = None) -> np.ndarray:
        """A faiss vector: a uint64 length, then that many items (exactly ``count``)."""
        dt = np.dtype(dtype)
        size = self.scalar("<Q", what)
        if count is not None and size != count:
            raise ValueError(f"faiss_index: {what} holds {size} items, expected {count}")
        if size > (self.data.shape[0] - self.pos) // dt.itemsize:
            raise ValueError(f"faiss_index: {what} claims {size} items, more than the bytes left")
        return self.take(size * dt.itemsize, what).view(dt)

    def index_header(self, metric_type: int, ntotal: int, d: int) -> bytes:
        head = self.take(_HEADER.size, "the header").tobytes()
        fourcc, hd, hn, dummy1, dummy2, trained, mtype = _HEADER.unpack(head)
        if not (fourcc[:1] == b"I" and fourcc.isalnum()):
            raise ValueError(f"faiss_index does not start with a faiss index fourcc ({fourcc!r})")
        if (hd, hn) != (d, ntotal):
            raise ValueError(
                f"faiss_index holds {hn} vectors of dimension {hd}, expected {ntotal} of "
                f"dimension {d}"
            )
        if (dummy1, dummy2, trained) != (_HEADER_DUMMY, _HEADER_DUMMY, 1) or mtype != metric_type:
            raise ValueError(
                f"faiss_index header is malformed (is_trained={trained}, metric_type={mtype}, "
                f"expected metric_type {metric_type})"
            )
        if mtype > 1:
            arg = self.scalar("<f", "metric_arg")
            if not np.isfinite(arg):
                raise ValueError("faiss_index: metric_arg is not finite")
        if fourcc in _FLAT_FOURCCS and fourcc != _FLAT_FOURCC.get(mtype, b"IxFl"):
            raise ValueError(f"faiss_index: fourcc {fourcc!r} does not match metric_type {mtype}")
        self.metric_type = mtype
        return bytes(fourcc)

    def floats(self, count: int, what: str) -> None:
        values = self.take(4 * count, what).view(np.float32)
        if not np.isfinite(values).all():
            raise ValueError(f"faiss_index: {what} holds NaN or infinity")


def _walk_flat(r: _IndexBytes, n: int, d: int) -> None:
    size = r.scalar("<Q", "the flat vectors")
    if size != n * d:
        raise ValueError(f"faiss_index stores {size} values, expected {n * d}")
    r.floats(n * d, "the flat vectors")


def _walk_sub_flat(r: _IndexBytes, n: int, d: int, what: str) -> None:
    fourcc = r.index_header(r.metric_type, n, d)
    if fourcc not in _FLAT_FOURCCS:
        raise ValueError(f"faiss_index: the {what} must be a flat index, got {fourcc!r}")
    _walk_flat(r, n, d)


def _walk_ivf_flat(r: _IndexBytes, n: int, d: int) -> None:
    nlist = r.scalar("<Q", "nlist")
    nprobe = r.scalar("<Q", "nprobe")
    if not 1 <= nlist <= 2**24 or not 1 <= nprobe <= nlist:
        raise ValueError(f"faiss_index: nlist={nlist} / nprobe={nprobe} out of range")
    _walk_sub_flat(r, nlist, d, "IVF quantizer")
    if r.scalar("<B", "the direct map type") != 0 or r.scalar("<Q", "the direct map") != 0:
        raise ValueError("faiss_index: an IVF direct map is not expected")
    if r.take(4, "the inverted lists").tobytes() != b"ilar":
        raise ValueError("faiss_index: the IVF inverted lists must be array lists ('ilar')")
    if r.scalar("<Q", "the lists' nlist") != nlist or r.scalar("<Q", "code_size") != 4 * d:
        raise ValueError("faiss_index: the inverted lists do not match nlist or d")
    kind = r.take(4, "the list sizes").tobytes()
    sizes = np.zeros(nlist, dtype=np.int64)
    if kind == b"full":
        sizes[:] = r.vector(np.uint64, "the list sizes", nlist).astype(np.int64)
    elif kind == b"sprs":
        pairs = r.vector(np.uint64, "the sparse list sizes")
        if pairs.shape[0] % 2:
            raise ValueError("faiss_index: the sparse list sizes are not pairs")
        lists, counts = pairs[0::2], pairs[1::2]
        if (lists >= nlist).any() or np.unique(lists).shape[0] != lists.shape[0]:
            raise ValueError("faiss_index: a sparse list number is out of range or repeated")
        sizes[lists.astype(np.int64)] = np.minimum(counts, n + 1).astype(np.int64)
    else:
        raise ValueError(f"faiss_index: unknown list-size format {kind!r}")
    if (sizes < 0).any() or int(sizes.sum()) != n:
        raise ValueError(f"faiss_index: the inverted lists hold {int(sizes.sum())} rows, not {n}")
    ids = []
    for size in sizes[sizes > 0].tolist():
        r.floats(size * d, "an inverted list")
        ids.append(r.take(8 * size, "an inverted list's ids").view(np.int64))
    found = np.sort(np.concatenate(ids))
    if not np.array_equal(found, np.arange(n)):
        raise ValueError("faiss_index: the IVF lists do not hold each training row once")


def _walk_hnsw_flat(r: _IndexBytes, n: int, d: int) -> None:
    probas = r.vector(np.float64, "assign_probas")
    cum = r.vector(np.int32, "cum_nneighbor_per_level").astype(np.int64)
    if (
        not 1 <= cum.shape[0] <= 64
        or cum.shape[0] != probas.shape[0] + 1
        or not np.isfinite(probas).all()
        or cum[0] != 0
        or (np.diff(cum) < 0).any()
        or cum[-1] > 2**16
    ):
        raise ValueError("faiss_index: the HNSW level parameters are malformed")
    levels = r.vector(np.int32, "levels", n).astype(np.int64)
    if (levels < 1).any() or (levels >= cum.shape[0]).any():
        raise ValueError("faiss_index: an HNSW level is out of range")
    offsets = r.vector(np.uint64, "offsets", n + 1)
    expected = np.concatenate([[0], np.cumsum(cum[levels])])
    if not np.array_equal(offsets.astype(np.int64), expected) or offsets[-1] >= 2**40:
        raise ValueError("faiss_index: the HNSW offsets do not match the levels")
    neighbors = r.vector(np.int32, "neighbors", int(expected[-1]))
    if neighbors.size and ((neighbors < -1).any() or (neighbors >= n).any()):
        raise ValueError("faiss_index: an HNSW link points outside the index")
    entry, max_level, ef_construction, ef_search, _upper_beam = (
        r.scalar("<i", f) for f in ("entry_point", "max_level", "efConstruction", "efSearch", "")
    )
    if (
        not 0 <= entry < n
        or max_level != int(levels.max()) - 1
        or levels[entry] - 1 != max_level
        or not 1 <= ef_construction <= 2**20
        or not 1 <= ef_search <= 2**20
    ):
        raise ValueError("faiss_index: the HNSW entry point or search parameters are malformed")
    _walk_sub_flat(r, n, d, "HNSW storage")


_FLAT_FOURCCS = (b"IxF2", b"IxFI", b"IxFl")
_WALKERS = {
    **{fourcc: _walk_flat for fourcc in _FLAT_FOURCCS},
    b"IwFl": _walk_ivf_flat,
    b"IHNf": _walk_hnsw_flat,
}


def check_index_structure(index: Any, metric: str, n_samples: int, n_features: int) -> None:
    """Check a deserialised index against the model; ``ValueError`` if inconsistent.

    Size, dimension and metric of every index; for IVF indexes, that the inverted lists
    hold each training row exactly once; for HNSW, that every graph link, level and
    offset is in range (an out-of-range link is read out of bounds at search time).
    """
    faiss = import_faiss()
    if (int(index.d), int(index.ntotal)) != (n_features, n_samples) or not index.is_trained:
        raise ValueError(
            f"faiss_index holds {index.ntotal} vectors of dimension {index.d}, expected "
            f"{n_samples} x {n_features}"
        )
    if int(index.metric_type) != _FAISS_METRIC_TYPES[metric]:
        raise ValueError(f"faiss_index metric_type {index.metric_type} is not {metric!r}")
    try:
        ivf = faiss.extract_index_ivf(index)
    except Exception:  # faiss raises when the index holds no IVF
        ivf = None
    if ivf is not None:
        _check_ivf(faiss, ivf, n_samples, n_features)
    hnsw_index = faiss.downcast_index(index)
    if hasattr(hnsw_index, "hnsw"):
        _check_hnsw(faiss, hnsw_index, n_samples)


def _check_ivf(faiss: Any, ivf: Any, n: int, d: int) -> None:
    nlist = int(ivf.nlist)
    quantizer = ivf.quantizer
    if int(quantizer.ntotal) != nlist or int(quantizer.d) != int(ivf.d) or ivf.d != d:
        raise ValueError("faiss_index: the IVF quantizer does not match its lists")
    invlists = ivf.invlists
    if int(invlists.nlist) != nlist:
        raise ValueError("faiss_index: the IVF inverted lists do not match nlist")
    ids = []
    for lst in range(nlist):
        size = int(invlists.list_size(lst))
        if size:
            ids.append(faiss.rev_swig_ptr(invlists.get_ids(lst), size).copy())
    found = np.sort(np.concatenate(ids)) if ids else np.empty(0, np.int64)
    if found.shape[0] != n or not np.array_equal(found, np.arange(n)):
        raise ValueError("faiss_index: the IVF lists do not hold each training row once")


def _check_hnsw(faiss: Any, index: Any, n: int) -> None:
    h = index.hnsw
    levels = faiss.vector_to_array(h.levels).astype(np.int64)
    offsets = faiss.vector_to_array(h.offsets).astype(np.int64)
    neighbors = faiss.vector_to_array(h.neighbors).astype(np.int64)
    cum = faiss.vector_to_array(h.cum_nneighbor_per_level).astype(np.int64)
    ok = (
        levels.shape == (n,)
        and offsets.shape == (n + 1,)
        and (levels >= 1).all()
        and (levels < cum.shape[0]).all()
        and offsets[0] == 0
        and np.array_equal(np.diff(offsets), cum[np.minimum(levels, cum.shape[0] - 1)])
        and offsets[-1] == neighbors.shape[0]
        and neighbors.size > 0
        and (neighbors >= -1).all()
        and (neighbors < n).all()
        and 0 <= int(h.entry_point) < n
        and int(h.max_level) == int(levels.max()) - 1
    )
    storage = getattr(index, "storage", None)
    if not ok or storage is None or int(storage.ntotal) != n or int(storage.d) != int(index.d):
        raise ValueError("faiss_index: the HNSW graph is inconsistent with its vectors")


class FaissBackend(SearchBackend):
    """Search a FAISS index built on the training rows (``backend="faiss"``).

    Build option: ``index`` (an ``index_factory`` string, default ``"Flat"``, exact
    to float32); the index is built (and trained when it needs it) once, at
    construction. Search options: ``nprobe`` (IVF) and ``efSearch`` (HNSW).
    """

    name = "faiss"
    build_options = ("index",)
    search_options = ("nprobe", "efSearch")

    def __init__(
        self,
        X: Any,
        metric: str,
        *,
        train_tile: int | None = None,
        index: str | None = "Flat",
        built_index: Any = None,
    ) -> None:
        self.index_string = _check_index_string("Flat" if index is None else index)
        if built_index is None:
            built_index = build_index(X, metric, self.index_string)
        self.index = built_index
        # restored without its training rows, the index alone gives the size: a
        # zero-stride stand-in (no memory) carries shape and dtype, and X stays None
        shape = (int(built_index.ntotal), int(built_index.d))
        rows = X if X is not None else np.broadcast_to(np.float32(0), shape)
        super().__init__(rows, metric, train_tile=train_tile)
        self.X = X
        self.exact = self.index_string == "Flat"

    def search_promoted(
        self, Q: np.ndarray, k: int, **options: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Search the FAISS index (``nprobe`` / ``efSearch`` options)."""
        return search_index(
            self.index,
            Q,
            k,
            self.metric,
            nprobe=options.get("nprobe"),
            efSearch=options.get("efSearch"),
        )

    def check_search_options(self, **options: Any) -> None:
        """``nprobe`` / ``efSearch`` must apply to the index (IVF / HNSW)."""
        set_search_parameters(
            self.index, nprobe=options.get("nprobe"), efSearch=options.get("efSearch")
        )

    def export_arrays(self, include_data: bool | None = None) -> dict[str, np.ndarray]:
        """The serialised index, plus the training rows when ``include_data``."""
        arrays = {"faiss_index": serialize_index(self.index)}
        if include_data and self.X is not None:
            arrays.update(super().export_arrays())
        return arrays

    @classmethod
    def from_arrays(
        cls,
        arrays: dict[str, np.ndarray],
        metric: str,
        *,
        n_samples: int,
        n_features: int,
        **options: Any,
    ) -> FaissBackend:
        """Restore the serialised index (or rebuild it from ``fit_X`` when absent).

        The bytes are checked by :func:`check_index_bytes` before faiss reads them and
        the index by :func:`check_index_structure` after; with ``fit_X`` stored too,
        a flat index must hold exactly its float32 rows.
        """
        X = np.ascontiguousarray(arrays["fit_X"]) if "fit_X" in arrays else None
        if X is not None and X.shape != (n_samples, n_features):
            raise ValueError(f"fit_X has shape {X.shape}, expected {(n_samples, n_features)}")
        index_string = _check_index_string(
            "Flat" if options.get("index") is None else options["index"]
        )
        if "faiss_index" not in arrays:
            if X is None:
                raise ValueError("backend 'faiss' needs a stored index or the training rows")
            return cls(X, metric, index=index_string)
        data = arrays["faiss_index"]
        flat = index_string == "Flat"
        check_index_bytes(
            data, metric, n_samples, n_features, flat=flat, trusted=TRUST_INDEX_BYTES.get()
        )
        try:
            built = deserialize_index(data)
        except RuntimeError as exc:  # faiss's reader refused the bytes
            raise ValueError(f"faiss could not read faiss_index: {exc}") from exc
        check_index_structure(built, metric, n_samples, n_features)
        if flat and X is not None:
            pos = data.shape[0] - 4 * n_samples * n_features
            if not np.array_equal(data[pos:].view(np.float32).reshape(X.shape), to_float32(X)):
                raise ValueError("faiss_index does not hold the stored training rows fit_X")
        return cls(X, metric, index=index_string, built_index=built)
