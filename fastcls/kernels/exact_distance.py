"""The exact squared distance of two float rows, summed in an order the code writes.

``exact_sq_distance(A, i, B, j)`` is ``sum_d (A[i, d] - B[j, d])^2`` in float64 for
float32 or float64 rows: every L2 path that needs a distance exactly (the rerank of the
GEMM's candidates, the fallback scan of uncertified queries, the pairwise fix-up) calls
it, and the answers of those paths are compared bit for bit.

Why explicit vectors in LLVM IR rather than a numba loop: a strict loop is one
dependency chain (15x slower, measured), and a loop compiled with reassociation
(``fastmath={"reassoc"}``) leaves the summation order to LLVM's vectoriser, which chooses
per compiled copy. The parallel and serial twins of a kernel hold their own copies, so
their distances could differ in the last bit: a different answer on 1 and 2 threads (the
linear loss's penalty value did exactly that once, see
:func:`fastcls.kernels.losses.finish_gradient`). Here the lanes are written in the IR
and every operation is strict, so any CPU and any copy compute the same bits.

The order: element ``d`` goes to lane ``d % 8`` of accumulator ``(d // 8) % 4`` (four
``<8 x double>`` accumulators: four independent chains keep the adds' latency hidden);
each lane adds its terms in increasing ``d``, a missing element (past the row's end in
the last step) adds ``+0.0``. Then ``(a0 + a1) + (a2 + a3)`` lane by lane, and the 8
lanes by the tree ``((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))``.
:func:`fastcls.reference.knn.exact_sq_distance_reference` writes the same order in NumPy.

A term is ``t * t`` with ``t = float64(a) - float64(b)``: no fused multiply-add, so the
bits do not depend on whether the CPU has one. Rows with a unit element stride are read
as vectors (masked in the last step); other rows element by element into the same lanes.
"""

from __future__ import annotations

from numba import types
from numba.extending import intrinsic

from fastcls.kernels._llvm_ir import masked_load_function, row_pointers, splat

#: lanes per accumulator and accumulators: the order of :func:`exact_sq_distance`
LANES = 8
ACCUMULATORS = 4


def _lane_loader(builder, ftype, base, stride, contiguous):
    """``load(first, mask)``: the ``LANES`` elements of a row (``base``, element ``stride``
    bytes) from element ``first`` on, as ``<LANES x double>``; lanes where ``mask`` is
    false are zero (and not read). ``contiguous``: the caller knows ``stride`` is the
    item size (vector loads); otherwise element by element into the same lanes."""
    from llvmlite import ir

    i32, i64 = ir.IntType(32), ir.IntType(64)
    itemsize = 4 if isinstance(ftype, ir.FloatType) else 8
    vtype = ir.VectorType(ftype, LANES)
    zero = ir.Constant(vtype, None)
    masked_load = masked_load_function(builder, vtype)

    def load(first, mask):
        if contiguous:
            at = builder.gep(base, [builder.mul(first, ir.Constant(i64, itemsize))])
            ptr = builder.bitcast(at, vtype.as_pointer())
            if mask is None:
                value = builder.load(ptr, align=1)
            else:
                value = builder.call(masked_load, [ptr, ir.Constant(i32, 1), mask, zero])
        else:
            value = zero
            for lane in range(LANES):
                at = builder.add(first, ir.Constant(i64, lane))
                if mask is not None:  # a lane past the row reads element first instead
                    take = builder.extract_element(mask, ir.Constant(i32, lane))
                    at = builder.select(take, at, first)
                ptr = builder.bitcast(
                    builder.gep(base, [builder.mul(at, stride)]), ftype.as_pointer()
                )
                x = builder.load(ptr)
                if mask is not None:
                    x = builder.select(take, x, ir.Constant(ftype, 0.0))
                value = builder.insert_element(value, x, ir.Constant(i32, lane))
        return (
            value if itemsize == 8 else builder.fpext(value, ir.VectorType(ir.DoubleType(), LANES))
        )

    return load


