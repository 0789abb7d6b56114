"""Exact squared-L2 kernels: a BLAS GEMM for speed, an exact rerank for the answer.

Public kernel names (the dispatch table in :mod:`fastcls.kernels.knn` uses them):

* ``sqeuclidean_topk_float(Q, X, offset, best_d, best_i)`` : float32 / float64
* ``sqeuclidean_topk_uint8(Q, X, offset, best_d, best_i)`` : uint8, exact integers
  computed by the integer micro-kernels of :mod:`fastcls.kernels.l2int` (VNNI /
  AVX2 / portable; no GEMM, no rerank). Float rows holding whole numbers 0..255
  take it too (``settings.l2_uint8_shortcut``); :func:`selected_paths` names the
  micro-kernels chosen on this CPU.
* ``sqeuclidean_pairwise_float(X, Y, out)``, ``sqeuclidean_pairwise_uint8(X, Y, out)``

The rest of this docstring describes the float path (the uint8 centring rule below
serves the pairwise kernel and the direct path).

They are plain Python functions that orchestrate a GEMM through NumPy (OpenBLAS) and
the numba kernels of this module (norms, fused selection, exact rerank). The top-k
contract is the one of :mod:`fastcls.kernels.topk`: ``best_d``/``best_i`` hold each
query's running top-k by ``(distance, index)``; the distances merged in are *exact*
(see "Exact distances" below) and equal distances keep the lower global index.

Algorithm (one call = one training tile ``X``, global ids ``offset + j``)
-----------------------------------------------------------------------
1. **Centre.** ``c`` = the mean of up to 1024 evenly spaced rows of the tile (rounded
   to integers for uint8, so uint8 centring is exact), ``X' = X - c``,
   ``Q' = Q - c`` in the working precision ``w``: float32 (float64 inputs too, unless
   ``settings.l2_float64_sgemm`` is off or the centred rows exceed ``2^58`` in norm,
   then float64; the bound below holds for either, as it covers rounding to ``w``).
   Distances are translation invariant, and centring makes the
   norms, hence the cancellation error of the GEMM trick, small. Rows already in
   ``w`` that sit near the origin compared with their spread (largest norm at most
   ``settings.l2_uncentred_max_ratio`` times the largest centred norm) are not
   copied: the GEMM reads them as stored (see "Uncentred rows"). A fitted model
   prepares its rows once (:func:`centre_rows`).
2. **GEMM + fused selection.** Per query tile (``settings.l2_query_tile_rows``) and
   training block (``settings.l2_train_block_rows``): ``G = (-2 Q') X'^T`` (sgemm /
   dgemm; scaling by -2 is exact), then, while the block is fresh, each query scans
   ``s_j = |x'_j|^2 + G_qj`` (in ``w``) and inserts it into a sorted candidate list of
   ``k + settings.l2_extra_candidates`` entries when it beats the rejection threshold
   ``t = min(last candidate, t_prev)`` (a well-predicted branch; a branch-free 16-wide
   pre-check measured 3x slower).
   ``t_prev`` lets rows that provably cannot enter the running top-k from earlier
   tiles be skipped (``G_k - |q'|^2 + 2 E``).
3. **Exact rerank + certificate.** A candidate is recomputed exactly iff its lower
   bound ``|q'|^2 + s - E`` does not exceed ``U``, the k-th smallest of the
   candidates' upper bounds and the exact distances already held (the others provably
   lie beyond the k-th); these pairs are computed in training-row order, so X is
   streamed rather than read at random, and merged by ``(distance, index)`` into a
   copy of the query's top-k. The copy is accepted iff
   ``|q'|^2 + t_final - E > (k-th exact distance)`` (strict), which proves that no
   rejected row can beat *or tie* the k-th (see below); otherwise that query is
   recomputed exactly over the whole tile by the blocked direct scan (its original
   top-k is untouched, so nothing is merged twice). Results therefore depend on
   neither tile sizes, thread counts nor BLAS summation order.

Error bound ``E``
-----------------
Let ``u`` be the unit roundoff of ``w`` (``2^-24`` or ``2^-53``), ``gamma_n(u) =
n u / (1 - n u)``, ``R`` at least the norm of every centred row ``x'`` of the tile,
``S = (|q'| + R)^2`` and ``d`` the exact squared distance.

* centring: ``q' = (q - c)(1 + delta)``, ``|delta| <= u``, so ``q' - x' = (q - x) + e``
  with ``|e| <= u (|q'| + |x'|) (1 + u)`` and ``| |q'-x'|^2 - d | <= 2u S (1 + 2u)``;
* GEMM (any summation order, with or without FMA): ``|G - (-2 q'.x')| <= 2 gamma_D(u)
  sum_d |q'_d x'_d| <= 2 gamma_D(u) |q'| R``;
* ``|x'|^2`` rounded to ``w`` and ``s`` rounded in ``w`` (``|x'|^2 + |G| <= S (1 +
  gamma_D(u))``): ``<= 2u S (1 + gamma_D(u))``;
* float64 side: the norms (``gamma_D(2^-53)`` each), the sum ``|q'|^2 + s`` and the
  exact rerank itself (``gamma_{D+2}(2^-53) d``): ``<= gamma_{3D+16}(2^-53) S``.

Hence ``|(|q'|^2 + s) - r| <= E := (2 gamma_D(u) |q'| R + (a + b) S) (1 + 2^-20) + E_abs``
with ``a = 4u (1 + gamma_D(u) + 2u)`` (the centring and rounding terms) and ``b =
gamma_{4D+16}(2^-53)`` (the float64 side, with room for the uncentred layout below),
for the reranked value ``r`` of every pair; the factor ``1 + 2^-20`` covers computing
``E`` itself in float64 and the second-order terms. The GEMM term is kept apart from
``S``: it is the largest (``D`` roundings) and ``2 |q'| R`` is about half of ``S``
when ``|q'|`` is close to ``R``, so ``E`` is about half of a bound written as
``gamma_{D+16}(u) S`` (fewer candidates to rerank). ``E_abs = (4D + 16) 2^-130``
(float32) or ``2^-1060`` (float64) covers gradual underflow (the bound assumes IEEE
arithmetic without flush-to-zero, which is the default). Every rejected row has
``s >= t_final`` (the threshold only decreases), so ``r >= |q'|^2 + t_final - E >
k-th``: it can neither enter nor tie. Tiles whose centred norms could overflow ``w``
(``S > 2^120`` in float32, ``2^1000`` in float64) or where ``(D + 16) u >= 1/2`` take
the direct exact path.

Uncentred rows
--------------
With the rows ``x`` as stored, the GEMM yields ``G = -2 q'.x = -2 q'.x' - 2 q'.c`` (here
``x' = x - c`` exactly, never rounded), and ``s = |x'|^2 + G`` (``|x - c|^2`` in
float64, rounded to ``w``) is added to the per-query float64 base ``|q'|^2 + 2 q'.c``
instead of ``|q'|^2``: the same estimate of ``d``, shifted inside ``s`` by a
per-query constant, so the selection's order, the thresholds (kept in the same
shifted units) and the certificate are unchanged. With ``R >= max(|x'|, |x|, |c|)``
over the rows, every term above keeps its form: the centring rounds ``q'`` only; the
GEMM ``<= 2 gamma_D(u) |q'| |x| <= 2 gamma_D(u) |q'| R``; ``|x'|^2 + |G| <= R^2 + 2 |q'|
R (1 + gamma_D(u)) <= S (1 + gamma_D(u))`` as before; the float64 ``2 q'.c`` adds
``gamma_D(2^-53) S / 2``, which ``b`` covers. The price is a larger ``R`` (about twice
the centred radius for pixel-like data), so a few more candidates are reranked; rows
far from the origin (large ``R``) keep the copy.

AMX (Intel Xeon from Sapphire Rapids on)
----------------------------------------
Where the CPU has AMX-BF16 and Linux grants its tiles (:func:`float_gemm`,
``settings.l2_float_gemm``), the float32 GEMM is :func:`fastcls.kernels.amx.bf16x3_scores`:
three bfloat16 products per float32 product on tile registers, about 1.8x sgemm's rate
per core. The kernel selects as the scores come out of its tiles
(:func:`fastcls.kernels.amx.bf16x3_select`: the same float32 values in the same row
order as :func:`_select_block`, so the same candidates), and its GEMM term is
``amx.gemm_cross_coefficient(D) |q'| R`` (about 3.2x sgemm's ``2 gamma_D(u) |q'| R``
at ``D = 3072``) plus ``amx.gemm_abs_error(D)`` in ``E_abs``; everything else above is
unchanged, so the answers are the same exact ones (the tests compare both GEMMs).

Exact distances
---------------
* uint8: integers, widened before subtracting, accumulated in int64; stored as float64.
* float32 / float64: ``sum (float64(q_d) - float64(x_d))^2`` accumulated in float64 by
  one vectorised loop (reassociation allowed) that every path (rerank, fallback,
  direct) runs, so identical rows get identical values and ties between duplicates
  stay exact across tiles (the tests check the paths agree bit for bit). It equals
  the float64 reference up to float64 rounding (``gamma_{D+2}(2^-53)`` relative).

Pairwise
--------
``sqeuclidean_pairwise_uint8`` uses a float64 GEMM on integer-centred data: every
product and partial sum is an integer below ``2^53`` (for ``D < 1.3e11``), so the
result is exact. ``sqeuclidean_pairwise_float`` uses a float64 GEMM on centred data
(also for float32 inputs) with the bound above; entries whose bound is not below
``2^-30`` of their value (near-duplicates, zeros) are recomputed exactly, so every
entry is within ``2^-30`` relative of the exact value before rounding to ``out``'s
dtype, and never negative.

Threads
-------
With ``n = numba.get_num_threads()`` (:func:`fastcls.set_num_threads`), the queries
are split into ``n`` contiguous chunks and each chunk runs the whole pipeline (GEMM,
selection, rerank, fallback) in its own Python thread, with BLAS limited to one
thread (a cached ``threadpoolctl`` controller) and serial numba kernels (``nogil``;
NumPy's GEMM releases the GIL too). When the queries make fewer GEMM tiles than there
are threads (``settings.l2_thread_split``), the threads share the training rows
instead, so they stream from memory once rather than once per thread: the queries are
centred in chunks, each thread multiplies them by its share of the rows and keeps its
own candidate lists, the lists are merged (a row a thread rejected lies beyond that
thread's threshold, hence beyond the merged one, which is never larger), and the
rerank and certificate run in chunks of queries. Alternating a multi-threaded OpenBLAS GEMM with
numba's OpenMP regions was up to 1.5x slower on 2 shared cores: each pool's idle
threads spin while the other works. Queries are independent, so results do not
depend on ``n``. The direct path (small calls) and the pairwise kernels use numba's
parallel loops and BLAS with ``n`` threads instead.

Memory
------
Per call: the centred training tile (``nx x D`` in ``w``; none for rows the GEMM takes
as stored, or a fitted model's kept copy, at most ``settings.l2_keep_centred_bytes``)
and, per thread, a centred query tile and a GEMM block, all scratch buffers
(:func:`fastcls._runtime.scratch`) reused across the tiles of a search and freed when it
returns (``settings.knn_scratch_keep_bytes``). The query tile shrinks when the threads' query
scratch together would exceed ``settings.l2_query_scratch_bytes``, so memory does not
grow with the core count (``bench/memory_knn.py`` measures it).

Diagnostics: :data:`STATS` counts GEMM-path calls, direct calls and queries that the
certificate refused (recomputed by the direct scan).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import prange, types
from numba.extending import overload

from fastcls._config import REDUCE, jit, settings
from fastcls._runtime import blas_threads, map_chunks, scratch, single_threaded_blas
from fastcls.kernels import amx
from fastcls.kernels.exact_distance import exact_sq_distance
from fastcls.kernels.l2int import sqeuclidean_topk_int
from fastcls.kernels.rounding import U32, U64, gamma
from fastcls.kernels.topk import insert_sorted, insert_sorted_by_pair, merge_sorted_topk_serial

# Tile sizes and path thresholds are run-time tunables in fastcls._config.settings:
# l2_query_tile_rows (queries per GEMM tile: about 1000 keeps sgemm near its peak,
# 256 was 2.2x slower), l2_train_block_rows (training rows per GEMM block; the
# selection runs over each block right after it), l2_extra_candidates (kept beyond
# k per query), l2_direct_max_work (below this many multiply-adds a call takes the
# direct exact path) and l2_centre_rows.

#: entries of pairwise results are recomputed exactly unless the bound is below this
PAIRWISE_REL = 2.0**-30

_CHUNK = 16


# --------------------------------------------------------------------------- exact pairs
@jit(fastmath=REDUCE)
def _sq_exact_uint8(A, i, B, j):
    """Exact squared distance of uint8 rows ``A[i]``, ``B[j]`` (widened first)."""
    s = 0
    for d in range(A.shape[1]):
        t = np.int64(A[i, d]) - np.int64(B[j, d])
        s += t * t
    return np.float64(s)


# --------------------------------------------------------------------------- helpers
@jit(fastmath=REDUCE)
def _centre_row(A, i, c, out, norms):
    """``out[i] = A[i] - c`` (in out's dtype) and ``norms[i] = sum out[i]^2`` (float64)."""
    s = 0.0
    for d in range(A.shape[1]):
        out[i, d] = A[i, d] - c[d]
        w = np.float64(out[i, d])
        s += w * w
    norms[i] = s


@jit(parallel=True)
def _centre_rows(A, c, out, norms):
    """:func:`_centre_row` for every row, in parallel."""
    for i in prange(A.shape[0]):
        _centre_row(A, i, c, out, norms)


@jit
def _centre_rows_serial(A, c, out, norms):
    """:func:`_centre_row` for every row, on the calling thread."""
    for i in range(A.shape[0]):
        _centre_row(A, i, c, out, norms)


@jit
def _select_block(G, xn, base, cand_s, cand_j, t_prev):
    """Fused selection over one GEMM block.

    ``s = xn[j] + G[q, j]`` (G holds ``-2 q'.x'``; in G's dtype) enters the sorted
    candidate list of query ``q`` when ``s < t = min(cand_s[q, -1], t_prev[q])``.
    The test is a well-predicted branch (entries are rare once the list is full):
    measured 3x faster than a branch-free 16-wide pre-check here. Ids: ``base + j``.
    """
    nq, nb = G.shape
    m = cand_s.shape[1]
    for q in range(nq):
        cs = cand_s[q]
        cj = cand_j[q]
        tp = t_prev[q]
        t = min(cs[m - 1], tp)
        for j in range(nb):
            v = xn[j] + G[q, j]
            if v < t:
                insert_sorted(cs, cj, v, base + j)
                t = min(cs[m - 1], tp)


def _sq_exact(A, i, B, j):
    """Exact squared distance of rows ``A[i]``, ``B[j]``: the float kernel of
    :mod:`fastcls.kernels.exact_distance` (float64 sums in an order written in its IR:
    every path, rerank, fallback and direct, on any thread count, gets the same bits;
    a loop left to the vectoriser, as this was, could be vectorised differently in each
    compiled copy) or the uint8 loop (integer sums: any order is exact).

    A dispatch point for the kernels below (resolved at compile time by the
    overload), so every kernel is one plain module-level function that numba caches.
    """
    raise NotImplementedError  # pragma: no cover - only called from compiled code


@overload(_sq_exact, jit_options={"nogil": True})
def _sq_exact_overload(A, i, B, j):
    if isinstance(A.dtype, types.Integer):
        return lambda A, i, B, j: _sq_exact_uint8(A, i, B, j)
    return lambda A, i, B, j: exact_sq_distance(A, i, B, j)


@jit
def _insert_ascending(buf, v):
    """Insert ``v`` into the ascending ``buf`` if smaller than its last entry (drops it)."""
    n = buf.shape[0]
    if not v < buf[n - 1]:
        return
    i = n - 1
    while i > 0 and buf[i - 1] > v:
        buf[i] = buf[i - 1]
        i -= 1
    buf[i] = v


@jit
def _order_by_row(rows, n_rows):
    """Indices ordering ``rows`` (values in ``0..n_rows-1``) ascending, stable.

    A counting sort: linear time, and a loop numba compiles in a fraction of the time
    its generic ``np.argsort`` takes.
    """
    start = np.zeros(n_rows + 1, dtype=np.int64)
    for r in rows:
        start[r + 1] += 1
    for j in range(n_rows):
        start[j + 1] += start[j]
    order = np.empty(rows.shape[0], dtype=np.int64)
    for t in range(rows.shape[0]):
        r = rows[t]
        order[start[r]] = t
        start[r] += 1
    return order


@jit
def _rerank(Q, X, offset, qn, cand_s, cand_j, t_prev, err, best_d, best_i, n_fallback):
    """Exact rerank of the candidates that can matter, then the certificate.

    1. plan: per query, ``U`` = k-th smallest of the candidates' upper bounds
       ``|q'|^2 + s + E`` and the exact distances already held; a candidate is
       reranked iff its lower bound ``|q'|^2 + s - E <= U`` (the others provably
       exceed the k-th exact distance);
    2. compute those exact distances in increasing training-row order (X is
       streamed once instead of read row by row at random);
    3. per query, merge by ``(distance, index)`` into a copy of its top-k and
       accept iff ``|q'|^2 + t_final - E > k-th``; else flag it for the direct scan.
    """
    nq = Q.shape[0]
    k = best_d.shape[1]
    m = cand_s.shape[1]
    n_sel = np.zeros(nq, dtype=np.int64)
    smallest = np.empty(k)  # the k smallest bounds so far, ascending
    for q in range(nq):
        e = err[q]
        base = qn[q]
        for c in range(k):  # the exact distances held (ascending already)
            smallest[c] = best_d[q, c]
        for c in range(m):
            if cand_j[q, c] < 0:
                break
            _insert_ascending(smallest, base + np.float64(cand_s[q, c]) + e)
        U = smallest[k - 1]
        for c in range(m):
            if cand_j[q, c] < 0 or base + np.float64(cand_s[q, c]) - e > U:
                break  # sorted by s: the lower bounds only grow
            n_sel[q] += 1
    n_pairs = 0
    for q in range(nq):
        n_pairs += n_sel[q]
    pair_q = np.empty(n_pairs, dtype=np.int64)
    pair_j = np.empty(n_pairs, dtype=np.int64)
    p = 0
    for q in range(nq):
        for c in range(n_sel[q]):
            pair_q[p] = q
            pair_j[p] = cand_j[q, c]
            p += 1
    dist = np.empty(n_pairs)
    for t in _order_by_row(pair_j, X.shape[0]):
        dist[t] = _sq_exact(Q, pair_q[t], X, pair_j[t])
    p = 0
    for q in range(nq):
        tmp_d = best_d[q].copy()
        tmp_i = best_i[q].copy()
        for _ in range(n_sel[q]):
            insert_sorted_by_pair(tmp_d, tmp_i, dist[p], offset + pair_j[p])
            p += 1
        t_final = min(np.float64(cand_s[q, m - 1]), np.float64(t_prev[q]))
        certified = t_final == np.inf or qn[q] + t_final - err[q] > tmp_d[k - 1]
        if certified:
            for c in range(k):
                best_d[q, c] = tmp_d[c]
                best_i[q, c] = tmp_i[c]
        else:  # recomputed over the whole tile afterwards (direct, blocked)
            n_fallback[q] = 1


@jit
def _direct_chunk(Q, X, offset, best_d, best_i, qidx, c):
    """Exact scan of every row for the queries ``qidx[16 c : 16 c + 16]``, blocked.

    The chunk of 16 queries walks blocks of 32 training rows (a block is read once
    per chunk, from cache for the other 15); each query still sees the rows in
    increasing index, so equal distances keep the lower index.
    """
    k = best_d.shape[1]
    nx = X.shape[0]
    t0 = c * 16
    t1 = min(qidx.shape[0], t0 + 16)
    for j0 in range(0, nx, 32):
        nb = min(32, nx - j0)
        for t in range(t0, t1):
            q = qidx[t]
            for jj in range(nb):
                r = _sq_exact(Q, q, X, j0 + jj)
                if r < best_d[q, k - 1]:
                    insert_sorted(best_d[q], best_i[q], r, offset + j0 + jj)


@jit(parallel=True)
def _direct(Q, X, offset, best_d, best_i, qidx):
    """:func:`_direct_chunk` over every chunk of 16 queries, in parallel."""
    for c in prange((qidx.shape[0] + 15) // 16):
        _direct_chunk(Q, X, offset, best_d, best_i, qidx, c)


@jit
def _direct_serial(Q, X, offset, best_d, best_i, qidx):
    """:func:`_direct_chunk` over every chunk of 16 queries, on the calling thread."""
    for c in range((qidx.shape[0] + 15) // 16):
        _direct_chunk(Q, X, offset, best_d, best_i, qidx, c)


@jit(parallel=True)
def _pairwise_fix(X, Y, out, xn, yn, coef, e_abs, rel):
    """Recompute exactly every entry whose error bound is not ``<= rel * value``."""
    for i in prange(X.shape[0]):
        nxi = math.sqrt(xn[i])
        for j in range(Y.shape[0]):
            v = np.float64(out[i, j])
            s = nxi + math.sqrt(yn[j])
            bound = coef * s * s + e_abs
            if not (bound <= rel * v):
                v = _sq_exact(X, i, Y, j)
            out[i, j] = v


@jit(parallel=True)
def _pairwise_direct(X, Y, out):
    """Every entry of the squared-distance matrix, exactly."""
    for i in prange(X.shape[0]):
        for j in range(Y.shape[0]):
            out[i, j] = _sq_exact(X, i, Y, j)


@jit(parallel=True)
def _finish_pairwise(G, xn, yn, out):
    """``out = max(xn[:, None] + yn[None, :] - 2 G, 0)`` in float64, cast to out."""
    for i in prange(G.shape[0]):
        for j in range(G.shape[1]):
            v = xn[i] + yn[j] - 2.0 * np.float64(G[i, j])
            out[i, j] = v if v > 0.0 else 0.0


# --------------------------------------------------------------------------- top-k
def _centre(X: np.ndarray, wdtype: type, integer: bool) -> np.ndarray:
    # rows averaged for the centring vector: any shared vector is exact, a mean is good
    step = max(1, X.shape[0] // max(1, int(settings.l2_centre_rows)))
    c = X[::step].mean(axis=0, dtype=np.float64)
    if integer:
        c = np.rint(c)
    return c.astype(wdtype)


def _query_tile(D: int, tb: int, itemsize: int, n_threads: int) -> int:
    """Queries per GEMM tile: ``settings.l2_query_tile_rows``, fewer when the threads'
    scratch (per query row, ``D`` values of its own and ``tb`` scores of its GEMM block)
    would exceed ``settings.l2_query_scratch_bytes``, so memory does not grow with the
    core count."""
    qt = max(1, int(settings.l2_query_tile_rows))
    per_row = max(1, n_threads) * (D + tb) * itemsize
    return max(_CHUNK, min(qt, int(settings.l2_query_scratch_bytes) // per_row))


#: diagnostics: GEMM-path calls, queries recomputed over a whole tile, direct calls
STATS = {"gemm_calls": 0, "fallback_queries": 0, "direct_calls": 0}


class CentredRows(NamedTuple):
    """What the float GEMM path needs of a training tile besides the rows (:func:`centre_rows`)."""

    #: (D,) the centring vector ``c``, in the working dtype
    centre: np.ndarray
    #: (n, D) the rows the GEMM reads: ``X - c`` in the working dtype, or ``X`` itself
    #: when ``uncentred``
    rows: np.ndarray
    #: (n,) the squared norms of the centred rows, computed in float64 and rounded to
    #: the working dtype (overflow: infinity)
    norms_w: np.ndarray
    #: ``R``: at least the norm of every centred row (and of every row and of ``c`` when
    #: ``uncentred``), the radius in the error bound's ``S = (|q'| + R)^2``
    xmax: float
    #: the GEMM multiplies the centred queries by the rows as stored (no centred copy)
    uncentred: bool
    #: the settings it was made under (:func:`centring_key`)
    key: tuple


def centring_key(dtype: np.dtype) -> tuple:
    """What a :class:`CentredRows` of rows of ``dtype`` depends on besides the rows."""
    return (
        np.dtype(dtype),
        bool(settings.l2_float64_sgemm),
        int(settings.l2_centre_rows),
        float(settings.l2_uncentred_max_ratio),
    )


@jit(fastmath=REDUCE)
def _norms_serial(A, c, norms_w):
    """``norms_w[i] = |A[i] - c|^2`` (float64, rounded to ``norms_w``'s dtype) for every
    row; returns the largest ``|A[i] - c|^2`` and the largest ``|A[i]|^2`` (float64)."""
    top_centred = 0.0
    top_plain = 0.0
    for i in range(A.shape[0]):
        s = 0.0
        p = 0.0
        for d in range(A.shape[1]):
            a = np.float64(A[i, d])
            w = a - np.float64(c[d])
            s += w * w
            p += a * a
        norms_w[i] = s
        # written so that NaN (not possible in validated rows) would propagate
        top_centred = s if not s <= top_centred else top_centred
        top_plain = p if not p <= top_plain else top_plain
    return top_centred, top_plain


@jit(fastmath=REDUCE)
def _dot_rows_serial(A, v, out):
    """``out[i] = A[i] . v`` in float64 (``v`` float64), every row."""
    for i in range(A.shape[0]):
        s = 0.0
        for d in range(A.shape[1]):
            s += np.float64(A[i, d]) * v[d]
        out[i] = s


def centre_rows(
    X: np.ndarray, *, keep: bool = False, copy_max_bytes: int | None = None
) -> CentredRows | None:
    """Centre the training rows ``X`` (float32 or float64) for the float GEMM path.

    The working dtype is float32, also for float64 rows (twice the GEMM rate: the
    certificate's bound covers the rounding of the centred rows to it, and the rerank is
    float64) unless ``settings.l2_float64_sgemm`` is off or the centred rows exceed
    ``2^58`` in norm (then float64).

    Rows already in the working dtype whose largest norm is at most
    ``settings.l2_uncentred_max_ratio`` times their largest centred norm are not
    copied: the GEMM reads them as they are and only the centred norms are computed
    (see "Uncentred rows" in the module docstring). Otherwise
    ``keep=False`` puts the centred rows in this thread's scratch (valid until the
    search returns) and ``keep=True`` allocates them, for a fitted model to search many
    times (:class:`fastcls.backends.numba.NumbaBackend`); None is returned instead when
    that copy would take more than ``copy_max_bytes``.
    """
    import numba

    nx, D = X.shape
    n_threads = int(numba.get_num_threads())
    f64_in_f32 = X.dtype == np.float64 and settings.l2_float64_sgemm
    wdtype = np.float64 if X.dtype == np.float64 and not f64_in_f32 else np.float32
    key = centring_key(X.dtype)
    ratio = float(settings.l2_uncentred_max_ratio)
    c = None  # the mean, once: the rows as stored are tested first, then centred
    if X.dtype == wdtype and ratio > 0:
        c = _centre(X, wdtype, False)
        xn_w = np.empty(nx, dtype=wdtype)
        with np.errstate(over="ignore"):  # overflow -> the direct path of the search
            tops = map_chunks(lambda a, b: _norms_serial(X[a:b], c, xn_w[a:b]), nx, n_threads)
        top_centred = max(t[0] for t in tops)
        top_plain = max(t[1] for t in tops)
        if top_plain <= ratio**2 * top_centred:
            c64 = c.astype(np.float64)
            top = max(float(np.dot(c64, c64)), top_centred, top_plain)
            return CentredRows(c, X, xn_w, math.sqrt(top), True, key)

    if copy_max_bytes is not None and nx * D * np.dtype(wdtype).itemsize > copy_max_bytes:
        return None

    def centred(
        wdtype: type, mean: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        c = _centre(X, wdtype, False) if mean is None else mean
        Xc = np.empty((nx, D), wdtype) if keep else scratch("xc", (nx, D), wdtype)
        xn = np.empty(nx)
        with np.errstate(over="ignore"):
            map_chunks(lambda a, b: _centre_rows_serial(X[a:b], c, Xc[a:b], xn[a:b]), nx, n_threads)
        return c, Xc, xn, math.sqrt(float(xn.max()))

    c, Xc, xn, xmax = centred(wdtype, c)
    if f64_in_f32 and not xmax <= 2.0**58:  # centred rows beyond float32's safe range
        wdtype = np.float64
        if copy_max_bytes is not None and Xc.nbytes * 2 > copy_max_bytes:
            return None
        c, Xc, xn, xmax = centred(wdtype, None)
    with np.errstate(over="ignore"):  # overflow -> the direct path of the search
        xn_w = xn.astype(wdtype)
    return CentredRows(c, Xc, xn_w, xmax, False, key)


def float_gemm() -> str:
    """The float32 GEMM of the search: ``"amx"`` (bf16x3 on AMX tiles, :mod:`fastcls.kernels.amx`)
    or ``"blas"`` (NumPy's sgemm), from ``settings.l2_float_gemm`` and what this CPU and OS
    allow (AMX also needs the accumulator's rounding probe to pass, once per process).
    Forcing ``"amx"`` where it cannot run raises ``ValueError``."""
    mode = settings.l2_float_gemm
    if mode not in ("auto", "blas", "amx"):
        raise ValueError(f"l2_float_gemm must be 'auto', 'blas' or 'amx', got {mode!r}")
    if mode == "blas":
        return "blas"
    if amx.amx_ready() and amx.bf16_rounding_verified():
        return "amx"
    if mode == "amx":
        raise ValueError(
            "l2_float_gemm='amx' needs AMX-BF16, Linux's permission for its tiles and an "
            "accumulator that rounds to nearest even (fastcls.kernels.amx.bf16_rounding_verified)"
        )
    return "blas"


def _topk(Q, X, offset, best_d, best_i, centred: CentredRows | None = None) -> None:
    nq, D = Q.shape
    nx = X.shape[0]
    k = best_d.shape[1]
    if nq == 0 or nx == 0:
        return
    m = min(k + int(settings.l2_extra_candidates), nx)
    wdtype = np.float64 if Q.dtype == np.float64 and not settings.l2_float64_sgemm else np.float32
    u = U64 if wdtype is np.float64 else U32
    if nq * nx * D <= settings.l2_direct_max_work or m >= nx or (D + 16) * u >= 0.5:
        STATS["direct_calls"] += 1
        _direct(Q, X, offset, best_d, best_i, np.arange(nq))
        return
    STATS["gemm_calls"] += 1
    import numba

    n_threads = int(numba.get_num_threads())
    if centred is None or centred.key != centring_key(X.dtype) or centred.rows.shape[0] != nx:
        centred = centre_rows(X)
    assert centred is not None
    c, Xc, xn_w, xmax = centred.centre, centred.rows, centred.norms_w, centred.xmax
    c64 = c.astype(np.float64) if centred.uncentred else None
    wdtype = Xc.dtype.type
    u = U64 if wdtype is np.float64 else U32
    use_amx = wdtype is np.float32 and (3 * D + 16) * U32 < 0.5 and float_gemm() == "amx"
    # E = (2 gamma_D(u) |q'| R + (a + b) S) (1 + 2^-20) + E_abs (module docstring); the
    # AMX scores have their own GEMM term (fastcls.kernels.amx)
    cross = amx.gemm_cross_coefficient(D) if use_amx else 2.0 * gamma(D, u)
    coef_cross = cross * (1.0 + 2.0**-20)
    coef_s = (4.0 * u * (1.0 + gamma(D, u) + 2.0 * u) + gamma(4 * D + 16, U64)) * (1.0 + 2.0**-20)
    e_abs = (4 * D + 16) * (2.0**-130 if wdtype is np.float32 else 2.0**-1060)
    if use_amx:
        e_abs += amx.gemm_abs_error(D)
    s_max = 2.0**120 if wdtype is np.float32 else 2.0**1000
    tb = max(_CHUNK, int(settings.l2_train_block_rows))
    # AMX: a thread's query scratch is the centred tile and its split halves (4 bytes a
    # feature): no GEMM block, the kernel selects from the tiles. Counting a block it does
    # not allocate halved the tile (419 rows instead of 976 at D=3072), so each thread
    # read the training rows three times at 1000 q instead of once or twice
    if use_amx:
        qt = _query_tile(2 * D, 0, np.dtype(wdtype).itemsize, n_threads)
    else:
        qt = _query_tile(D, tb, np.dtype(wdtype).itemsize, n_threads)
    amx_rows = settings.l2_amx_block_rows
    if use_amx and (
        isinstance(amx_rows, bool) or not isinstance(amx_rows, (int, np.integer)) or amx_rows < 1
    ):
        raise ValueError(f"l2_amx_block_rows must be a positive integer, got {amx_rows!r}")

    def split_queries(
        Qc: np.ndarray, name: str, threads: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The AMX kernel's hi / lo tiles of the scaled, centred queries (None: BLAS),
        packed on ``threads`` threads (1 inside a thread of :func:`map_chunks`)."""
        if not use_amx:
            return None
        shape = amx.b_tiles_shape(Qc.shape[0], D)
        q_hi = scratch(name + "_hi", shape, np.uint32)
        q_lo = scratch(name + "_lo", shape, np.uint32)

        def pack(a: int, b: int) -> None:
            count = max(0, min(16 * (b - a), Qc.shape[0] - 16 * a))
            amx.pack_b_tiles(Qc, 16 * a, count, q_hi[a:b], q_lo[a:b])

        map_chunks(pack, shape[0], threads)
        return q_hi, q_lo

    def centre_queries(Qt: np.ndarray, Qc: np.ndarray, qn: np.ndarray) -> np.ndarray | None:
        """Centre and scale a query tile, turn ``qn`` into the float64 base ``|q'|^2``
        (plus ``2 q'.c`` for uncentred rows) that ``s`` is added to; returns the error
        bounds, or None when the rows are too large for the GEMM path."""
        _centre_rows_serial(Qt, c, Qc, qn)
        np.multiply(Qc, -2, out=Qc)  # exact: the GEMM then yields -2 q'.x'
        q_norm = np.sqrt(qn)
        S = (q_norm + xmax) ** 2
        if not np.isfinite(S).all() or float(S.max()) > s_max:
            return None
        if c64 is not None:  # -2 q'.x = -2 q'.x' - 2 q'.c: add 2 q'.c back per query
            dots = np.empty(qn.shape[0])
            _dot_rows_serial(Qc, c64, dots)
            qn -= dots
        return coef_cross * q_norm * xmax + coef_s * S + e_abs

    def pruning(bd: np.ndarray, qn: np.ndarray, err: np.ndarray) -> np.ndarray:
        kth = bd[:, k - 1]
        with np.errstate(invalid="ignore", over="ignore"):
            return np.where(np.isfinite(kth), kth - qn + 2.0 * err, np.inf).astype(wdtype)

    def select(Qc, split, t_prev, r0: int, r1: int, cand_s, cand_j) -> None:
        """GEMM blocks of rows r0:r1 and the fused selection (ids relative to the tile);
        ``split``: :func:`split_queries` of ``Qc`` (AMX), or None (BLAS)."""
        if split is not None:  # AMX: the kernel selects as the scores come out of the tiles
            q_hi, q_lo = split
            a_hi, a_lo = (scratch(n, amx.a_tiles_shape(amx_rows, D), np.uint16)
                          for n in ("amx_a_hi", "amx_a_lo"))  # fmt: skip
            amx.bf16x3_select(q_hi, q_lo, Xc, r0, r1, xn_w, cand_s, cand_j, t_prev, a_hi, a_lo)
            return
        G = None
        # a thread's GEMM block holds at most knn_train_tile_bytes of scores, like the
        # training tiles themselves (only a lowered setting reaches this bound)
        cap = int(settings.knn_train_tile_bytes) // (Qc.shape[0] * Qc.itemsize)
        n_blocks = -(-(r1 - r0) // max(_CHUNK, min(tb, cap)))
        step = -(-(r1 - r0) // n_blocks)  # equal blocks: a short last one runs slower
        step += (-step) % _CHUNK
        for bs in range(r0, r1, step):
            be = min(r1, bs + step)
            if G is None or G.shape[1] != be - bs:
                G = scratch("g", (Qc.shape[0], be - bs), wdtype)
            np.matmul(Qc, Xc[bs:be].T, out=G)
            _select_block(G, xn_w[bs:be], bs, cand_s, cand_j, t_prev)

    def rerank(Qt, qn, cand_s, cand_j, t_prev, err, bd, bi) -> int:
        """Exact rerank and certificate; refused queries rescanned: returns their count."""
        fb = np.zeros(Qt.shape[0], dtype=np.int64)
        _rerank(Qt, X, offset, qn, cand_s, cand_j, t_prev, err, bd, bi, fb)
        redo = np.flatnonzero(fb)
        if redo.size:
            _direct_serial(Qt, X, offset, bd, bi, redo)
        return int(redo.size)

    def queries(q0: int, q1: int) -> int:
        """The whole pipeline for queries q0:q1 on one thread: returns #fallbacks."""
        n_fallback = 0
        for qs in range(q0, q1, qt):
            qe = min(q1, qs + qt)
            Qt, bd, bi = Q[qs:qe], best_d[qs:qe], best_i[qs:qe]
            Qc = scratch("qc", (qe - qs, D), wdtype)
            qn = np.empty(qe - qs)
            err = centre_queries(Qt, Qc, qn)
            if err is None:
                _direct_serial(Qt, X, offset, bd, bi, np.arange(qe - qs))
                continue
            t_prev = pruning(bd, qn, err)
            cand_s = np.full((qe - qs, m), np.inf, dtype=wdtype)
            cand_j = np.full((qe - qs, m), -1, dtype=np.int64)
            select(Qc, split_queries(Qc, "q", 1), t_prev, 0, nx, cand_s, cand_j)
            n_fallback += rerank(Qt, qn, cand_s, cand_j, t_prev, err, bd, bi)
        return n_fallback

    def rows_split(qs: int, qe: int) -> int:
        """Queries qs:qe with the threads sharing the training rows: the queries are
        centred, and later reranked, in chunks of queries; each thread multiplies them
        by its share of the rows and keeps its own candidates; the candidate lists are
        merged (a row rejected by any thread lies beyond the merged threshold) before
        the rerank. Returns #fallbacks."""
        Qt, bd, bi = Q[qs:qe], best_d[qs:qe], best_i[qs:qe]
        Qc = scratch("qc_shared", (qe - qs, D), wdtype)
        qn = np.empty(qe - qs)
        errs = map_chunks(
            lambda a, b: centre_queries(Qt[a:b], Qc[a:b], qn[a:b]), qe - qs, n_threads
        )
        if any(e is None for e in errs):
            _direct(Qt, X, offset, bd, bi, np.arange(qe - qs))
            return 0
        err = np.concatenate(errs)
        t_prev = pruning(bd, qn, err)
        split = split_queries(Qc, "q_shared", n_threads)
        bounds = np.linspace(0, nx, n_threads + 1).astype(int)

        def share(t: int, _: int) -> tuple[np.ndarray, np.ndarray]:
            cand_s = np.full((qe - qs, m), np.inf, dtype=wdtype)
            cand_j = np.full((qe - qs, m), -1, dtype=np.int64)
            select(Qc, split, t_prev, int(bounds[t]), int(bounds[t + 1]), cand_s, cand_j)
            return cand_s, cand_j

        lists = map_chunks(share, n_threads, n_threads)
        cand_s, cand_j = lists[0]
        for other_s, other_j in lists[1:]:  # by (s, row): the scan's own order of ties
            merge_sorted_topk_serial(cand_s, cand_j, other_s, other_j)
        return sum(
            map_chunks(
                lambda a, b: rerank(
                    Qt[a:b], qn[a:b], cand_s[a:b], cand_j[a:b], t_prev[a:b], err[a:b],
                    bd[a:b], bi[a:b],
                ),
                qe - qs,
                n_threads,
            )
        )  # fmt: skip

    with single_threaded_blas():
        if _split_rows(nq, nx, qt, tb, n_threads):
            # fewer query tiles than threads: the threads share the training rows, which
            # then stream from memory once (split by queries, each thread reads them all)
            step = -(-nq // -(-nq // qt))  # equal query tiles
            n_fallback_total = sum(rows_split(qs, min(nq, qs + step)) for qs in range(0, nq, step))
        else:
            n_fallback_total = sum(map_chunks(queries, nq, n_threads))
    STATS["fallback_queries"] += n_fallback_total


def _split_rows(nq: int, nx: int, qt: int, tb: int, n_threads: int) -> bool:
    """Whether the threads share the training rows (else the queries) of a search."""
    mode = settings.l2_thread_split
    if mode not in ("auto", "queries", "rows"):
        raise ValueError(f"l2_thread_split must be 'auto', 'queries' or 'rows', got {mode!r}")
    if n_threads < 2 or nx < n_threads:
        return False
    if mode != "auto":
        return mode == "rows"
    # each thread's share of the rows makes at least one full GEMM block of 1024 rows
    return -(-nq // qt) < n_threads and nx >= n_threads * min(tb, 1024)


def sqeuclidean_topk_float(Q, X, offset, best_d, best_i, centred=None) -> None:
    """Merge the exact squared-L2 neighbours among ``X`` (global ids ``offset + j``).

    Q (n_q, D), X (n_x, D): C-contiguous, both float32 or both float64. ``best_d``
    (n_q, k) float64 and ``best_i`` (n_q, k) int64 are updated in place.
    Pixel data stored as floats (every value of Q and X an integer in 0..255) take the
    exact integer kernel when ``settings.l2_uint8_shortcut`` is on: the distances are
    the same exact integers. ``centred``: :func:`centre_rows` of ``X`` made earlier (a
    fitted model's), used instead of centring ``X`` again when it still applies.
    """
    if Q.shape[0] == 0 or X.shape[0] == 0:
        return
    if settings.l2_uint8_shortcut:
        from fastcls.kernels.l1 import as_exact_uint8

        Qu = as_exact_uint8(Q, "pixels_q")
        Xu = None if Qu is None else as_exact_uint8(X, "pixels_x")
        if Xu is not None:
            sqeuclidean_topk_int(Qu, Xu, offset, best_d, best_i)
            return
    _topk(Q, X, offset, best_d, best_i, centred)


def sqeuclidean_topk_uint8(Q, X, offset, best_d, best_i) -> None:
    """As :func:`sqeuclidean_topk_float` for uint8 rows: exact integer distances.

    ``|q|^2 + |x|^2 - 2 q.x`` in integer arithmetic, the cross term by the register-tiled
    micro-kernel of :mod:`fastcls.kernels.l2int` chosen for this CPU (no rerank).
    """
    sqeuclidean_topk_int(Q, X, offset, best_d, best_i)


def float_impl() -> str:
    """The float top-k's settings that shape it, e.g. ``"BLAS sgemm (threads split auto,
    uncentred rows up to 3x)"``: the float32 GEMM is AMX bf16x3 where :func:`float_gemm`
    chooses it, else NumPy's BLAS."""
    gemm = "AMX bf16x3" if float_gemm() == "amx" else "BLAS sgemm"
    return (
        f"{gemm} (threads split {settings.l2_thread_split}, uncentred rows up to "
        f"{settings.l2_uncentred_max_ratio:g}x)"
    )


def selected_paths() -> dict[str, str]:
    """The micro-kernels this process uses on this CPU, by kernel family.

    Keys ``"l1_uint8"`` and ``"l2_uint8"`` (the integer kernels: uint8 rows and
    float rows holding whole numbers 0..255) and ``"l2_float"``; values name the
    implementation and its instructions (``fastcls info`` prints them). Forced
    choices (``settings.l1_uint8_impl`` / ``l2_uint8_impl``) are reported as such.

    Examples
    --------
    >>> from fastcls.kernels.l2 import selected_paths
    >>> sorted(selected_paths())
    ['l1_uint8', 'l2_float', 'l2_uint8']
    """
    from fastcls.kernels import l1, l2int, prune

    l1_names = {
        "avx512": "vpsadbw zmm (AVX-512BW)",
        "avx2": "vpsadbw ymm (AVX2)",
        "portable": "int32 loop",
    }
    l1_impl = l1.uint8_impl()
    l1_tile = f"4x{l1.uint8_tile_cols(l1_impl)} register tile"
    l2_impl = l2int.int_impl()
    gemm = (
        "AMX bf16x3 tiles (float32; float64 in float64: BLAS dgemm)"
        if float_gemm() == "amx"
        else "BLAS sgemm/dgemm"
    )
    l1_code = len(l1._uint8_token(l1_impl, 1 << 12)) - 1  # the tile of rows of a vector or more
    l1_prune = prune.describe(l1_code in l1._UINT8_PRUNED_TILES, slab=True)
    l2_prune = prune.describe(l2int.INT_CODES[l2_impl] in l2int._PRUNED_DOTS, slab=True)
    return {
        "l1_uint8": f"{l1_impl}: {l1_names[l1_impl]}, {l1_tile}; {l1_prune}",
        "l2_uint8": f"{l2_impl}: {l2int.INT_DESCRIPTIONS[l2_impl]}; {l2_prune}",
        "l2_float": (
            f"{gemm} (rows as stored or centred) + fused selection + certified "
            f"exact rerank; threads split {settings.l2_thread_split}"
        ),
    }


# --------------------------------------------------------------------------- pairwise
def _pairwise(X, Y, out, uint8: bool) -> None:
    nX, D = X.shape
    nY = Y.shape[0]
    if nX == 0 or nY == 0:
        return
    if nX * nY * D <= settings.l2_direct_max_work or (3 * D + 16) * U64 >= 0.5:
        _pairwise_direct(X, Y, out)
        return
    c = _centre(Y, np.float64, uint8)
    Yc = np.empty((nY, D))
    yn = np.empty(nY)
    _centre_rows(Y, c, Yc, yn)
    coef = (gamma(3 * D + 16, U64) + gamma(3 * D + 16, U64)) * (1.0 + 2.0**-20)
    qt = max(1, int(settings.l2_query_tile_rows))
    with blas_threads():
        for s in range(0, nX, qt):
            e = min(nX, s + qt)
            Xc = np.empty((e - s, D))
            xn = np.empty(e - s)
            _centre_rows(X[s:e], c, Xc, xn)
            if not np.isfinite(xn).all() or float(xn.max()) + float(yn.max()) > 2.0**1000:
                _pairwise_direct(X[s:e], Y, out[s:e])
                continue
            blk = out[s:e] if out.dtype == np.float64 else np.empty((e - s, nY))
            np.matmul(Xc, Yc.T, out=blk)
            _finish_pairwise(blk, xn, yn, blk)
            if not uint8:  # uint8: integers below 2^53, the GEMM trick is already exact
                e_abs = (3 * D + 16) * 2.0**-1060
                _pairwise_fix(X[s:e], Y, blk, xn, yn, coef, e_abs, PAIRWISE_REL)
            if out.dtype != np.float64:
                out[s:e] = blk


def sqeuclidean_pairwise_float(X, Y, out) -> None:
    """``out[i, j] = sum (X[i] - Y[j])^2`` within ``2^-30`` relative (float32 / float64)."""
    _pairwise(X, Y, out, uint8=False)


def sqeuclidean_pairwise_uint8(X, Y, out) -> None:
    """``out[i, j] = sum (X[i] - Y[j])^2`` exactly, for uint8 rows (out float64)."""
    _pairwise(X, Y, out, uint8=True)
