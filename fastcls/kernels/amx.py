"""L2 k-NN on Intel AMX tiles: the float32 GEMM as three bfloat16 products, and exact
integer distances of uint8 rows.

The integer kernel (:func:`topk_int8`, chosen by :mod:`fastcls.kernels.l2int` as its
``"amx"`` implementation) multiplies the uint8 training rows, read in place, by the
queries shifted to int8 (``q - 128``, as the VNNI tile does) with ``tdpbusd``: 16 x 16 x
64 multiply-adds per instruction into int32, exact for up to 65536 features
(``128 * 255 * 65536 < 2^31``), so its distances are the same integers as every other
implementation's. Blocks of 32 rows x 32 queries; a block's 1024 distances are tested
against the queries' k-th distances in one vectorised pass before any insertion.
Rows read in place take whole 64-byte pieces (the queries' zero padding cancels the
bytes past ``D``); the last rows of an array, whose pieces would cross its end, are
copied into a padded block first.

The float kernel:

Intel's server cores from Sapphire Rapids on have AMX: eight 1 KiB tile registers and
``tdpbf16ps``, which multiplies a 16 x 32 bfloat16 tile by a 32 x 16 one into 16 x 16
float32 accumulators (8192 multiply-adds per instruction, against 16 for an AVX-512
FMA). bfloat16 keeps 8 significant bits, so a float32 value ``a`` is split into
``a_hi = bf16(a)`` and ``a_lo = bf16(a - a_hi)`` (round to nearest even both times;
``a - a_hi`` is exact in float32), and the cross term of the squared distance is
computed as ``q_hi.x_hi + q_hi.x_lo + q_lo.x_hi`` with float32 accumulation
("bf16x3"). The scores are an *approximation* like sgemm's, with a larger proven
error bound (below); :mod:`fastcls.kernels.l2` then selects, reranks exactly and
certifies as it does after sgemm, so the search stays exact.

Error bound
-----------
For ``a = -2 q'`` and ``x = x'`` (float32, normal or zero; see underflow below) with
``u = 2^-24``: ``|a - a_hi| <= 2^-8 |a|``, ``|a_lo| <= 2^-8 (1 + 2^-8) |a|`` and the
part dropped, ``a_r = a - a_hi - a_lo``, ``|a_r| <= 2^-16 |a|``; the same for ``x``.
Then ``a.x - (a_hi x_hi + a_hi x_lo + a_lo x_hi) = a_lo x_lo + a_r x + (a - a_r) x_r``
is at most ``3.01 * 2^-16 sum |a_d x_d|``. Each bfloat16 product is exact in float32
(8 x 8 significant bits) and ``tdpbf16ps`` adds them one at a time into float32
accumulators rounded to nearest even (Intel SDM), ``3 D`` additions per score whose
terms sum to at most ``1.02 sum |a_d x_d|``: error at most ``gamma_{3D}(u)`` times
that. So the GEMM term of the bound is ``(1.02 gamma_{3D}(u) + 3.01 * 2^-16) * 2 |q'| R``
(:func:`gemm_cross_coefficient`) instead of sgemm's ``2 gamma_D(u) |q'| R``; for
``D = 3072`` about 3.2 times as large, so a few more candidates are reranked.

:func:`bf16_rounding_verified` probes the rounding once per process before the search
trusts the tiles (a truncating accumulator would need twice the bound; such a CPU keeps
BLAS), and ``test_accumulation_rounds_to_nearest_even`` on the machine that runs the
tests.

Underflow: ``tdpbf16ps`` treats bfloat16 subnormal inputs as zero and flushes subnormal
results to zero. A flushed operand ``|v| < 2^-126`` loses ``|v w| < 2^-126 * 2^61.01``
(the other operand: ``|a_d| = 2 |q'_d|`` and ``|x_d|`` are at most ``2^61`` under the
search's ``S = (|q'| + R)^2 <= 2^120``), a flushed product or partial sum less than
``2^-126``; per product at most ``2^-63.9``. :func:`gemm_abs_error` adds ``(3 D + 4)
2^-62`` per score, far below any distance that matters yet never left out. (The
split itself runs in float32 without flush-to-zero: ``a - a_hi`` is exact.)

Operating system: a process must ask Linux for the AMX register state
(``arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)``, kernel 5.16 or later)
before its first tile instruction; :func:`amx_ready` asks once and reports whether it
was granted. Without it (or without the CPU features, or on another OS) the search
uses BLAS sgemm as before.

Layout: the tiles compute blocks of 32 training rows x 32 queries; the search selects
from each block as it leaves the tiles (:func:`bf16x3_select`), :func:`bf16x3_scores`
stores them (``GT[j, q]``, training row by query) for the tests. The queries are split
once per search into AMX's B layout (:func:`pack_b_tiles`: 16 x 16
pairs of features per 1 KiB tile, a transpose); each block of
``settings.l2_amx_block_rows`` training rows is split straight into A tiles (16 rows x
32 features, contiguous; no transpose) and stays in L2 while every 32 queries run over
it. Zeros pad rows to 32 and features to a multiple of 32. A 32 x 32 block of scores
uses all eight tiles: four accumulators, the hi then lo halves of two training tiles
and of two query tiles (ten tile loads per twelve ``tdpbf16ps``). Measured on the Xeon
(2 threads, 500 x 10000 x 3072): splitting each training row first and copying it into
the tiles made the kernel 1.5x slower; training rows in the B layout (a transpose per
block) 1.3x; a software prefetch of the next block 1.15x.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from typing import Any

import numpy as np
from numba import prange, types
from numba.extending import intrinsic

from fastcls._config import jit
from fastcls.kernels.rounding import U32, gamma
from fastcls.kernels.topk import insert_sorted

#: CPU features (LLVM names) the kernels need
REQUIRED_FEATURES = ("amx-tile", "amx-bf16", "amx-int8")

_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18
_SYS_ARCH_PRCTL = 158  # x86-64


def amx_ready() -> bool:
    """Whether this process can run the AMX kernels: the CPU numba compiles for has
    AMX-BF16 and AMX-INT8 (:func:`fastcls._runtime.cpu_features`, so ``NUMBA_CPU_NAME`` /
    ``NUMBA_CPU_FEATURES`` without them turn AMX off) and Linux granted the tile state
    (asked once, on the first call that needs it)."""
    from fastcls import _runtime

    have = _runtime.cpu_features()
    return all(f in have for f in REQUIRED_FEATURES) and _tiles_granted()


def _require_tiles() -> None:
    """Raise ``RuntimeError`` unless :func:`amx_ready`: a tile instruction without the
    operating system's permission kills the process (``SIGILL``), so every entry point
    to a tile kernel checks first."""
    if not amx_ready():
        raise RuntimeError("AMX tiles are not available in this process (see amx_ready)")


@functools.lru_cache(maxsize=1)
def _tiles_granted() -> bool:
    """Ask Linux for the AMX tile state of this process (once); whether it was granted."""
    if not sys.platform.startswith("linux"):
        return False
    import platform

    if platform.machine() not in ("x86_64", "AMD64"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA)) == 0
    except (OSError, AttributeError):  # pragma: no cover - no libc symbol table
        return False


@functools.lru_cache(maxsize=1)
def bf16_rounding_verified() -> bool:
    """Whether this CPU's ``tdpbf16ps`` accumulates as the error bound assumes (round to
    nearest, ties to even), probed once on scores whose exact values sit 0.75, 1, 1.5 and
    3 float32 half-ulps above 1: a truncating or otherwise different accumulator would
    need a larger bound, so the search then keeps BLAS. False without :func:`amx_ready`.
    """
    if not amx_ready():
        return False
    u = 2.0**-24
    X = np.ones((1, 2), np.float32)
    q_hi = np.empty(b_tiles_shape(1, 2), np.uint32)
    q_lo = np.empty_like(q_hi)
    a_hi = np.empty(a_tiles_shape(32, 2), np.uint16)
    a_lo = np.empty_like(a_hi)
    scores = np.empty((32, 32), np.float32)
    for t, expected in ((0.75 * u, 0.0), (u, 0.0), (1.5 * u, 2 * u), (3 * u, 4 * u)):
        Q = np.array([[1.0, t]], np.float32)
        pack_b_tiles(Q, 0, 1, q_hi, q_lo)
        bf16x3_scores(q_hi, q_lo, X, 0, 1, scores, a_hi, a_lo)
        if float(scores[0, 0]) - 1.0 != expected:
            return False
    return True


def gemm_cross_coefficient(D: int) -> float:
    """``c`` with ``|G - (-2 q'.x')| <= c |q'| R`` for the bf16x3 scores (module docstring)."""
    return 2.0 * (1.02 * gamma(3 * D, U32) + 3.01 * 2.0**-16)


