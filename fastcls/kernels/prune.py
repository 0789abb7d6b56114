"""Partial-distance pruning for the exact integer k-NN kernels (uint8 L1 and L2).

The exact integer kernels sum non-negative terms (``|q_d - x_d|`` or ``(q_d - x_d)^2``),
so a tile's distances over the first features only are lower bounds of the whole; the
kernels insert a pair when ``distance < k-th best`` and the k-th best only falls during
a scan. A register tile whose partial distances are all at or above their queries' k-th
best can therefore stop: none of its pairs would have been inserted, and the results are
the same bit for bit. The pruning tiles (``l1._topk_uint8_chunk_pruned``,
``l2int._topk_int_chunk_pruned``) sum up to ``cuts[0]`` vectors, check, go on to
``cuts[1]``, and so on; the check is vector-wide with one branch.

What it buys depends on the data. The features are reordered first (the same
permutation for queries and rows: the same distances), by decreasing variance over a
sample of the rows, so that the partial sums grow fastest at the start. On
Fashion-MNIST (k = 5, 4 x 2 tiles) the L2 tiles then do about half their vector steps
and the L1 tiles two thirds. On random pixels, whose distances are all alike, no tile
stops and each check is lost work (a reduction, a compare and a mispredicted branch now
and then). So :func:`plan` decides per call from a sample: the exact k-th distances of
16 queries (4 tiles' worth) over the first quarter of the rows (the threshold early in
the scan, pessimistic on purpose), and the partial distances of those queries to 256
pairs of rows at every candidate cut; it picks the cuts (at most :data:`MAX_CHECKS`
checks) that minimise the sampled work, counting :data:`CHECK_VECTORS` vector steps per
check, and prunes when that is at most ``settings.knn_prune_max_work`` of the work
without. The sample costs one pass over the rows' sample and 16 queries' search over a
quarter of the rows; the reordered copies are made only when pruning is chosen.

**The slab stage.** A lower bound cheaper than a partial distance: sum the features
in groups ``G`` of at most ``m``; by Cauchy-Schwarz ``(sum_G q - sum_G x)^2 <= |G| sum_G
(q - x)^2``, so the squared distance of the group sums is at most ``m`` times the
distance, and a pair whose pooled distance is at or above ``m`` times the threshold
cannot enter (L1: ``|sum_G q - sum_G x| <= sum_G |q - x|``, no factor).
:func:`feature_groups` merges features in pairs, level by level, each with
the one it correlates best with (on images: neighbouring pixels, found rather than
assumed); on Fashion-MNIST groups of 8 (98 sums) rule out 80% of the 4 x 2 tiles and
groups of 16 (49 sums) 65%, where the best partial distance of as many vector steps rules
out under 40% (L1: 92% and 86%). The bound is checked on slabs of 8 rows at once
(:mod:`.slab`: rows in the lanes, no reduction, no branch per tile); the tiles
it keeps go on to the full-resolution stage above. :func:`plan` chooses the group size
(or none) from the same sample. Whole numbers throughout: the result is still exact.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

import numpy as np
from numba import prange

from fastcls._config import jit, settings
from fastcls._runtime import single_threaded_blas
from fastcls.kernels._rows import aligned_zeros

#: the cost of one check (reduction, compare, a share of mispredicted branches) in vector
#: steps of a 4 x 2 tile
CHECK_VECTORS = 4.0
#: candidate cuts: every ``n_vectors / CANDIDATES``
CANDIDATES = 8
#: at most this many checks before the last cut
MAX_CHECKS = 3
#: the sample: groups of 4 consecutive queries, pairs of consecutive rows
SAMPLE_GROUPS = 4
SAMPLE_PAIRS = 256
#: the sample's thresholds: its queries' k-th best among the first rows / this (the
#: scan's threshold early on: more pessimistic than the final one)
FIRST_ROWS_DIVISOR = 4
#: rows whose variance orders the features
ORDER_SAMPLE_ROWS = 1024
#: pooled levels (L2): groups of up to 2, 4, ..., 2^POOL_LEVELS correlated features
POOL_LEVELS = 4
#: the slab stage's cost per tile besides its multiply-adds, in vector steps of a tile
SLAB_FIXED_VECTORS = 1.0
#: rows whose correlations group the features, and the most features grouped (the
#: correlation matrix is D x D float32: 16 MB at 2048)
POOL_SAMPLE_ROWS = 512
POOL_MAX_FEATURES = 2048

_MODES = ("auto", "always", "never")

#: set while this thread runs the sample's own search (unpruned)
_sampling = threading.local()


def mode() -> str:
    """``settings.knn_prune``, checked."""
    value = settings.knn_prune
    if value not in _MODES:
        raise ValueError(f"knn_prune must be one of {_MODES}, got {value!r}")
    return str(value)


#: what the uint8 L1 pruned tile returns for every pair when none is below its threshold
#: (sums are never negative)
STOPPED_SUM = -1


def describe(has_pruned_tile: bool, slab: bool = False) -> str:
    """What ``fastcls info`` says of the pruning of a kernel family (``slab``: it has the
    pooled slab stage)."""
    if not has_pruned_tile:
        return "no partial-distance pruning (this tile has no pruned twin yet)"
    first = ", a pooled slab stage first" if slab else ""
    return f"partial-distance pruning {mode()} (knn_prune){first}"


@jit(inline="always")
def int_threshold(d):
    """A k-th best distance (float64, or +inf) as an int64 bound: for an integer ``p``,
    ``p < d`` exactly when ``p < int_threshold(d)`` (rounded up, should ``d`` ever not be a
    whole number)."""
    return np.int64(np.ceil(d)) if d < 4.0e18 else np.int64(4 * 10**18)


@jit(inline="always")
def int_thresholds(best_d, qa, qlast):
    """The k-th best distances of queries ``qa .. qa + 3`` (clamped to ``qlast``) as the
    int64 thresholds of a pruned tile."""
    k = best_d.shape[1]
    return (
        int_threshold(best_d[qa, k - 1]),
        int_threshold(best_d[min(qa + 1, qlast), k - 1]),
        int_threshold(best_d[min(qa + 2, qlast), k - 1]),
        int_threshold(best_d[min(qa + 3, qlast), k - 1]),
    )


@jit(parallel=True)
def _gather_columns(A, order, out):
    """``out[i, d] = A[i, order[d]]``."""
    for i in prange(A.shape[0]):
        for d in range(order.shape[0]):
            out[i, d] = A[i, order[d]]


@jit(parallel=True)
def _prefix_stats(A, bounds, norms, sums):
    """``norms[i, c] = sum A[i, :bounds[c]]^2``, ``sums[i, c] = sum A[i, :bounds[c]]``."""
    for i in prange(A.shape[0]):
        s2 = np.int64(0)
        s1 = np.int64(0)
        d = 0
        for c in range(bounds.shape[0]):
            while d < bounds[c]:
                v = np.int64(A[i, d])
                s2 += v * v
                s1 += v
                d += 1
            norms[i, c] = s2
            sums[i, c] = s1


@jit
def _partial_distances(A, B, bounds, squared, out):
    """``out[c, i, j]`` = the L1 (or, with ``squared``, squared L2) distance of rows
    ``A[i]`` and ``B[j]`` over their first ``bounds[c]`` features, in int64. Each range
    between two bounds is summed in int32, so LLVM vectorises it: exact for L2 because the
    L2 pruning kernel takes at most 32768 features (``255^2 * 32768 < 2^31``), for L1 up
    to 8 million features a range."""
    for i in range(A.shape[0]):
        for j in range(B.shape[0]):
            total = np.int64(0)
            d0 = 0
            for c in range(bounds.shape[0]):
                a = A[i, d0 : bounds[c]]  # views: unsigned indices, a loop LLVM vectorises
                b = B[j, d0 : bounds[c]]
                part = np.int32(0)
                if squared:
                    for d in range(a.shape[0]):
                        t = np.int32(a[d]) - np.int32(b[d])
                        part += np.int32(t * t)
                else:
                    for d in range(a.shape[0]):
                        part += np.int32(abs(np.int32(a[d]) - np.int32(b[d])))
                total += part
                out[c, i, j] = total
                d0 = bounds[c]


def prefix_stats(A: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of uint8 ``A``: the int64 sums of squares and sums of its first
    ``bounds[c]`` features, shape ``(rows, len(bounds))`` each."""
    norms = np.empty((A.shape[0], len(bounds)), dtype=np.int64)
    sums = np.empty_like(norms)
    _prefix_stats(A, np.asarray(bounds, dtype=np.int64), norms, sums)
    return norms, sums


