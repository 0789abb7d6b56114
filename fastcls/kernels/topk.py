"""Top-k buffers shared by every k-NN kernel.

The running top-k of a query is a pair of rows ``(best_d[k], best_i[k])`` sorted by
``(distance, index)`` ascending, initialised to ``(+inf, -1)``. Kernels scan training
rows in increasing global index and insert with a *strict* ``d < best_d[k-1]``, so an
equal distance never displaces an earlier (lower) index: "lower index wins" falls out
of the scan order with no extra comparison.

Inserting into a sorted row costs ``O(k)`` per entry that enters, which is cheap
while few rows enter (k much smaller than the rows scanned) but quadratic when k
approaches the number of training rows. :func:`use_block_selection` decides when
the search should instead take each block of a tile's top-k separately (short
rows) and merge them with :func:`merge_sorted_topk` (linear time).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from fastcls._config import jit


@jit(inline="always")
def insert_sorted(best_d, best_i, d, i):
    """Insert ``(d, i)`` into a sorted buffer; caller guarantees ``d < best_d[-1]``.

    Shifts while the resident entry is strictly greater, so equal distances keep
    their earlier position (the lower index, given the scan order).
    """
    j = best_d.shape[0] - 1
    while j > 0 and best_d[j - 1] > d:
        best_d[j] = best_d[j - 1]
        best_i[j] = best_i[j - 1]
        j -= 1
    best_d[j] = d
    best_i[j] = i


@jit(inline="always")
def insert_sorted_by_pair(best_d, best_i, d, i):
    """Insert ``(d, i)`` ordering by ``(distance, index)``: for merges from any order.

    Returns False (and changes nothing) when ``(d, i)`` does not beat the last entry.
    """
    k = best_d.shape[0]
    last_d = best_d[k - 1]
    if d > last_d or (d == last_d and (best_i[k - 1] >= 0 and i >= best_i[k - 1])):
        return False
    j = k - 1
    while j > 0 and (best_d[j - 1] > d or (best_d[j - 1] == d and best_i[j - 1] > i)):
        best_d[j] = best_d[j - 1]
        best_i[j] = best_i[j - 1]
        j -= 1
    best_d[j] = d
    best_i[j] = i
    return True


@jit(parallel=True)
def merge_topk(best_d, best_i, other_d, other_i):
    """Merge another top-k list set into ``(best_d, best_i)`` in place.

    Both are (n_queries, k), each row sorted by ``(distance, index)``; entries with
    index -1 are empty. The result is the k smallest of the union by
    ``(distance, index)``, so merges in any order give the same answer.
    """
    nq, k = best_d.shape
    for q in prange(nq):
        for j in range(other_d.shape[1]):
            if other_i[q, j] < 0:
                break
            if not insert_sorted_by_pair(best_d[q], best_i[q], other_d[q, j], other_i[q, j]):
                break  # other row is sorted: nothing later can enter either


def use_block_selection(k: int, n_rows: int) -> bool:
    """Whether a search of ``k`` neighbours among ``n_rows`` rows should select per block.

    ``settings.knn_selection``: ``"insert"`` or ``"blocks"`` force a strategy;
    ``"auto"`` compares rough costs: inserting, about ``k (1 + ln(n/k))`` entries
    enter a sorted row of ``k`` (half a row shifted each) on random data; per block
    of ``b = sqrt(k)`` rows, a block's sorted list (``n b / 2``) plus one linear merge
    per block (``n k / b``). Either strategy gives identical results.
    """
    import math

    from fastcls._config import settings

    mode = settings.knn_selection
    if mode not in ("auto", "insert", "blocks"):
        raise ValueError(f"knn_selection must be 'auto', 'insert' or 'blocks', got {mode!r}")
    if mode != "auto":
        return mode == "blocks"
    if k < 64 or n_rows <= k:
        return k >= 64
    inserting = k * (1.0 + math.log(n_rows / k)) * k / 2
    blocks = 1.5 * n_rows * math.sqrt(k)
    return inserting > 4 * blocks


def selection_block_rows(k: int) -> int:
    """Rows per block of the block selection: about ``sqrt(k)``, within 64..4096."""
    import math

    return int(min(4096, max(64, math.isqrt(max(k, 1)))))


def run_serial(n_queries: int, n_rows: int, n_features: int) -> bool:
    """Whether a search this small runs on the calling thread (the drivers' chunk
    function called directly, same results): ``settings.knn_parallel_min_work``."""
    from fastcls._config import settings

    return n_queries * n_rows * n_features < int(settings.knn_parallel_min_work)


def new_topk(n_queries: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Empty top-k buffers: distances +inf, indices -1."""
    return np.full((n_queries, k), np.inf), np.full((n_queries, k), -1, dtype=np.int64)


