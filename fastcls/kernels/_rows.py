"""Aligned scratch and zero-padded row copies for the kernels' register tiles.

``aligned_empty`` serves the compiled kernels that keep rows on cache-line boundaries (the
padded copies below), ``aligned_zeros`` callers that make such buffers once in Python (the
linear loss kernel's, :func:`fastcls.kernels.losses.loss_buffers`); ``zero_padded`` and
``copy_rows`` serve the uint8 drivers of :mod:`fastcls.kernels.l1` and
:mod:`fastcls.kernels.l2int` (rows of a multiple of the vector width, so no register tile
takes the masked tail)."""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import intrinsic

from fastcls._config import jit

__all__ = ["aligned_empty", "aligned_zeros", "copy_rows", "store_tuple", "zero_padded"]


@intrinsic
def store_tuple(typingctx, buf, values):
    """``buf[t] = values[t]`` for every entry of the homogeneous tuple ``values`` (``buf``
    a 1-D C-contiguous array of at least that many items of the tuple's type).

    Each store takes its entry at a constant index. A numba loop ``for t in range(n):
    buf[t] = values[t]`` indexes the tuple with a variable, which compiles to an indexed
    jump per entry: after every register tile of the integer L2 driver, 16 of them.
    """
    if not isinstance(values, types.UniTuple) or not isinstance(buf, types.Array):
        return None
    if buf.ndim != 1 or buf.dtype != values.dtype:
        return None
    sig = types.void(buf, values)

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        for t in range(signature.args[1].count):
            value = builder.extract_value(args[1], t)
            idx = context.get_constant(types.intp, t)
            builder.store(value, builder.gep(arr.data, [idx]))
        return context.get_dummy_value()

    return sig, codegen


@jit
def copy_rows(A, i0, i1, out):
    """``out[: i1 - i0, : A.shape[1]] = A[i0:i1]`` (the rest of ``out`` untouched)."""
    for i in range(i0, i1):  # element loops: a row view would cost an atomic refcount
        for d in range(A.shape[1]):
            out[i - i0, d] = A[i, d]


@jit
def aligned_empty(rows, cols, like):
    """An uninitialised C-contiguous ``(rows, cols)`` array of ``like``'s dtype, 64-byte aligned.

    numba's small arrays (a few tens of KB) start 32 bytes off a cache line, and a vector
    load that straddles two lines costs two.
    """
    n = rows * cols
    buf = np.empty(n + 64 // like.itemsize, dtype=like.dtype)
    first = ((-buf.ctypes.data) % 64) // like.itemsize
    return buf[first : first + n].reshape((rows, cols))


def aligned_zeros(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """C-contiguous zeros of ``shape`` whose first element is 64-byte aligned: the Python
    twin of :func:`aligned_empty`, for buffers a caller makes once and hands to kernels
    (the linear loss kernel's: :func:`fastcls.kernels.losses.loss_buffers`)."""
    itemsize = np.dtype(dtype).itemsize
    n = int(np.prod(shape))
    buf = np.zeros(n + 64 // itemsize, dtype=dtype)
    first = (-buf.ctypes.data % 64) // itemsize
    return buf[first : first + n].reshape(shape)


@jit
def zero_padded(A, i0, i1, width, n_rows, like):
    """New ``(n_rows, width)`` zeros of ``like``'s dtype, 64-byte aligned, with rows
    ``A[i0:i1]`` copied in (the int16 L2 tiles widen uint8 rows this way).

    Padded rows pay only when every row starts on a cache line (no load split over two
    lines): see :func:`aligned_empty` (the L2 kernel's blocks are such small arrays). A
    function, not ``np.zeros`` in the ``prange`` body: there (a
    variable also bound to an input) the pad columns held garbage in the L1 driver,
    presumably numba's parfor allocation hoisting.
    """
    out = aligned_empty(n_rows, width, like)
    out[:] = 0
    copy_rows(A, i0, i1, out)
    return out


@jit
def padded_chunk(Q, X, c0, c1, width, block):
    """A query chunk's rows as the uint8 drivers read them: ``(qb, xpad, qsub, xb)``.

    With ``width > 0`` the chunk's queries ``Q[c0:c1]`` are copied into zero-padded rows of
    ``width`` bytes (``qb``, row ``qi`` of ``Q`` at ``qi - qsub``), ``xpad`` is the
    scratch each training block is copied into (:func:`padded_block`) and ``xb``, what the
    tiles read training rows from, is ``xpad``; without, ``qb`` is ``Q`` itself, ``xpad`` a
    placeholder and ``xb`` is ``X``. Zero bytes add nothing to an L1 or a dot sum.
    """
    nx = X.shape[0]
    # written through its own name by the caller: X itself may be typed read-only (memmap)
    xpad = zero_padded(X, 0, 0, max(width, 1), min(block, nx) if width > 0 else 0, X)
    if width > 0:
        return zero_padded(Q, c0, c1, width, c1 - c0, Q), xpad, c0, xpad
    return Q, xpad, 0, X


@jit
def padded_block(X, j0, j1, xpad, width):
    """Training rows ``j0:j1`` for the tiles: copied into ``xpad`` when ``width > 0`` (see
    :func:`padded_chunk`); returns the number of the block's first row in what the tiles
    read (``j0`` in ``xpad``, else 0: they read ``X`` itself)."""
    if width > 0:
        copy_rows(X, j0, j1, xpad)
        return j0
    return 0
