"""Explicit-SIMD register tiles of the linear loss kernel (LLVM IR through ``@intrinsic``).

The fused loss kernel (:mod:`fastcls.kernels.losses`) spends its time in two skinny
products over a block of rows ``xb`` (rows x ``Dp``) and the weights ``WT`` (C x ``Dp``):

* ``scores_tile``: the ``NR x NC`` dot products ``xb[j + r] . WT[c + k]`` over a range of
  ``nvec`` vectors of features, reduced to scalars;
* ``update_tile``: the rank-``NR`` update ``acc[c + k] += sum_r g[j + r, c + k] xb[j + r]``
  over the same range.

Why not numba loops (which LLVM vectorises well enough): LLVM chooses 256-bit vectors on
the AVX-512 CPUs it tunes for ``prefer-256-bit`` (Ice Lake, Sapphire Rapids: the measured
Xeon), and there is no per-function switch from numba. Vector types written explicitly in
the IR are kept at their width (numba functions carry no ``min-legal-vector-width``
attribute, so LLVM treats 512-bit vectors as legal): measured in cache on the Xeon,
``xb`` and ``WT`` 64-byte aligned, float32, D=3072, C=10, 32 rows, one thread: scores
90 GFLOP/s with numba's ymm loop, 103 with zmm; misaligned rows (D=3073) 86 and 74.
Alignment matters as much as width: a 64-byte load that straddles two cache lines
costs two, so the kernel copies each block of rows into an aligned, zero-padded scratch
(``Dp`` a multiple of 16 float32 / 8 float64) and keeps ``WT`` and the accumulator in the
same layout; the zero padding adds exact zeros, so no tail loop exists.

Only generic IR is emitted (vector loads, ``llvm.fma`` or multiplies and adds,
shuffles): it compiles on any CPU. An ISA without FMA would turn ``llvm.fma`` into
library calls, so the ``"portable"`` tiles multiply, then add.

Tiles (registers: accumulators + operands must fit the register file):

* ``"avx512"``: 64-byte vectors, scores 4 x 5 (20 accumulators + 9 operands of 32 zmm),
  update 4 x 5 (20 broadcast weights + 4 rows + 1 accumulator);
* ``"avx2"``: 32-byte vectors, scores 4 x 2 (8 + 6 of 16 ymm), update 4 x 2 (8 + 4 + 1);
* ``"portable"``: 32-byte vectors (any ISA: LLVM splits them into two 16-byte halves on
  SSE2 and NEON, so 4 accumulators are 8 independent chains), 4 x 1, multiply then add.
  Until 0.1.x this was numba loops with reassociation, vectorised by LLVM at whatever
  width and interleave it chose for each compiled copy: the parallel and serial twins
  could sum in different orders. Written lanes give every copy, and every CPU, the same
  bits. Compiled for the x86-64 baseline (SSE2), svm_loss D=3073 C=10 float32 runs as
  fast as those loops did (N=10000: 41-42 vs 42 ms on 1 thread, 21-22 vs 21-22 on 2;
  N=256 1.07-1.08 vs 1.04-1.12 ms); with 16-byte vectors (4 chains) it was 15% slower.

Accuracy: each lane sums ``nvec`` products in the working precision (the caller keeps
ranges to ``D_CHUNK`` features and adds the tile sums to float64), then the lanes are
added by a fixed tree: results depend on no thread count.
"""

from __future__ import annotations

from numba import types
from numba.extending import intrinsic

from fastcls.kernels._llvm_ir import (
    gathered_row_pointers,
    horizontal_sums,
    load_item,
    masked_load_function,
    opaque_pointers,
    row_pointers,
    splat,
)

#: bytes per vector and (rows, classes) of the score and update tiles, per micro-kernel
TILE_SHAPES = {"avx512": (64, 4, 5), "avx2": (32, 4, 2), "portable": (32, 4, 1)}


def _row_pointers(builder, context, arr_type, arr_value, first, count):
    """``count`` byte pointers to rows ``first, first + 1, ...`` of a C-contiguous 2-D array."""
    arr = context.make_array(arr_type)(context, builder, arr_value)
    return row_pointers(builder, arr, first, count)


