"""Zero-padded row copies shared by the uint8 drivers of :mod:`fastcls.kernels.l1` and
:mod:`fastcls.kernels.l2int` (rows of a multiple of the vector width, so no register tile
takes the masked tail)."""

from __future__ import annotations

import numpy as np

from fastcls._config import jit

__all__ = ["copy_rows", "zero_padded"]


@jit
def copy_rows(A, i0, i1, out):
    """``out[: i1 - i0, : A.shape[1]] = A[i0:i1]`` (the rest of ``out`` untouched)."""
    for i in range(i0, i1):  # element loops: a row view would cost an atomic refcount
        for d in range(A.shape[1]):
            out[i - i0, d] = A[i, d]


@jit
def zero_padded(A, i0, i1, width, n_rows):
    """New ``(n_rows, width)`` zeros, 64-byte aligned, with rows ``A[i0:i1]`` copied in.

    Padded rows pay only when every row starts on a cache line (no load split over two
    lines): numba's small arrays (a few tens of KB, e.g. the L2 kernel's blocks) start
    32 bytes off one. A function, not ``np.zeros`` in the ``prange`` body: there (a
    variable also bound to an input) the pad columns held garbage in the L1 driver,
    presumably numba's parfor allocation hoisting.
    """
    flat = np.zeros(n_rows * width + 64, dtype=np.uint8)
    off = (64 - flat.ctypes.data % 64) % 64
    out = flat[off : off + n_rows * width].reshape((n_rows, width))
    copy_rows(A, i0, i1, out)
    return out
