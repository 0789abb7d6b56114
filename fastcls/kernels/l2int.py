"""Exact integer squared-L2 top-k for uint8 rows: ``|q|^2 + |x|^2 - 2 q.x`` in integers.

Public kernels: ``sqeuclidean_topk_int(Q, X, offset, best_d, best_i)`` (uint8 Q and X,
the top-k contract of :mod:`fastcls.kernels.topk`) and ``sqeuclidean_pairwise_int(X, Y,
out)`` (the same exact values as a matrix). :func:`int_impl` names the chosen
micro-kernel; ``settings.l2_uint8_impl`` forces one (tests run each in turn).

Every quantity is an integer: the norms in int64, the cross term ``q.x`` as an integer
matrix product with int32 accumulators, the distance in int64, then stored as float64
(exact below ``2^53``). So the result is the reference's distance bit for bit and no
rerank or certificate is needed; ties keep the lower index by the scan order.

Micro-kernels (register tiles of ``NQ`` queries x ``NX`` training rows, every loaded
vector used ``NX`` or ``NQ`` times; called through a numba ``@intrinsic`` in LLVM IR,
like the ``vpsadbw`` L1 kernel):

* ``"amx"`` (Intel AMX-INT8, Sapphire Rapids and later, where Linux grants the tiles):
  ``tdpbusd`` on tile registers (16 x 16 x 64 multiply-adds per instruction), the same
  shifted queries as ``"vnni"``; :func:`fastcls.kernels.amx.topk_int8`. Up to
  :data:`AMX_MAX_FEATURES` features (int32 accumulators over the whole row); more take
  the next implementation. On the Xeon: 24 ms against the
  VNNI tile's 79 (1000 x 10000 x 3072, 2 threads).
* ``"vnni"`` (AVX-512 VNNI, 4 x 4, 64-byte vectors): ``vpdpbusd`` multiplies unsigned
  by *signed* bytes and adds groups of 4 products into int32 lanes (64 multiply-adds
  per instruction). The queries are shifted once, ``q_s = q - 128`` (``q ^ 0x80`` read
  as int8), and ``q.x = q_s.x + 128 * sum(x)``: the row sums come with the norms.
* ``"avxvnni"`` (AVX-VNNI without AVX-512: Intel client CPUs from Alder Lake on, the
  E-core Xeons; 4 x 2, 32-byte vectors): the VEX form of ``vpdpbusd`` on ymm, the same shifted
  queries as ``"vnni"`` (32 multiply-adds and the add in one instruction). On the Xeon
  compiled for Haswell plus AVX-VNNI: 2.5x FAISS's float32 search, against 1.3x for the
  ``"avx2"`` tile (4 x 3 and 4 x 4 tiles: 1% and 16% slower).
* ``"avx512bw"`` (AVX-512BW without VNNI: Skylake-SP/X; 4 x 4, 32-feature steps): the
  ``"avx2"`` tile below on zmm, ``vpmaddwd`` and ``vpaddd`` on rows widened to int16.
  Forced on the Xeon: 133 ms against the ymm tile's 191 (1000 x 10000 x 3072; FAISS
  float32 200 ms).
* ``"avx2"`` (AVX2, 4 x 2, 16-feature steps): ``vpmaddwd`` on rows the driver has
  widened to int16 (16 multiply-adds per instruction on ymm, plus one ``vpaddd``). The
  query chunk and each training block are widened once into padded copies; widening
  inside the tile (``vpmovzxbw``) cost 6 shuffles per 16 vector operations, and on
  Intel the shuffle port is one of the three the adds can use (1.2x slower). Two
  vector operations per 16 multiply-adds against one per 8 for a float32 FMA: this
  tile's ceiling is 1.5x float32 GEMM with 3 vector ports (Intel), 2x with 4 (Zen 3).
* ``"portable"`` (any CPU, 4 x 2): an int32 loop LLVM vectorises as it can.

Feature counts that are not a multiple of the vector width take one extra vector that
*ends* at the last feature (it overlaps the previous one); the query bytes of the
overlap are zeroed by a lane mask, so each product is counted once (or, for ``"vnni"``
with enough queries and always for the int16 tiles, the rows are copied zero-padded).
Calls with fewer features than one ``"vnni"`` vector take the portable kernel.

int32 bounds: per product ``|q_s x| <= 128 * 255`` (vnni, avxvnni) or ``255^2`` (avx2,
portable); the int32 accumulators are reduced to int64 every ``_SEG_BYTES = 32768``
features (``255^2 * (32768 + 16) < 2^31``), so any ``D`` is exact.

Layout: parallel over contiguous chunks of queries (``prange``); each thread walks
the training rows in cache blocks (``settings.l2_int_block_rows`` / ``_block_bytes`` /
``_wide_block_bytes``: see :func:`_sizes`) and,
per tile, merges the ``NQ x NX`` exact distances into the running top-k of each
query in increasing row order. Results depend on no tile size or thread count.
"""

from __future__ import annotations

import numpy as np
from numba import prange, types
from numba.core.errors import TypingError
from numba.extending import intrinsic, overload

from fastcls._config import jit, settings
from fastcls._runtime import scratch
from fastcls.kernels import amx, prune
from fastcls.kernels._llvm_ir import (
    any_lane,
    ranges_with_early_exit,
    row_pointers,
    tail_mask,
    transposed_tree,
)
from fastcls.kernels._rows import (
    aligned_zero_rows,
    padded_block,
    padded_chunk,
    store_tuple,
    zero_padded,
)
from fastcls.kernels._tokens import impl_token, token_code
from fastcls.kernels.prune import int_threshold
from fastcls.kernels.slab import driver_slab, l2_slab_tiles
from fastcls.kernels.topk import insert_sorted, run_serial

#: int32 accumulators are reduced to int64 at least every this many features
_SEG_BYTES = 32768

#: implementation name -> the code of its token (:func:`._tokens.impl_token`)
INT_CODES = {"portable": 0, "avx2": 1, "vnni": 2, "avxvnni": 3, "avx512bw": 4, "amx": 5}

