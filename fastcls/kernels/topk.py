"""Top-k buffers shared by every k-NN kernel.

The running top-k of a query is a pair of rows ``(best_d[k], best_i[k])`` sorted by
``(distance, index)`` ascending, initialised to ``(+inf, -1)``. Kernels scan training
rows in increasing global index and insert with a *strict* ``d < best_d[k-1]``, so an
equal distance never displaces an earlier (lower) index: "lower index wins" falls out
of the scan order with no extra comparison.
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


def new_topk(n_queries: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Empty top-k buffers: distances +inf, indices -1."""
    return np.full((n_queries, k), np.inf), np.full((n_queries, k), -1, dtype=np.int64)
