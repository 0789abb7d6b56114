"""Aligned scratch and zero-padded row copies for the kernels' register tiles.

``aligned_empty`` serves the compiled kernels that keep rows on cache-line boundaries (the
padded copies below), ``aligned_zeros`` callers that make such buffers once in Python (the
linear loss kernel's, :func:`fastcls.kernels.losses.loss_buffers`); ``zero_padded`` and
``copy_rows`` serve the uint8 drivers of :mod:`fastcls.kernels.l1` and
:mod:`fastcls.kernels.l2int` (rows of a multiple of the vector width, so no register tile
takes the masked tail); ``transpose_into`` serves the linear loss kernel (the weights into
its class-major layout and the gradient back, once per call)."""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import intrinsic

from fastcls._config import jit
from fastcls.kernels._llvm_ir import row_pointers

__all__ = [
    "aligned_empty",
    "aligned_zeros",
    "copy_rows",
    "store_tuple",
    "transpose_into",
    "zero_padded",
]


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


#: the 8 x 8 transpose (:func:`_transpose8`) in three stages: vectors ``k`` and ``k + step``
#: are combined by the two shuffle masks (interleave pairs of rows, then pairs of pairs, then
#: halves: the unpck / shufps / vperm2f128 network of AVX)
_TRANSPOSE8_STAGES = (
    (1, (0, 8, 1, 9, 4, 12, 5, 13), (2, 10, 3, 11, 6, 14, 7, 15)),
    (2, (0, 1, 8, 9, 4, 5, 12, 13), (2, 3, 10, 11, 6, 7, 14, 15)),
    (4, (0, 1, 2, 3, 8, 9, 10, 11), (4, 5, 6, 7, 12, 13, 14, 15)),
)


@intrinsic
def _transpose8(typingctx, src, i0, j0, dst):
    """``dst[j0 + b, i0 + a] = src[i0 + a, j0 + b]`` for ``a, b`` in ``0..7``: an 8 x 8
    block through 24 vector shuffles (``src``, ``dst``: 2-D arrays of one float dtype,
    unit column stride; the caller keeps the block inside both).

    Eight unaligned vector loads and stores instead of 64 scalar pairs: numba's element
    loop ran at about one element per cycle (the weights of D=3073, C=10: 12 us each
    way on the Zen 4, a quarter of a small loss call's fixed cost), and LLVM vectorises
    neither loop order (a ``vgatherdps`` formulation was no faster).
    """
    if not (isinstance(src, types.Array) and isinstance(dst, types.Array)):
        return None
    if src.ndim != 2 or dst.ndim != 2 or src.dtype != dst.dtype:
        return None
    if src.dtype not in (types.float32, types.float64):
        return None
    sig = types.void(src, types.intp, types.intp, dst)

    def codegen(context, builder, signature, args):
        from llvmlite import ir

        i32, i64 = ir.IntType(32), ir.IntType(64)
        elem = context.get_value_type(signature.args[0].dtype)
        size = context.get_abi_sizeof(elem)
        vtype = ir.VectorType(elem, 8)
        a_src = context.make_array(signature.args[0])(context, builder, args[0])
        a_dst = context.make_array(signature.args[3])(context, builder, args[3])
        i0, j0 = args[1], args[2]

        def pointers(arr, row0, col0):
            """Vector pointers to ``arr[row0 + r, col0:]`` for ``r`` in ``0..7``."""
            col = builder.mul(col0, ir.Constant(i64, size))
            rows = row_pointers(builder, arr, row0, 8, offset=col)
            return [builder.bitcast(p, vtype.as_pointer()) for p in rows]

        rows = [builder.load(p, align=1) for p in pointers(a_src, i0, j0)]
        for step, lo, hi in _TRANSPOSE8_STAGES:
            mask_lo = ir.Constant(ir.VectorType(i32, 8), list(lo))
            mask_hi = ir.Constant(ir.VectorType(i32, 8), list(hi))
            out = list(rows)
            for k in range(8):
                if (k // step) % 2 == 0:
                    out[k] = builder.shuffle_vector(rows[k], rows[k + step], mask_lo)
                    out[k + step] = builder.shuffle_vector(rows[k], rows[k + step], mask_hi)
            rows = out
        # the network leaves columns 1 and 2 (and 5 and 6) in each other's place
        columns = [rows[0], rows[2], rows[1], rows[3], rows[4], rows[6], rows[5], rows[7]]
        for value, ptr in zip(columns, pointers(a_dst, j0, i0), strict=True):
            builder.store(value, ptr, align=1)
        return context.get_dummy_value()

    return sig, codegen


@jit
def transpose_into(src, dst):
    """``dst[j, i] = src[i, j]`` for every ``i < src.shape[0]``, ``j < src.shape[1]``
    (``dst`` at least ``src.shape[::-1]``, its other entries untouched).

    8 x 8 vector blocks (:func:`_transpose8`); the last block of each dimension overlaps
    the one before instead of leaving a tail, so only a dimension below 8, or a column
    stride other than one item (the blocks load and store rows as vectors), takes the
    element loop.
    """
    n = src.shape[0]
    m = src.shape[1]
    item = src.itemsize
    if n < 8 or m < 8 or src.strides[1] != item or dst.strides[1] != item:
        for i in range(n):
            for j in range(m):
                dst[j, i] = src[i, j]
        return
    i0 = 0
    while i0 < n:
        i = min(i0, n - 8)
        j0 = 0
        while j0 < m:
            _transpose8(src, i, min(j0, m - 8), dst)
            j0 += 8
        i0 += 8


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
    out = aligned_zero_rows(n_rows, width, like)
    copy_rows(A, i0, i1, out)
    return out


@jit
def aligned_zero_rows(n_rows, width, like):
    """New ``(n_rows, width)`` zeros of ``like``'s dtype, 64-byte aligned (scratch rows
    for :func:`zero_padded` copies; called for scratch, rather than ``zero_padded`` with
    rows 0:0, because literal arguments compile a second copy of a callee)."""
    out = aligned_empty(n_rows, width, like)
    out[:] = 0
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
    xpad = aligned_zero_rows(min(block, nx) if width > 0 else 0, max(width, 1), X)
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