def gemm_abs_error(D: int) -> float:
    """Absolute error per score from subnormals flushed to zero (module docstring)."""
    return (3 * D + 4) * 2.0**-62


# --------------------------------------------------------------------------- intrinsics
def _declare(builder: Any, name: str, ret: Any, args: list[Any]) -> Any:
    from llvmlite import ir
    from numba.core import cgutils

    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(ret, args), name)


@intrinsic
def _tile_config(typingctx):
    """``ldtilecfg``: palette 1, tiles 0-7 of 16 rows x 64 bytes."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        from llvmlite import ir
        from numba.core import cgutils

        i8, i16 = ir.IntType(8), ir.IntType(16)
        cfg = cgutils.alloca_once(builder, ir.ArrayType(i8, 64))
        builder.store(ir.Constant(ir.ArrayType(i8, 64), [0] * 64), cfg)
        base = builder.bitcast(cfg, i8.as_pointer())
        builder.store(ir.Constant(i8, 1), base)
        for t in range(8):
            colsb = builder.gep(base, [ir.Constant(ir.IntType(32), 16 + 2 * t)])
            builder.store(ir.Constant(i16, 64), builder.bitcast(colsb, i16.as_pointer()))
            rows = builder.gep(base, [ir.Constant(ir.IntType(32), 48 + t)])
            builder.store(ir.Constant(i8, 16), rows)
        fn = _declare(builder, "llvm.x86.ldtilecfg", ir.VoidType(), [i8.as_pointer()])
        builder.call(fn, [base])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _tile_release(typingctx):
    """``tilerelease``: the tile state back to its initial (unused) state."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        from llvmlite import ir

        builder.call(_declare(builder, "llvm.x86.tilerelease", ir.VoidType(), []), [])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic(prefer_literal=True)
