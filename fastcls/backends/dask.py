"""Exact k-NN beyond one process: training rows sharded over Dask workers.

Optional extra: ``pip install fastcls[dask]`` (``dask[array]`` and ``distributed``).

How it works (the same on one laptop and on N machines):

1. The training rows are split into row shards: the row chunks of a ``dask.array``
   (rechunked to whole rows), numpy shards scattered to the workers with
   :func:`scatter_shards`, or a numpy array split into one shard per worker.
2. The queries are broadcast once to every worker. Each worker runs the *same* fused
   distance + top-k kernel as the single-process ``"numba"`` backend on its shard,
   with the shard's global row offset, so its top-k list holds global indices.
3. The per-shard ``(n_queries, k)`` lists are merged pairwise by a tree reduction
   (``merge_topk``: the k smallest of the union by ``(distance, index)``), so only
   k-sized lists cross the network, never training rows or distance matrices.
4. The client takes the square root for ``"l2"`` and votes.

Because every list is ordered by ``(distance, index)`` with exact float64 distances,
the result is identical to single-process search whatever the sharding, the merge
order or the number of workers. Users import these names from
:mod:`fastcls.distributed`; the example there runs without a cluster.
"""

from __future__ import annotations

from concurrent.futures import CancelledError
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastcls import _validation as V
from fastcls.backends.base import SearchBackend
from fastcls.backends.rows import (
    LazyRows,
    check_train_rows,
    default_train_tile,
    iter_row_tiles,
    kernel_dtype,
    promote_query,
)

__all__ = [
    "DaskBackend",
    "ShardLostError",
    "Shards",
    "scatter_shards",
    "kneighbors",
    "search_shards",
    "shard_topk",
    "merge_pair",
]

EXTRA_HINT = "pip install fastcls[dask]"


def _import_distributed() -> Any:
    try:
        import dask  # noqa: F401
        import distributed
    except ImportError as exc:
        raise ImportError(
            "the Dask backend needs the optional dependencies dask and distributed; install "
            f"them with `{EXTRA_HINT}`"
        ) from exc
    return distributed


def _default_client() -> Any | None:
    """The current ``distributed.Client`` if one is running, else ``None``."""
    try:
        from distributed import get_client
    except ImportError:
        return None
    try:
        return get_client()
    except ValueError:  # no client registered
        return None


class ShardLostError(RuntimeError):
    """A Dask worker holding training rows was lost while a search needed them.

    The message names each lost shard (its global training row range) and the worker
    address(es) that held it, and what to do. ``shards`` holds the lost shards as
    ``(shard number, first row, end row)``; ``workers`` the addresses that held them.
    """

    def __init__(
        self, message: str, shards: tuple[tuple[int, int, int], ...], workers: tuple[str, ...]
    ) -> None:
        super().__init__(message)
        self.shards = shards
        self.workers = workers


@dataclass(frozen=True)
class Shards:
    """Row shards of a training set held by Dask workers (see :func:`scatter_shards`).

    Attributes
    ----------
    futures : list of distributed.Future
        One future per shard, each an ndarray (rows_i, n_features).
    offsets : tuple of int
        Global index of each shard's first row.
    shape : tuple (n_rows, n_features)
    dtype : numpy dtype
    workers : tuple of tuple of str
        The worker addresses holding each shard when it was scattered (named in the
        error if a worker dies).
    """

    futures: list
    offsets: tuple[int, ...]
    shape: tuple[int, int]
    dtype: np.dtype
    workers: tuple[tuple[str, ...], ...] = ()


def _split_rows(n: int, n_shards: int) -> list[tuple[int, int]]:
    n_shards = max(1, min(n, n_shards))
    bounds = np.linspace(0, n, n_shards + 1).round().astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def scatter_shards(X: Any, client: Any, n_shards: int | None = None) -> Shards:
    """Validate ``X``, split its rows into shards and scatter them to the workers.

    Parameters
    ----------
    X : array-like (n_train, D)
    client : distributed.Client
    n_shards : int, optional
        Default: one shard per worker.

    Returns
    -------
    Shards
        Pass it as ``X`` to :func:`kneighbors`; scatter once, search many times.
    """
    _import_distributed()
    Xa = V.check_array(X, "X")
    if n_shards is None:
        n_shards = max(1, len(client.scheduler_info()["workers"]))
    n_shards = V.check_int(n_shards, "n_shards", min_value=1)
    ranges = _split_rows(Xa.shape[0], n_shards)
    pieces = [np.ascontiguousarray(Xa[a:b]) for a, b in ranges]
    futures = list(client.scatter(pieces, hash=False))  # round-robin over workers
    return Shards(
        futures=futures,
        offsets=tuple(a for a, _ in ranges),
        shape=(int(Xa.shape[0]), int(Xa.shape[1])),
        dtype=Xa.dtype,
        workers=tuple(_holders(client, futures)),
    )