#: the AMX int8 tiles accumulate in int32 over a whole row: ``128 * 255 * D < 2^31``
AMX_MAX_FEATURES = 65536

#: the implementations whose tiles read rows widened to int16 (``vpmaddwd``), and the
#: int16 lanes of their vectors
_WIDE_LANES = {"avx2": 16, "avx512bw": 32}

#: human-readable description of each implementation (``fastcls info``)
INT_DESCRIPTIONS = {
    "amx": (
        "tdpbusd on AMX tiles (16 x 16 x 64 multiply-adds per instruction), 32 x 32 blocks; "
        "calls below settings.l2_amx_min_work take the next kernel"
    ),
    "vnni": "vpdpbusd zmm (AVX-512 VNNI), 4x4 register tile",
    "avxvnni": "vpdpbusd ymm (AVX-VNNI, VEX), 4x2 register tile",
    "avx512bw": "vpmaddwd zmm on rows widened to int16 (AVX-512BW), 4x4 register tile",
    "avx2": "vpmaddwd ymm on rows widened to int16 (AVX2), 4x2 register tile",
    "portable": "int32 loop (LLVM auto-vectorised), 4x2 register tile",
}

#: CPU flags each implementation needs
_REQUIRED = {
    "vnni": ("avx512f", "avx512bw", "avx512vnni"),
    "avxvnni": ("avx2", "avxvnni"),
    "avx512bw": ("avx512f", "avx512bw"),
    "avx2": ("avx2",),
}