def _tile_zero(typingctx, tile):
    """``tilezero tmm<tile>``."""
    if not isinstance(tile, types.IntegerLiteral):
        return None
    number = tile.literal_value

    def codegen(context, builder, signature, args):
        from llvmlite import ir

        i8 = ir.IntType(8)
        builder.call(
            _declare(builder, "llvm.x86.tilezero", ir.VoidType(), [i8]), [ir.Constant(i8, number)]
        )
        return context.get_dummy_value()

    return types.void(tile), codegen


def _tile_memory(name: str):
    """Intrinsic ``f(tile, array, byte_offset, byte_stride)``: ``tileloadd64`` /
    ``tilestored64`` of tile register ``tile`` at ``array.data + byte_offset``."""

    def typer(typingctx, tile, arr, offset, stride):
        if not isinstance(tile, types.IntegerLiteral):
            return None
        number = tile.literal_value

        def codegen(context, builder, signature, args):
            from llvmlite import ir

            i8, i64 = ir.IntType(8), ir.IntType(64)
            a = context.make_array(signature.args[1])(context, builder, args[1])
            ptr = builder.gep(builder.bitcast(a.data, i8.as_pointer()), [args[2]])
            fn = _declare(builder, name, ir.VoidType(), [i8, i8.as_pointer(), i64])
            builder.call(fn, [ir.Constant(i8, number), ptr, args[3]])
            return context.get_dummy_value()

        return types.void(tile, arr, offset, stride), codegen

    return typer


def _tile_load_typer(typingctx, tile, arr, offset, stride):
    return _tile_memory("llvm.x86.tileloadd64")(typingctx, tile, arr, offset, stride)


def _tile_store_typer(typingctx, tile, arr, offset, stride):
    return _tile_memory("llvm.x86.tilestored64")(typingctx, tile, arr, offset, stride)


_tile_load = intrinsic(prefer_literal=True)(_tile_load_typer)
_tile_store = intrinsic(prefer_literal=True)(_tile_store_typer)


def _block_products(name: str):
    """Intrinsic typer ``f()``: the four tile products ``name`` (``tdpbf16ps``, ``tdpbusd``)
    of a 32 x 32 block, accumulators 0-3 += (A tiles 4, 5) x (B tiles 6, 7):
    ``0 += 4 . 6``, ``1 += 4 . 7``, ``2 += 5 . 6``, ``3 += 5 . 7``."""

    def typer(typingctx):
        def codegen(context, builder, signature, args):
            from llvmlite import ir

            i8 = ir.IntType(8)
            fn = _declare(builder, name, ir.VoidType(), [i8, i8, i8])
            for acc, a, b in ((0, 4, 6), (1, 4, 7), (2, 5, 6), (3, 5, 7)):
                builder.call(fn, [ir.Constant(i8, acc), ir.Constant(i8, a), ir.Constant(i8, b)])
            return context.get_dummy_value()

        return types.void(), codegen

    return typer