@jit(inline="always")
def _before(d1, i1, d2, i2):
    """``(d1, i1) < (d2, i2)``, empty slots (index -1) after every real entry."""
    if i2 < 0:
        return i1 >= 0
    if i1 < 0:
        return False
    return d1 < d2 or (d1 == d2 and i1 < i2)


@jit
def _merge_sorted_row(bd, bi, od, oi):
    """One query of :func:`merge_sorted_topk`: ``(od, oi)`` merged into ``(bd, bi)``.

    A forward pass counts how many of the k smallest come from each list, then a
    backward two-finger merge writes them in place (no scratch row).
    """
    k = bd.shape[0]
    ko = od.shape[0]
    a = 0
    b = 0
    for _ in range(k):
        ia = bi[a] if a < k else -1
        ib = oi[b] if b < ko else -1
        if ia < 0 and ib < 0:
            break
        if _before(od[b] if ib >= 0 else np.inf, ib, bd[a] if ia >= 0 else np.inf, ia):
            b += 1
        else:
            a += 1
    for p in range(a + b, k):
        bd[p] = np.inf
        bi[p] = -1
    p = a + b - 1
    i = a - 1
    j = b - 1
    while j >= 0:  # the larger of best[i], other[j] goes to p (p >= i: nothing lost)
        if i >= 0 and _before(od[j], oi[j], bd[i], bi[i]):
            bd[p] = bd[i]
            bi[p] = bi[i]
            i -= 1
        else:
            bd[p] = od[j]
            bi[p] = oi[j]
            j -= 1
        p -= 1


@jit(parallel=True)
def merge_sorted_topk(best_d, best_i, other_d, other_i):
    """Merge sorted lists into ``(best_d, best_i)`` in linear time, in place (large k).

    As :func:`merge_topk`, but each query costs ``O(k + k_other)`` however many
    entries enter, instead of ``O(k)`` per entering entry (:func:`_merge_sorted_row`).
    ``other`` may have fewer columns.
    """
    for q in prange(best_d.shape[0]):
        _merge_sorted_row(best_d[q], best_i[q], other_d[q], other_i[q])


@jit
def merge_sorted_topk_serial(best_d, best_i, other_d, other_i):
    """:func:`merge_sorted_topk` on the calling thread (a few hundred short lists: no
    parallel region to start, nor to compile)."""
    for q in range(best_d.shape[0]):
        _merge_sorted_row(best_d[q], best_i[q], other_d[q], other_i[q])


@jit(parallel=True)
def merge_block_rows(dist, row_ids, col_ids, best_d, best_i):
    """Merge a distance block into the top-k of its rows' owners.

    Row ``r`` of ``dist`` belongs to ``best[row_ids[r]]``; its entries enter as
    ``(dist[r, c], col_ids[c])`` by ``(distance, index)``, so blocks may come in any
    order (the symmetric cross-validation visits fold pairs).
    """
    k = best_d.shape[1]
    for r in prange(dist.shape[0]):
        q = row_ids[r]
        bd = best_d[q]
        bi = best_i[q]
        for c in range(dist.shape[1]):
            d = dist[r, c]
            if d <= bd[k - 1]:
                insert_sorted_by_pair(bd, bi, d, col_ids[c])


@jit(parallel=True)
def merge_block_cols(dist, row_ids, col_ids, best_d, best_i):
    """As :func:`merge_block_rows` for the transposed block: column ``c`` belongs to
    ``best[col_ids[c]]`` and its entries enter as ``(dist[r, c], row_ids[r])``."""
    k = best_d.shape[1]
    n_rows, n_cols = dist.shape
    for c0 in prange((n_cols + 7) // 8):  # 8 columns per task: whole cache lines per row
        c1 = min(n_cols, c0 * 8 + 8)
        for r in range(n_rows):
            for c in range(c0 * 8, c1):
                d = dist[r, c]
                q = col_ids[c]
                if d <= best_d[q, k - 1]:
                    insert_sorted_by_pair(best_d[q], best_i[q], d, row_ids[r])