# --------------------------------------------------------------------------- intrinsics
def _make_dot_intrinsic(isa: str, nq: int, nx: int, pruned: bool = False):
    """Numba intrinsic: the ``nq x nx`` integer dot products of a register tile.

    ``dots(Qb, X, qa, qlast, ja, jlast)`` -> UniTuple(int64, nq * nx), entry
    ``a * nx + b`` = ``Qb[min(qa + a, qlast)] . X[min(ja + b, jlast)]`` over all
    ``D = X.shape[1] >= width`` bytes (rows of 2-D C-contiguous uint8 arrays). For
    ``"vnni"`` the bytes of ``Qb`` are read as int8 (the caller shifted them).

    ``pruned``: the tiles of :func:`_topk_int_chunk_pruned`, ``sweep(Qb, X, qa, qlast,
    jlast, xsub, tiles, n_tiles, cuts, qbound, wct, out_tiles, out_sums)`` -> int64, on
    rows of whole vectors (padded, at most ``_SEG_BYTES`` features: one segment). For each
    of the row pairs ``tiles[:n_tiles]`` (global numbers; ``X`` holds row ``j`` at
    ``j - xsub``, clamped to ``jlast``), it sums the vectors up to ``cuts[0]``, then checks
    the partial distances of its pairs, ``qbound[0, a * nx + b] + wct[0, j + b] - 2 dot <
    0`` (``qbound``: the query's norm over the features so far less its threshold;
    ``wct``: the row's ``w`` over them, a row per cut and a column per training row, with
    ``nx - 1`` columns of padding), goes on to ``cuts[1]`` if any is below, and so on. The
    tiles with a pair still below at their last cut are written, in order, to
    ``out_tiles`` (their row) and ``out_sums`` (their ``nq * nx`` int32 dot products, lane
    ``a * nx + b``); returns their number. ``out_tiles`` may be ``tiles`` itself. One loop
    over the tiles, so that what they share stays in registers (called once per tile, a
    tile's own setup and check cost as much as 7-15 vector steps on Zen 3).
    """
    from llvmlite import ir
    from numba.core import cgutils

    i8, i16, i32, i64 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
    if isa == "vnni":
        itemsize, width = 1, 64
        vacc = ir.VectorType(i32, 16)
        vload = ir.VectorType(i8, 64)
    elif isa == "avxvnni":
        itemsize, width = 1, 32
        vacc = ir.VectorType(i32, 8)
        vload = ir.VectorType(i8, 32)
    else:  # "avx2" / "avx512bw": rows widened to int16 by the driver
        itemsize, width = 2, _WIDE_LANES[isa]
        vacc = ir.VectorType(i32, width // 2)
        vload = ir.VectorType(i16, width)
    seg_vectors = _SEG_BYTES // width

    def sweep(context, builder, signature, args, accs, step):
        """The pruned tiles of a list of row pairs: early exit, check, compaction."""
        lanes = vacc.count  # == nq * nx
        vwide = ir.VectorType(i64, lanes)
        vrow = ir.VectorType(i64, nx)
        xarr = context.make_array(signature.args[1])(context, builder, args[1])
        jlast_, xsub = args[4], args[5]
        tarr = context.make_array(signature.args[6])(context, builder, args[6])
        n_tiles = args[7]
        carr = context.make_array(signature.args[8])(context, builder, args[8])
        n_cuts = cgutils.unpack_tuple(builder, carr.shape, 1)[0]
        qbarr = context.make_array(signature.args[9])(context, builder, args[9])
        wtarr = context.make_array(signature.args[10])(context, builder, args[10])
        wt_cols = cgutils.unpack_tuple(builder, wtarr.shape, 2)[1]
        otarr = context.make_array(signature.args[11])(context, builder, args[11])
        osarr = context.make_array(signature.args[12])(context, builder, args[12])
        n_slot = cgutils.alloca_once_value(builder, ir.Constant(i64, 0))
        sums_slot = cgutils.alloca_once_value(builder, ir.Constant(vacc, None))
        below_slot = cgutils.alloca_once_value(builder, ir.Constant(ir.IntType(1), 0))
        spread = ir.Constant(ir.VectorType(i32, lanes), [t % nx for t in range(lanes)])
        with cgutils.for_range(builder, n_tiles, intp=i64) as loop:
            row = builder.load(builder.gep(tarr.data, [loop.index]))
            xp = row_pointers(builder, xarr, builder.sub(row, xsub), nx, last=jlast_)
            wt_row0 = builder.gep(wtarr.data, [row])  # this tile's first row, cut 0
            for acc in accs:
                builder.store(ir.Constant(vacc, None), acc)

            def check(r):
                # the bound of pair (a, b) at cut r: qbound[r, a * nx + b] (its query's
                # norm so far less its threshold, made by the driver once per query
                # tile) plus its row's, wct[r, row + b]: two loads and a broadcast
                loaded = [builder.load(acc) for acc in accs]
                ((sums, _),) = transposed_tree(builder, loaded, lanes, builder.add)
                qptr = builder.gep(qbarr.data, [builder.mul(r, ir.Constant(i64, lanes))])
                qpart = builder.load(builder.bitcast(qptr, vwide.as_pointer()), align=8)
                wptr = builder.gep(wt_row0, [builder.mul(r, wt_cols)])
                wrow = builder.load(builder.bitcast(wptr, vrow.as_pointer()), align=8)
                bound = builder.add(qpart, builder.shuffle_vector(wrow, wrow, spread))
                twice = builder.shl(builder.sext(sums, vwide), ir.Constant(vwide, [1] * lanes))
                below = builder.icmp_signed(">", twice, bound)  # qn + w - 2 dot < threshold
                any_below = any_lane(builder, below)
                builder.store(sums, sums_slot)
                builder.store(any_below, below_slot)
                return any_below

            ranges_with_early_exit(
                builder, carr.data, n_cuts, width, lambda off: step(off, None, xp), check
            )
            with builder.if_then(builder.load(below_slot)):
                n = builder.load(n_slot)
                builder.store(row, builder.gep(otarr.data, [n]))
                sptr = builder.gep(osarr.data, [builder.mul(n, ir.Constant(i64, lanes))])
                builder.store(
                    builder.load(sums_slot), builder.bitcast(sptr, vacc.as_pointer()), align=4
                )
                builder.store(builder.add(n, ir.Constant(i64, 1)), n_slot)
        return builder.load(n_slot)

    def signature_of(Qb, X, extra):
        return types.UniTuple(types.int64, nq * nx)(Qb, X, *(types.int64,) * 4, *extra)

    def codegen(context, builder, signature, args):
        qarr = context.make_array(signature.args[0])(context, builder, args[0])
        xarr = context.make_array(signature.args[1])(context, builder, args[1])
        D = cgutils.unpack_tuple(builder, xarr.shape, 2)[1]
        qa_, qlast_ = args[2:4]
        qp = row_pointers(builder, qarr, qa_, nq, last=qlast_)
        if isa in ("vnni", "avxvnni"):
            # the 256-bit intrinsic is emitted as the VEX (AVX-VNNI) instruction on a
            # CPU with AVX-VNNI and no AVX-512 (tested on a target compiled that way)
            bits = 512 if isa == "vnni" else 256
            fn = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(vacc, [vacc, vacc, vacc]),
                f"llvm.x86.avx512.vpdpbusd.{bits}",
            )
        else:
            name = "llvm.x86.avx2.pmadd.wd" if isa == "avx2" else "llvm.x86.avx512.pmaddw.d.512"
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vacc, [vload, vload]), name
            )
        accs = [cgutils.alloca_once_value(builder, ir.Constant(vacc, None)) for _ in range(nq * nx)]
        lanes = vacc.count  # == nq * nx: one lane of the totals per dot product

        def step(off, mask, xp):
            """Accumulate one vector of every row at feature offset ``off``."""
            if itemsize > 1:
                off = builder.mul(off, ir.Constant(i64, itemsize))
            qv = []
            for p in qp:
                v = builder.load(builder.gep(p, [off], source_etype=i8), align=1, typ=vload)
                if mask is not None:
                    v = builder.select(mask, v, ir.Constant(vload, None))
                qv.append(v)
            xv = [
                builder.load(builder.gep(p, [off], source_etype=i8), align=1, typ=vload) for p in xp
            ]
            if isa in ("vnni", "avxvnni"):
                qv = [builder.bitcast(v, vacc) for v in qv]
                xv = [builder.bitcast(v, vacc) for v in xv]
            for a in range(nq):
                for b in range(nx):
                    acc = accs[a * nx + b]
                    if isa not in _WIDE_LANES:  # vpdpbusd: unsigned x bytes, signed q
                        new = builder.call(fn, [builder.load(acc), xv[b], qv[a]])
                    else:
                        new = builder.add(builder.load(acc), builder.call(fn, [qv[a], xv[b]]))
                    builder.store(new, acc)

        if pruned:
            return sweep(context, builder, signature, args, accs, step)
        xp = row_pointers(builder, xarr, args[4], nx, last=args[5])
        vtot = ir.VectorType(i64, lanes)
        total = cgutils.alloca_once_value(builder, ir.Constant(vtot, None))

        def flush():
            # lanes == nq * nx accumulators: one transposed tree, lane t = the sum of acc t
            ((sums, _),) = transposed_tree(
                builder, [builder.load(acc) for acc in accs], lanes, builder.add
            )
            builder.store(builder.add(builder.load(total), builder.sext(sums, vtot)), total)
            for acc in accs:
                builder.store(ir.Constant(vacc, None), acc)

        wconst = ir.Constant(i64, width)
        nfull = builder.sdiv(D, wconst)
        rem = builder.srem(D, wconst)
        segv = ir.Constant(i64, seg_vectors)
        # number of segments: ceil(nfull / segv), at least 1
        nseg = builder.sdiv(builder.add(nfull, ir.Constant(i64, seg_vectors - 1)), segv)
        one = ir.Constant(i64, 1)
        nseg = builder.select(builder.icmp_signed("<", nseg, one), one, nseg)
        with cgutils.for_range(builder, nseg, intp=i64) as seg:
            v0 = builder.mul(seg.index, segv)
            v1 = builder.add(v0, segv)
            v1 = builder.select(builder.icmp_signed("<", v1, nfull), v1, nfull)
            n_here = builder.sub(v1, v0)
            with cgutils.for_range(builder, n_here, intp=i64) as loop:
                off = builder.mul(builder.add(v0, loop.index), wconst)
                step(off, None, xp)
            is_last = builder.icmp_signed("==", seg.index, builder.sub(nseg, one))
            has_tail = builder.icmp_signed(">", rem, ir.Constant(i64, 0))
            with builder.if_then(builder.and_(is_last, has_tail)):
                # one vector ending at byte D; its first width - rem bytes are counted
                mask = tail_mask(builder, width, rem, vload.element)
                step(builder.sub(D, wconst), mask, xp)
            flush()
        tot = builder.load(total)
        sums = [builder.extract_element(tot, ir.Constant(i32, t)) for t in range(lanes)]
        return context.make_tuple(builder, signature.return_type, sums)

    if pruned:

        @intrinsic
        def sweep_tiles(
            typingctx, Qb, X, qa, qlast, jlast, xsub, tiles, n_tiles, cuts, qbound, wct,
            out_tiles, out_sums,
        ):  # fmt: skip
            for name, arr, dtype in (
                ("qbound", qbound, types.int64),
                ("wct", wct, types.int64),
                ("out_sums", out_sums, types.int32),
            ):
                ok = isinstance(arr, types.Array) and arr.ndim == 2 and arr.layout == "C"
                if not ok or arr.dtype != dtype:
                    raise TypingError(f"{name}: a 2-D C-contiguous {dtype} array")
            args = (Qb, X, *(types.int64,) * 4, tiles, types.int64, cuts, qbound, wct)
            return types.int64(*args, out_tiles, out_sums), codegen

        return sweep_tiles

    @intrinsic
    def dots(typingctx, Qb, X, qa, qlast, ja, jlast):
        return signature_of(Qb, X, ()), codegen

    return dots


