"""The L2 float32 GEMM on Intel AMX tiles: three bfloat16 products per float32 product.

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

Underflow: ``tdpbf16ps`` treats bfloat16 subnormal inputs as zero and flushes subnormal
results, so each product and each addition may also lose ``2^-126`` times the
largest magnitude it involves (at most ``2^60`` under the search's ``S <= 2^120``):
:func:`gemm_abs_error` adds ``(3 D + 4) * 2^-66`` per score, far below any distance
that matters yet never left out.

Operating system: a process must ask Linux for the AMX register state
(``arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)``, kernel 5.16 or later)
before its first tile instruction; :func:`amx_ready` asks once and reports whether it
was granted. Without it (or without the CPU features, or on another OS) the search
uses BLAS sgemm as before.

Layout: the queries are split and packed into AMX A tiles (16 rows x 32 features, 1
KiB each, contiguous; zeros pad the rows to 32 and the features to a multiple of 32);
each block of ``settings.l2_amx_block_rows`` training rows is split and packed into
AMX's B layout (16 x 16 pairs of features per 1 KiB tile), kept in L2 while every
32-query tile of the queries runs over it. A 32 x 32 block of
scores uses all eight tiles: four accumulators, the hi then lo rows of two query
tiles and of two training tiles (ten tile loads per twelve ``tdpbf16ps``).
"""

from __future__ import annotations

import ctypes
import functools
import math
import sys
from typing import Any

import numpy as np
from numba import types
from numba.extending import intrinsic

from fastcls._config import jit
from fastcls.kernels.rounding import U32, gamma

#: CPU features (LLVM names) the kernels need
REQUIRED_FEATURES = ("amx-tile", "amx-bf16")

_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18
_SYS_ARCH_PRCTL = 158  # x86-64


@functools.lru_cache(maxsize=1)
def amx_ready() -> bool:
    """Whether this process can run the AMX kernels: the CPU numba compiles for has
    AMX-BF16 and Linux granted the tile state (asked once, on the first call)."""
    from fastcls._runtime import cpu_features

    if not all(f in cpu_features() for f in REQUIRED_FEATURES):
        return False
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


def gemm_cross_coefficient(D: int) -> float:
    """``c`` with ``|G - (-2 q'.x')| <= c |q'| R`` for the bf16x3 scores (module docstring)."""
    return 2.0 * (1.02 * gamma(3 * D, U32) + 3.01 * 2.0**-16)


def gemm_abs_error(D: int) -> float:
    """Absolute error per score from subnormals flushed to zero (module docstring)."""
    return (3 * D + 4) * 2.0**-66


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


@intrinsic(prefer_literal=True)
def _tile_dot(typingctx, acc, a, b):
    """``tdpbf16ps tmm<acc>, tmm<a>, tmm<b>``: ``acc += a . b`` (bfloat16 pairs)."""
    if not all(isinstance(t, types.IntegerLiteral) for t in (acc, a, b)):
        return None
    numbers = (acc.literal_value, a.literal_value, b.literal_value)

    def codegen(context, builder, signature, args):
        from llvmlite import ir

        i8 = ir.IntType(8)
        fn = _declare(builder, "llvm.x86.tdpbf16ps", ir.VoidType(), [i8, i8, i8])
        builder.call(fn, [ir.Constant(i8, n) for n in numbers])
        return context.get_dummy_value()

    return types.void(acc, a, b), codegen


# --------------------------------------------------------------------------- splitting
@jit(inline="always")
def _bf16_bits(a):
    """The bfloat16 nearest to the float32 ``a`` (ties to even), as its 16 bits in a uint32.

    Finite inputs only (the search validates them); a value within half a bfloat16 ulp of
    float32's largest rounds to infinity, which the search's ``S <= 2^120`` excludes."""
    bits = np.uint32(np.float32(a).view(np.uint32))
    bits += np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    return bits >> np.uint32(16)