def prefetch_to_l2(builder, pointer):
    """``llvm.prefetch`` of the line at the byte pointer ``pointer``: read, into L2 / L3."""
    from llvmlite import ir
    from numba.core import cgutils

    i32 = ir.IntType(32)
    i8p = ir.IntType(8).as_pointer()
    fn = cgutils.get_or_insert_function(
        builder.module,
        ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
        "llvm.prefetch.p0" if opaque_pointers() else "llvm.prefetch.p0i8",
    )
    # locality 1 (prefetcht2) rather than 2 (prefetcht1): svm_loss N=10000 on the Xeon,
    # alternated runs, 16.0-16.4 vs 16.8-17.1 ms on 1 thread, 7.9-8.1 vs 8.1-8.3 on 2
    flags = [ir.Constant(i32, 0), ir.Constant(i32, 1), ir.Constant(i32, 1)]
    builder.call(fn, [pointer, *flags])


def _prefetch_base(builder, context, signature, args, arg_numbers, own_row, own_first, itemsize):
    """The byte pointer a tile's step 0 prefetches (step ``k``: ``k`` vectors further).

    ``arg_numbers`` = the positions of ``(X, nxt, pf_at, pf_d0, pf)`` in ``args``: with
    ``pf`` true, ``X[nxt[pf_at]]`` (clamped into ``X``) at feature ``pf_d0``; otherwise the tile's
    own row ``own_row`` (a byte pointer) at feature ``own_first``, which the step reads
    anyway, so the prefetch costs one instruction and no branch (a second copy of the
    tile's loops for the prefetching calls cost 0.2-0.7 s of a cold README tour).
    """
    from llvmlite import ir

    i64 = ir.IntType(64)
    x_arg, row_arg, at_arg, d0_arg, pf_arg = arg_numbers
    other = gathered_row_pointers(
        builder, context, signature, args, x_arg, row_arg, 1, args[at_arg]
    )[0]
    other = builder.gep(other, [builder.mul(args[d0_arg], ir.Constant(i64, itemsize))])
    own = builder.gep(own_row, [builder.mul(own_first, ir.Constant(i64, itemsize))])
    return builder.select(args[pf_arg], other, own)


def _vector_load(builder, base, byte_offset, vtype):
    """Unaligned load of a ``vtype`` vector at ``base + byte_offset`` (alignment not assumed)."""
    ptr = builder.gep(base, [byte_offset])
    return builder.load(builder.bitcast(ptr, vtype.as_pointer()), align=1)


def _vector_store(builder, value, base, byte_offset):
    ptr = builder.gep(base, [byte_offset])
    builder.store(value, builder.bitcast(ptr, value.type.as_pointer()), align=1)


def _element_info(context, dtype):
    """(LLVM element type, bytes) of a float32 / float64 numba dtype."""
    return context.get_value_type(dtype), 4 if dtype == types.float32 else 8


def _vector_types(context, builder, dtype, vec_bytes, fused):
    """``(itemsize, lanes, vector type, llvm.fma or None)`` of a tile on ``vec_bytes``
    vectors of the float dtype ``dtype`` (``fused``: multiply-adds through ``llvm.fma``)."""
    from llvmlite import ir

    ftype, itemsize = _element_info(context, dtype)
    lanes = vec_bytes // itemsize
    vtype = ir.VectorType(ftype, lanes)
    return itemsize, lanes, vtype, _fma_function(builder, vtype) if fused else None


def _fma_function(builder, vtype):
    """The ``llvm.fma`` intrinsic of the float vector type ``vtype``, declared once per module."""
    from llvmlite import ir
    from numba.core import cgutils

    suffix = f"v{vtype.count}{'f32' if isinstance(vtype.element, ir.FloatType) else 'f64'}"
    return cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vtype, [vtype, vtype, vtype]), f"llvm.fma.{suffix}"
    )


#: ``mode`` of the scores tile: read the packed rows / pack them from ``X`` on the way
PLAIN, PACK = 0, 1


def _multiply_add(builder, fma, a, b, c):
    """``a * b + c``: one ``llvm.fma`` when ``fma`` is given, else a multiply then an add
    (strict: no fusing, so the bits do not depend on whether the CPU has FMA)."""
    if fma is not None:
        return builder.call(fma, [a, b, c])
    return builder.fadd(builder.fmul(a, b), c)