_dots_vnni = _make_dot_intrinsic("vnni", 4, 4)
_dots_avxvnni = _make_dot_intrinsic("avxvnni", 4, 2)
_dots_avx2 = _make_dot_intrinsic("avx2", 4, 2)
_dots_avx512bw = _make_dot_intrinsic("avx512bw", 4, 4)


#: token code -> the pruned twin of a SIMD tile (:func:`_make_dot_intrinsic`). The AVX2
#: tile only, so far: the twins of the AVX-512 tiles (``"vnni"``, ``"avxvnni"``,
#: ``"avx512bw"``, the factory makes them) are left until a machine that runs them can test
#: and time them; those CPUs, AMX and the portable tile keep the unpruned driver
_PRUNED_DOTS = {1: _make_dot_intrinsic("avx2", 4, 2, pruned=True)}


@jit
def _dots_portable_seg(q0, q1, q2, q3, x0, x1):
    """int32 dot products of a 4 x 2 tile over at most ``_SEG_BYTES`` features."""
    s00 = s01 = s10 = s11 = s20 = s21 = s30 = s31 = np.int32(0)
    for d in range(q0.shape[0]):
        b0 = np.int32(x0[d])
        b1 = np.int32(x1[d])
        a = np.int32(q0[d])
        s00 = np.int32(s00 + a * b0)
        s01 = np.int32(s01 + a * b1)
        a = np.int32(q1[d])
        s10 = np.int32(s10 + a * b0)
        s11 = np.int32(s11 + a * b1)
        a = np.int32(q2[d])
        s20 = np.int32(s20 + a * b0)
        s21 = np.int32(s21 + a * b1)
        a = np.int32(q3[d])
        s30 = np.int32(s30 + a * b0)
        s31 = np.int32(s31 + a * b1)
    return s00, s01, s10, s11, s20, s21, s30, s31


@jit
def _dots_portable(Qb, X, qa, qlast, ja, jlast):
    """Portable 4 x 2 tile of exact dot products (int32 per segment, int64 total)."""
    D = X.shape[1]
    q0 = Qb[qa]
    q1 = Qb[min(qa + 1, qlast)]
    q2 = Qb[min(qa + 2, qlast)]
    q3 = Qb[min(qa + 3, qlast)]
    x0 = X[ja]
    x1 = X[min(ja + 1, jlast)]
    s00 = s01 = s10 = s11 = s20 = s21 = s30 = s31 = np.int64(0)
    for start in range(0, D, _SEG_BYTES):
        end = min(start + _SEG_BYTES, D)
        t = _dots_portable_seg(
            q0[start:end], q1[start:end], q2[start:end], q3[start:end],
            x0[start:end], x1[start:end],
        )  # fmt: skip
        s00 += t[0]
        s01 += t[1]
        s10 += t[2]
        s11 += t[3]
        s20 += t[4]
        s21 += t[5]
        s30 += t[6]
        s31 += t[7]
    return s00, s01, s10, s11, s20, s21, s30, s31


def _dots(impl, Qb, X, qa, qlast, ja, jlast):
    """Tile of exact dot products of implementation ``impl`` (a token, :mod:`._tokens`)."""
    raise NotImplementedError  # pragma: no cover - compiled through the overload below


@overload(_dots, jit_options={"nogil": True}, inline="always")
def _dots_overload(impl, Qb, X, qa, qlast, ja, jlast):
    # resolved at compile time on the token's type: only the chosen tile is compiled, so a
    # CPU without AVX2 never sees an x86 intrinsic. Inlined: as a call of its own the
    # tile took its 22 words of arguments on the stack and returned through memory, at
    # every tile
    code = token_code(impl)
    if code is None:
        return None
    fn = {0: _dots_portable, 1: _dots_avx2, 2: _dots_vnni, 3: _dots_avxvnni, 4: _dots_avx512bw}[
        code
    ]

    def impl_fn(impl, Qb, X, qa, qlast, ja, jlast):
        return fn(Qb, X, qa, qlast, ja, jlast)

    return impl_fn


def _tile_nx(impl):
    """Training rows per register tile of implementation ``impl``."""
    raise NotImplementedError  # pragma: no cover