def _block_dots_bf16_typer(typingctx):
    """``tdpbf16ps`` x 4: bfloat16 pairs multiplied and added into float32."""
    return _block_products("llvm.x86.tdpbf16ps")(typingctx)


def _block_dots_u8s8_typer(typingctx):
    """``tdpbusd`` x 4: unsigned bytes of the A tiles times signed bytes of the B tiles,
    groups of four summed into int32 (exact, no saturation)."""
    return _block_products("llvm.x86.tdpbusd")(typingctx)


_block_dots_bf16 = intrinsic(_block_dots_bf16_typer)
_block_dots_u8s8 = intrinsic(_block_dots_u8s8_typer)


# --------------------------------------------------------------------------- splitting
@intrinsic
def _split_bf16(typingctx, value):
    """``(hi, lo)`` bfloat16 bits (uint16) of the float32 ``value``: ``hi`` the nearest
    bfloat16 (ties to even), ``lo`` the one nearest ``value - hi`` (exact in float32).

    Written in LLVM IR on 32-bit lanes: numba's own uint32 arithmetic widens to 64
    bits, which halved the vector width of the split loops. Finite inputs (the search
    validates them); a value within half a bfloat16 ulp of float32's largest would round
    to infinity, which the search's ``S <= 2^120`` excludes."""
    if value != types.float32:
        return None
    sig = types.UniTuple(types.uint16, 2)(value)

    def codegen(context, builder, signature, args):
        from llvmlite import ir

        i16, i32 = ir.IntType(16), ir.IntType(32)

        def round_bits(x):  # the float32 x rounded to bfloat16, as float32 bits
            bits = builder.bitcast(x, i32)
            lsb = builder.and_(builder.lshr(bits, ir.Constant(i32, 16)), ir.Constant(i32, 1))
            bits = builder.add(builder.add(bits, ir.Constant(i32, 0x7FFF)), lsb)
            return builder.and_(bits, ir.Constant(i32, 0xFFFF0000))

        hi = round_bits(args[0])
        rest = builder.fsub(args[0], builder.bitcast(hi, ir.FloatType()))
        lo = round_bits(rest)
        top = [builder.trunc(builder.lshr(v, ir.Constant(i32, 16)), i16) for v in (hi, lo)]
        return context.make_tuple(builder, signature.return_type, top)

    return sig, codegen


@jit
def _split_row(A, i, hi, lo):
    """``hi[d] = bf16(A[i, d])``, ``lo[d] = bf16(A[i, d] - hi[d])`` (bits), zeros past ``D``.

    One branch-free pass over the row, which LLVM vectorises (a loop over the packed
    layout with a bounds test per element was 4x slower)."""
    D = A.shape[1]
    for d in range(D):
        hi[d], lo[d] = _split_bf16(np.float32(A[i, d]))
    for d in range(D, hi.shape[0]):
        hi[d] = 0
        lo[d] = 0


@jit
def _split_a_tiles(X, first, count, a_hi, a_lo):
    """Split rows ``X[first : first + count]`` into AMX A tiles (no transpose needed).

    ``a_hi[t, kb, r, f]`` = ``bf16(X[first + 16 t + r, 32 kb + f])``, ``a_lo`` the same of
    ``X - hi``: tile ``(t, kb)`` holds 16 rows x 32 features contiguously (1 KiB, read
    with a 64-byte stride). Rows past ``count`` (every tile of ``a_hi``) and features
    past ``D`` are zeros. Each 32-feature piece is split straight into its tile (one
    vectorised loop; splitting a row first and copying it into the tiles took 1.5x the
    time of the multiplications).
    """
    D = X.shape[1]
    n_kb = a_hi.shape[1]
    full = D // 32
    for t in range(a_hi.shape[0]):
        for r in range(16):
            i = 16 * t + r
            if i < count:
                row = first + i
                for kb in range(full):
                    for f in range(32):
                        a_hi[t, kb, r, f], a_lo[t, kb, r, f] = _split_bf16(
                            np.float32(X[row, 32 * kb + f])
                        )
                for kb in range(full, n_kb):
                    for f in range(32):
                        d = 32 * kb + f
                        if d < D:
                            a_hi[t, kb, r, f], a_lo[t, kb, r, f] = _split_bf16(
                                np.float32(X[row, d])
                            )
                        else:
                            a_hi[t, kb, r, f] = 0
                            a_lo[t, kb, r, f] = 0
            else:
                for kb in range(n_kb):
                    for f in range(32):
                        a_hi[t, kb, r, f] = 0
                        a_lo[t, kb, r, f] = 0


