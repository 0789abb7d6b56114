"""Rounding float64 distance blocks once into float32 outputs.

Squared distances of float32 rows are accumulated in float64 because they can leave
float32's range (1e20 apart: 1e40) while the distances themselves are float32 values.
:func:`narrow_to_float32` finishes such a block in one pass (optional square root,
one rounding to float32) and counts the entries float32 cannot hold, so the caller
can refuse them instead of returning ``inf`` or a squared distance flushed to 0.
Reference: :func:`fastcls.reference.knn.narrow_to_float32_reference`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from fastcls._config import jit

#: smallest normal float32: a non-zero squared distance below it keeps few bits or none
F32_TINY = float(np.finfo(np.float32).tiny)
#: largest float32
F32_MAX = float(np.finfo(np.float32).max)


@jit(parallel=True)
def narrow_to_float32(src, dst, take_sqrt):
    """``dst = float32(sqrt(src) if take_sqrt else src)`` for non-negative float64 ``src``.

    Returns ``(n_overflow, n_underflow)``: entries beyond float32's range (stored as
    ``inf``), and non-zero entries below :data:`F32_TINY` when ``take_sqrt`` is false
    (square roots of float64 squares of float32 data never underflow).
    """
    n_over = 0
    n_under = 0
    inf32 = np.float32(np.inf)
    for i in prange(src.shape[0]):
        # branch-free inner loops (counts added as 0/1) so they vectorise
        over = 0
        under = 0
        if take_sqrt:
            for j in range(src.shape[1]):
                r = np.float32(math.sqrt(src[i, j]))
                dst[i, j] = r
                over += r == inf32
        else:
            for j in range(src.shape[1]):
                v = src[i, j]
                r = np.float32(v)
                dst[i, j] = r
                over += r == inf32
                under += (v > 0.0) & (v < F32_TINY)
        n_over += over
        n_under += under
    return n_over, n_under