@overload(_tile_nx, jit_options={"nogil": True})
def _tile_nx_overload(impl):
    code = token_code(impl)
    if code is None:
        return None
    nx = 4 if code in (2, 4) else 2  # 4 x 3 and 4 x 4 "avxvnni" tiles: 1% and 16% slower
    return lambda impl: nx


def _sweep_pruned(impl, Qb, X, qa, qlast, jlast, xsub, tiles, n, cuts, qbound, wct, out, sums):
    """The pruned tiles of implementation ``impl`` (:data:`_PRUNED_DOTS`)."""
    raise NotImplementedError  # pragma: no cover - compiled through the overload below


@overload(_sweep_pruned, jit_options={"nogil": True}, inline="always")
def _sweep_pruned_overload(
    impl, Qb, X, qa, qlast, jlast, xsub, tiles, n, cuts, qbound, wct, out, sums
):
    code = token_code(impl)
    if code not in _PRUNED_DOTS:
        return None
    fn = _PRUNED_DOTS[code]

    def impl_fn(impl, Qb, X, qa, qlast, jlast, xsub, tiles, n, cuts, qbound, wct, out, sums):
        return fn(Qb, X, qa, qlast, jlast, xsub, tiles, n, cuts, qbound, wct, out, sums)

    return impl_fn


def _chunk_rows_fn(impl):
    """How the tiles of ``impl`` read a query chunk's rows: a function
    ``(Q, X, c0, c1, width, block) -> (qb, xbuf, qsub, xb)``, chosen at compile time.

    ``qb``: the queries (row ``qi`` of ``Q`` at ``qi - qsub``); ``xbuf``: the scratch each
    training block is copied into (:func:`._rows.padded_block`); ``xb``: what the tiles
    read training rows from (``xbuf``, or ``X`` itself when ``width == 0``). The int16
    tiles (``"avx2"``, ``"avx512bw"``) read widened copies, ``width`` a multiple of their
    lanes (zero-extending bytes inside the tile took the shuffle port its adds need: 1.2x);
    the others read bytes (:func:`._rows.padded_chunk`). Returned as a value for the
    caller to call (see ``losses._scores_fn``: no compiled level of its own).
    """
    raise NotImplementedError  # pragma: no cover - compiled through the overload below


@overload(_chunk_rows_fn, jit_options={"nogil": True})
def _chunk_rows_fn_overload(impl):
    code = token_code(impl)
    if code is None:
        return None
    fn = _widened_chunk if code in (1, 4) else padded_chunk
    return lambda impl: fn


@jit
def _widened_chunk(Q, X, c0, c1, width, block):
    """:func:`_chunk_rows_fn` of the int16 tiles (``padded_chunk`` of the byte tiles)."""
    int16 = np.empty(0, dtype=np.int16)
    xbuf = aligned_zero_rows(min(block, X.shape[0]), width, int16)
    return zero_padded(Q, c0, c1, width, c1 - c0, int16), xbuf, c0, xbuf


@jit(inline="always")
def _merge_int_tile(s, buf, qn, w, best_d, best_i, qa, c1, j, j1, tnx, offset):
    """Merge the tile of dot products ``s`` (queries ``qa ..`` below ``c1``, rows ``j ..``
    below ``j1``) into the running top-k: ``d = qn + w - 2 dot``, in row order."""
    store_tuple(buf, s)
    _merge_int_dots(buf, qn, w, best_d, best_i, qa, c1, j, j1, tnx, offset)


@jit(inline="always")
def _merge_int_dots(buf, qn, w, best_d, best_i, qa, c1, j, j1, tnx, offset):
    """:func:`_merge_int_tile` of dot products in an array (lane ``a * tnx + b``)."""
    k = best_d.shape[1]
    for a in range(min(4, c1 - qa)):
        qi = qa + a
        bq = qn[qi]
        thr = best_d[qi, k - 1]
        for b in range(min(tnx, j1 - j)):
            e = np.float64(bq + w[j + b] - 2 * buf[a * tnx + b])
            if e < thr:
                insert_sorted(best_d[qi], best_i[qi], e, offset + j + b)
                thr = best_d[qi, k - 1]


@jit
def _topk_int_chunk(Q, X, qn, w, offset, best_d, best_i, c0, c1, block, impl, width):
    """Queries ``c0:c1`` of :func:`_topk_int_kernel` (the body of its parallel loop)."""
    nx = X.shape[0]
    tnx = _tile_nx(impl)
    buf = np.empty(16, dtype=np.int64)
    qb, xbuf, qsub, xb = _chunk_rows_fn(impl)(Q, X, c0, c1, width, block)
    for j0 in range(0, nx, block):
        j1 = min(j0 + block, nx)
        xsub = padded_block(X, j0, j1, xbuf, width)
        for qa in range(c0, c1, 4):
            for j in range(j0, j1, tnx):
                s = _dots(impl, qb, xb, qa - qsub, c1 - 1 - qsub, j - xsub, j1 - 1 - xsub)
                _merge_int_tile(s, buf, qn, w, best_d, best_i, qa, c1, j, j1, tnx, offset)


@jit(inline="always")
def _query_bounds(qbound, qnc, best_d, qa, qlast, tnx):
    """``qbound[r, a * tnx + b] = qnc[q, r] - threshold of q``, ``q = min(qa + a, qlast)``:
    the query half of the bounds a pruned tile checks (:func:`_make_dot_intrinsic`)."""
    k = best_d.shape[1]
    for a in range(4):
        q = min(qa + a, qlast)
        thr = int_threshold(best_d[q, k - 1])
        for r in range(qbound.shape[0]):
            v = qnc[q, r] - thr
            for b in range(tnx):
                qbound[r, a * tnx + b] = v