@jit
def pack_b_tiles(Q, first, count, b_hi, b_lo):
    """Split rows ``Q[first : first + count]`` and pack them into AMX B tiles.

    ``b_hi[t, kb, p, n]`` (uint32) = the bfloat16 pair of ``Q[first + 16 t + n, 32 kb + 2 p
    + e]`` (``e = 0`` in the low half), ``b_lo`` the same of ``Q - hi``: tile ``(t, kb)``
    holds 16 rows x 32 features as 16 rows of 16 feature pairs, the layout ``tdpbf16ps``
    multiplies. Rows past ``count`` (every tile of ``b_hi``) and features past ``D`` are
    zeros. The queries take this layout: they are packed once per search, the training
    rows once per block (:func:`_split_a_tiles`, a copy without the transpose).
    """
    n_kb = b_hi.shape[1]
    rows_hi = np.empty((16, 32 * n_kb), dtype=np.uint16)
    rows_lo = np.empty((16, 32 * n_kb), dtype=np.uint16)
    for t in range(b_hi.shape[0]):
        for n in range(16):
            j = 16 * t + n
            if j < count:
                _split_row(Q, first + j, rows_hi[n], rows_lo[n])
            else:
                rows_hi[n, :] = 0
                rows_lo[n, :] = 0
        for kb in range(n_kb):
            for p in range(16):
                d = 32 * kb + 2 * p
                for n in range(16):
                    b_hi[t, kb, p, n] = np.uint32(rows_hi[n, d]) | (
                        np.uint32(rows_hi[n, d + 1]) << np.uint32(16)
                    )
                    b_lo[t, kb, p, n] = np.uint32(rows_lo[n, d]) | (
                        np.uint32(rows_lo[n, d + 1]) << np.uint32(16)
                    )


