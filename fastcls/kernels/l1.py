"""L1 (Manhattan) kernels: register-tiled distance blocks and fused distance + top-k.

Public kernel names (the dispatch table in :mod:`fastcls.kernels.knn` uses them):

* ``l1_topk_float(Q, X, offset, best_d, best_i)`` : float32 / float64 inputs
* ``l1_topk_uint8(Q, X, offset, best_d, best_i)`` : uint8 inputs, exact integers
* ``l1_pairwise_float(X, Y, out)``, ``l1_pairwise_uint8(X, Y, out)``

Contract of the top-k kernels: ``best_d`` (n_queries, k) float64 and ``best_i``
(n_queries, k) int64 hold each query's running top-k sorted by (distance, index),
initialised to ``(+inf, -1)`` and possibly filled by earlier calls on earlier training
tiles (``offset`` = global index of ``X[0]``, tiles in increasing offset). The kernel
merges the rows of ``X`` with *exact* float64 distances, equal distances keeping the
lower global index.

Layout of the computation
-------------------------
Parallel over contiguous chunks of queries only (``prange``), so every query's result
is computed by one thread from the same data in the same order: results do not depend
on the thread count or on any tile size. Each thread walks the training rows in
blocks of ``settings.l1_block_rows`` rows (they stay in its L2 cache) and, inside a block,
computes a register tile of 4 queries x 2 training rows (8 independent accumulators)
with one ``for d in range(D)`` loop over pre-sliced rows, so that each loaded SIMD
vector of features is used 2 or 4 times. Remainder queries / rows are handled by
clamping the row index (the duplicated lanes are computed and ignored).

* float: on AVX2 / AVX-512 (the choice of :func:`uint8_impl`) the tile is a Numba
  ``@intrinsic`` in LLVM IR (``vsubps / vandps / vaddps`` on 32- or 64-byte vectors,
  8 vector accumulators, a transposed reduction tree), inlined into the top-k driver:
  it takes the 2-D arrays and row numbers (no row view, so no atomic reference count
  on the shared array and no call per tile) and its summation order is fixed by the IR,
  so the driver needs no fastmath. The top-k driver cuts the features into slices of
  ``_FEATURE_SLICE_BYTES`` per row, so the 4 query rows' slice stays in L1 while the
  block's rows stream past it (the tile was bound by L2 bandwidth: 1.17-1.20x on
  AVX-512 at D = 3072, neutral on AVX2), and adds the 8 partial sums of each slice in
  float64. Other CPUs, rows shorter than a vector and the pairwise kernel use a loop
  compiled with ``fastmath=REDUCE`` (reassociation lets LLVM vectorise the 8 sums), a
  call of its own. Fast sums are accumulated in the input precision.
* uint8: ``vpsadbw`` (sum of absolute differences of unsigned bytes into 64-bit
  lanes), which LLVM never emits from a Numba loop, is called through a Numba
  ``@intrinsic`` written in LLVM IR (``llvm.x86.avx512.psad.bw.512`` on 64-byte
  vectors or ``llvm.x86.avx2.psad.bw`` on 32-byte vectors); a feature count that is not
  a multiple of the width takes one extra masked vector that overlaps the previous. The
  intrinsic takes the 2-D arrays and row numbers and is inlined into the driver: no row
  view (an atomic reference count on the shared array) and no call per tile. CPUs
  without AVX2 get an int32-widening register-tiled kernel. :func:`uint8_impl` makes
  the choice; ``settings.l1_uint8_impl`` forces one (tests use it). uint8 sums are exact
  integers, so the uint8 top-k needs no correction step.

Why the float top-k is exact (the certification argument)
----------------------------------------------------------
Let ``s = sum_d |q_d - x_d|`` be the exact real L1 distance of two rows of floating
point numbers, ``a`` the fast sum (working precision with unit roundoff ``u_w``:
``2**-24`` for float32, ``2**-53`` for float64, summed in any order: reassociation,
SIMD lanes, feature slices; an addition done in float64 only rounds less) and ``e``
the exact distance the kernel reports: the float64 sum of
``|float64(q_d) - float64(x_d)|`` in index order ``d = 0 .. D-1`` (no fastmath), the
"float64 computation" of the contract. Each term of ``a`` is the rounded difference
(one rounding, ``abs`` is exact) passed through at most ``D - 1`` additions of
non-negative numbers, in any tree order, so (Higham, *Accuracy and Stability of
Numerical Algorithms*, 2nd ed., 2.2 and 4.2) ``|a - s| <= gamma_D(u_w) * s`` with
``gamma_n(u) = n u / (1 - n u)``; likewise ``|e - s| <= gamma_D(2**-53) * s``. No
underflow can spoil this: a subtraction or an addition of non-negative numbers whose
result is subnormal is exact (gradual underflow; fastcls never enables flush-to-zero).
Therefore

    e >= c * a,   c = (1 - gamma_D(2**-53)) / (1 + gamma_D(u_w)),

and the kernel uses ``c`` shrunk by a few float64 ulps (:func:`lower_bound_factor`)
so that computing ``c * a`` in float64 can only lower the bound further. When the
fast sum overflows (``a = inf``), some partial sum of non-negative terms exceeded the
largest finite number of the working format ``F`` up to the same error factor, so
``e >= c * F`` (a finite float64 total above ``F`` gives ``e >= c * a >= c * F``
directly): the kernel replaces ``a`` by ``min(a, F)`` in the bound.

For each query and each training tile ``X`` the kernel then

1. scans ``X`` in index order, keeping the ``k + m`` smallest fast sums (strict ``<``,
   so among equal fast sums the lower index stays) among the rows that pass the
   conservative pre-filter ``c * a <= T0``, where ``T0 = best_d[k-1]`` is the exact
   k-th distance from the earlier tiles (rows that fail it have ``e > T0``: they can
   never enter, because the k-th distance only decreases);
2. recomputes the candidates exactly (``e``) and merges them into ``best`` ordered by
   (distance, global index); let ``T`` be the new k-th exact distance;
3. certifies: every row that is not a candidate was either pre-filtered (``e > T0 >=
   T``) or had a fast sum ``>= A``, the largest candidate's fast sum (the candidate
   list was full), hence ``e >= c * min(A, F)``. If the list is not full, or
   ``c * min(A, F) > T``, no such row can be closer than the k-th neighbour or tie
   with it, so the merged ``best`` equals the exact top-k of (earlier tiles + ``X``);
4. otherwise (many exact ties or near-ties within the error bound: duplicates,
   constant rows) the query's ``best`` is restored to its state before step 2 and
   the tile is rescanned for that query alone: each row whose bound ``c * a`` does
   not exceed the current k-th distance is recomputed exactly and inserted (strict
   ``<`` in index order). This fallback is exact by the same bound and costs one fast
   pass plus one exact sum per near-tie.

With ``m = settings.l1_extra_candidates = 8`` the certificate holds for practically every query on
real and random data (``gamma_3072(2**-24) = 1.8e-4`` relative): the exact work is
``(k + m) * D`` per query and tile, against ``n_tile * D`` for the scan.

The absolute bound (``settings.l1_float_bound``)
------------------------------------------------
``|q - x| = 2 max(q, x) - q - x``, so the tile can sum ``t = sum_d max(q_d, x_d)`` (a
``vmaxps`` and an add per term instead of a subtraction, an ``abs`` and an add: 1.2x
faster in L1) and recover ``a = 2 t - S_q - S_x`` with the rows' float64 sums ``S``.
The error is then absolute, not relative: every term is exact (a max does not round),
so a slice's working-precision sum is within ``gamma_n(u_w) * sum_d |max(q_d, x_d)|`` of
the real one, where ``n`` bounds the roundings a term passes through (the SIMD tiles:
one per vector of ``lanes`` features, one for the masked tail vector, ``log2(lanes)`` in
the lane tree; the portable loop: the slice length), the float64 sum of the slices adds
``gamma_{n_dc}(2**-53)``, ``S`` is within ``gamma_D(2**-53) * |row|_1`` and forming
``a`` rounds a few times in float64. With ``|max(q, x)| <= |q| + |x|``::

    |a - s| <= kappa * (|q|_1 + |x|_1),   kappa = 2 eps_t + gamma_D(2**-53) + 16 * 2**-53

(:func:`absolute_bound_kappa`, 0.1% added), and the key ``c' * (a - kappa (|q|_1 +
|x|_1))`` with ``c' = (1 - gamma_D(2**-53)) (1 - 8 * 2**-53)`` is a lower bound of ``e``.
Steps 1-4 above use these keys in place of ``c * a`` (the fallback keeps the relative
bound): exactness never depends on which bound runs. Speed does: when the data sit far
from the origin compared with their spread, ``kappa (|q|_1 + |x|_1)`` dwarfs the gaps
between neighbours and the certificate would fail. "auto" therefore takes the absolute
bound only when, on a sample of 8 queries and 64 rows, its error is no larger than the
relative bound's ``gamma_D(u_w) * distance``, and never when a partial sum could overflow.

Pixel data stored as floats (every value of Q and of the tile an integer in 0..255, as
CIFAR-10 after ``astype(np.float32)``) skip all this when ``settings.l1_uint8_shortcut`` is on:
one pass checks and copies them to uint8 and the exact uint8 kernel runs (same exact
integer distances, about 5x faster); any other value sends the call to the float path.

The pairwise kernels write the fast sums: ``l1_pairwise_float`` on float32 inputs
returns float32 values with relative error at most ``gamma_D(2**-24)`` (about ``1.8e-4``
for ``D = 3072``, typically ``1e-6``), on float64 inputs float64 values within
``gamma_D(2**-53)``; ``l1_pairwise_uint8`` returns exact integers as float64.
"""