@jit
def _topk_int_chunk_pruned(
    Q, X, qn, w, qnc, wct, offset, best_d, best_i, c0, c1, block, impl, width, cuts,
    slab, use_slab,
):  # fmt: skip
    """:func:`_topk_int_chunk` with pruning (:mod:`.prune`). For each query tile and block
    of rows, the row pairs first pass the slab stage if ``use_slab`` (``slab``:
    :func:`.slab.driver_slab`; ``block`` a multiple of 8): the pooled distance of every pair
    against its group size times the threshold, a lower bound (Cauchy-Schwarz). The pairs
    left pass the full-resolution stage, which stops a tile at the first of its ``cuts``
    where none of its partial distances (``qnc + w - 2 dot`` over the features so far:
    ``qnc`` per query and cut, ``wct`` per cut and row, :func:`transposed_bounds`) is below
    its query's k-th best distance; the tiles left are merged. Both stages use the
    thresholds of the block's start (they only fall, and a tile kept is merged exactly).
    Same results, exactly."""
    nx = X.shape[0]
    tnx = _tile_nx(impl)
    lanes = 4 * tnx
    cap = block // tnx + 1
    all_tiles = np.empty(cap, dtype=np.int64)
    kept = np.empty(cap, dtype=np.int64)
    sums = np.empty((cap, lanes), dtype=np.int32)
    qbound = np.empty((cuts.shape[0], lanes), dtype=np.int64)
    sbound = np.empty(4, dtype=np.int32)
    qb, xbuf, qsub, xb = _chunk_rows_fn(impl)(Q, X, c0, c1, width, block)
    for j0 in range(0, nx, block):
        j1 = min(j0 + block, nx)
        xsub = padded_block(X, j0, j1, xbuf, width)
        n_all = 0
        for j in range(j0, j1, tnx):
            all_tiles[n_all] = j
            n_all += 1
        for qa in range(c0, c1, 4):
            tiles, n = all_tiles, n_all
            if use_slab:
                n = l2_slab_tiles(slab, best_d, qa, c1 - 1, j0, j1, sbound, kept)
                tiles = kept
            _query_bounds(qbound, qnc, best_d, qa, c1 - 1, tnx)
            n = _sweep_pruned(
                impl, qb, xb, qa - qsub, c1 - 1 - qsub, j1 - 1 - xsub, xsub, tiles, n, cuts,
                qbound, wct, kept, sums,
            )  # fmt: skip
            for t in range(n):
                _merge_int_dots(sums[t], qn, w, best_d, best_i, qa, c1, kept[t], j1, tnx, offset)


@jit(parallel=True)
def _topk_int_kernel_pruned(
    Q, X, qn, w, qnc, wct, offset, best_d, best_i, block, chunk, impl, width, cuts,
    slab, use_slab,
):  # fmt: skip
    nq = Q.shape[0]
    n_chunks = (nq + chunk - 1) // chunk
    for ch in prange(n_chunks):  # the body is a function: see l1._topk_float_kernel
        c0 = ch * chunk
        c1 = min(c0 + chunk, nq)
        _topk_int_chunk_pruned(
            Q, X, qn, w, qnc, wct, offset, best_d, best_i, c0, c1, block, impl, width, cuts,
            slab, use_slab,
        )  # fmt: skip


def transposed_bounds(wc: np.ndarray, pad: int = 4) -> np.ndarray:
    """The row half of the pruned tiles' bounds: ``wc`` (rows x cuts) transposed, with
    ``pad`` zero columns a tile at the last row may read (lanes it does not merge)."""
    wct = np.zeros((wc.shape[1], wc.shape[0] + pad), dtype=np.int64)
    wct[:, : wc.shape[0]] = wc.T
    return wct


@jit(parallel=True)
def _topk_int_kernel(Q, X, qn, w, offset, best_d, best_i, block, chunk, impl, width):
    """Fused exact distances + top-k; ``d = qn + w - 2 dot`` in int64, ``w = xn - 2 xc``.

    ``width > 0``: each chunk's queries and each training block are copied into
    zero-padded rows of ``width`` features (a multiple of the vector; see
    :func:`_chunk_rows_fn`), so no tile takes the masked overlapping tail vector; a zero adds
    0 to every dot product.
    """
    nq = Q.shape[0]
    n_chunks = (nq + chunk - 1) // chunk
    for ch in prange(n_chunks):  # the body is a function: see l1._topk_float_kernel
        c0 = ch * chunk
        _topk_int_chunk(
            Q, X, qn, w, offset, best_d, best_i, c0, min(c0 + chunk, nq), block, impl, width
        )


@jit
def _pairwise_int_chunk(Q, X, qn, w, out, c0, c1, block, impl, width):
    """Rows ``c0:c1`` of :func:`_pairwise_int_kernel` (the body of its parallel loop)."""
    nx = X.shape[0]
    tnx = _tile_nx(impl)
    buf = np.empty(16, dtype=np.int64)
    qb, xbuf, qsub, xb = _chunk_rows_fn(impl)(Q, X, c0, c1, width, block)
    for j0 in range(0, nx, block):
        j1 = min(j0 + block, nx)
        xsub = padded_block(X, j0, j1, xbuf, width)
        for qa in range(c0, c1, 4):
            for j in range(j0, j1, tnx):
                s = _dots(impl, qb, xb, qa - qsub, c1 - 1 - qsub, j - xsub, j1 - 1 - xsub)
                store_tuple(buf, s)
                na = min(4, c1 - qa)
                nb = min(tnx, j1 - j)
                for a in range(na):
                    for b in range(nb):
                        dot = buf[a * tnx + b]
                        out[qa + a, j + b] = np.float64(qn[qa + a] + w[j + b] - 2 * dot)


@jit(parallel=True)
def _pairwise_int_kernel(Q, X, qn, w, out, block, chunk, impl, width):
    """``out[q, j] = qn + w - 2 dot`` (exact integers, ``w = xn - 2 xc``) for every pair."""
    nq = Q.shape[0]
    n_chunks = (nq + chunk - 1) // chunk
    for ch in prange(n_chunks):  # the body is a function: see l1._topk_float_kernel
        c0 = ch * chunk
        _pairwise_int_chunk(Q, X, qn, w, out, c0, min(c0 + chunk, nq), block, impl, width)