@jit
def split_rows(A, first, last, hi, lo):
    """Split the float32 rows ``A[first:last]`` and pack them into AMX A tiles.

    ``hi[t, kb, r, f]`` = ``bf16(A[16 t + r, 32 kb + f])``, ``lo`` the same of ``A - hi``:
    tile ``(t, kb)`` holds 16 rows x 32 features contiguously (1 KiB, read with a 64-byte
    stride). ``first`` is a multiple of 16, ``last`` too or at least A's end; rows past
    A's (every tile of ``hi`` past A when ``last`` reaches its end) and features past
    ``D`` are zeros.
    """
    n, D = A.shape
    n_kb = hi.shape[1]
    end = hi.shape[0] if last >= n else (last + 15) // 16
    for t in range(first // 16, end):
        for r in range(16):
            i = 16 * t + r
            for kb in range(n_kb):
                for f in range(32):
                    d = 32 * kb + f
                    if i < n and d < D:
                        a = np.float32(A[i, d])
                        h = _bf16_bits(a)
                        res = a - np.uint32(h << np.uint32(16)).view(np.float32)
                        hi[t, kb, r, f] = np.uint16(h)
                        lo[t, kb, r, f] = np.uint16(_bf16_bits(res))
                    else:
                        hi[t, kb, r, f] = 0
                        lo[t, kb, r, f] = 0


def split_shape(n_rows: int, D: int) -> tuple[int, int, int, int]:
    """Shape of :func:`split_rows`'s ``hi`` / ``lo`` for ``n_rows`` rows of ``D`` features."""
    return (2 * -(-n_rows // 32), ceil32(D) // 32, 16, 32)


@jit
def _pack_rows(X, first, count, b_hi, b_lo):
    """Split rows ``X[first : first + count]`` and pack them into AMX B tiles.

    ``b_hi[t, kb, p, 2 n + e]`` = hi of ``X[first + 16 t + n, 32 kb + 2 p + e]``: tile ``(t,
    kb)`` holds 16 training rows x 32 features as 16 rows of 16 feature pairs, the layout
    ``tdpbf16ps`` multiplies. Rows beyond ``count`` and features beyond ``D`` are zeros.
    """
    D = X.shape[1]
    n_tiles, n_kb = b_hi.shape[0], b_hi.shape[1]
    for t in range(n_tiles):
        for n in range(16):
            j = 16 * t + n
            for kb in range(n_kb):
                for p in range(16):
                    for e in range(2):
                        d = 32 * kb + 2 * p + e
                        if j < count and d < D:
                            a = np.float32(X[first + j, d])
                            h = _bf16_bits(a)
                            r = a - np.uint32(h << np.uint32(16)).view(np.float32)
                            b_hi[t, kb, p, 2 * n + e] = np.uint16(h)
                            b_lo[t, kb, p, 2 * n + e] = np.uint16(_bf16_bits(r))
                        else:
                            b_hi[t, kb, p, 2 * n + e] = 0
                            b_lo[t, kb, p, 2 * n + e] = 0


def bf16x3_scores(q_hi, q_lo, X, first, last, G, b_hi, b_lo) -> None:
    """``G[:, : last - first] ~= (q_hi + q_lo) . X[first:last]^T`` by bf16x3 on AMX tiles.

    The compiled kernel behind it (:func:`_bf16x3_scores`, whose docstring details the
    arguments) runs only once :func:`amx_ready` has been granted: a tile instruction
    without the operating system's permission kills the process (``SIGILL``).
    """
    if not amx_ready():
        raise RuntimeError("AMX tiles are not available in this process (see amx_ready)")
    _bf16x3_scores(q_hi, q_lo, X, first, last, G, b_hi, b_lo)


@jit
def _bf16x3_scores(q_hi, q_lo, X, first, last, G, b_hi, b_lo):
    """``G[:, : last - first] ~= (q_hi + q_lo) . X[first:last]^T`` by bf16x3 on AMX tiles.

    Parameters
    ----------
    q_hi, q_lo : (n_q32 / 16, D32 / 32, 16, 32) uint16
        :func:`split_rows` of the (scaled, centred) queries (:func:`split_shape`).
    X : (n, D) float32, C-contiguous
        Training rows (``D <= D32``).
    first, last : int
        The rows of ``X`` scored.
    G : (n_q32, >= ceil32(last - first)) float32, C-contiguous
        The scores; the columns past ``last - first`` up to the next multiple of 32 are
        written too (zero rows score 0).
    b_hi, b_lo : (2 m, D32 / 32, 16, 32) uint16
        Packing scratch for ``32 m`` training rows at a time (:func:`_pack_rows`).
    """
    n_q32 = 16 * q_hi.shape[0]
    n_kb = q_hi.shape[1]
    g_stride = G.shape[1] * 4
    block = 16 * b_hi.shape[0]
    _tile_config()
    for j0 in range(first, last, block):
        count = min(block, last - j0)
        _pack_rows(X, j0, count, b_hi, b_lo)
        n_pairs = (count + 31) // 32
        for q0 in range(0, n_q32, 32):
            for jp in range(n_pairs):
                _tile_zero(0)
                _tile_zero(1)
                _tile_zero(2)
                _tile_zero(3)
                for kb in range(n_kb):
                    a0 = ((q0 // 16 * n_kb + kb) * 512) * 2
                    a1 = a0 + n_kb * 1024
                    b0 = ((2 * jp * n_kb + kb) * 512) * 2
                    b1 = b0 + n_kb * 1024
                    # hi x hi
                    _tile_load(4, q_hi, a0, 64)
                    _tile_load(5, q_hi, a1, 64)
                    _tile_load(6, b_hi, b0, 64)
                    _tile_load(7, b_hi, b1, 64)
                    _tile_dot(0, 4, 6)
                    _tile_dot(1, 4, 7)
                    _tile_dot(2, 5, 6)
                    _tile_dot(3, 5, 7)
                    # hi x lo
                    _tile_load(6, b_lo, b0, 64)
                    _tile_load(7, b_lo, b1, 64)
                    _tile_dot(0, 4, 6)
                    _tile_dot(1, 4, 7)
                    _tile_dot(2, 5, 6)
                    _tile_dot(3, 5, 7)
                    # lo x hi
                    _tile_load(4, q_lo, a0, 64)
                    _tile_load(5, q_lo, a1, 64)
                    _tile_load(6, b_hi, b0, 64)
                    _tile_load(7, b_hi, b1, 64)
                    _tile_dot(0, 4, 6)
                    _tile_dot(1, 4, 7)
                    _tile_dot(2, 5, 6)
                    _tile_dot(3, 5, 7)
                g0 = (q0 * G.shape[1] + (j0 - first) + 32 * jp) * 4
                _tile_store(0, G, g0, g_stride)
                _tile_store(1, G, g0 + 64, g_stride)
                _tile_store(2, G, g0 + 16 * g_stride, g_stride)
                _tile_store(3, G, g0 + 16 * g_stride + 64, g_stride)
    _tile_release()


def ceil32(n: int) -> int:
    """``n`` rounded up to a multiple of 32."""
    return -(-n // 32) * 32


def pack_scratch_shape(block_rows: int, D: int) -> tuple[int, int, int, int]:
    """Shape of each of ``bf16x3_scores``'s packing buffers for ``block_rows`` rows."""
    return (2 * max(1, math.ceil(block_rows / 32)), ceil32(D) // 32, 16, 32)