@intrinsic
def exact_sq_distance(typingctx, A, i, B, j):
    """``sum_d (A[i, d] - B[j, d])^2`` in float64, in the order of the module docstring.

    ``A``, ``B``: 2-D float32 / float64 arrays (any strides) with the same number of
    columns; ``i``, ``j``: row numbers (not checked).
    """
    if not all(
        isinstance(a, types.Array) and a.ndim == 2 and a.dtype in (types.float32, types.float64)
        for a in (A, B)
    ):
        return None
    sig = types.float64(A, types.int64, B, types.int64)

    def codegen(context, builder, signature, args):
        from llvmlite import ir
        from numba.core import cgutils

        i64 = ir.IntType(64)
        rows = []
        for arr_type, arr_value, row in zip(
            signature.args[0::2], args[0::2], args[1::2], strict=True
        ):
            arr = context.make_array(arr_type)(context, builder, arr_value)
            ftype = context.get_value_type(arr_type.dtype)
            stride = cgutils.unpack_tuple(builder, arr.strides, 2)[1]
            unit = builder.icmp_signed("==", stride, ir.Constant(i64, arr_type.dtype.bitwidth // 8))
            rows.append((ftype, row_pointers(builder, arr, row, 1)[0], stride, unit))
            if len(rows) == 1:
                n = cgutils.unpack_tuple(builder, arr.shape, 2)[1]  # A's columns
        (a_ftype, a_base, a_stride, a_unit), (b_ftype, b_base, b_stride, b_unit) = rows
        unit = builder.and_(a_unit, b_unit)
        result = cgutils.alloca_once(builder, ir.DoubleType())
        with builder.if_else(unit) as (contiguous, strided):
            for block, flag in ((contiguous, True), (strided, False)):
                with block:
                    load_a = _lane_loader(builder, a_ftype, a_base, a_stride, flag)
                    load_b = _lane_loader(builder, b_ftype, b_base, b_stride, flag)
                    builder.store(_ordered_sum(builder, n, load_a, load_b), result)
        return builder.load(result)

    return sig, codegen


def _ordered_sum(builder, n, load_a, load_b):
    """The IR of the sum of ``(a - b)^2`` over ``n`` elements in the module's order."""
    from llvmlite import ir
    from numba.core import cgutils

    i32, i64 = ir.IntType(32), ir.IntType(64)
    dvtype = ir.VectorType(ir.DoubleType(), LANES)
    accs = [
        cgutils.alloca_once_value(builder, ir.Constant(dvtype, None)) for _ in range(ACCUMULATORS)
    ]

    def add_terms(acc, first, mask):
        t = builder.fsub(load_a(first, mask), load_b(first, mask))
        builder.store(builder.fadd(builder.load(acc), builder.fmul(t, t)), acc)

    block = LANES * ACCUMULATORS
    n_blocks = builder.sdiv(n, ir.Constant(i64, block))
    with cgutils.for_range(builder, n_blocks, intp=i64) as loop:
        start = builder.mul(loop.index, ir.Constant(i64, block))
        for a, acc in enumerate(accs):
            add_terms(acc, builder.add(start, ir.Constant(i64, a * LANES)), None)
    # the last n % block elements: steps of LANES, step s into accumulator s, masked
    done = builder.mul(n_blocks, ir.Constant(i64, block))
    lane_ids = ir.Constant(ir.VectorType(i64, LANES), list(range(LANES)))
    for a, acc in enumerate(accs):
        first = builder.add(done, ir.Constant(i64, a * LANES))
        with builder.if_then(builder.icmp_signed("<", first, n)):
            left = splat(builder, builder.sub(n, first), LANES)
            add_terms(acc, first, builder.icmp_signed("<", lane_ids, left))
    v = [builder.load(acc) for acc in accs]
    total = builder.fadd(builder.fadd(v[0], v[1]), builder.fadd(v[2], v[3]))
    lanes = [builder.extract_element(total, ir.Constant(i32, k)) for k in range(LANES)]
    pairs = [builder.fadd(lanes[k], lanes[k + 1]) for k in range(0, LANES, 2)]
    return builder.fadd(builder.fadd(pairs[0], pairs[1]), builder.fadd(pairs[2], pairs[3]))