#: features per vector step of each implementation (fewer features and no padded copy:
#: portable; the int16 tiles always read padded copies)
_WIDTH = {"portable": 1, "avx2": 1, "avx512bw": 1, "vnni": 64, "avxvnni": 32, "amx": 1}


@jit
def _norms_sums_rows(A, norms, sums, i0, i1):
    """``norms[i] = sum A[i]^2`` and ``sums[i] = sum A[i]`` in int64 for rows i0:i1."""
    for i in range(i0, i1):
        s2 = np.int64(0)
        s1 = np.int64(0)
        for d in range(A.shape[1]):
            v = np.int64(A[i, d])
            s2 += v * v
            s1 += v
        norms[i] = s2
        sums[i] = s1


@jit(parallel=True)
def _norms_sums(A, norms, sums):
    """:func:`_norms_sums_rows` over every row, in parallel blocks of 64 rows."""
    n = A.shape[0]
    for b in prange((n + 63) // 64):
        _norms_sums_rows(A, norms, sums, b * 64, min(n, b * 64 + 64))


@jit
def _shift_norms(A, out, norms):
    """``out = A ^ 0x80`` (the bytes of ``A - 128`` as int8) and the int64 norms of ``A``.

    Serial: it runs over the queries of one call only.
    """
    for i in range(A.shape[0]):
        s2 = np.int64(0)
        for d in range(A.shape[1]):
            v = A[i, d]
            out[i, d] = v ^ np.uint8(0x80)
            w = np.int64(v)
            s2 += w * w
        norms[i] = s2


def _row_stats(A: np.ndarray, norms: np.ndarray, sums: np.ndarray) -> None:
    """Norms and sums of uint8 rows; parallel only when the pass is large enough to pay
    for waking the thread pool (small calls come in long series with large k)."""
    if A.shape[0] * A.shape[1] >= 1 << 20:
        _norms_sums(A, norms, sums)
    else:
        _norms_sums_rows(A, norms, sums, 0, A.shape[0])


# --------------------------------------------------------------------------- choice
def available_impls() -> tuple[str, ...]:
    """Integer L2 implementations this CPU can run, best first (always ends "portable")."""
    from fastcls._runtime import cpu_features

    have = cpu_features()
    best_first = ("vnni", "avxvnni", "avx512bw", "avx2")
    names = [n for n in best_first if all(f in have for f in _REQUIRED[n])]
    if amx.amx_ready():  # the CPU's AMX and the operating system's permission for the tiles
        names.insert(0, "amx")
    return (*names, "portable")


def int_impl() -> str:
    """The implementation used: ``settings.l2_uint8_impl`` if set, else the best.

    Forcing one the CPU lacks raises ``ValueError`` instead of crashing in LLVM.
    """
    available = available_impls()
    forced = settings.l2_uint8_impl
    if forced is None:
        return available[0]
    if forced not in INT_CODES:
        raise ValueError(f"l2_uint8_impl must be None or one of {tuple(INT_CODES)}, got {forced!r}")
    if forced not in available:
        raise ValueError(f"l2_uint8_impl={forced!r} is not supported by this CPU")
    return forced


def _sizes(impl: str, n_queries: int, D: int) -> tuple[int, int]:
    """(training rows per cache block, queries per parallel chunk).

    Byte tiles keep a block in L1 (``l2_int_block_bytes``) and stream the 4 queries of a
    tile from L2; the int16 tiles (``"avx2"``, ``"avx512bw"``: rows twice the size) keep
    their 4 queries in L1 and stream a block of ``l2_int_wide_block_bytes`` from L2 (2
    multiply-adds per byte read, well within L2's bandwidth; on the AVX2 proxy 48 KiB to
    768 KiB blocks timed within 4%). The 4 int16 query rows take 24 KiB at D=3072: half
    of this Xeon's L1, three quarters of Zen 3's; at D=6144 (48 KiB) the proxy ran 9%
    below its D=3072 rate, at 12288 24% below.
    """
    from fastcls._config import get_num_threads

    block = int(settings.l2_int_block_rows)
    if block <= 0:
        if impl in _WIDE_LANES:
            block = int(settings.l2_int_wide_block_bytes) // (2 * _widened_width(impl, D))
        else:
            block = int(settings.l2_int_block_bytes) // max(D, 1)
        block = max(4, block // 4 * 4)
    chunk = int(settings.l2_int_query_chunk_rows)
    if chunk <= 0:
        threads = get_num_threads()
        cap = max(4, int(settings.l2_int_query_chunk_bytes) // max(D, 1))
        n_chunks = threads * -(-n_queries // (threads * cap))
        per = -(-n_queries // n_chunks)
        chunk = max(4, -(-per // 4) * 4)
    return block, chunk


def _widened_width(impl: str, n_features: int) -> int:
    """Row width of an int16 tile's copies (``"avx2"``, ``"avx512bw"``): a multiple of its
    lanes."""
    lanes = _WIDE_LANES[impl]
    return -(-n_features // lanes) * lanes


# --------------------------------------------------------------------------- public
def sqeuclidean_topk_int(Q, X, offset, best_d, best_i) -> None:
    """Merge the exact squared-L2 neighbours among uint8 rows ``X`` (ids ``offset + j``).

    Q (n_q, D), X (n_x, D): C-contiguous uint8. ``best_d`` (n_q, k) float64 and
    ``best_i`` (n_q, k) int64 are updated in place (contract of
    :mod:`fastcls.kernels.topk`).
    """
    nq, D = Q.shape
    nx = X.shape[0]
    if nq == 0 or nx == 0:
        return
    impl, Qb, qn, xn, xc = _prepare(Q, X, reuse=True)
    block, chunk = _sizes(impl, nq, D)
    serial = run_serial(nq, nx, D)
    if impl == "amx":
        amx.topk_int8(Qb, X, qn, xn - 2 * xc, np.int64(offset), best_d, best_i, chunk, serial)
        return
    width = _padded_width(impl, D, nq if serial else min(chunk, nq))
    token = impl_token(INT_CODES[impl])
    offset = np.int64(offset)
    w = xn - 2 * xc  # d = qn + w - 2 dot
    if INT_CODES[impl] in _PRUNED_DOTS and D <= _SEG_BYTES:
        # the pruning driver, with pruning (:mod:`.prune`) or with one cut at the row's
        # end: its vector-wide check of a tile's 8 distances against their thresholds
        # spares the merge loop of every tile without a candidate (Fashion-MNIST's 784
        # features on Zen 3: 0.84-0.88x the time; at 3072 features the same time)
        vec = _WIDE_LANES.get(impl) or _WIDTH[impl]  # features per vector step
        n_vectors = -(-D // vec)
        found = prune.plan(
            Q, X, offset, best_d, best_i, n_vectors, vec, sqeuclidean_topk_int, "sqeuclidean",
        )  # fmt: skip
        slab_level = None
        if found is None:
            Xp, cuts = X, np.array([n_vectors], dtype=np.int64)
            qnc, wc = qn.reshape(nq, 1), w.reshape(nx, 1)
        else:
            Qp, Xp, cuts, slab_level = found  # maybe reordered features: same distances
            if Qp is not Q:
                Qb = Qp if impl in _WIDE_LANES else _prepare(Qp, Xp, reuse=True)[1]
            bounds = np.minimum(cuts * vec, D)
            qnc, _ = prune.prefix_stats(Qp, bounds)
            xnc, xsc = prune.prefix_stats(Xp, bounds)
            wc = xnc - 2 * (xsc * 128 if impl in ("vnni", "avxvnni") else 0)
        if impl not in _WIDE_LANES:  # the byte tiles take no tail: padded rows
            width = n_vectors * vec if D % vec else 0
        slab, use_slab, block = driver_slab(Q, X, slab_level, block)
        args = (Qb, Xp, qn, w, qnc, transposed_bounds(wc), offset, best_d, best_i)
        if serial:
            _topk_int_chunk_pruned(*args, 0, nq, block, token, width, cuts, slab, use_slab)
        else:
            _topk_int_kernel_pruned(*args, block, chunk, token, width, cuts, slab, use_slab)
        return
    if serial:
        _topk_int_chunk(Qb, X, qn, w, offset, best_d, best_i, 0, nq, block, token, width)
    else:
        _topk_int_kernel(Qb, X, qn, w, offset, best_d, best_i, block, chunk, token, width)


def _padded_width(impl: str, n_features: int, chunk_rows: int) -> int:
    """Row width the top-k driver pads to (a multiple of the vector), or 0 for none.

    The int16 tiles always read padded copies (:func:`_widened_width`). For
    the byte tiles, padding spares each tile its masked overlapping tail vector (784 ->
    832 bytes: 1.12-1.16x on Fashion-MNIST) for a copy of each training block per query
    chunk, paid back from ``settings.l2_int_pad_min_queries`` queries per chunk (0: never).
    """
    if impl in _WIDE_LANES:
        return _widened_width(impl, n_features)
    vec = _WIDTH[impl] if impl != "portable" else 0
    min_rows = int(settings.l2_int_pad_min_queries)
    if vec == 0 or min_rows <= 0 or n_features < vec or n_features % vec == 0:
        return 0
    if chunk_rows < min_rows:
        return 0
    return -(-n_features // vec) * vec


def sqeuclidean_pairwise_int(X, Y, out) -> None:
    """``out[i, j] = sum (X[i] - Y[j])^2`` exactly for uint8 rows (out float64).

    The same micro-kernels and arithmetic as :func:`sqeuclidean_topk_int`, so the values
    are identical to the distances the top-k search reports.
    """
    if X.shape[0] == 0 or Y.shape[0] == 0:
        return
    impl, Xb, xn, yn, yc = _prepare(X, Y)
    block, chunk = _sizes(impl, X.shape[0], X.shape[1])
    if impl == "amx":
        serial = run_serial(X.shape[0], *Y.shape)
        amx.pairwise_int8(Xb, Y, xn, yn - 2 * yc, out, chunk, serial)
        return
    token = impl_token(INT_CODES[impl])
    width = _widened_width(impl, X.shape[1]) if impl in _WIDE_LANES else 0
    w = yn - 2 * yc
    if run_serial(X.shape[0], *Y.shape):
        _pairwise_int_chunk(Xb, Y, xn, w, out, 0, X.shape[0], block, token, width)
    else:
        _pairwise_int_kernel(Xb, Y, xn, w, out, block, chunk, token, width)


def _prepare(Q, X, reuse=False):
    """(implementation, query bytes, query norms, row norms, row corrections).

    ``reuse``: the shifted query bytes go in a scratch buffer (reused across the
    tiles of a search, which frees it when it returns; the pairwise call does not).
    AMX handles at most :data:`AMX_MAX_FEATURES` features, and unless forced only calls
    of at least ``settings.l2_amx_min_work`` multiply-adds; the others take the next
    implementation.
    """
    nq, D = Q.shape
    nx = X.shape[0]
    impl = int_impl()
    small = settings.l2_uint8_impl is None and nq * nx * D < int(settings.l2_amx_min_work)
    if impl == "amx" and (D > AMX_MAX_FEATURES or small):
        impl = available_impls()[1]
    if D < _WIDTH[impl]:
        impl = "portable"
    qn = np.empty(nq, dtype=np.int64)
    xn = np.empty(nx, dtype=np.int64)
    xs = np.empty(nx, dtype=np.int64)
    _row_stats(X, xn, xs)
    if impl in ("vnni", "avxvnni", "amx"):
        Qb = scratch("l2int_qb", Q.shape, Q.dtype) if reuse else np.empty_like(Q)
        _shift_norms(Q, Qb, qn)
        xc = xs * 128  # q.x = (q - 128).x + 128 sum(x)
    else:
        Qb = Q
        _row_stats(Q, qn, np.empty(nq, dtype=np.int64))
        xc = np.zeros(nx, dtype=np.int64)
    return impl, Qb, qn, xn, xc