from __future__ import annotations

import numpy as np
from numba import prange, types
from numba.extending import intrinsic, overload

from fastcls._config import REDUCE, jit, settings
from fastcls._runtime import best_simd, cpu_name, new_buffer, scratch
from fastcls.kernels import prune
from fastcls.kernels._llvm_ir import (
    any_lane,
    horizontal_sums,
    ranges_with_early_exit,
    row_pointers,
    transposed_tree,
    vectors_with_tail,
)
from fastcls.kernels._rows import padded_block, padded_chunk, store_tuple
from fastcls.kernels._tokens import impl_token, token_code
from fastcls.kernels.prune import STOPPED_SUM, int_thresholds
from fastcls.kernels.rounding import U32, U64, gamma
from fastcls.kernels.slab import driver_slab, l1_slab_tiles
from fastcls.kernels.topk import insert_sorted, insert_sorted_by_pair, run_serial

# Block and chunk sizes, the extra candidates and the uint8 micro-kernel choice are
# run-time tunables in fastcls._config.settings (l1_block_rows, l1_query_chunk_rows,
# l1_block_bytes, l1_query_chunk_bytes, l1_extra_candidates, l1_uint8_impl,
# l1_uint8_shortcut). Results never depend on them.

#: bytes of each query row's feature slice in the float top-k (4 rows: 16 KB, in L1)
_FEATURE_SLICE_BYTES = 4096

#: int32 accumulators of the portable uint8 kernel are flushed every this many features
_I32_SEGMENT = 1 << 23  # 255 * 2**23 < 2**31


# --------------------------------------------------------------------------- parameters
def lower_bound_factor(n_features: int, dtype: np.dtype) -> float:
    """Factor ``c`` with ``exact_float64_distance >= c * fast_sum`` (module docstring).

    Parameters
    ----------
    n_features : int
        Number of features D (terms in each sum).
    dtype : numpy dtype
        Working precision of the fast sums (float32 or float64).

    Returns
    -------
    float
        ``(1 - gamma_D(2**-53)) / (1 + gamma_D(u)) * (1 - 8 * 2**-53)``, or 0.0 when the
        bound is vacuous (then every row is a candidate: still exact, only slower).
    """
    u = U32 if np.dtype(dtype) == np.float32 else U64
    n = max(int(n_features), 1)
    g_fast, g_exact = gamma(n, u), gamma(n, U64)
    if not (g_fast < 1.0 and g_exact < 1.0):
        return 0.0
    return (1.0 - g_exact) / (1.0 + g_fast) * (1.0 - 8 * 2.0**-53)