def _make_scores_tile(vec_bytes: int, nr: int, nc: int, fused: bool = True):
    """Intrinsic ``scores(xb, WT, j, c, d0, nvec, X, src, mode, nxt, pf_at, pf_d0, pf)``.

    Returns UniTuple(float64, nr * nc): entry ``r * nc + k`` is
    ``sum(xb[j + r, d] * WT[c + k, d])`` over ``d`` in ``[d0, d0 + nvec * lanes)``
    (``lanes = vec_bytes / itemsize``), accumulated in the dtype of the arrays
    (C-contiguous, one float dtype) and returned as float64.

    ``mode`` (int64): ``PLAIN`` reads the rows from ``xb``. ``PACK`` reads them from
    ``X[src[j + r]]`` (``src`` int64 row numbers of ``X``; features at or beyond
    ``X.shape[1]`` are never read: the last vectors are masked loads, zero-filled) and
    stores what it read into ``xb[j + r]``: the packing copy and the first pass of the
    scores are one pass (a separate aligned copy cost as much as the arithmetic on it).

    With ``pf`` true each step also prefetches, into L2 / L3, one line of the row
    ``X[nxt[pf_at]]`` (clamped into ``X``; a prefetch never faults): the bytes from feature
    ``pf_d0`` on, one vector's worth per step. The driver gives each call one segment of
    the rows the next block packs (see ``_prefetch_segment`` in
    :mod:`fastcls.kernels.losses`), so the next block streams in while this one computes.
    """

    @intrinsic
    def scores(typingctx, xb, wt, j, c, d0, nvec, X, src, mode, nxt, pf_at, pf_d0, pf):
        sig = types.UniTuple(types.float64, nr * nc)(
            xb, wt, types.int64, types.int64, types.int64, types.int64, X, src, types.int64,
            nxt, types.int64, types.int64, types.boolean,
        )  # fmt: skip

        def codegen(context, builder, signature, args):
            from llvmlite import ir
            from numba.core import cgutils

            i32 = ir.IntType(32)
            i64 = ir.IntType(64)
            itemsize, lanes, vtype, fma = _vector_types(
                context, builder, signature.args[0].dtype, vec_bytes, fused
            )
            masked_load = masked_load_function(builder, vtype)
            xb_rows = _row_pointers(builder, context, signature.args[0], args[0], args[2], nr)
            wp = _row_pointers(builder, context, signature.args[1], args[1], args[3], nc)
            src = gathered_row_pointers(builder, context, signature, args, 6, 7, nr, args[2])
            n_features = cgutils.unpack_tuple(
                builder, context.make_array(signature.args[6])(context, builder, args[6]).shape, 2
            )[1]
            d0_, nvec_ = args[4], args[5]
            accs = [
                cgutils.alloca_once_value(builder, ir.Constant(vtype, None)) for _ in range(nr * nc)
            ]
            lane_ids = ir.Constant(ir.VectorType(i64, lanes), list(range(lanes)))
            pf_base = _prefetch_base(
                builder, context, signature, args, (6, 9, 10, 11, 12), xb_rows[0], d0_, itemsize
            )

            def body(first, stop, rows, pack, masked):
                """Steps ``first .. stop - 1`` of the tile (vectors of ``lanes`` features)."""
                count = builder.sub(stop, first)
                with cgutils.for_range(builder, count, intp=i64) as loop:
                    k = builder.add(first, loop.index)
                    elem = builder.add(d0_, builder.mul(k, ir.Constant(i64, lanes)))
                    off = builder.mul(elem, ir.Constant(i64, itemsize))
                    step = builder.mul(k, ir.Constant(i64, vec_bytes))
                    prefetch_to_l2(builder, builder.gep(pf_base, [step]))
                    if masked:  # lanes at or beyond the last feature of X: zeros, not read
                        limit = splat(builder, builder.sub(n_features, elem), lanes)
                        mask = builder.icmp_signed("<", lane_ids, limit)
                        xv = []
                        for p in rows:
                            ptr = builder.bitcast(builder.gep(p, [off]), vtype.as_pointer())
                            zero = ir.Constant(vtype, None)
                            xv.append(
                                builder.call(masked_load, [ptr, ir.Constant(i32, 1), mask, zero])
                            )
                    else:
                        xv = [_vector_load(builder, p, off, vtype) for p in rows]
                    if pack:
                        for v, p in zip(xv, xb_rows, strict=True):
                            _vector_store(builder, v, p, off)
                    wv = [_vector_load(builder, p, off, vtype) for p in wp]
                    for r in range(nr):
                        for kk in range(nc):
                            acc = accs[r * nc + kk]
                            new = _multiply_add(builder, fma, xv[r], wv[kk], builder.load(acc))
                            builder.store(new, acc)

            zero64 = ir.Constant(i64, 0)
            # steps whose vector lies entirely inside the features of X
            inside = builder.sdiv(builder.sub(n_features, d0_), ir.Constant(i64, lanes))
            inside = builder.select(builder.icmp_signed("<", inside, zero64), zero64, inside)
            inside = builder.select(builder.icmp_signed("<", inside, nvec_), inside, nvec_)
            is_plain = builder.icmp_signed("==", args[8], ir.Constant(i64, PLAIN))
            with builder.if_else(is_plain) as (plain, packing):
                with plain:
                    body(zero64, nvec_, xb_rows, False, False)
                with packing:
                    body(zero64, inside, src, True, False)
                    body(inside, nvec_, src, True, True)
            sums = horizontal_sums(builder, [builder.load(a) for a in accs], lanes, builder.fadd)
            if itemsize == 4:
                sums = [builder.fpext(v, ir.DoubleType()) for v in sums]
            return context.make_tuple(builder, signature.return_type, sums)

        return sig, codegen

    return scores


