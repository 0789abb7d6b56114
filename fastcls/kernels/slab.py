"""The slab stage of the pruned exact integer k-NN drivers (:mod:`.prune`).

Before their full-resolution tiles, the pruned drivers check a bound on the distance of
every query and training row computed from *group sums*: the features summed in groups
of at most ``m`` (:func:`.prune.feature_groups`). For L2, Cauchy-Schwarz gives
``(sum_G q - sum_G x)^2 <= |G| sum_G (q - x)^2``: the squared distance of the sums is at
most ``m`` times the distance. For L1, the triangle inequality gives ``|sum_G q - sum_G x|
<= sum_G |q - x|``: the L1 distance of the sums is at most the distance. A pair whose
bound is at or above its query's k-th best distance cannot enter the top-k.

The bound is checked on *slabs* of 8 training rows: the group sums of the 8 rows are
interleaved (``PXv[s, p, 2 r + e]`` = group ``2 p + e`` of row ``8 s + r``), so one int16
vector holds two groups of each of the 8 rows and the 8 rows sit in the lanes: L2 takes one
``vpmaddwd`` with a query's broadcast pair of sums per pair of groups, L1 a subtract, an
absolute value and an add (int16, widened every 8 pairs). 4 queries x 8 rows are then
checked with 4 compares and one mask, with no horizontal reduction and no branch per tile,
and the tiles (row pairs, or row quadruples for 4-column tiles) with a pair below are
appended to a list, branch-free. The drivers run their tiles over that list.
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.core.errors import TypingError
from numba.extending import intrinsic

from fastcls._config import jit
from fastcls.kernels import prune
from fastcls.kernels._llvm_ir import splat
from fastcls.kernels._rows import aligned_zeros
from fastcls.kernels.prune import int_threshold

#: int16 pairs summed before an L1 slab widens its sums to int32: ``8 * 255 * 16`` (the
#: largest group) is below ``2^15``
L1_PAIRS_PER_WIDEN = 8


def _make_slab_filter(metric: str, tile_rows: int):
    """Numba intrinsic: the slab stage of the pruned ``metric`` driver, for tiles of
    ``tile_rows`` (2 or 4) training rows.

    ``slab_filter(PXv, pxn, PQ2, qa, qlast, qbound, s0, s1, out_tiles) -> int64``.
    ``PXv``: the interleaved group sums of the rows (int16, :func:`.prune.slab_rows`);
    ``pxn``: the rows' pooled norms (int32; L2 only); ``PQ2[q, p]``: groups ``2 p`` and
    ``2 p + 1`` of query ``q`` as one int32 (:func:`.prune.query_pairs`). For each slab
    ``s0 <= s < s1`` and the 4 queries from ``qa`` (clamped to ``qlast``) it computes the
    pooled distances to the slab's 8 rows and checks them against ``qbound[a]`` (int32):
    L2 ``2 dot > qbound[a] + pxn[row]`` (``qbound``: the pooled norm less the group size
    times the threshold, :func:`slab_bounds_l2`), L1 ``distance < qbound[a]`` (the
    threshold, :func:`slab_bounds_l1`). The tiles ``8 s + tile_rows * b`` with a pair
    below are written to ``out_tiles`` in order; returns their number.
    """
    from llvmlite import ir
    from numba.core import cgutils

    i16, i32, i64 = ir.IntType(16), ir.IntType(32), ir.IntType(64)
    v8, v16 = ir.VectorType(i32, 8), ir.VectorType(i16, 16)
    per_slab = 8 // tile_rows
    tile_mask = sum(1 << (tile_rows * b) for b in range(per_slab))  # 0x55 or 0x11

    def codegen(context, builder, signature, args):
        xarr = context.make_array(signature.args[0])(context, builder, args[0])
        narr = context.make_array(signature.args[1])(context, builder, args[1])
        qarr = context.make_array(signature.args[2])(context, builder, args[2])
        qa_, qlast_ = args[3], args[4]
        barr = context.make_array(signature.args[5])(context, builder, args[5])
        s0, s1 = args[6], args[7]
        oarr = context.make_array(signature.args[8])(context, builder, args[8])
        n_pairs = cgutils.unpack_tuple(builder, xarr.shape, 3)[1]
        slab_stride = builder.mul(n_pairs, ir.Constant(i64, 16))  # int16 items
        qstride = cgutils.unpack_tuple(builder, qarr.shape, 2)[1]  # int32 items
        madd = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(v8, [v16, v16]), "llvm.x86.avx2.pmadd.wd"
        )
        qrows = []
        for a in range(4):
            q = builder.add(qa_, ir.Constant(i64, a))
            q = builder.select(builder.icmp_signed("<", q, qlast_), q, qlast_)
            qrows.append(builder.gep(qarr.data, [builder.mul(q, qstride)]))
        bounds = []
        for a in range(4):
            b = builder.load(builder.gep(barr.data, [ir.Constant(i64, a)]))
            bounds.append(splat(builder, b, 8))
        accs = [cgutils.alloca_once(builder, v8) for _ in range(4)]
        acc16 = [cgutils.alloca_once(builder, v16) for _ in range(4)]
        n_slot = cgutils.alloca_once_value(builder, ir.Constant(i64, 0))
        ones = ir.Constant(v16, [1] * 16)

        def pair(base, p):
            xptr = builder.gep(base, [builder.mul(p, ir.Constant(i64, 16))])
            xv = builder.load(builder.bitcast(xptr, v16.as_pointer()), align=1)
            for a in range(4):
                qv = builder.bitcast(
                    splat(builder, builder.load(builder.gep(qrows[a], [p])), 8), v16
                )
                if metric == "l2":
                    prod = builder.call(madd, [xv, qv])
                    builder.store(builder.add(builder.load(accs[a]), prod), accs[a])
                else:  # |x - q| in int16 (sums of at most 16 bytes: no overflow)
                    diff = builder.sub(xv, qv)
                    neg = builder.icmp_signed("<", diff, ir.Constant(v16, None))
                    absolute = builder.select(neg, builder.sub(ir.Constant(v16, None), diff), diff)
                    builder.store(builder.add(builder.load(acc16[a]), absolute), acc16[a])

        with cgutils.for_range(builder, builder.sub(s1, s0), intp=i64) as slabs:
            s = builder.add(s0, slabs.index)
            base = builder.gep(xarr.data, [builder.mul(s, slab_stride)])
            for acc in accs:
                builder.store(ir.Constant(v8, None), acc)
            if metric == "l2":
                with cgutils.for_range(builder, n_pairs, intp=i64) as pairs:
                    pair(base, pairs.index)
            else:
                step = ir.Constant(i64, L1_PAIRS_PER_WIDEN)
                n_runs = builder.sdiv(
                    builder.add(n_pairs, ir.Constant(i64, L1_PAIRS_PER_WIDEN - 1)), step
                )
                with cgutils.for_range(builder, n_runs, intp=i64) as runs:
                    p0 = builder.mul(runs.index, step)
                    left = builder.sub(n_pairs, p0)
                    count = builder.select(builder.icmp_signed("<", left, step), left, step)
                    for acc in acc16:
                        builder.store(ir.Constant(v16, None), acc)
                    with cgutils.for_range(builder, count, intp=i64) as pairs:
                        pair(base, builder.add(p0, pairs.index))
                    for a in range(4):  # widen: lanes 2 r and 2 r + 1 are row r's
                        wide = builder.call(madd, [builder.load(acc16[a]), ones])
                        builder.store(builder.add(builder.load(accs[a]), wide), accs[a])
            below = None
            if metric == "l2":
                nptr = builder.gep(narr.data, [builder.mul(s, ir.Constant(i64, 8))])
                norms = builder.load(builder.bitcast(nptr, v8.as_pointer()), align=4)
            for a in range(4):
                acc = builder.load(accs[a])
                if metric == "l2":
                    twice = builder.shl(acc, ir.Constant(v8, [1] * 8))
                    cmp = builder.icmp_signed(">", twice, builder.add(bounds[a], norms))
                else:
                    cmp = builder.icmp_signed("<", acc, bounds[a])
                below = cmp if below is None else builder.or_(below, cmp)
            rows = builder.zext(builder.bitcast(below, ir.IntType(8)), i64)
            spread = rows
            for shift in range(1, tile_rows):
                spread = builder.or_(spread, builder.lshr(rows, ir.Constant(i64, shift)))
            tiles_below = builder.and_(spread, ir.Constant(i64, tile_mask))
            first = builder.mul(s, ir.Constant(i64, 8))
            for b in range(per_slab):
                n = builder.load(n_slot)
                row = builder.add(first, ir.Constant(i64, tile_rows * b))
                builder.store(row, builder.gep(oarr.data, [n]))
                bit = builder.and_(
                    builder.lshr(tiles_below, ir.Constant(i64, tile_rows * b)), ir.Constant(i64, 1)
                )
                builder.store(builder.add(n, bit), n_slot)
        return builder.load(n_slot)

    @intrinsic
    def slab_filter(typingctx, PXv, pxn, PQ2, qa, qlast, qbound, s0, s1, out_tiles):
        expected = (
            ("PXv", PXv, 3, types.int16),
            ("pxn", pxn, 1, types.int32),
            ("PQ2", PQ2, 2, types.int32),
            ("qbound", qbound, 1, types.int32),
            ("out_tiles", out_tiles, 1, types.int64),
        )
        for name, arr, ndim, dtype in expected:
            ok = isinstance(arr, types.Array) and arr.ndim == ndim and arr.layout == "C"
            if not ok or arr.dtype != dtype:
                raise TypingError(f"{name}: a {ndim}-D C-contiguous {dtype} array")
        sig = (PXv, pxn, PQ2, types.int64, types.int64, qbound, types.int64, types.int64)
        return types.int64(*sig, out_tiles), codegen

    return slab_filter


slab_filter_l2 = _make_slab_filter("l2", 2)
slab_filter_l1_2 = _make_slab_filter("l1", 2)
slab_filter_l1_4 = _make_slab_filter("l1", 4)


@jit(inline="always")
def slab_bounds_l2(sbound, pqn, best_d, qa, qlast, factor):
    """``sbound[a] = pqn[q] - factor * threshold of q`` in int32 for the L2 slab filter,
    floored at ``-2^30`` (norms are below ``2^30``: a floored bound still lets every pair
    of that query through)."""
    k = best_d.shape[1]
    for a in range(4):
        q = min(qa + a, qlast)
        thr = min(int_threshold(best_d[q, k - 1]), np.int64(2**40))
        sbound[a] = np.int32(max(pqn[q, 0] - factor * thr, -(2**30)))


@jit(inline="always")
def slab_bounds_l1(sbound, best_d, qa, qlast):
    """``sbound[a]`` = the threshold of query ``min(qa + a, qlast)`` in int32 for the L1
    slab filter, capped at ``2^30`` (above any pooled L1 distance: ``255 * D``)."""
    k = best_d.shape[1]
    for a in range(4):
        q = min(qa + a, qlast)
        sbound[a] = np.int32(min(int_threshold(best_d[q, k - 1]), np.int64(2**30)))


@jit(inline="always")
def _without_rows_past(kept, n, j1):
    """``n`` less the tiles at the end of ``kept`` that start at or past row ``j1``: the
    zero rows that pad the last slab (a tile that starts before ``j1`` but reaches past it
    is kept; the drivers clamp its rows and merge only the real ones)."""
    while n > 0 and kept[n - 1] >= j1:
        n -= 1
    return n


@jit(inline="always")
def l2_slab_tiles(slab, best_d, qa, qlast, j0, j1, sbound, kept):
    """The L2 slab stage of queries ``qa ..`` (clamped to ``qlast``) and rows ``j0:j1``
    (``j0`` a multiple of 8): the row pairs kept, in ``kept``; returns their number.
    ``sbound``: int32 scratch of 4."""
    slab_bounds_l2(sbound, slab[3], best_d, qa, qlast, slab[4])
    n = slab_filter_l2(slab[0], slab[1], slab[2], qa, qlast, sbound, j0 // 8, (j1 + 7) // 8, kept)
    return _without_rows_past(kept, n, j1)


@jit(inline="always")
def l1_slab_tiles(slab, tile_rows, best_d, qa, qlast, j0, j1, sbound, kept):
    """:func:`l2_slab_tiles` for L1, tiles of ``tile_rows`` (2 or 4) rows."""
    slab_bounds_l1(sbound, best_d, qa, qlast)
    s0, s1 = j0 // 8, (j1 + 7) // 8
    if tile_rows == 2:
        n = slab_filter_l1_2(slab[0], slab[1], slab[2], qa, qlast, sbound, s0, s1, kept)
    else:
        n = slab_filter_l1_4(slab[0], slab[1], slab[2], qa, qlast, sbound, s0, s1, kept)
    return _without_rows_past(kept, n, j1)


def slab_stage(Q: np.ndarray, X: np.ndarray, group_of: np.ndarray, n_groups: int, size: int):
    """The slab stage of a pruned driver: ``(PXv, pxn, PQ2, pqn, size)``
    (:func:`.prune.slab_rows`, :func:`.prune.query_pairs`)."""
    PXv, pxn = prune.slab_rows(X, group_of, n_groups)
    PQ2, pqn = prune.query_pairs(Q, group_of, n_groups)
    return PXv, pxn, PQ2, pqn, np.int64(size)


def driver_slab(Q: np.ndarray, X: np.ndarray, level: tuple | None, block: int):
    """``(slab, use_slab, block)`` for a pruned driver: the slab stage of ``level`` (an item
    of :func:`.prune.feature_groups`) and the block rounded down to whole slabs, or the
    stand-in and the block unchanged when ``level`` is None."""
    if level is None:
        return unused_slab(), False, block
    return slab_stage(Q, X, *level), True, max(8, block // 8 * 8)


def unused_slab():
    """A stand-in for the slab stage when the driver skips it (the same types)."""
    return (
        aligned_zeros((1, 1, 16), np.dtype(np.int16)),
        np.zeros(8, dtype=np.int32),
        np.zeros((1, 1), dtype=np.int32),
        np.zeros((1, 1), dtype=np.int64),
        np.int64(1),
    )