# ----------------------------------------------------------------------- worker tasks
def shard_topk(
    Q: np.ndarray,
    shard: Any,
    offset: int,
    k: int,
    metric: str,
    train_tile: int | None = None,
    n_jobs: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of every query among one shard's rows, with global indices (a worker task).

    Runs the fused kernel of the ``"numba"`` backend tile by tile over ``shard``
    (converted to ``Q``'s dtype), ranking on the surrogate (squared L2 for ``"l2"``).
    Rows of the result that the shard cannot fill (``k`` > its rows) hold
    ``(inf, -1)``.

    Returns
    -------
    (distances float64 (n_queries, k), indices int64 (n_queries, k))
    """
    from fastcls._config import num_threads
    from fastcls.kernels.knn import topk_kernel
    from fastcls.kernels.topk import new_topk

    shard = np.asarray(shard)
    if shard.dtype != Q.dtype:
        V.assert_all_finite(shard, "X")
        if shard.dtype.kind in "iu" and Q.dtype.kind == "f":
            # the rule of every path: integers convert to float only where exact (a dask
            # array's blocks reach here unvalidated; int64 beyond 2**53 would round)
            V.check_integers_exact_in_float64(shard, f"X[{offset}:{offset + len(shard)}]")
    kernel = topk_kernel(metric, Q.dtype)
    best_d, best_i = new_topk(Q.shape[0], k)
    rows = train_tile or default_train_tile(shard)
    with num_threads(n_jobs):
        try:
            for start, tile in iter_row_tiles(shard, rows, Q.dtype):
                if tile.dtype.kind == "f":
                    V.assert_all_finite(tile, "X")
                kernel(Q, tile, offset + start, best_d, best_i)
        finally:  # as search_rows: the kernels' scratch is not kept between tasks
            from fastcls._config import settings
            from fastcls._runtime import trim_scratch

            trim_scratch(int(settings.knn_scratch_keep_bytes))
    return best_d, best_i


def merge_pair(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Merge two top-k list sets by ``(distance, index)`` (a tree-reduction task)."""
    from fastcls.kernels.topk import merge_topk

    best_d, best_i = a[0].copy(), a[1].copy()
    merge_topk(best_d, best_i, b[0], b[1])
    return best_d, best_i


def _tree(parts: list, merge: Any, keep: list | None = None) -> Any:
    """Pairwise tree reduction of ``parts`` with ``merge`` (fixed pairing order).

    ``keep`` collects every intermediate (futures must stay referenced until the
    final result is fetched).
    """
    while len(parts) > 1:
        nxt = [merge(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
        if len(parts) % 2:
            nxt.append(parts[-1])
        if keep is not None:
            keep.extend(nxt)
        parts = nxt
    return parts[0]


# ----------------------------------------------------------------------- dispatch
def _is_dask_array(X: Any) -> bool:
    return type(X).__module__.startswith("dask.array") and hasattr(X, "to_delayed")


def _dask_blocks(X: Any) -> tuple[list, tuple[int, ...]]:
    """Row blocks (delayed) of a dask array, whole rows each, and their offsets."""
    if len(X.chunks[1]) != 1:
        X = X.rechunk({1: -1})
    blocks = list(X.to_delayed()[:, 0])
    offsets = tuple(int(o) for o in np.concatenate([[0], np.cumsum(X.chunks[0])[:-1]]))
    return blocks, offsets


def search_shards(
    Q: np.ndarray,
    X: Any,
    k: int,
    metric: str,
    *,
    train_tile: int | None = None,
    client: Any | None = None,
    n_jobs: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sharded search on validated inputs (what :class:`DaskBackend` runs).

    ``X`` is a dask array, a :class:`Shards`, a list of ndarray shards, an ndarray /
    memmap or a :class:`fastcls.backends.LazyRows` (whose source may be a dask array).
    With no ``client`` (and no running default client) the shards are searched one
    after the other in this process, through the same tree reduction.
    """
    if isinstance(X, LazyRows):
        X = X.source
    if client is None:
        client = _default_client()
    surrogate_metric = metric
    n_rows = sum(len(p) for p in X) if isinstance(X, (list, tuple)) else int(X.shape[0])
    if isinstance(X, Shards):
        if client is None:
            raise ValueError("X is a Shards object: pass the client that scattered it")
        parts_src: list = X.futures
        offsets = X.offsets
    elif _is_dask_array(X):
        parts_src, offsets = _dask_blocks(X)
        if client is not None:
            parts_src = client.compute(parts_src)
    elif isinstance(X, (list, tuple)):
        parts_src = list(X)
        offsets = tuple(int(o) for o in np.cumsum([0] + [len(p) for p in parts_src[:-1]]))
    else:
        n_workers = len(client.scheduler_info()["workers"]) if client is not None else 1
        ranges = _split_rows(X.shape[0], max(1, n_workers))
        parts_src = [X[a:b] for a, b in ranges]
        offsets = tuple(a for a, _ in ranges)
        if client is not None:
            parts_src = client.scatter([np.ascontiguousarray(p) for p in parts_src], hash=False)

    if client is None:  # in-process: same tasks, same reduction order
        parts = []
        for src, off in zip(parts_src, offsets, strict=True):
            shard = src.compute(scheduler="sync") if hasattr(src, "compute") else src
            parts.append(shard_topk(Q, shard, off, k, surrogate_metric, train_tile, n_jobs))
        best_d, best_i = _tree(parts, merge_pair)
    else:
        distributed = _import_distributed()
        holders = _holders(client, parts_src)  # who holds each shard, for the error message
        if isinstance(X, Shards) and len(X.workers) == len(holders):
            holders = [now or then for now, then in zip(holders, X.workers, strict=True)]
        q = client.scatter(Q, broadcast=True, hash=False)
        parts = [
            client.submit(
                shard_topk, q, src, off, k, surrogate_metric, train_tile, n_jobs, pure=False
            )
            for src, off in zip(parts_src, offsets, strict=True)
        ]
        keep: list = list(parts)
        final = _tree(parts, lambda a, b: client.submit(merge_pair, a, b, pure=False), keep)
        try:
            best_d, best_i = final.result()
        except (CancelledError, distributed.scheduler.KilledWorker) as exc:
            ends = (*offsets[1:], n_rows)
            lost = _lost_shards(client, parts_src, parts, holders)
            raise _shard_lost_error(exc, lost, offsets, ends, holders) from exc
        del keep, parts, q
    best_d = np.array(best_d, copy=True)
    if metric == "l2":  # the kernels rank on squared distances
        np.sqrt(best_d, out=best_d)
    return best_d, np.asarray(best_i)


def _holders(client: Any, sources: list) -> list[tuple[str, ...]]:
    """The worker addresses holding each shard future now (empty when not yet known)."""
    keys = [getattr(s, "key", None) for s in sources]
    try:
        who = client.who_has([s for s, key in zip(sources, keys, strict=True) if key is not None])
    except Exception:  # pragma: no cover - scheduler unreachable: the message says less
        who = {}
    return [tuple(who.get(key, ())) if key is not None else () for key in keys]


def _lost_shards(client: Any, sources: list, parts: list, holders: list) -> list[int]:
    """Shards whose rows or task were lost: a cancelled / lost / failed future, or (when
    no future says so) a holder that is no longer among the workers."""
    bad = ("cancelled", "lost", "error")
    lost = [
        j
        for j, (src, part) in enumerate(zip(sources, parts, strict=True))
        if getattr(src, "status", None) in bad or getattr(part, "status", None) in bad
    ]
    if lost:
        return lost
    try:
        alive = set(client.scheduler_info().get("workers", {}))
    except Exception:  # pragma: no cover - scheduler unreachable
        return []
    return [j for j, held in enumerate(holders) if held and not set(held) & alive]


def _shard_lost_error(
    exc: BaseException,
    lost: list[int],
    offsets: tuple[int, ...],
    ends: tuple[int, ...],
    holders: list[tuple[str, ...]],
) -> ShardLostError:
    shards = tuple((j, offsets[j], ends[j]) for j in lost)
    workers = tuple(sorted({w for j in lost for w in holders[j]}))
    if shards:
        what = ", ".join(
            f"shard {j} (training rows {a}:{b})"
            + (f" held by {', '.join(holders[j])}" if holders[j] else "")
            for j, a, b in shards
        )
    else:
        what = "a shard (which one the scheduler no longer says)"
    return ShardLostError(
        f"a Dask worker was lost during the search: {what} "
        f"({type(exc).__name__}: {str(exc).rstrip('.')}). Rows scattered to a worker die "
        "with it and cannot be recomputed: scatter the training rows again "
        "(scatter_shards(X, client), or fit the estimator again) and repeat the search. "
        "To survive the loss of a worker, pass a dask array built from a source the "
        "workers can reread (its chunks are recomputed); if workers were killed for "
        "memory, give them more or use more shards.",
        shards,
        workers,
    )


def kneighbors(
    Q: Any,
    X: Any,
    k: int = 1,
    metric: str = "l2",
    client: Any | None = None,
    *,
    train_tile: int | None = None,
    n_jobs: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest training rows of every query, with ``X`` sharded over Dask workers.

    Parameters
    ----------
    Q : array-like (n_queries, D)
        Queries (held by the client and broadcast once to the workers).
    X : dask array (n_train, D) chunked by rows, :class:`Shards`, list of ndarray
        shards, or an array-like (split into one shard per worker and scattered).
    k : int
        ``1 <= k <= n_train``.
    metric : {"l2", "sqeuclidean", "l1"}
    client : distributed.Client, optional
        Default: the current client; with none, shards are searched in-process.
    train_tile : int, optional
        Rows per streamed tile inside each shard.
    n_jobs : int, optional
        numba threads per shard task (None: each worker's current setting, all cores by
        default; -1: all cores). On one
        machine with several worker processes, use cores / processes.

    Returns
    -------
    distances : ndarray (n_queries, k), float64
    indices : ndarray (n_queries, k), int64 (global row indices)
        Identical to :func:`fastcls.kneighbors` on the whole training set.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcls.backends.dask import kneighbors
    >>> X = np.array([[0.0], [1.0], [3.0]])
    >>> kneighbors(np.array([[0.9]]), [X[:2], X[2:]], k=2, metric="l1")[1]
    array([[1, 0]])
    """
    metric = V.check_metric(metric)
    Qa = V.check_array(Q, "Q")
    if isinstance(X, Shards):
        shape, dtype = X.shape, X.dtype
        Xv: Any = X
    elif _is_dask_array(X):
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (n_train, n_features), got shape {X.shape}")
        if any(np.isnan(c).any() for c in X.chunks):
            raise ValueError("X has unknown chunk sizes; call X.compute_chunk_sizes() first")
        shape = (int(X.shape[0]), int(X.shape[1]))
        dtype, Xv = kernel_dtype(X.dtype, "X"), X
    elif isinstance(X, (list, tuple)):
        if not X:
            raise ValueError("X must hold at least one shard")
        Xv = [V.check_array(p, f"X[{j}]") for j, p in enumerate(X)]
        for j, p in enumerate(Xv[1:], 1):
            V.check_same_n_features(Xv[0], p, ("X[0]", f"X[{j}]"))
        shape = (sum(p.shape[0] for p in Xv), Xv[0].shape[1])
        dtype = np.result_type(*[p.dtype for p in Xv])
        if dtype not in V.KERNEL_DTYPES:
            dtype = np.dtype(np.float64)
    else:
        Xv = check_train_rows(X, "X")
        shape, dtype = Xv.shape, Xv.dtype
    if Qa.shape[1] != shape[1]:
        raise ValueError(f"Q has {Qa.shape[1]} features but X has {shape[1]}; they must match")
    Qa = promote_query(Qa, dtype)
    k = V.check_k(k, shape[0])
    if train_tile is not None:
        train_tile = V.check_int(train_tile, "train_tile", min_value=1)
    return search_shards(Qa, Xv, k, metric, train_tile=train_tile, client=client, n_jobs=n_jobs)


class DaskBackend(SearchBackend):
    """Exact search with the training rows sharded over Dask workers (``backend="dask"``).

    Build option ``client`` (a ``distributed.Client``; default: the current client
    at search time, or in-process shards when there is none). Results are identical
    to ``backend="numba"``.
    """

    name = "dask"
    build_options = ("client",)

    def __init__(
        self, X: Any, metric: str, *, train_tile: int | None = None, client: Any = None
    ) -> None:
        super().__init__(X, metric, train_tile=train_tile)
        self.client = client

    def search_promoted(
        self, Q: np.ndarray, k: int, **options: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Search every shard (on the workers when a client exists) and merge."""
        return search_shards(
            Q, self.X, k, self.metric, train_tile=self.train_tile, client=self.client
        )