def _make_update_tile(vec_bytes: int, nr: int, nc: int, fused: bool = True):
    """Intrinsic ``update(xb, g, j, acc, c, d0, nvec, X, nxt, pf_at, pf_d0, pf)``: rank-nr update.

    ``acc[c + k, d] += sum_r g[j + r, c + k] * xb[j + r, d]`` for ``d`` in
    ``[d0, d0 + nvec * lanes)``; ``g`` (rows x C), ``xb`` and ``acc`` share one float dtype.

    With ``pf`` true each step also prefetches, into L2 / L3, one vector's worth of the row
    ``X[nxt[pf_at]]`` from feature ``pf_d0`` on (int64 row numbers, clamped into ``X``; a
    prefetch never faults), as the scores tile does.
    """

    @intrinsic
    def update(typingctx, xb, g, j, acc, c, d0, nvec, X, nxt, pf_at, pf_d0, pf):
        sig = types.none(
            xb, g, types.int64, acc, types.int64, types.int64, types.int64, X, nxt,
            types.int64, types.int64, types.boolean,
        )  # fmt: skip

        def codegen(context, builder, signature, args):
            from llvmlite import ir
            from numba.core import cgutils

            i64 = ir.IntType(64)
            itemsize, lanes, vtype, fma = _vector_types(
                context, builder, signature.args[0].dtype, vec_bytes, fused
            )
            xp = _row_pointers(builder, context, signature.args[0], args[0], args[2], nr)
            ap = _row_pointers(builder, context, signature.args[3], args[3], args[4], nc)
            garr = context.make_array(signature.args[1])(context, builder, args[1])
            splats = []
            for r in range(nr):
                row = []
                for k in range(nc):
                    at = [
                        builder.add(args[2], ir.Constant(i64, r)),
                        builder.add(args[4], ir.Constant(i64, k)),
                    ]
                    value = load_item(builder, context, signature.args[1], garr, at)
                    row.append(splat(builder, value, lanes))
                splats.append(row)
            start = builder.mul(args[5], ir.Constant(i64, itemsize))
            pf_base = _prefetch_base(
                builder, context, signature, args, (7, 8, 9, 10, 11), xp[0], args[5], itemsize
            )
            with cgutils.for_range(builder, args[6], intp=i64) as loop:
                step = builder.mul(loop.index, ir.Constant(i64, vec_bytes))
                off = builder.add(start, step)
                xv = [_vector_load(builder, p, off, vtype) for p in xp]
                prefetch_to_l2(builder, builder.gep(pf_base, [step]))
                for k in range(nc):
                    a = _vector_load(builder, ap[k], off, vtype)
                    for r in range(nr):
                        a = _multiply_add(builder, fma, splats[r][k], xv[r], a)
                    _vector_store(builder, a, ap[k], off)
            return context.get_dummy_value()

        return sig, codegen

    return update


scores_tile_avx512 = _make_scores_tile(*TILE_SHAPES["avx512"])
update_tile_avx512 = _make_update_tile(*TILE_SHAPES["avx512"])
scores_tile_avx2 = _make_scores_tile(*TILE_SHAPES["avx2"])
update_tile_avx2 = _make_update_tile(*TILE_SHAPES["avx2"])
# no FMA: llvm.fma on a CPU without one is a library call per lane
scores_tile_portable = _make_scores_tile(*TILE_SHAPES["portable"], fused=False)
update_tile_portable = _make_update_tile(*TILE_SHAPES["portable"], fused=False)