def _query_chunk(n_queries: int, row_bytes: int) -> int:
    """Queries per parallel chunk: ``settings.l1_query_chunk_rows``, or a multiple of 4
    chosen so that a chunk stays under ``settings.l1_query_chunk_bytes`` and the chunk
    count is a multiple of the thread count (prange splits iterations statically)."""
    if settings.l1_query_chunk_rows > 0:
        return int(settings.l1_query_chunk_rows)
    from fastcls._config import get_num_threads

    threads = get_num_threads()
    cap = max(4, int(settings.l1_query_chunk_bytes) // max(row_bytes, 1))
    n_chunks = threads * -(-n_queries // (threads * cap))
    per = -(-n_queries // n_chunks)
    return max(4, -(-per // 4) * 4)


def _block_rows(row_bytes: int) -> int:
    """Training rows per cache block: ``settings.l1_block_rows``, or an even count of
    about ``settings.l1_block_bytes``."""
    if settings.l1_block_rows > 0:
        return int(settings.l1_block_rows)
    return max(2, (int(settings.l1_block_bytes) // max(row_bytes, 1)) // 2 * 2)


def _sizes(A) -> tuple[int, int]:
    row_bytes = A.shape[1] * A.itemsize
    return _block_rows(row_bytes), _query_chunk(A.shape[0], row_bytes)


# --------------------------------------------------------------------------- float tiles
def _term(bound, a, b):
    """One term of a fast sum: ``|a - b|``, or ``max(a, b)`` for the absolute bound."""
    raise NotImplementedError  # pragma: no cover - compiled through the overload below


@overload(_term, jit_options={"nogil": True}, inline="always")
def _term_overload(bound, a, b):
    code = token_code(bound)
    if code is None:
        return None
    use_max = code & 1
    if use_max:
        return lambda bound, a, b: max(a, b)
    return lambda bound, a, b: abs(a - b)


@jit(fastmath=REDUCE)
def _tile_float_4x2(Q, X, qa, qlast, ja, jlast, d0, d1, zero, bound):
    """The 8 fast sums ``|Q[qa + a, d] - X[ja + b, d]|`` over features ``d0 <= d < d1`` of
    a 4 x 2 tile (input precision, any order); row numbers past ``qlast`` / ``jlast`` are
    clamped to them.

    With the ``bound`` token of the absolute bound (code 1) the terms are ``max(q_a, x_b)``.

    The tile takes the 2-D arrays and row numbers, not row views: a view costs an atomic
    reference-count increment and decrement on the array every thread shares. It is a
    call of its own (not inlined into the driver) because it needs ``fastmath`` and the
    drivers must not have it (their exact sums and bounds are order-sensitive).
    """
    q0 = qa
    q1 = min(qa + 1, qlast)
    q2 = min(qa + 2, qlast)
    q3 = min(qa + 3, qlast)
    j0 = ja
    j1 = min(ja + 1, jlast)
    s00 = s01 = s10 = s11 = s20 = s21 = s30 = s31 = zero
    for d in range(d0, d1):
        b0 = X[j0, d]
        b1 = X[j1, d]
        a = Q[q0, d]
        s00 += _term(bound, a, b0)
        s01 += _term(bound, a, b1)
        a = Q[q1, d]
        s10 += _term(bound, a, b0)
        s11 += _term(bound, a, b1)
        a = Q[q2, d]
        s20 += _term(bound, a, b0)
        s21 += _term(bound, a, b1)
        a = Q[q3, d]
        s30 += _term(bound, a, b0)
        s31 += _term(bound, a, b1)
    return s00, s01, s10, s11, s20, s21, s30, s31


def _make_fsum_intrinsic(vec_bytes: int, use_max: bool = False, on_fma: bool = False, nx: int = 2):
    """Numba intrinsic: 4 x ``nx`` tile of float sums of ``|q_a - x_b|`` in explicit SIMD.

    With ``use_max`` the terms are ``max(q_a, x_b)`` instead (``vmaxps``, two vector
    operations per term with the add instead of three: see "absolute bound" in the
    module docstring).

    ``fsum(Q, X, qa, qlast, ja, jlast, d0, d1)`` -> UniTuple(dtype, 4 nx), entry ``nx a + b``
    = the fast sum of ``|Q[min(qa + a, qlast), d] - X[min(ja + b, jlast), d]|`` over the
    ``d1 - d0 >= lanes`` features ``d0 <= d < d1`` (rows of 2-D float32 / float64 arrays
    with unit inner stride), in the input precision. Written in LLVM IR with vectors of
    ``vec_bytes`` (``lanes = vec_bytes / itemsize``): the summation order is fixed by the IR (each
    lane sums every ``lanes``-th term, then a tree adds the lanes), so it needs no
    fastmath and is inlined into drivers that must not have it; the certification
    bound holds for any order. It takes the arrays and row numbers, not row views (a
    view costs an atomic reference count on the array every thread shares). LLVM
    left alone keeps 256-bit vectors on AVX-512 CPUs; 512-bit ones give it more lanes
    per instruction.

    The last ``D % lanes`` features are read as one vector ending at the last one with
    its first lanes zeroed on both sides (``|0 - 0| = 0`` adds nothing).

    With ``on_fma`` one operation per term moves from the adder to the FMA unit: the
    absolute bound accumulates ``fma(t, 1, acc)``, the relative one takes ``fma(x, -1,
    q)`` for the difference. Both round exactly as the add / subtract they replace (the
    product by +-1 is exact), so sums, bounds and ``kappa`` are unchanged; only the
    execution port differs. AMD Zen runs max, add and subtract on the same two ports and
    FMA on two others, so the tile's adder-bound loop splits over four ports
    (``settings.l1_float_accumulate``).
    """
    from llvmlite import ir
    from numba.core import cgutils

    @intrinsic
    def fsum(typingctx, Q, X, qa, qlast, ja, jlast, d0, d1):
        i64s = (types.int64,) * 6
        sig = types.UniTuple(Q.dtype, 4 * nx)(Q, X, *i64s)

        def codegen(context, builder, signature, args):
            i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
            fty = context.get_value_type(signature.args[0].dtype)
            esize = signature.args[0].dtype.bitwidth // 8
            lanes = vec_bytes // esize
            vty = ir.VectorType(fty, lanes)
            suffix = f"v{lanes}f{esize * 8}"
            fabs = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vty, [vty]), f"llvm.fabs.{suffix}"
            )
            qarr = context.make_array(signature.args[0])(context, builder, args[0])
            xarr = context.make_array(signature.args[1])(context, builder, args[1])
            qa_, qlast_, ja_, jlast_, d0_, d1_ = args[2:8]
            D = builder.sub(d1_, d0_)
            start = builder.mul(d0_, ir.Constant(i64, esize))
            ptrs = row_pointers(builder, qarr, qa_, 4, last=qlast_, offset=start)
            ptrs += row_pointers(builder, xarr, ja_, nx, last=jlast_, offset=start)
            zero = ir.Constant(vty, None)
            accs = [cgutils.alloca_once_value(builder, zero) for _ in range(4 * nx)]
            esz = ir.Constant(i64, esize)
            if on_fma:
                fma = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(vty, [vty] * 3), f"llvm.fma.{suffix}"
                )
                # 1.0 and -1.0 through an empty asm: LLVM folds fma(a, 1, b) back to a + b
                opaque = ir.FunctionType(vty, [vty])
                one = builder.asm(opaque, "", "=x,0", [ir.Constant(vty, [1.0] * lanes)], False)
                minus_one = builder.asm(
                    opaque, "", "=x,0", [ir.Constant(vty, [-1.0] * lanes)], False
                )

            def step(off, mask):
                vecs = []
                for p in ptrs:
                    addr = builder.gep(p, [builder.mul(off, esz)], source_etype=i8)
                    addr = builder.bitcast(addr, vty.as_pointer())
                    v = builder.load(addr, align=esize, typ=vty)
                    if mask is not None:
                        v = builder.select(mask, v, zero)
                    vecs.append(v)
                for a in range(4):
                    for b in range(nx):
                        acc = accs[nx * a + b]
                        qv, xv = vecs[a], vecs[4 + b]
                        if use_max:  # select on an ordered compare: one vmaxps, no NaN fixup
                            t = builder.select(builder.fcmp_ordered(">", qv, xv), qv, xv)
                            if on_fma:
                                total = builder.call(fma, [t, one, builder.load(acc)])
                            else:
                                total = builder.fadd(builder.load(acc), t)
                        else:
                            if on_fma:
                                d = builder.call(fma, [xv, minus_one, qv])
                            else:
                                d = builder.fsub(qv, xv)
                            total = builder.fadd(builder.load(acc), builder.call(fabs, [d]))
                        builder.store(total, acc)

            vectors_with_tail(builder, D, lanes, step, i64)

            def halve(v, n):
                """Lanes ``t`` + ``t + n / 2`` of a vector of ``n`` lanes."""
                lo = ir.Constant(ir.VectorType(i32, n // 2), list(range(n // 2)))
                hi = ir.Constant(ir.VectorType(i32, n // 2), list(range(n // 2, n)))
                return builder.fadd(
                    builder.shuffle_vector(v, v, lo), builder.shuffle_vector(v, v, hi)
                )

            vecs = [builder.load(acc) for acc in accs]
            n = lanes
            while n > 8:  # fold to 8 lanes: one transposed tree for the 8 sums
                vecs = [halve(v, n) for v in vecs]
                n //= 2
            # one transposed tree of 8 lanes, or two of 4 (the helper groups them)
            sums = horizontal_sums(builder, vecs, n, builder.fadd)
            return context.make_tuple(builder, signature.return_type, sums)

        return sig, codegen

    return fsum


#: (AVX-512, absolute bound, on the FMA unit, training rows) -> the SIMD tile; 4 rows
#: only on 64-byte vectors (16 sums and 8 operands need AVX-512's 32 registers)
_FLOAT_TILES = {
    (wide, use_max, on_fma, cols): _make_fsum_intrinsic(64 if wide else 32, use_max, on_fma, cols)
    for wide in (False, True)
    for use_max in (False, True)
    for on_fma in (False, True)
    for cols in ((2, 4) if wide else (2,))
}


def _tile_float(impl, bound, Q, X, qa, qlast, ja, jlast, d0, d1, zero):
    """Fast 4 x 2 float tile of implementation ``impl`` and pre-filter ``bound`` (tokens,
    :mod:`._tokens`: ``bound`` code bit 0 clear sums ``|q - x|``, set sums ``max(q, x)``;
    bit 1 set puts one operation per term on the FMA unit, :func:`float_accumulate`)."""
    raise NotImplementedError  # pragma: no cover - compiled through the overload below


@overload(_tile_float, jit_options={"nogil": True}, inline="always")
def _tile_float_overload(impl, bound, Q, X, qa, qlast, ja, jlast, d0, d1, zero):
    # the uint8 implementation code: AVX2 / AVX-512 vectors in explicit IR (inlined),
    # else, or for rows shorter than a vector, the fastmath loop (a call of its own)
    code = token_code(impl)
    bound_code = token_code(bound)
    if code is None or bound_code is None:
        return None
    if code == 0:

        def portable(impl, bound, Q, X, qa, qlast, ja, jlast, d0, d1, zero):
            return _tile_float_4x2(Q, X, qa, qlast, ja, jlast, d0, d1, zero, bound)

        return portable
    # the float drivers share the uint8 codes: those of the implementations name the 4 x 2
    # tiles, the AVX-512 4 x 4 code the wide one (so _tile_cols serves both)
    wide = code in (_UINT8_CODES["avx512"], _UINT8_WIDE_CODES["avx512"])
    cols = 4 if code == _UINT8_WIDE_CODES["avx512"] else 2
    fsum = _FLOAT_TILES[wide, bool(bound_code & 1), bool(bound_code & 2), cols]
    lanes = (64 if wide else 32) // Q.dtype.bitwidth * 8

    if cols == 4:  # rows shorter than a vector: two portable 4 x 2 tiles, entries 4 a + b

        def simd4(impl, bound, Q, X, qa, qlast, ja, jlast, d0, d1, zero):
            if d1 - d0 < lanes:
                a = _tile_float_4x2(Q, X, qa, qlast, ja, jlast, d0, d1, zero, bound)
                b = _tile_float_4x2(Q, X, qa, qlast, ja + 2, jlast, d0, d1, zero, bound)
                return (
                    a[0], a[1], b[0], b[1], a[2], a[3], b[2], b[3],
                    a[4], a[5], b[4], b[5], a[6], a[7], b[6], b[7],
                )  # fmt: skip
            return fsum(Q, X, qa, qlast, ja, jlast, d0, d1)

        return simd4

    def simd(impl, bound, Q, X, qa, qlast, ja, jlast, d0, d1, zero):
        if d1 - d0 < lanes:
            return _tile_float_4x2(Q, X, qa, qlast, ja, jlast, d0, d1, zero, bound)
        return fsum(Q, X, qa, qlast, ja, jlast, d0, d1)

    return simd


def _filter_key(bound, a, c, big, sq, aq, qi, sx, ax, j, kappa):
    """Lower bound on the exact distance of query ``qi`` and row ``j`` from their fast sum
    ``a`` (module docstring): ``c * min(a, big)`` for the relative bound, ``c * (2 a -
    sq[qi] - sx[j] - kappa * (aq[qi] + ax[j]))`` for the absolute one (``sq``/``sx`` the
    rows' sums, ``aq``/``ax`` the sums of their absolute values; not read, and may be
    empty, for the relative bound)."""
    raise NotImplementedError  # pragma: no cover - compiled through the overload below


@overload(_filter_key, jit_options={"nogil": True}, inline="always")
def _filter_key_overload(bound, a, c, big, sq, aq, qi, sx, ax, j, kappa):
    code = token_code(bound)
    if code is None:
        return None
    if code & 1:

        def absolute(bound, a, c, big, sq, aq, qi, sx, ax, j, kappa):
            return c * ((2.0 * a - sq[qi] - sx[j]) - kappa * (aq[qi] + ax[j]))

        return absolute

    def relative(bound, a, c, big, sq, aq, qi, sx, ax, j, kappa):
        return c * min(a, big)  # an overflowed sum counts as big

    return relative


@jit(fastmath=REDUCE)
def _fast_pair_float(Q, qi, X, j, zero):
    """One fast sum ``sum |Q[qi] - X[j]|`` (input precision, any order)."""
    s = zero
    for d in range(Q.shape[1]):
        s += abs(Q[qi, d] - X[j, d])
    return s


@jit(inline="always")
def _exact_pair(Q, qi, X, j):
    """The exact distance: float64 sum of ``|Q[qi, d] - X[j, d]|`` in index order (no
    fastmath; inlined, so the driver must not have fastmath either)."""
    s = 0.0
    for d in range(Q.shape[1]):
        s += abs(np.float64(Q[qi, d]) - np.float64(X[j, d]))
    return s


@jit(inline="always")
def _exact_4(Q, qi, X, j0, j1, j2, j3):
    """:func:`_exact_pair` of query ``qi`` with 4 rows at once: the same 4 sums (each in
    index order), 4 independent dependency chains instead of one."""
    s0 = s1 = s2 = s3 = 0.0
    for d in range(Q.shape[1]):
        a = np.float64(Q[qi, d])
        s0 += abs(a - np.float64(X[j0, d]))
        s1 += abs(a - np.float64(X[j1, d]))
        s2 += abs(a - np.float64(X[j2, d]))
        s3 += abs(a - np.float64(X[j3, d]))
    return s0, s1, s2, s3


# --------------------------------------------------------------------------- uint8 tiles
def _make_sad_intrinsic(width: int, nx: int = 2, pruned: bool = False):
    """Numba intrinsic: 4 x ``nx`` tile of sums of |q_a - x_b| over the ``D`` bytes of rows.

    ``sad(Q, X, qa, qlast, ja, jlast)`` -> UniTuple(int64, 4 * nx), entry ``nx * a + b`` =
    ``sum |Q[min(qa + a, qlast)] - X[min(ja + b, jlast)]|`` over all ``D = Q.shape[1]
    >= width`` bytes (rows of 2-D uint8 arrays with unit inner stride). The tile takes
    the arrays and row numbers, not row views: a view per row costs an atomic
    reference-count increment and decrement on the array shared by every thread, and
    the call with six array structs was not inlined (about half the time at D = 784).

    The last ``rem = D % width`` bytes are read as one vector ending at the last byte
    with its first ``width - rem`` lanes zeroed on both sides (a masked load on
    AVX-512), instead of a scalar tail per pair.

    ``width`` 32 calls ``llvm.x86.avx2.psad.bw`` (<32 x i8> x 2 -> <4 x i64>), 64
    calls ``llvm.x86.avx512.psad.bw.512`` (<64 x i8> x 2 -> <8 x i64>). Unaligned
    loads, ``4 * nx`` vector accumulators reduced once at the end.

    ``nx`` 4 (16 accumulators and 8 operands: AVX-512's 32 vector registers, also at
    32 bytes) loads 8 rows per 16 sums instead of 6 per 8: 1.1-1.2x the top-k kernel on
    AMD Zen 4, 1.05x on the Intel Xeon's zmm (:data:`WIDE_SAD_TILES`).

    ``pruned``: the tile of :func:`_topk_uint8_chunk_pruned`, ``sad(Q, X, qa, qlast, ja,
    jlast, cuts, t0, t1, t2, t3)`` on rows of whole vectors (padded: no tail). It sums
    the vectors up to ``cuts[0]``, reduces its accumulators and compares the sums with
    the int64 thresholds ``t0 .. t3`` of its queries, goes on to ``cuts[1]`` if any sum
    is below its query's, and so on. It returns its sums if any is below its threshold
    after the last cut (the row's end), else :data:`~fastcls.kernels.prune.STOPPED_SUM`
    for every pair.
    """
    from llvmlite import ir
    from numba.core import cgutils

    name = "llvm.x86.avx2.psad.bw" if width == 32 else "llvm.x86.avx512.psad.bw.512"
    lanes = width // 8

    def codegen(context, builder, signature, args):
        i8, i64 = ir.IntType(8), ir.IntType(64)
        vbytes = ir.VectorType(i8, width)
        vsum = ir.VectorType(i64, lanes)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vsum, [vbytes, vbytes]), name
        )
        qarr = context.make_array(signature.args[0])(context, builder, args[0])
        xarr = context.make_array(signature.args[1])(context, builder, args[1])
        D = cgutils.unpack_tuple(builder, qarr.shape, 2)[1]
        qa_, qlast_, ja_, jlast_ = args[2:6]
        ptrs = row_pointers(builder, qarr, qa_, 4, last=qlast_)
        ptrs += row_pointers(builder, xarr, ja_, nx, last=jlast_)
        accs = [cgutils.alloca_once_value(builder, ir.Constant(vsum, None)) for _ in range(4 * nx)]

        def step(off, mask):
            vecs = []
            for p in ptrs:
                addr = builder.gep(p, [off], source_etype=i8)
                v = builder.load(addr, align=1, typ=vbytes)
                if mask is not None:  # both sides zero: |0 - 0| adds nothing
                    v = builder.select(mask, v, ir.Constant(vbytes, None))
                vecs.append(v)
            for a in range(4):
                for b in range(nx):
                    acc = accs[nx * a + b]
                    sad = builder.call(fn, [vecs[a], vecs[4 + b]])
                    builder.store(builder.add(builder.load(acc), sad), acc)

        if pruned:
            return pruned_loop(context, builder, signature, args, accs, step)
        # the tail: one vector ending at the last byte, masked on both sides
        vectors_with_tail(builder, D, width, step, i8)

        vecs = [builder.load(acc) for acc in accs]
        # 8 or 16 accumulators: trees of 8 lanes, or of 4 (the helper groups them)
        sums = horizontal_sums(builder, vecs, lanes, builder.add)
        return context.make_tuple(builder, signature.return_type, sums)

    def pruned_loop(context, builder, signature, args, accs, step):
        """The ranges of the pruned tile, its early exit, its sums (see above).

        The check is vector-wide: the accumulators' transposed tree (one lane per sum),
        a compare with the thresholds laid out the same way, one branch (extracting
        eight sums and comparing them one by one cost as much as nine vector steps)."""
        i64 = ir.IntType(64)
        carr = context.make_array(signature.args[6])(context, builder, args[6])
        n_cuts = cgutils.unpack_tuple(builder, carr.shape, 1)[0]
        thresholds = args[7:11]
        never = ir.Constant(i64, 2**63 - 1)  # a padding lane is never below
        vsum = accs[0].type.pointee
        n_items = -(-len(accs) // lanes)
        zero = ir.Constant(vsum, None)
        slots = [cgutils.alloca_once_value(builder, zero) for _ in range(n_items)]
        below_slot = cgutils.alloca_once_value(builder, ir.Constant(ir.IntType(1), 0))
        labels_of = []

        def check(r):
            loaded = [builder.load(acc) for acc in accs]
            items = transposed_tree(builder, loaded, lanes, builder.add)
            assert len(items) == n_items and all(len(labels) == lanes for _, labels in items)
            below = None
            for slot, (v, labels) in zip(slots, items, strict=True):
                thr = ir.Constant(vsum, None)
                for g, label in enumerate(labels):
                    value = never if label is None else thresholds[label // nx]
                    thr = builder.insert_element(thr, value, ir.Constant(ir.IntType(32), g))
                cmp = builder.icmp_signed("<", v, thr)
                below = cmp if below is None else builder.or_(below, cmp)
                builder.store(v, slot)
                labels_of.append(labels)
            any_below = any_lane(builder, below)
            builder.store(any_below, below_slot)
            return any_below

        ranges_with_early_exit(
            builder, carr.data, n_cuts, width, lambda off: step(off, None), check
        )
        stopped = ir.Constant(i64, STOPPED_SUM)
        any_below = builder.load(below_slot)
        sums = [None] * len(accs)
        for slot, labels in zip(slots, labels_of, strict=True):
            v = builder.load(slot)
            for g, label in enumerate(labels):
                if label is not None:
                    value = builder.extract_element(v, ir.Constant(ir.IntType(32), g))
                    sums[label] = builder.select(any_below, value, stopped)
        return context.make_tuple(builder, signature.return_type, sums)

    result = types.UniTuple(types.int64, 4 * nx)
    i64s = (types.int64,) * 4

    if pruned:

        @intrinsic
        def sad_tile_pruned(typingctx, Q, X, qa, qlast, ja, jlast, cuts, t0, t1, t2, t3):
            return result(Q, X, *i64s, cuts, *i64s), codegen

        return sad_tile_pruned

    @intrinsic
    def sad_tile(typingctx, Q, X, qa, qlast, ja, jlast):
        return result(Q, X, *i64s), codegen

    return sad_tile


#: (vector bytes, training rows per tile) -> the 4 x nx ``vpsadbw`` tile, called by the
#: drivers as it is (inlined: an intrinsic): rows of at least one vector, shorter rows take
#: the portable tile (:func:`_uint8_token`). The 4 x 4 tiles need 24 vector registers
#: (AVX-512's 32, also at 32 bytes; AVX2's 16 would spill)
_SAD_TILES = {(width, nx): _make_sad_intrinsic(width, nx) for width in (32, 64) for nx in (2, 4)}


@jit
def _seg_uint8_4x2_i32(q0, q1, q2, q3, x0, x1):
    """int32-widening 4 x 2 tile over at most 2**23 features (no overflow)."""
    s00 = s01 = s10 = s11 = s20 = s21 = s30 = s31 = np.int32(0)
    for d in range(q0.shape[0]):
        b0 = np.int32(x0[d])
        b1 = np.int32(x1[d])
        a = np.int32(q0[d])
        s00 = np.int32(s00 + abs(a - b0))
        s01 = np.int32(s01 + abs(a - b1))
        a = np.int32(q1[d])
        s10 = np.int32(s10 + abs(a - b0))
        s11 = np.int32(s11 + abs(a - b1))
        a = np.int32(q2[d])
        s20 = np.int32(s20 + abs(a - b0))
        s21 = np.int32(s21 + abs(a - b1))
        a = np.int32(q3[d])
        s30 = np.int32(s30 + abs(a - b0))
        s31 = np.int32(s31 + abs(a - b1))
    return s00, s01, s10, s11, s20, s21, s30, s31


@jit(inline="always")
def _tile_uint8_portable(Q, X, qa, qlast, ja, jlast):
    """Exact 4 x 2 tile for any CPU: int32 accumulators, flushed to int64 per segment."""
    q0 = Q[qa]
    q1 = Q[min(qa + 1, qlast)]
    q2 = Q[min(qa + 2, qlast)]
    q3 = Q[min(qa + 3, qlast)]
    x0 = X[ja]
    x1 = X[min(ja + 1, jlast)]
    D = q0.shape[0]
    s00 = s01 = s10 = s11 = s20 = s21 = s30 = s31 = np.int64(0)
    for start in range(0, D, _I32_SEGMENT):
        end = min(start + _I32_SEGMENT, D)
        t = _seg_uint8_4x2_i32(
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


# --------------------------------------------------------------------------- drivers
@jit
def _topk_float_chunk(
    Q, X, offset, best_d, best_i, zero, c, big, bound, c_key, kappa, sq, aq, sx, ax, cand_a,
    cand_j, c0, c1, block, dc, impl,
):  # fmt: skip
    """Queries ``c0:c1`` of :func:`_topk_float_kernel` (the body of its parallel loop)."""
    nx = X.shape[0]
    D = Q.shape[1]
    k = best_d.shape[1]
    kc = cand_a.shape[1]
    # the features in slices of dc (the last one longer): the 4 query rows' slice
    # stays in L1 while the block's rows stream past it; the 8 partial fast sums of
    # a tile are added up in float64 (the bound holds for any order and for sums
    # more accurate than the working precision)
    n_dc = max(1, D // dc)
    cols = _tile_cols(impl)  # the float token shares the uint8 codes (_tile_float)
    part = np.empty((4, min(block, nx)))
    # conservative pre-filter on lower bounds of the exact distances from the fast sums
    # (:func:`_filter_key`): key <= best_d[k-1] of earlier tiles
    for j0 in range(0, nx, block):
        j1 = min(j0 + block, nx)
        for qa in range(c0, c1, 4):
            part[:, : j1 - j0] = 0.0
            for i in range(n_dc):
                d0 = i * dc
                d1 = D if i == n_dc - 1 else d0 + dc
                for j in range(j0, j1, cols):
                    s = _tile_float(impl, bound, Q, X, qa, c1 - 1, j, j1 - 1, d0, d1, zero)
                    for t in range(4 * cols):
                        if j + t % cols < j1:
                            part[t // cols, j + t % cols - j0] += np.float64(s[t])
            # nested loops, not one over 4 * (j1 - j0) pairs: its two integer divisions
            # per pair cost about a tenth of the kernel
            for qi in range(qa, min(qa + 4, c1)):
                last_cand = cand_a[qi, kc - 1]
                kth = best_d[qi, k - 1]  # fixed until the rerank
                for ji in range(j0, j1):
                    a = part[qi - qa, ji - j0]
                    key = _filter_key(bound, a, c_key, big, sq, aq, qi, sx, ax, ji, kappa)
                    # row views only on insertion (each costs an atomic refcount)
                    if key < last_cand and key <= kth:
                        insert_sorted(cand_a[qi], cand_j[qi], key, ji)
                        last_cand = cand_a[qi, kc - 1]
    # exact rerank of the candidates, certificate, fallback
    saved_d = np.empty(k)
    saved_i = np.empty(k, dtype=np.int64)
    for qi in range(c0, c1):
        bd = best_d[qi]
        bi = best_i[qi]
        for u in range(k):  # element loops: see kernels.losses._pack_tail
            saved_d[u] = bd[u]
            saved_i[u] = bi[u]
        cj = cand_j[qi]
        n_c = 0
        while n_c < kc and cj[n_c] >= 0:
            n_c += 1
        for t in range(0, n_c, 4):
            last = n_c - 1
            e4 = _exact_4(
                Q, qi, X, cj[t], cj[min(t + 1, last)], cj[min(t + 2, last)],
                cj[min(t + 3, last)],
            )  # fmt: skip
            for u in range(min(4, n_c - t)):
                insert_sorted_by_pair(bd, bi, e4[u], offset + cj[t + u])
        if cj[kc - 1] < 0 or cand_a[qi, kc - 1] > bd[k - 1]:
            continue  # certified
        for u in range(k):
            bd[u] = saved_d[u]
            bi[u] = saved_i[u]
        for j in range(nx):
            a = min(np.float64(_fast_pair_float(Q, qi, X, j, zero)), big)
            if c * a <= bd[k - 1]:
                e = _exact_pair(Q, qi, X, j)
                if e < bd[k - 1]:
                    insert_sorted(bd, bi, e, offset + j)


@jit(parallel=True)
def _topk_float_kernel(
    Q, X, offset, best_d, best_i, zero, c, big, bound, c_key, kappa, sq, aq, sx, ax, m, block,
    chunk, dc, impl,
):  # fmt: skip
    nq = Q.shape[0]
    kc = best_d.shape[1] + m
    cand_a = np.full((nq, kc), np.inf)
    cand_j = np.full((nq, kc), -1, dtype=np.int64)
    n_chunks = (nq + chunk - 1) // chunk
    # the body is a function of its own: numba's parfor passes on a long loop body cost
    # more compile time than the extra call level
    for ch in prange(n_chunks):
        c0 = ch * chunk
        _topk_float_chunk(
            Q, X, offset, best_d, best_i, zero, c, big, bound, c_key, kappa, sq, aq, sx, ax,
            cand_a, cand_j, c0, min(c0 + chunk, nq), block, dc, impl,
        )  # fmt: skip


@jit(parallel=True)
def _pairwise_float_kernel(X, Y, out, zero, block, chunk):
    nq = X.shape[0]
    ny = Y.shape[0]
    n_chunks = (nq + chunk - 1) // chunk
    for ch in prange(n_chunks):
        c0 = ch * chunk
        c1 = min(c0 + chunk, nq)
        for j0 in range(0, ny, block):
            j1 = min(j0 + block, ny)
            for qa in range(c0, c1, 4):
                for j in range(j0, j1, 2):
                    s = _tile_float_4x2(X, Y, qa, c1 - 1, j, j1 - 1, 0, X.shape[1], zero, (0,))
                    for t in range(8):
                        qi = qa + (t >> 1)
                        ji = j + (t & 1)
                        if qi < c1 and ji < j1:
                            out[qi, ji] = s[t]


#: implementation name -> the code of its token (:func:`._tokens.impl_token`)
_UINT8_CODES = {"portable": 0, "avx2": 1, "avx512": 2}
#: bytes per vector of the SIMD uint8 tiles
_VECTOR_BYTES = {"avx2": 32, "avx512": 64}
#: the uint8 drivers' token codes beyond :data:`_UINT8_CODES`: the SIMD tiles of 4 x 4
_UINT8_WIDE_CODES = {"avx2": 3, "avx512": 4}
#: uint8 tile code -> (tile, training rows per tile)
_UINT8_TILES = {
    0: (_tile_uint8_portable, 2),
    1: (_SAD_TILES[32, 2], 2),
    2: (_SAD_TILES[64, 2], 2),
    3: (_SAD_TILES[32, 4], 4),
    4: (_SAD_TILES[64, 4], 4),
}


def _tile_uint8(impl, Q, X, qa, qlast, ja, jlast):
    """Exact 4 x ``nx`` uint8 tile of implementation ``impl`` (a token, :mod:`._tokens`;
    ``nx`` is :func:`_tile_cols`): entry ``nx * a + b`` is the distance of query row
    ``min(qa + a, qlast)`` and training row ``min(ja + b, jlast)``."""
    raise NotImplementedError  # pragma: no cover - compiled through the overload below


def _tile_cols(impl):
    """Training rows per tile of the implementation token ``impl`` (a constant; the uint8
    and float drivers share the codes)."""
    raise NotImplementedError  # pragma: no cover - compiled through the overload below


@overload(_tile_cols, jit_options={"nogil": True}, inline="always")
def _tile_cols_overload(impl):
    code = token_code(impl)
    if code is None:
        return None
    nx = _UINT8_TILES[code][1]
    return lambda impl: nx


@overload(_tile_uint8, jit_options={"nogil": True}, inline="always")
def _tile_uint8_overload(impl, Q, X, qa, qlast, ja, jlast):
    # Resolved at compile time on the token's type: only the chosen tile is compiled, so
    # a CPU without AVX2 never sees the x86 intrinsic, and each specialisation is a
    # distinct signature that numba's cache can store.
    code = token_code(impl)
    if code is None:
        return None
    tile = _UINT8_TILES[code][0]

    def impl_fn(impl, Q, X, qa, qlast, ja, jlast):
        return tile(Q, X, qa, qlast, ja, jlast)

    return impl_fn


@jit(inline="always")
def _below_4x2(s, t0, t1, t2, t3):
    """Whether any sum of a 4 x 2 tile ``s`` is below its query's threshold ``t0..t3``."""
    return (
        (s[0] < t0) | (s[1] < t0) | (s[2] < t1) | (s[3] < t1)
        | (s[4] < t2) | (s[5] < t2) | (s[6] < t3) | (s[7] < t3)
    )  # fmt: skip


@jit(inline="always")
def _below_4x4(s, t0, t1, t2, t3):
    """:func:`_below_4x2` of a 4 x 4 tile."""
    return (
        (s[0] < t0) | (s[1] < t0) | (s[2] < t0) | (s[3] < t0)
        | (s[4] < t1) | (s[5] < t1) | (s[6] < t1) | (s[7] < t1)
        | (s[8] < t2) | (s[9] < t2) | (s[10] < t2) | (s[11] < t2)
        | (s[12] < t3) | (s[13] < t3) | (s[14] < t3) | (s[15] < t3)
    )  # fmt: skip


def _tile_below(s, best_d, qa, qlast):
    """Whether any sum of the uint8 tile ``s`` (queries ``qa ..``, clamped to ``qlast``)
    is below its query's current k-th best distance: the common case, no candidate,
    costs one branch instead of one per pair (on Zen 4 the per-pair loop over the
    tuple, an indexed jump each, took as long as the 4 x 4 tile's arithmetic)."""
    raise NotImplementedError  # pragma: no cover - compiled through the overload below


@overload(_tile_below, jit_options={"nogil": True}, inline="always")
def _tile_below_overload(s, best_d, qa, qlast):
    if not isinstance(s, types.UniTuple) or s.count not in (8, 16):
        return None
    below = _below_4x2 if s.count == 8 else _below_4x4

    def impl(s, best_d, qa, qlast):
        k = best_d.shape[1]
        return below(
            s,
            best_d[qa, k - 1],
            best_d[min(qa + 1, qlast), k - 1],
            best_d[min(qa + 2, qlast), k - 1],
            best_d[min(qa + 3, qlast), k - 1],
        )

    return impl


@jit(inline="always")
def _merge_uint8_tile(s, buf, best_d, best_i, qa, c1, j, j1, cols, offset):
    """Merge the tile of exact sums ``s`` (queries ``qa ..`` below ``c1``, rows ``j ..``
    below ``j1``, ``cols`` a tile) into the running top-k, in row order."""
    k = best_d.shape[1]
    store_tuple(buf, s)
    for t in range(4 * cols):
        qi = qa + t // cols
        ji = j + t % cols
        if qi >= c1 or ji >= j1:
            continue
        e = np.float64(buf[t])
        if e < best_d[qi, k - 1]:
            insert_sorted(best_d[qi], best_i[qi], e, offset + ji)


@jit
def _topk_uint8_chunk(Q, X, offset, best_d, best_i, c0, c1, block, impl, width):
    """Queries ``c0:c1`` of :func:`_topk_uint8_kernel` (the body of its parallel loop)."""
    nx = X.shape[0]
    # width > 0: the chunk's queries and each training block are copied into
    # zero-padded rows of ``width`` bytes (a multiple of the vector), so no tile
    # takes the masked overlapping tail vector; |0 - 0| = 0, same sums
    cols = _tile_cols(impl)
    buf = np.empty(16, dtype=np.int64)  # a tile's sums (store_tuple: no indexed jumps)
    qb, xpad, qsub, xb = padded_chunk(Q, X, c0, c1, width, block)
    for j0 in range(0, nx, block):
        j1 = min(j0 + block, nx)
        xsub = padded_block(X, j0, j1, xpad, width)
        for qa in range(c0, c1, 4):
            for j in range(j0, j1, cols):
                s = _tile_uint8(impl, qb, xb, qa - qsub, c1 - 1 - qsub, j - xsub, j1 - 1 - xsub)
                if not _tile_below(s, best_d, qa, c1 - 1):
                    continue
                _merge_uint8_tile(s, buf, best_d, best_i, qa, c1, j, j1, cols, offset)


@jit(parallel=True)
def _topk_uint8_kernel(Q, X, offset, best_d, best_i, block, chunk, impl, width):
    nq = Q.shape[0]
    n_chunks = (nq + chunk - 1) // chunk
    for ch in prange(n_chunks):  # the body is a function: see _topk_float_kernel
        c0 = ch * chunk
        _topk_uint8_chunk(Q, X, offset, best_d, best_i, c0, min(c0 + chunk, nq), block, impl, width)


#: token code -> the pruning twin of :data:`_UINT8_TILES`'s SIMD tile. The ymm tiles only,
#: so far: the zmm twins (the factory makes them) are left until a machine with AVX-512
#: can test and time them; those CPUs and the portable tile keep the unpruned driver
_UINT8_PRUNED_TILES = {
    1: _make_sad_intrinsic(32, 2, pruned=True),
    3: _make_sad_intrinsic(32, 4, pruned=True),
}


def _tile_uint8_pruned(impl, Q, X, qa, qlast, ja, jlast, cuts, t0, t1, t2, t3):
    """:func:`_tile_uint8` with the pruning tile's early exit (:func:`_make_sad_intrinsic`)."""
    raise NotImplementedError  # pragma: no cover - compiled through the overload below


@overload(_tile_uint8_pruned, jit_options={"nogil": True}, inline="always")
def _tile_uint8_pruned_overload(impl, Q, X, qa, qlast, ja, jlast, cuts, t0, t1, t2, t3):
    code = token_code(impl)
    if code not in _UINT8_PRUNED_TILES:
        return None
    tile = _UINT8_PRUNED_TILES[code]

    def impl_fn(impl, Q, X, qa, qlast, ja, jlast, cuts, t0, t1, t2, t3):
        return tile(Q, X, qa, qlast, ja, jlast, cuts, t0, t1, t2, t3)

    return impl_fn


@jit
def _topk_uint8_chunk_pruned(
    Q, X, offset, best_d, best_i, c0, c1, block, impl, width, cuts, slab, use_slab
):
    """:func:`_topk_uint8_chunk` with pruning (:mod:`.prune`). With ``use_slab``, the
    tiles of each query tile and block first pass the slab stage (:mod:`.slab`: the L1
    distance of group sums, a lower bound; ``slab`` from :func:`.slab.driver_slab`,
    ``block`` a multiple of 8); each tile left stops at the first of its ``cuts`` where
    none of its partial sums is below its query's k-th best distance. The terms are
    non-negative, so such a partial sum stays at or above that threshold, and the
    threshold only falls: a stopped tile held no candidate. Same results, exactly.
    ``cuts`` ends at the vectors of a (padded) row."""
    nx = X.shape[0]
    cols = _tile_cols(impl)
    buf = np.empty(16, dtype=np.int64)
    kept = np.empty(block // cols + 2, dtype=np.int64)
    sbound = np.empty(4, dtype=np.int32)
    qb, xpad, qsub, xb = padded_chunk(Q, X, c0, c1, width, block)
    for j0 in range(0, nx, block):
        j1 = min(j0 + block, nx)
        xsub = padded_block(X, j0, j1, xpad, width)
        n_all = (j1 - j0 + cols - 1) // cols
        for qa in range(c0, c1, 4):
            qr, ql = qa - qsub, c1 - 1 - qsub
            n = n_all
            if use_slab:
                n = l1_slab_tiles(slab, cols, best_d, qa, c1 - 1, j0, j1, sbound, kept)
            t0, t1, t2, t3 = int_thresholds(best_d, qa, c1 - 1)
            for t in range(n):
                j = kept[t] if use_slab else j0 + t * cols
                s = _tile_uint8_pruned(
                    impl, qb, xb, qr, ql, j - xsub, j1 - 1 - xsub, cuts, t0, t1, t2, t3
                )
                if s[0] == STOPPED_SUM:  # the common case: no candidate, nothing to merge
                    continue
                _merge_uint8_tile(s, buf, best_d, best_i, qa, c1, j, j1, cols, offset)
                t0, t1, t2, t3 = int_thresholds(best_d, qa, c1 - 1)


@jit(parallel=True)
def _topk_uint8_kernel_pruned(
    Q, X, offset, best_d, best_i, block, chunk, impl, width, cuts, slab, use_slab
):
    nq = Q.shape[0]
    n_chunks = (nq + chunk - 1) // chunk
    for ch in prange(n_chunks):  # the body is a function: see _topk_float_kernel
        c0 = ch * chunk
        c1 = min(c0 + chunk, nq)
        _topk_uint8_chunk_pruned(
            Q, X, offset, best_d, best_i, c0, c1, block, impl, width, cuts, slab, use_slab
        )


@jit
def _pairwise_uint8_chunk(X, Y, out, c0, c1, block, impl):
    """Rows ``c0:c1`` of :func:`_pairwise_uint8_kernel` (the body of its parallel loop)."""
    ny = Y.shape[0]
    cols = _tile_cols(impl)
    buf = np.empty(16, dtype=np.int64)
    for j0 in range(0, ny, block):
        j1 = min(j0 + block, ny)
        for qa in range(c0, c1, 4):
            for j in range(j0, j1, cols):
                s = _tile_uint8(impl, X, Y, qa, c1 - 1, j, j1 - 1)
                store_tuple(buf, s)
                for t in range(4 * cols):
                    qi = qa + t // cols
                    ji = j + t % cols
                    if qi < c1 and ji < j1:
                        out[qi, ji] = np.float64(buf[t])


@jit(parallel=True)
def _pairwise_uint8_kernel(X, Y, out, block, chunk, impl):
    nq = X.shape[0]
    n_chunks = (nq + chunk - 1) // chunk
    for ch in prange(n_chunks):  # the body is a function: see _topk_float_kernel
        c0 = ch * chunk
        _pairwise_uint8_chunk(X, Y, out, c0, min(c0 + chunk, nq), block, impl)


def _padded_width(impl: str, n_features: int, chunk_rows: int) -> int:
    """Row width the top-k driver pads to (a multiple of the vector), or 0 for none.

    Padding spares each 4 x 2 tile its masked overlapping tail vector (784 -> 832 bytes
    on AVX-512) for a copy of each training block per query chunk, paid back from
    ``settings.l1_pad_min_queries`` queries per chunk (0: never).
    """
    vec = _VECTOR_BYTES.get(impl, 0)
    min_rows = int(settings.l1_pad_min_queries)
    if vec == 0 or min_rows <= 0 or n_features < vec or n_features % vec == 0:
        return 0
    if chunk_rows < min_rows:
        return 0
    return -(-n_features // vec) * vec


def uint8_impl() -> str:
    """The uint8 implementation used: ``settings.l1_uint8_impl`` if set, else the best.

    The float top-k takes its tile from the same choice (``"avx512"``: 64-byte vectors,
    ``"avx2"``: 32-byte, ``"portable"``: the fastmath loop).

    ``"avx512"`` (``vpsadbw`` on zmm) needs AVX-512BW, ``"avx2"`` (on ymm) needs AVX2,
    ``"portable"`` (int32-widening tiles) runs anywhere. Forcing an implementation the
    CPU lacks raises ``ValueError`` instead of crashing in LLVM.
    """
    available = best_simd()
    forced = settings.l1_uint8_impl
    if forced is None:
        return available[0]
    if forced not in _UINT8_CODES:
        names = tuple(_UINT8_CODES)
        raise ValueError(f"l1_uint8_impl must be None or one of {names}, got {forced!r}")
    if forced not in available:
        raise ValueError(f"l1_uint8_impl={forced!r} is not supported by this CPU")
    return forced


#: LLVM names of the measured Xeon's core: the hypervisor reports it as ``rocketlake``;
#: bare metal shows the server names of the same core (Sapphire, Emerald, Granite Rapids)
XEON_SERVER_CORES = ("rocketlake", "sapphirerapids", "emeraldrapids", "graniterapids")


#: (implementation, CPU's LLVM name) pairs whose uint8 tiles take 4 training rows instead
#: of 2 (:func:`uint8_tile_cols`), from ``python bench/bench_knn_l1.py tiles 5`` (500 q x
#: 10000 x 3072, k = 10, 2 threads, the top-k kernel alone, medians):
#:
#: - AMD EPYC Zen 4: zmm 4 x 2 67.7 vs 4 x 4 59.6 ms, ymm 83.1 vs 71.4 ms (another run:
#:   52.3 vs 48.7 and 58.7 vs 51.8);
#: - the Intel Xeon of docs/performance.md (AVX-512 with AMX and 2 MiB L2s: a Sapphire or
#:   Granite Rapids core whose CPUID the hypervisor reports as ``rocketlake``), 2026-12-02:
#:   zmm 54.8 vs 52.4 and 54.3 vs 51.8 ms, but ymm 65.7 vs 68.9 and 67.1 vs 68.4 ms. So
#:   zmm only; the server names of that core are listed with it. Other Intel cores
#:   (Skylake-SP, Ice Lake) were not measured and keep 2.
#:
#: A CPU with only AVX2's 16 vector registers would spill the 4 x 4 tile's 24 vectors
#: (16 sums, 8 operands); every CPU listed has AVX-512's 32.
WIDE_SAD_TILES = frozenset(
    {("avx512", "znver4"), ("avx2", "znver4")} | {("avx512", cpu) for cpu in XEON_SERVER_CORES}
)


def uint8_tile_cols(impl: str) -> int:
    """Training rows per uint8 tile of implementation ``impl``: 2 for the portable
    tile; for the SIMD tiles ``settings.l1_uint8_tile_cols`` if 2 or 4, else (0, "auto")
    4 for the pairs of :data:`WIDE_SAD_TILES` and 2 elsewhere. Results never depend on
    it (exact integers)."""
    cols = settings.l1_uint8_tile_cols
    if cols not in (0, 2, 4) or isinstance(cols, bool):
        raise ValueError(f"l1_uint8_tile_cols must be 0 (auto), 2 or 4, got {cols!r}")
    if impl == "portable":
        return 2
    if cols == 0:
        return 4 if (impl, cpu_name()) in WIDE_SAD_TILES else 2
    return int(cols)


def _uint8_token(impl: str, n_features: int) -> tuple[int, ...]:
    """The uint8 drivers' token for ``impl``, its tile width (:func:`uint8_tile_cols`)
    and rows of ``n_features`` bytes: rows shorter than one vector take the portable
    tile (a scalar tail inside the SIMD tiles cost them the spills and calls of a second
    path at every tile)."""
    if impl != "portable" and n_features < _VECTOR_BYTES[impl]:
        return impl_token(_UINT8_CODES["portable"])
    if uint8_tile_cols(impl) == 4:
        return impl_token(_UINT8_WIDE_CODES[impl])
    return impl_token(_UINT8_CODES[impl])


def uint8_description() -> str:
    """The uint8 tile for ``fastcls info``, e.g. ``"avx512 (tile 4x4)"``."""
    impl = uint8_impl()
    return f"{impl} (tile 4x{uint8_tile_cols(impl)})"


# --------------------------------------------------------------------------- public kernels
@jit(parallel=True)
def _exact_uint8_copy(A, out):
    """Copy ``A`` into uint8 ``out``; True iff every value is an integer in 0..255.

    Each row stops at its first value that is not (non-integer data cost next to nothing).
    """
    ok = np.ones(A.shape[0], dtype=np.bool_)
    for i in prange(A.shape[0]):
        row = A[i]
        o = out[i]
        for d in range(row.shape[0]):
            v = row[d]
            if not (v >= 0 and v <= 255) or np.floor(v) != v:
                ok[i] = False
                break
            o[d] = np.uint8(v)
    for i in range(A.shape[0]):
        if not ok[i]:
            return False
    return True


#: CPUs (LLVM names, :func:`fastcls._runtime.cpu_name`) whose float tiles run faster with
#: one operation per term on the FMA unit: AMD Zen issues vector max, add and subtract on
#: two ports (FP2/FP3) and FMA on two others (FP0/FP1). Measured on znver4 (500 q x 10000
#: x 3072 float32, 2 threads: absolute bound 1.3x, relative 1.05-1.1x). Zen 3 and Zen 5
#: issue add and FMA on separate pipes too, but where their max runs was not measured (on
#: the FMA pipes, the absolute bound would lose), so they are not listed. Intel runs add
#: and FMA on the same ports: on an AVX-512 Xeon (LLVM "rocketlake") the FMA tiles were
#: 2-3% slower, so it keeps the add.
FMA_ACCUMULATE_CPUS = frozenset({"znver4"})


def float_accumulate(impl: str) -> str:
    """How the float tiles of implementation ``impl`` add their terms: "add" for the
    portable loop (it has no other form), else ``settings.l1_float_accumulate`` if "add"
    or "fma", else ("auto") "fma" on the CPUs of :data:`FMA_ACCUMULATE_CPUS`, "add"
    elsewhere. Results never depend on it (both round the same)."""
    mode = settings.l1_float_accumulate
    if mode not in ("auto", "add", "fma"):
        raise ValueError(f"l1_float_accumulate must be 'auto', 'add' or 'fma', got {mode!r}")
    if impl == "portable":
        return "add"
    if mode == "auto":
        return "fma" if cpu_name() in FMA_ACCUMULATE_CPUS else "add"
    return mode


#: (implementation, CPU's LLVM name) pairs whose float tiles take 4 training rows
#: instead of 2 (:func:`float_tile_cols`): fewer loads per term (8 rows per 16 sums
#: instead of 6 per 8) and half the tile epilogues per pair. The Intel Xeon of
#: docs/performance.md (a Sapphire/Granite Rapids core reported as ``rocketlake``),
#: 2026-12-02, 500 q x 10000 x 3072 float32, k = 10, 2 threads, the top-k kernel alone
#: (``python bench/bench_knn_l1.py tiles 5``, medians): 4 x 2 292.8 vs 4 x 4 260.9 ms,
#: and 304.4 vs 266.4 ms in a second run. AMD Zen 4 (512-bit vectors as two halves) was
#: not measured and keeps 2.
WIDE_FLOAT_TILES = frozenset(("avx512", cpu) for cpu in XEON_SERVER_CORES)


def float_tile_cols(impl: str) -> int:
    """Training rows per float tile of implementation ``impl``: 4 or 2 for the AVX-512
    tile (``settings.l1_float_tile_cols``, or (0) 4 for the pairs of
    :data:`WIDE_FLOAT_TILES`), 2 for the AVX2 and portable tiles. The tile's shape
    changes no fast sum (each pair keeps its own accumulator and order), so results
    never depend on it."""
    cols = settings.l1_float_tile_cols
    if cols not in (0, 2, 4) or isinstance(cols, bool):
        raise ValueError(f"l1_float_tile_cols must be 0 (auto), 2 or 4, got {cols!r}")
    if impl != "avx512":
        return 2
    if cols == 0:
        return 4 if (impl, cpu_name()) in WIDE_FLOAT_TILES else 2
    return int(cols)


def _float_token(impl: str) -> tuple[int, ...]:
    """The float drivers' token for ``impl`` and its tile width (:func:`float_tile_cols`)."""
    if float_tile_cols(impl) == 4:
        return impl_token(_UINT8_WIDE_CODES[impl])
    return impl_token(_UINT8_CODES[impl])


def float_impl() -> str:
    """The float top-k's tile (that of :func:`uint8_impl`), its pre-filter bound setting
    and accumulation, e.g. ``"avx512 (tile 4x4, bound auto, accumulate fma)"``
    (:func:`fastcls.kernels.l1._choose_bound` decides "auto" per call from the data)."""
    impl = uint8_impl()
    return (
        f"{impl} (tile 4x{float_tile_cols(impl)}, bound {settings.l1_float_bound}, "
        f"accumulate {float_accumulate(impl)})"
    )


def as_exact_uint8(A, scratch_name=None):
    """``A`` as uint8 when all its values are integers in 0..255 (else None).

    With ``scratch_name`` the copy is the calling thread's reusable scratch buffer of
    that name (:func:`fastcls._runtime.scratch`): for copies used only during a call
    (a training tile), so they are reused across tiles and freed when the search ends.
    """
    if A.size == 0:
        return None
    if scratch_name is None:  # returned to the OS when freed (a one-shot search's copy)
        out = new_buffer(A.size, np.uint8).reshape(A.shape)
    else:
        out = scratch(scratch_name, A.shape, np.uint8)
    return out if _exact_uint8_copy(A, out) else None


def l1_topk_float(Q, X, offset, best_d, best_i):
    """Merge the exact L1 neighbours among rows ``X`` (global ids ``offset + j``).

    Q (n_q, D) and X (n_x, D) C-contiguous, both float32 or both float64; ``best_d``
    (n_q, k) float64 and ``best_i`` (n_q, k) int64 updated in place (module docstring).
    Pixel data stored as floats (every value an integer in 0..255, e.g. CIFAR-10 after
    ``astype(float)``) take the exact uint8 kernel when ``settings.l1_uint8_shortcut`` is on:
    the distances are the same exact integers, found about 5x faster.
    """
    if Q.shape[0] == 0 or X.shape[0] == 0:
        return
    if settings.l1_uint8_shortcut:
        Qu = as_exact_uint8(Q, "pixels_q")
        Xu = None if Qu is None else as_exact_uint8(X, "pixels_x")
        if Xu is not None:
            l1_topk_uint8(Qu, Xu, offset, best_d, best_i)
            return
    c = lower_bound_factor(Q.shape[1], Q.dtype)
    big = float(np.finfo(Q.dtype).max)
    # the tiles address rows by stride with unit inner stride (no copy when C-contiguous)
    Q, X = np.ascontiguousarray(Q), np.ascontiguousarray(X)
    impl = uint8_impl()
    dc = max(1, _FEATURE_SLICE_BYTES // Q.itemsize)
    bound, c_key, kappa, sq, aq, sx, ax = _choose_bound(Q, X, impl, dc, c)
    if float_accumulate(impl) == "fma":
        bound += 2
    m = int(settings.l1_extra_candidates)
    block, chunk = _sizes(Q)
    token = _float_token(impl)
    offset = np.int64(offset)
    zero = Q.dtype.type(0)
    if run_serial(Q.shape[0], *X.shape):
        kc = best_d.shape[1] + m
        cand_a, cand_j = np.full((Q.shape[0], kc), np.inf), np.full((Q.shape[0], kc), -1)
        _topk_float_chunk(
            Q, X, offset, best_d, best_i, zero, c, big, impl_token(bound), c_key, kappa, sq, aq,
            sx, ax, cand_a, cand_j, 0, Q.shape[0], block, dc, token,
        )  # fmt: skip
        return
    _topk_float_kernel(
        Q, X, offset, best_d, best_i, zero, c, big, impl_token(bound), c_key, kappa, sq, aq,
        sx, ax, m, block, chunk, dc, token,
    )  # fmt: skip


@jit(parallel=True, fastmath=REDUCE)
def _row_sums(A, sums, abs_sums):
    """``sums[i] = sum_d A[i, d]`` and ``abs_sums[i] = sum_d |A[i, d]|`` in float64 (any
    order: the absolute bound allows ``gamma_D(2**-53)`` of ``abs_sums`` for them)."""
    for i in prange(A.shape[0]):
        s = 0.0
        t = 0.0
        for d in range(A.shape[1]):
            v = np.float64(A[i, d])
            s += v
            t += abs(v)
        sums[i] = s
        abs_sums[i] = t


def absolute_bound_kappa(n_features: int, dtype: np.dtype, impl: str, dc: int) -> float:
    """``kappa`` of the absolute bound (module docstring) for the float top-k's tiles.

    The fast sum of one feature slice passes each term through at most ``chain``
    roundings in the working precision: the SIMD tiles add ``lanes`` columns per vector
    (one masked tail vector more) and then fold the lanes in a tree; the portable loop
    may add in any order. The slices' sums are added in float64.
    """
    u = U32 if np.dtype(dtype) == np.float32 else U64
    D = max(int(n_features), 1)
    n_dc = max(1, D // dc)
    longest = D - (n_dc - 1) * dc  # the last slice takes the remainder
    lanes = (64 if impl == "avx512" else 32) // np.dtype(dtype).itemsize
    if impl == "portable" or longest < lanes:
        chain = longest
    else:
        chain = longest // lanes + 2 + int(np.log2(lanes))
    g = gamma(chain, u)
    eps_t = g + gamma(n_dc + 1, U64) * (1.0 + g)
    return (2.0 * eps_t + gamma(D + 1, U64) + 16 * U64) * 1.001


#: "auto" takes the absolute bound only for this many queries or more: its rows' sums cost
#: a pass over the training rows, which the 4-6% it saves on the tiles repays only from
#: about 200 queries (1 query x 50000 x 3072 float32: 56 ms relative, 83 ms absolute)
ABSOLUTE_MIN_QUERIES = 256


def _choose_bound(Q, X, impl, dc, c):
    """(bound code, key factor, kappa, row sums and absolute sums of Q and X) of a call.

    ``settings.l1_float_bound`` forces a bound; "auto" takes the absolute bound (two
    vector operations per term instead of three) for :data:`ABSOLUTE_MIN_QUERIES` queries
    or more, when its error ``kappa * (|q|_1 +
    |x|_1)`` is, on a sample of rows, no larger than the relative bound's ``gamma_D(u) *
    distance``, so the certificate holds as often (data far from the origin compared
    with its spread, say 1000 + noise, keeps the relative bound), and when no fast sum
    can overflow. Either way the result is the same exact top-k.
    """
    mode = settings.l1_float_bound
    if mode not in ("auto", "relative", "absolute"):
        raise ValueError(f"l1_float_bound must be 'auto', 'relative' or 'absolute', got {mode!r}")
    none = np.empty(0)
    relative = (0, c, 0.0, none, none, none, none)
    if mode == "relative" or (mode == "auto" and Q.shape[0] < ABSOLUTE_MIN_QUERIES):
        return relative
    D = Q.shape[1]
    kappa = absolute_bound_kappa(D, Q.dtype, impl, dc)
    sq, aq = np.empty(Q.shape[0]), np.empty(Q.shape[0])
    sx, ax = np.empty(X.shape[0]), np.empty(X.shape[0])
    _row_sums(Q, sq, aq)
    _row_sums(X, sx, ax)
    # every partial fast sum is at most |q|_1 + |x|_1 (times 1 + tiny) in magnitude
    if not float(aq.max()) + float(ax.max()) <= 0.25 * float(np.finfo(Q.dtype).max):
        return relative
    if mode == "auto":
        qs = np.linspace(0, Q.shape[0] - 1, min(Q.shape[0], 8)).astype(np.int64)
        xs = np.linspace(0, X.shape[0] - 1, min(X.shape[0], 64)).astype(np.int64)
        Xs = X[xs].astype(np.float64)
        dist = [np.abs(Xs - Q[i].astype(np.float64)).sum(axis=1) for i in qs]
        u = U32 if Q.dtype == np.float32 else U64
        typical = float(np.median(dist))
        error = kappa * (float(np.median(aq[qs])) + float(np.median(ax[xs])))
        if not error <= gamma(D, u) * typical:
            return relative
    c_key = (1.0 - gamma(D, U64)) * (1.0 - 8 * 2.0**-53)
    return 1, c_key, kappa, sq, aq, sx, ax


def l1_topk_uint8(Q, X, offset, best_d, best_i):
    """Merge the exact (integer) L1 neighbours among uint8 rows ``X``; same contract."""
    if Q.shape[0] == 0 or X.shape[0] == 0:
        return
    impl = uint8_impl()
    # the tiles address rows by stride with unit inner stride (no copy when C-contiguous)
    Q, X = np.ascontiguousarray(Q), np.ascontiguousarray(X)
    block, chunk = _sizes(Q)
    nq = Q.shape[0]
    serial = run_serial(nq, *X.shape)
    width = _padded_width(impl, Q.shape[1], nq if serial else min(chunk, nq))
    token = _uint8_token(impl, Q.shape[1])
    offset = np.int64(offset)
    code = len(token) - 1  # :func:`._tokens.impl_token`
    if code in _UINT8_PRUNED_TILES:
        vec = _VECTOR_BYTES[impl]
        n_vectors = -(-Q.shape[1] // vec)
        found = prune.plan(Q, X, offset, best_d, best_i, n_vectors, vec, l1_topk_uint8, "l1")
        if found is not None:
            Qp, Xp, cuts, slab_level = found  # Qp, Xp: features maybe reordered
            # the pruned tiles take no tail: rows padded to whole vectors
            width = n_vectors * vec if Q.shape[1] % vec else 0
            slab, use_slab, block = driver_slab(Q, X, slab_level, block)
            args = (Qp, Xp, offset, best_d, best_i)
            if serial:
                _topk_uint8_chunk_pruned(*args, 0, nq, block, token, width, cuts, slab, use_slab)
            else:
                _topk_uint8_kernel_pruned(*args, block, chunk, token, width, cuts, slab, use_slab)
            return
    if serial:
        _topk_uint8_chunk(Q, X, offset, best_d, best_i, 0, nq, block, token, width)
    else:
        _topk_uint8_kernel(Q, X, offset, best_d, best_i, block, chunk, token, width)


def l1_pairwise_float(X, Y, out):
    """``out[i, j] = sum |X[i] - Y[j]|`` as fast sums in the input precision.

    Pixel values (integers in 0..255) take the uint8 kernel when
    ``settings.l1_uint8_shortcut`` is on: exact integers (rounded to ``out``'s dtype).
    """
    if X.shape[0] == 0 or Y.shape[0] == 0:
        return
    if settings.l1_uint8_shortcut:
        Xu = as_exact_uint8(X)
        Yu = None if Xu is None else as_exact_uint8(Y)
        if Yu is not None:
            _pairwise_uint8(Xu, Yu, out)
            return
    _pairwise_float_kernel(X, Y, out, X.dtype.type(0), *_sizes(X))


def l1_pairwise_uint8(X, Y, out):
    """``out[i, j] = sum |X[i] - Y[j]|`` for uint8 rows: exact integers in float64 ``out``."""
    if X.shape[0] == 0 or Y.shape[0] == 0:
        return
    _pairwise_uint8(np.ascontiguousarray(X), np.ascontiguousarray(Y), out)


def _pairwise_uint8(X, Y, out):
    """The uint8 pairwise driver, or its chunk on the calling thread for small inputs."""
    block, chunk = _sizes(X)
    token = _uint8_token(uint8_impl(), X.shape[1])
    if run_serial(X.shape[0], *Y.shape):
        _pairwise_uint8_chunk(X, Y, out, 0, X.shape[0], block, token)
    else:
        _pairwise_uint8_kernel(X, Y, out, block, chunk, token)