def b_tiles_shape(n_rows: int, D: int) -> tuple[int, int, int, int]:
    """Shape of :func:`pack_b_tiles`'s ``b_hi`` / ``b_lo`` (uint32) for ``n_rows`` rows: whole
    32-row pairs of tiles."""
    return (2 * -(-n_rows // 32), ceil32(D) // 32, 16, 16)


def a_tiles_shape(n_rows: int, D: int) -> tuple[int, int, int, int]:
    """Shape of the training-block scratch ``a_hi`` / ``a_lo`` (uint16) of
    :func:`bf16x3_scores` for ``n_rows`` rows at a time."""
    return (2 * max(1, -(-n_rows // 32)), ceil32(D) // 32, 16, 32)


def bf16x3_scores(q_hi, q_lo, X, first, last, GT, a_hi, a_lo) -> None:
    """``GT[: last - first] ~= X[first:last] . (q_hi + q_lo)^T`` by bf16x3 on AMX tiles.

    The scores themselves, for tests and diagnostics; the search selects from them as
    they come out of the tiles (:func:`bf16x3_select`). The compiled kernel
    (:func:`_bf16x3_kernel`, whose docstring details the arguments) runs only once
    :func:`amx_ready` has been granted: a tile instruction without the operating
    system's permission kills the process (``SIGILL``).
    """
    _require_tiles()
    no_xn = np.empty(0, np.float32)
    no_s = np.empty((0, 1), np.float32)
    no_j = np.empty((0, 1), np.int64)
    _bf16x3_kernel(q_hi, q_lo, X, first, last, GT, no_xn, no_s, no_j, no_xn, a_hi, a_lo)


def bf16x3_select(q_hi, q_lo, X, first, last, xn, cand_s, cand_j, t_prev, a_hi, a_lo) -> None:
    """The fused selection of the L2 search over rows ``X[first:last]``, scored by bf16x3.

    ``s = xn[j] + score(j, q)`` (float32, the scores of :func:`bf16x3_scores`) enters the
    sorted candidate list of query ``q`` (``cand_s``, ``cand_j``: ids ``j``) when it is
    below ``min(cand_s[q, -1], t_prev[q])``, as :func:`fastcls.kernels.l2._select_block`
    does on a block of sgemm scores: each query sees the rows in increasing order and the
    same float32 values, so the candidates are the same. Checks :func:`amx_ready`.
    """
    _require_tiles()
    no_scores = np.empty((0, 0), np.float32)
    _bf16x3_kernel(q_hi, q_lo, X, first, last, no_scores, xn, cand_s, cand_j, t_prev, a_hi, a_lo)


@jit
def _bf16x3_kernel(q_hi, q_lo, X, first, last, GT, xn, cand_s, cand_j, t_prev, a_hi, a_lo):
    """bf16x3 scores of rows ``X[first:last]`` against the queries on AMX tiles, either
    stored (``GT`` with rows) or selected from as they come out of the tiles (``GT``
    empty: ``xn``, ``cand_s``, ``cand_j``, ``t_prev`` as in :func:`bf16x3_select`).

    Parameters
    ----------
    q_hi, q_lo : (n_q32 / 16, D32 / 32, 16, 16) uint32
        :func:`pack_b_tiles` of the (scaled, centred) queries (:func:`b_tiles_shape`).
    X : (n, D) float32
        Training rows (``D <= D32``).
    first, last : int
        The rows of ``X`` scored.
    GT : (>= ceil32(last - first), n_q32) float32, C-contiguous, or (0, 0)
        The scores, one row per training row; the rows past ``last - first`` up to the
        next multiple of 32 are written too (zero rows score 0).
    a_hi, a_lo : (2 m, D32 / 32, 16, 32) uint16
        Scratch for ``32 m`` training rows at a time (:func:`a_tiles_shape`): each block
        is split once and stays in L2 while every 32 queries run over it.

    Selecting in place spares the round trip of the scores through memory (a 500-query
    block of 5000 rows is 10 MB a thread) and tests a row's 32 scores against the
    thresholds in one vectorised pass before any insertion.
    """
    n_q32 = 16 * q_hi.shape[0]
    n_kb = q_hi.shape[1]
    store = GT.shape[0] > 0
    g_stride = GT.shape[1] * 4
    block = 16 * a_hi.shape[0]
    nq = cand_s.shape[0]
    m = cand_s.shape[1]
    scores = np.empty((32, 32), dtype=np.float32)
    thr = np.empty(32, dtype=np.float32)
    _tile_config()
    for j0 in range(first, last, block):
        count = min(block, last - j0)
        _split_a_tiles(X, j0, count, a_hi, a_lo)
        n_pairs = (count + 31) // 32
        for q0 in range(0, n_q32, 32):
            b0 = (q0 // 16 * n_kb) * 1024
            n_qc = min(32, nq - q0)
            for qc in range(n_qc):
                thr[qc] = min(cand_s[q0 + qc, m - 1], t_prev[q0 + qc])
            for jp in range(n_pairs):
                _tile_zero(0)
                _tile_zero(1)
                _tile_zero(2)
                _tile_zero(3)
                a0 = (2 * jp * n_kb) * 1024
                for kb in range(n_kb):
                    # tiles 4, 5: training rows (16 each); 6, 7: queries (16 each)
                    _tile_load(4, a_hi, a0 + kb * 1024, 64)
                    _tile_load(5, a_hi, a0 + (n_kb + kb) * 1024, 64)
                    _tile_load(6, q_hi, b0 + kb * 1024, 64)
                    _tile_load(7, q_hi, b0 + (n_kb + kb) * 1024, 64)
                    _block_dots_bf16()
                    _tile_load(6, q_lo, b0 + kb * 1024, 64)
                    _tile_load(7, q_lo, b0 + (n_kb + kb) * 1024, 64)
                    _block_dots_bf16()
                    _tile_load(4, a_lo, a0 + kb * 1024, 64)
                    _tile_load(5, a_lo, a0 + (n_kb + kb) * 1024, 64)
                    _tile_load(6, q_hi, b0 + kb * 1024, 64)
                    _tile_load(7, q_hi, b0 + (n_kb + kb) * 1024, 64)
                    _block_dots_bf16()
                if store:
                    g0 = ((j0 - first + 32 * jp) * GT.shape[1] + q0) * 4
                    _tile_store(0, GT, g0, g_stride)
                    _tile_store(1, GT, g0 + 64, g_stride)
                    _tile_store(2, GT, g0 + 16 * g_stride, g_stride)
                    _tile_store(3, GT, g0 + 16 * g_stride + 64, g_stride)
                    continue
                _tile_store(0, scores, 0, 128)
                _tile_store(1, scores, 64, 128)
                _tile_store(2, scores, 16 * 128, 128)
                _tile_store(3, scores, 16 * 128 + 64, 128)
                for jr in range(min(32, last - (j0 + 32 * jp))):
                    j = j0 + 32 * jp + jr
                    x = xn[j]
                    hit = False
                    for qc in range(n_qc):  # one vectorised test of the 32 queries first
                        hit |= x + scores[jr, qc] < thr[qc]
                    if not hit:
                        continue
                    for qc in range(n_qc):
                        v = x + scores[jr, qc]
                        if v < thr[qc]:
                            q = q0 + qc
                            insert_sorted(cand_s[q], cand_j[q], v, j)
                            thr[qc] = min(cand_s[q, m - 1], t_prev[q])
    _tile_release()


def ceil32(n: int) -> int:
    """``n`` rounded up to a multiple of 32."""
    return -(-n // 32) * 32


# --------------------------------------------------------------------------- int8 (exact L2)
@jit
def pack_int8_b_tiles(Qs, first, count, b):
    """Rows ``Qs[first : first + count]`` (bytes) packed into AMX int8 B tiles.

    ``b[t, kb, p, n]`` (uint32) = the four bytes ``Qs[first + 16 t + n, 64 kb + 4 p + e]``,
    ``e = 0`` lowest: tile ``(t, kb)`` holds 16 rows x 64 features, the layout
    ``tdpbusd`` multiplies. Rows past ``count`` and features past ``D`` are zeros.
    """
    D = Qs.shape[1]
    n_kb = b.shape[1]
    for t in range(b.shape[0]):
        for n in range(16):
            j = 16 * t + n
            for kb in range(n_kb):
                for p in range(16):
                    v = np.uint32(0)
                    if j < count:
                        for e in range(4):
                            d = 64 * kb + 4 * p + e
                            if d < D:
                                v |= np.uint32(Qs[first + j, d]) << np.uint32(8 * e)
                    b[t, kb, p, n] = v


@jit(inline="always")
def _int8_distance(qn_q, w_j, dot):
    """The exact squared distance ``|q|^2 + |x|^2 - 2 q.x`` from a query's norm, a row's
    ``w = |x|^2 - 256 sum(x)`` and their shifted int32 dot product, as float64 (exact
    below ``2^53``)."""
    return np.float64(qn_q + w_j - 2 * np.int64(dot))


@jit(inline="always")
def _tile_in_place(r, n_rows, D, n_kb):
    """Whether the 16-row A tile at row ``r`` of a C-contiguous ``(n_rows, D)`` byte array
    can be read in place: every row reads ``64 n_kb`` bytes (past ``D`` into the next row
    when ``D`` is not a multiple of 64, where the queries' zero padding cancels them), and
    the last row's read must stay inside the array."""
    return r + 16 <= n_rows and (r + 15) * D + 64 * n_kb <= n_rows * D


def topk_int8(Qs, X, qn, w, offset, best_d, best_i, chunk, serial=False) -> None:
    """Merge the exact L2 neighbours among uint8 rows ``X`` into ``best_d`` / ``best_i`` on
    AMX int8 tiles (:func:`_int8_chunk`): chunks of ``chunk`` queries in parallel, or every
    query on the calling thread (``serial``). Checks :func:`amx_ready`."""
    _require_tiles()
    X = np.ascontiguousarray(X)  # the tiles read rows in place with a stride of D bytes
    no_out = np.empty((0, 0), np.float64)
    if serial:
        _int8_chunk(Qs, X, qn, w, offset, best_d, best_i, no_out, 0, Qs.shape[0])
    else:
        _int8_kernel(Qs, X, qn, w, offset, best_d, best_i, no_out, chunk)


def pairwise_int8(Qs, X, qn, w, out, chunk, serial=False) -> None:
    """``out[q, j] = qn[q] + w[j] - 2 q_s.x_j`` (exact squared distances, float64) for
    every pair, on AMX int8 tiles (:func:`_int8_chunk`). Checks :func:`amx_ready`."""
    _require_tiles()
    X = np.ascontiguousarray(X)
    no_d = np.empty((0, 1), np.float64)
    no_i = np.empty((0, 1), np.int64)
    if serial:
        _int8_chunk(Qs, X, qn, w, np.int64(0), no_d, no_i, out, 0, Qs.shape[0])
    else:
        _int8_kernel(Qs, X, qn, w, np.int64(0), no_d, no_i, out, chunk)


@jit
def _int8_chunk(Qs, X, qn, w, offset, best_d, best_i, out, c0, c1):
    """Exact squared L2 distances of queries ``c0:c1`` to uint8 rows ``X`` on AMX int8 tiles:
    written to ``out`` (when it has rows) or merged into the top-k ``best_d`` / ``best_i``.

    ``Qs``: the queries' bytes shifted by 128 (``q ^ 0x80``, read as int8), ``qn`` their
    int64 norms, ``w = |x|^2 - 256 sum(x)`` per row, so ``d = qn + w - 2 q_s.x`` exactly
    (int32 dot products: ``|q_s x| <= 128 * 255`` per feature, at most 65536 features).
    Each query sees the rows in increasing order (ties keep the lower index).
    """
    nq = c1 - c0
    nx, D = X.shape
    k = best_d.shape[1]
    write = out.shape[0] > 0
    n_kb = (D + 63) // 64
    n_qt = 2 * ((nq + 31) // 32)
    b = np.empty((n_qt, n_kb, 16, 16), dtype=np.uint32)
    pack_int8_b_tiles(Qs, c0, nq, b)
    pad = np.zeros((32, 64 * n_kb), dtype=np.uint8)
    dots = np.empty((32, 32), dtype=np.int32)
    thr = np.empty(32, dtype=np.float64)
    _tile_config()
    for j0 in range(0, nx, 32):
        in_place0 = _tile_in_place(j0, nx, D, n_kb)
        in_place1 = _tile_in_place(j0 + 16, nx, D, n_kb)
        if not (in_place0 and in_place1):
            pad[:] = 0
            for r in range(min(32, nx - j0)):
                for d in range(D):
                    pad[r, d] = X[j0 + r, d]
        for qp in range(n_qt // 2):
            _tile_zero(0)
            _tile_zero(1)
            _tile_zero(2)
            _tile_zero(3)
            for kb in range(n_kb):
                if in_place0:
                    _tile_load(4, X, j0 * D + 64 * kb, D)
                else:
                    _tile_load(4, pad, 64 * kb, 64 * n_kb)
                if in_place1:
                    _tile_load(5, X, (j0 + 16) * D + 64 * kb, D)
                else:
                    _tile_load(5, pad, 16 * 64 * n_kb + 64 * kb, 64 * n_kb)
                _tile_load(6, b, ((2 * qp) * n_kb + kb) * 1024, 64)
                _tile_load(7, b, ((2 * qp + 1) * n_kb + kb) * 1024, 64)
                _block_dots_u8s8()
            _tile_store(0, dots, 0, 128)
            _tile_store(1, dots, 64, 128)
            _tile_store(2, dots, 16 * 128, 128)
            _tile_store(3, dots, 16 * 128 + 64, 128)
            q_first = c0 + 32 * qp
            n_qc = min(32, c1 - q_first)
            if write:
                for jr in range(min(32, nx - j0)):
                    wj = w[j0 + jr]
                    for qc in range(n_qc):
                        q = q_first + qc
                        out[q, j0 + jr] = _int8_distance(qn[q], wj, dots[jr, qc])
                continue
            for qc in range(n_qc):
                thr[qc] = best_d[q_first + qc, k - 1]
            for jr in range(min(32, nx - j0)):
                j = j0 + jr
                wj = w[j]
                hit = False
                for qc in range(n_qc):  # one vectorised test of the 32 queries first
                    hit |= _int8_distance(qn[q_first + qc], wj, dots[jr, qc]) < thr[qc]
                if not hit:
                    continue
                for qc in range(n_qc):
                    qi = q_first + qc
                    e = _int8_distance(qn[qi], wj, dots[jr, qc])
                    if e < thr[qc]:
                        insert_sorted(best_d[qi], best_i[qi], e, offset + j)
                        thr[qc] = best_d[qi, k - 1]
    _tile_release()


@jit(parallel=True)
def _int8_kernel(Qs, X, qn, w, offset, best_d, best_i, out, chunk):
    """:func:`_int8_chunk` over chunks of ``chunk`` queries, in parallel."""
    nq = Qs.shape[0]
    for ch in prange((nq + chunk - 1) // chunk):
        c0 = ch * chunk
        _int8_chunk(Qs, X, qn, w, offset, best_d, best_i, out, c0, min(c0 + chunk, nq))