def _make_sparse_update_tile(vec_bytes: int, nvec: int, fused: bool = True):
    """Intrinsic ``sparse_update(xb, lists, weights, acc, total, d0)``: every list of a block.

    For each list ``c`` of the ``C + 1`` rows of ``lists`` (int64; the list's length in
    its last column) and ``weights`` (the dtype of ``xb``), and each feature ``d`` in
    ``[d0, d0 + nvec * lanes)``: ``acc[c, d] += sum_e weights[c, e] * xb[lists[c, e], d]``
    for ``c < C``, and the same into ``total[0, d]`` for the last list ``c = C``, the
    entries in order. A list's ``nvec`` vectors stay in registers while its rows pass:
    an entry costs its row's loads and as many FMAs. The multiclass SVM's derivative has
    about 2 nonzeros per row of 10 classes once training is under way (and 2 entries per
    row in the complement form at the start), where the dense update tile pays all ``C``;
    one call walks every list (a call per list cost more than its 1-2 entries).
    """

    @intrinsic
    def sparse_update(typingctx, xb, lists, weights, acc, total, d0):
        sig = types.none(xb, lists, weights, acc, total, types.int64)

        def codegen(context, builder, signature, args):
            from llvmlite import ir
            from numba.core import cgutils

            i64 = ir.IntType(64)
            itemsize, lanes, vtype, fma = _vector_types(
                context, builder, signature.args[0].dtype, vec_bytes, fused
            )
            start = builder.mul(args[5], ir.Constant(i64, itemsize))
            offsets = [builder.add(start, ir.Constant(i64, v * vec_bytes)) for v in range(nvec)]
            xb_arr = context.make_array(signature.args[0])(context, builder, args[0])
            lists_arr = context.make_array(signature.args[1])(context, builder, args[1])
            w_arr = context.make_array(signature.args[2])(context, builder, args[2])
            acc_arr = context.make_array(signature.args[3])(context, builder, args[3])
            total_row = _row_pointers(
                builder, context, signature.args[4], args[4], ir.Constant(i64, 0), 1
            )[0]
            n_lists, width = cgutils.unpack_tuple(builder, lists_arr.shape, 2)
            last = builder.sub(width, ir.Constant(i64, 1))
            C = builder.sub(n_lists, ir.Constant(i64, 1))
            accs = [cgutils.alloca_once(builder, vtype) for _ in range(nvec)]
            with cgutils.for_range(builder, n_lists, intp=i64) as lists_loop:
                c = lists_loop.index
                n = load_item(builder, context, signature.args[1], lists_arr, [c, last])
                with builder.if_then(builder.icmp_signed(">", n, ir.Constant(i64, 0))):
                    own = row_pointers(builder, acc_arr, c, 1)[0]
                    ap = builder.select(builder.icmp_signed("==", c, C), total_row, own)
                    for acc, off in zip(accs, offsets, strict=True):
                        builder.store(_vector_load(builder, ap, off, vtype), acc)
                    with cgutils.for_range(builder, n, intp=i64) as loop:
                        e = loop.index
                        r = load_item(builder, context, signature.args[1], lists_arr, [c, e])
                        wt = load_item(builder, context, signature.args[2], w_arr, [c, e])
                        w = splat(builder, wt, lanes)
                        xp = row_pointers(builder, xb_arr, r, 1)[0]
                        for acc, off in zip(accs, offsets, strict=True):
                            x = _vector_load(builder, xp, off, vtype)
                            builder.store(_multiply_add(builder, fma, w, x, builder.load(acc)), acc)
                    for acc, off in zip(accs, offsets, strict=True):
                        _vector_store(builder, builder.load(acc), ap, off)
            return context.get_dummy_value()

        return sig, codegen

    return sparse_update


#: vectors per call of the sparse update tiles (accumulators held in registers), by
#: micro-kernel. No zmm tiles: there the dense update measured faster on 2 threads
#: (see ``SPARSE_UPDATE`` in :mod:`fastcls.kernels.losses`)
SPARSE_VECTORS = {"avx2": 8, "portable": 4}
sparse_update_avx2 = _make_sparse_update_tile(32, SPARSE_VECTORS["avx2"])
sparse_update_portable = _make_sparse_update_tile(32, SPARSE_VECTORS["portable"], fused=False)
# one vector: the features left after the whole groups of SPARSE_VECTORS
sparse_update_avx2_1 = _make_sparse_update_tile(32, 1)
sparse_update_portable_1 = _make_sparse_update_tile(32, 1, fused=False)