@jit
def _feature_spread(X, step, spread):
    """``spread[d] = n * sum x^2 - (sum x)^2`` over rows ``0, step, 2 step, ...`` of ``X``:
    ``n^2`` times the variance of feature ``d``, exact in int64."""
    s1 = np.zeros(X.shape[1], dtype=np.int64)
    s2 = np.zeros(X.shape[1], dtype=np.int64)
    n = 0
    for i in range(0, X.shape[0], step):
        row = X[i]
        for d in range(X.shape[1]):
            v = np.int64(row[d])
            s1[d] += v
            s2[d] += v * v
        n += 1
    for d in range(X.shape[1]):
        spread[d] = n * s2[d] - s1[d] * s1[d]


def feature_order(X: np.ndarray) -> np.ndarray:
    """Features by decreasing variance over up to :data:`ORDER_SAMPLE_ROWS` rows of ``X``
    spread over it (ties by index). Integer moments, no float copy of the sample: a
    search's memory stays its own (a 12 MB temporary here left glibc holding 23 MB after
    a memmapped search)."""
    step = max(1, X.shape[0] // ORDER_SAMPLE_ROWS)
    spread = np.empty(X.shape[1], dtype=np.int64)
    _feature_spread(X, step, spread)
    return np.argsort(-spread, kind="stable").astype(np.int64)


def copies_fit(Q: np.ndarray, X: np.ndarray) -> bool:
    """Whether reordered copies of ``Q`` and ``X`` fit ``settings.knn_prune_copy_max_bytes``."""
    return Q.nbytes + X.nbytes <= int(settings.knn_prune_copy_max_bytes)


def slab_fits(Q: np.ndarray, X: np.ndarray, n_groups: int) -> bool:
    """Whether the slab stage's copies (int16 sums of ``n_groups`` groups of the queries and
    rows) fit ``settings.knn_prune_copy_max_bytes``: a budget of their own, apart from the
    reordered copies, which may not fit where these do (for groups of 8, a quarter of the
    rows' bytes)."""
    return 2 * n_groups * (Q.shape[0] + X.shape[0]) <= int(settings.knn_prune_copy_max_bytes)


def reordered(
    Q: np.ndarray, X: np.ndarray, order: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Copies of ``Q`` and ``X`` with their features in ``order`` (default
    :func:`feature_order`), or the arrays themselves when the copies would exceed
    ``settings.knn_prune_copy_max_bytes`` together (the memory bound of a search)."""
    if not copies_fit(Q, X):
        return Q, X
    if order is None:
        order = feature_order(X)
    out = []
    for A in (Q, X):
        B = np.empty(A.shape, dtype=A.dtype)  # (not empty_like: A may be a memmap)
        _gather_columns(A, order, B)
        out.append(B)
    return out[0], out[1]


@jit
def _pair_greedily(corr, order):
    """``partner[g]``: the group ``g`` is merged with (itself if none left), taking the
    groups in ``order`` and giving each the most correlated group still free (ties: the
    lowest index)."""
    n = corr.shape[0]
    partner = np.full(n, -1, dtype=np.int64)
    for g in order:
        if partner[g] >= 0:
            continue
        best, best_c = -1, -np.inf
        for h in range(n):
            if h != g and partner[h] < 0 and corr[g, h] > best_c:
                best, best_c = h, corr[g, h]
        if best < 0:
            partner[g] = g
        else:
            partner[g] = best
            partner[best] = g
    return partner


def feature_groups(X: np.ndarray, max_size: int) -> list[tuple[np.ndarray, int, int]]:
    """Nested groups of correlated features for the pooled bounds, coarser level by level.

    Level ``L`` merges the groups of level ``L - 1`` in pairs, each with the one whose sums
    correlate best with its own over :data:`POOL_SAMPLE_ROWS` rows of ``X`` spread over it
    (for images: neighbouring pixels, found rather than assumed). Returns, per level while
    groups have at most ``max_size`` features, ``(group_of, n_groups, size)``:
    ``group_of[d]`` the group of feature ``d``, ``size`` the largest group.
    """
    D = X.shape[1]
    step = max(1, X.shape[0] // POOL_SAMPLE_ROWS)
    sums = np.asarray(X[::step][:POOL_SAMPLE_ROWS], dtype=np.float32)
    group_of = np.arange(D, dtype=np.int64)
    size = 1
    levels: list[tuple[np.ndarray, int, int]] = []
    for _ in range(POOL_LEVELS):
        if 2 * size > max_size or sums.shape[1] < 2:
            break
        z = sums - sums.mean(axis=0)
        spread = np.sqrt((z * z).sum(axis=0))
        z /= np.where(spread > 0, spread, 1)
        with single_threaded_blas():  # no spinning BLAS threads before the search
            corr = z.T @ z
        order = np.argsort(-spread, kind="stable").astype(np.int64)
        partner = _pair_greedily(corr, order)
        first = np.minimum(np.arange(len(partner)), partner)  # a pair's lower index
        _, new_of_old = np.unique(first, return_inverse=True)
        n_groups = int(new_of_old.max()) + 1
        by_group = np.argsort(new_of_old, kind="stable")
        starts = np.searchsorted(new_of_old[by_group], np.arange(n_groups))
        sums = np.add.reduceat(sums[:, by_group], starts, axis=1)
        group_of = new_of_old[group_of].astype(np.int64)
        size = int(np.bincount(group_of).max())
        levels.append((group_of, n_groups, size))
    return levels


@jit(inline="always")
def _group_sums(row, group_of, sums):
    """``sums[g]`` = the sum of ``row``'s features in group ``g`` (the rest of ``sums``
    zero); returns their sum of squares."""
    sums[:] = 0
    for d in range(row.shape[0]):
        sums[group_of[d]] += row[d]
    total = np.int64(0)
    for g in range(sums.shape[0]):
        total += sums[g] * sums[g]
    return total


@jit(parallel=True)
def _pooled_rows(A, group_of, out, norms):
    for i in prange(A.shape[0]):
        sums = np.empty(out.shape[1], dtype=np.int64)
        norms[i] = _group_sums(A[i], group_of, sums)
        for g in range(out.shape[1]):
            out[i, g] = np.int16(sums[g])


def pooled_rows(
    A: np.ndarray, group_of: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """The group sums of each row of uint8 ``A`` as int16, an even number of columns (a
    zero column after an odd last group: the slab stage reads them in pairs), and their
    int64 sums of squares."""
    out = np.empty((A.shape[0], -(-n_groups // 2) * 2), dtype=np.int16)
    norms = np.empty(A.shape[0], dtype=np.int64)
    _pooled_rows(A, group_of, out, norms)
    return out, norms


@jit(parallel=True)
def _slab_rows(X, group_of, PXv, pxn):
    n_pairs = PXv.shape[1]
    for s in prange(PXv.shape[0]):
        sums = np.zeros(2 * n_pairs, dtype=np.int64)
        for r in range(8):
            i = 8 * s + r
            if i < X.shape[0]:
                pxn[i] = np.int32(_group_sums(X[i], group_of, sums))
            else:  # past the end: a zero row
                sums[:] = 0
                pxn[i] = 0
            for g in range(2 * n_pairs):
                PXv[s, g // 2, 2 * r + g % 2] = np.int16(sums[g])


def slab_rows(X: np.ndarray, group_of: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """The pooled rows of ``X`` for the slab stage (:mod:`.slab`): ``(PXv, pxn)``,
    ``PXv[s, p, 2 r + e]`` = group ``2 p + e`` of row ``8 s + r`` (int16, rows past the end
    zero) and ``pxn`` the rows' pooled norms (int32, zero past the end). Written in place,
    with no temporary the size of the rows."""
    n_pairs = -(-n_groups // 2)
    n_slabs = -(-X.shape[0] // 8)
    PXv = aligned_zeros((n_slabs, n_pairs, 16), np.dtype(np.int16))
    pxn = np.empty(n_slabs * 8, dtype=np.int32)
    _slab_rows(X, group_of, PXv, pxn)
    return PXv, pxn


def query_pairs(
    Q: np.ndarray, group_of: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """The pooled queries for the slab stage: ``(PQ2, pqn)``, ``PQ2[q, p]`` groups ``2 p``
    (low half) and ``2 p + 1`` (high half) of query ``q`` as one int32, ``pqn`` the pooled
    norms as an int64 column."""
    pooled, norms = pooled_rows(Q, group_of, n_groups)
    return pooled.view(np.int32), norms.reshape(-1, 1)


def slab_size(n_features: int) -> int:
    """The largest group the slab stage pools exactly: its norms and doubled dot products
    in int32 need ``255^2 * size * D < 2^30`` (0: no slab stage)."""
    if n_features > POOL_MAX_FEATURES:
        return 0
    size = 1
    while 2 * size <= 2**POOL_LEVELS and 255**2 * 2 * size * n_features < 2**30:
        size *= 2
    return size if size >= 2 else 0


def slab_size_l1(n_features: int) -> int:
    """The largest group the L1 slab stage pools: its int16 sums of 8 pairs of absolute
    differences of group sums stay below ``2^15`` up to groups of 16, whatever ``D`` (0:
    no slab stage)."""
    return 2**POOL_LEVELS if 2 <= n_features <= POOL_MAX_FEATURES else 0


def candidate_cuts(n_vectors: int) -> np.ndarray:
    """Every ``n_vectors / CANDIDATES`` vectors (distinct, positive), then ``n_vectors``."""
    ends = sorted({(n_vectors * (c + 1)) // CANDIDATES for c in range(CANDIDATES)} - {0})
    return np.array(ends, dtype=np.int64)


def sample_queries(n_queries: int) -> np.ndarray:
    """Rows of ``SAMPLE_GROUPS`` groups of 4 consecutive queries, spread over the queries,
    each group starting at a multiple of 4 (as the drivers' tiles do)."""
    groups = min(SAMPLE_GROUPS, n_queries // 4)
    span = n_queries // 4 - 1
    starts = [4 * ((g * span) // max(groups - 1, 1)) for g in range(groups)]
    return np.array([s + a for s in starts for a in range(4)], dtype=np.int64)


def tile_stops(partial: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Whether each sampled tile could stop at each candidate cut: ``(cuts, tiles)``.

    ``partial[c, i, j]``: the partial distance of sample query ``i`` (groups of 4) and
    sample row ``j`` (pairs) up to candidate cut ``c``; ``thresholds[i]`` its query's
    k-th best distance."""
    n_cuts, n_q, n_x = partial.shape
    blocks = partial.reshape(n_cuts, n_q // 4, 4, n_x // 2, 2)
    thr = thresholds.reshape(1, n_q // 4, 4, 1, 1)
    return np.all(blocks >= thr, axis=(2, 4)).reshape(n_cuts, -1)


def best_cuts(stops: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, float]:
    """The cuts (a subset of the candidates before the last, then the last) with the least
    sampled work, and that work over the unpruned work."""
    n_vectors = float(candidates[-1])
    plain = n_vectors + CHECK_VECTORS  # one reduction at the end either way
    best, best_work = candidates[-1:], 1.0
    inner = range(len(candidates) - 1)
    for size in range(1, MAX_CHECKS + 1):
        for chosen in itertools.combinations(inner, size):
            stopped = np.zeros(stops.shape[1], dtype=bool)
            work = np.zeros(stops.shape[1])
            for n, c in enumerate(chosen):
                here = stops[c] & ~stopped
                work[here] = candidates[c] + CHECK_VECTORS * (n + 1)
                stopped |= here
            work[~stopped] = n_vectors + CHECK_VECTORS * (size + 1)
            fraction = float(work.mean()) / plain
            if fraction < best_work:
                best, best_work = np.append(candidates[list(chosen)], candidates[-1]), fraction
    return best.astype(np.int64), best_work


def best_plan(
    slab_stops: np.ndarray,
    slab_vectors: list[float],
    stops: np.ndarray,
    candidates: np.ndarray,
) -> tuple[int | None, np.ndarray, float]:
    """The slab level (or None) and the cuts of the full-resolution stage with the least
    sampled work, and that work over the unpruned work.

    ``slab_stops[L]``: whether each sampled tile stops at the slab stage of level ``L``,
    ``slab_vectors[L]`` that stage's cost in vector steps of a tile; ``stops`` as for
    :func:`best_cuts`. The tiles the slab stage keeps pay the full-resolution stage.
    """
    plain = float(candidates[-1]) + CHECK_VECTORS
    cuts, work = best_cuts(stops, candidates)
    best: tuple[int | None, np.ndarray, float] = (None, cuts, work)
    for level, cost in enumerate(slab_vectors):
        alive = ~slab_stops[level]
        total = cost / plain
        cuts = candidates[-1:]
        if alive.any():
            cuts, rest = best_cuts(stops[:, alive], candidates)
            total += alive.mean() * rest
        if total < best[2]:
            best = (level, cuts, total)
    return best


def _slab_levels(Q: np.ndarray, X: np.ndarray, metric: str) -> list[tuple[np.ndarray, int, int]]:
    """The group levels the slab stage may use for this call (their copies fit)."""
    d = X.shape[1]
    max_size = slab_size(d) if metric == "sqeuclidean" else slab_size_l1(d)
    if not max_size or not slab_fits(Q, X, -(-d // max_size)):
        return []  # no stage, or not even the coarsest groups fit
    return [level for level in feature_groups(X, max_size) if slab_fits(Q, X, level[1])]


def plan(
    Q: np.ndarray,
    X: np.ndarray,
    offset: int,
    best_d: np.ndarray,
    best_i: np.ndarray,
    n_vectors: int,
    vector_features: int,
    search: Callable[..., None],
    metric: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, int, int] | None] | None:
    """``(Q, X, cuts, slab)`` for a pruning driver (the arrays maybe with their features
    reordered; ``slab``: the groups of the slab stage, an item of :func:`feature_groups`,
    or None; L2 only), or None to search unpruned.

    ``n_vectors``: vector steps of a (padded) row, ``vector_features`` the features per
    step. ``search(Q, X, offset, best_d, best_i)`` is the top-k kernel of ``metric``
    (``"l1"`` or ``"sqeuclidean"``), called on the sample with pruning off.
    """
    how = mode()
    candidates = candidate_cuts(n_vectors)
    if how == "never" or len(candidates) < 2 or getattr(_sampling, "active", False):
        return None
    n_q, n_x = Q.shape[0], X.shape[0]
    d = Q.shape[1]
    if how == "auto" and (
        n_q < int(settings.knn_prune_min_queries)
        or n_x < 4 * SAMPLE_PAIRS
        or n_q * n_x * d < int(settings.knn_prune_min_work)
    ):
        return None
    order = feature_order(X) if copies_fit(Q, X) else None
    if how == "always":
        every_other = candidates[1::2]  # several checks (the tests force this mode)
        cuts = np.unique(np.append(every_other, candidates[-1]))
        levels = _slab_levels(Q, X, metric)
        return (*reordered(Q, X, order), cuts, levels[-1] if levels else None)
    # the sample, in the order the tiles would read (the copies of the whole arrays are
    # made only if pruning is chosen); the thresholds do not depend on the order
    rows = sample_queries(n_q)
    bd, bi = best_d[rows].copy(), best_i[rows].copy()
    # unpruned, and without touching the process-wide settings (other threads may search)
    _sampling.active = True
    try:
        search(np.ascontiguousarray(Q[rows]), X[: n_x // FIRST_ROWS_DIVISOR], offset, bd, bi)
    finally:
        _sampling.active = False
    pairs = (np.arange(SAMPLE_PAIRS) * ((n_x - 2) // SAMPLE_PAIRS)) // 2 * 2
    sq0, sx0 = Q[rows], X[np.stack([pairs, pairs + 1], axis=1).ravel()]
    sq, sx = (sq0[:, order], sx0[:, order]) if order is not None else (sq0, sx0)
    sq, sx = np.ascontiguousarray(sq), np.ascontiguousarray(sx)
    partial = np.empty((len(candidates), len(rows), len(sx)), dtype=np.int64)
    bounds = np.minimum(candidates * vector_features, d)
    _partial_distances(sq, sx, bounds, metric == "sqeuclidean", partial)
    stops = tile_stops(partial, bd[:, -1])
    # the groups (20-90 ms) only where some sampled tile stops early: where distances are
    # all alike (random pixels) neither bound rules anything out
    levels = _slab_levels(Q, X, metric) if stops[:-1].any() else []
    slab_stops = np.empty((len(levels), stops.shape[1]), dtype=bool)
    for n, (group_of, n_groups, size) in enumerate(levels):
        pq, pqn = pooled_rows(sq0, group_of, n_groups)
        px, pxn = pooled_rows(sx0, group_of, n_groups)
        if metric == "sqeuclidean":
            dots = pq.astype(np.int64) @ px.astype(np.int64).T
            pooled = (pqn[:, None] + pxn[None, :] - 2 * dots)[None]
            slab_stops[n] = tile_stops(pooled, size * bd[:, -1])[0]
        else:
            diff = pq[:, None, :].astype(np.int64) - px[None, :, :]
            slab_stops[n] = tile_stops(np.abs(diff).sum(-1)[None], bd[:, -1])[0]
    # a slab stage's work per tile: L2 one vpmaddwd per pair of groups (a tile's vector
    # step: 8), L1 three instructions (a step: about 22)
    per_group = 1 / 16 if metric == "sqeuclidean" else 1 / 12
    slab_vectors = [SLAB_FIXED_VECTORS + n_groups * per_group for _, n_groups, _ in levels]
    level, cuts, work = best_plan(slab_stops, slab_vectors, stops, candidates)
    if (len(cuts) < 2 and level is None) or work > float(settings.knn_prune_max_work):
        return None
    return (*reordered(Q, X, order), cuts, None if level is None else levels[level])
