"""Portable one-pair-at-a-time k-NN kernels (the fallback and the baseline).

Each accumulates in float64, so float32/float64 inputs give the float64 result up to
summation order and uint8 inputs give exact integers (widened before subtracting).
The fast kernels in :mod:`fastcls.kernels.l1` and :mod:`fastcls.kernels.l2` fall back
to these where a CPU feature they need is missing.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from fastcls._config import jit
from fastcls.kernels.topk import insert_sorted


@jit(inline="always")
def _l1_pair(a, b):
    s = 0.0
    for d in range(a.shape[0]):
        s += abs(np.float64(a[d]) - np.float64(b[d]))
    return s


@jit(inline="always")
def _sq_pair(a, b):
    s = 0.0
    for d in range(a.shape[0]):
        t = np.float64(a[d]) - np.float64(b[d])
        s += t * t
    return s


@jit(parallel=True)
def l1_topk_scalar(Q, X, offset, best_d, best_i):
    """Merge the L1 neighbours of each query among rows ``X`` (global ids ``offset+j``)."""
    k = best_d.shape[1]
    for q in prange(Q.shape[0]):
        bd = best_d[q]
        bi = best_i[q]
        for j in range(X.shape[0]):
            d = _l1_pair(Q[q], X[j])
            if d < bd[k - 1]:
                insert_sorted(bd, bi, d, offset + j)


@jit(parallel=True)
def sqeuclidean_topk_scalar(Q, X, offset, best_d, best_i):
    """Merge the squared-L2 neighbours of each query among rows ``X``."""
    k = best_d.shape[1]
    for q in prange(Q.shape[0]):
        bd = best_d[q]
        bi = best_i[q]
        for j in range(X.shape[0]):
            d = _sq_pair(Q[q], X[j])
            if d < bd[k - 1]:
                insert_sorted(bd, bi, d, offset + j)


@jit(parallel=True)
def l1_pairwise_scalar(X, Y, out):
    """``out[i, j] = sum |X[i] - Y[j]|`` (float64 accumulation)."""
    for i in prange(X.shape[0]):
        for j in range(Y.shape[0]):
            out[i, j] = _l1_pair(X[i], Y[j])


@jit(parallel=True)
def sqeuclidean_pairwise_scalar(X, Y, out):
    """``out[i, j] = sum (X[i] - Y[j])^2`` (float64 accumulation)."""
    for i in prange(X.shape[0]):
        for j in range(Y.shape[0]):
            out[i, j] = _sq_pair(X[i], Y[j])
