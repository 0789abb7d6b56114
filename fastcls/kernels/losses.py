"""Fused loss + gradient kernels for the linear classifiers (multiclass SVM, softmax).

One pass over the rows of ``X`` per call. Rows are taken in *blocks* of ``rblock`` rows
(:func:`row_block`, 16 or 32 by default): for a block the kernel

1. computes the scores of every row of the block, ``D`` walked in chunks of
   ``_CHUNK_BYTES`` (the last one also takes the remainder, less than a chunk; 2 KiB, 4
   KiB on :data:`WIDE_CHUNK_CPUS`) so that
   the chunk of the weights (C x 512 float32, 20 KiB) stays in L1 while every row of
   the block passes over it: register tiles of 4 rows x a few
   classes, the tile's sums added to float64 scores. The first tile of each group of 4
   rows also copies the rows into ``xb``, an aligned, zero-padded scratch (rows of
   ``Dp`` = D rounded up to 16 values, 64-byte aligned): that is the one read of ``X``
   from memory, and every later pass reads ``xb`` from L2;
2. takes the hinge or softmax derivative of each row (float64);
3. adds the rank-4 updates ``dW^T[c] += sum_r g[r, c] * x_r`` to the task's partial in
   the same padded layout, again chunk by chunk; or, for the multiclass SVM on the ymm
   and portable tiles, the block's nonzero derivatives as per-class lists of rows
   (:func:`_sparse_update`, ``SPARSE_UPDATE``): about 2 entries per row of 10 classes.

Alignment is worth as much as the vector width here: a 64-byte load straddling two
cache lines costs two, and every row of a D=3073 array is misaligned. The weights come in
the same padded layout (``WT``, ``Cp`` x ``Dp``: the classes rounded up to the tile, zero
weights; :func:`loss_buffers`), written once per call by the transpose of ``W`` (or kept
in it by the SGD loop), so the tiles have no class or feature tail.

The micro-kernel per CPU class
------------------------------
The micro-kernel is chosen by a *token* argument, a tuple whose length is the classes per
tile (:func:`tile_token`): its type differs per micro-kernel, so each compiles to its own
specialisation holding only its tiles (compiling all three into one function cost 4 s of
a 35 s cold compile; an integer literal through ``literally`` made numba retry a failing
compile at every call from Python, 15 ms each):

* ``"avx512"`` (5 classes): explicit 64-byte vectors written in LLVM IR
  (:mod:`fastcls.kernels.linear_tiles`): scores 4 x 5 (20 zmm accumulators), update
  4 x 5. LLVM keeps its own loops at 256 bits on the AVX-512 CPUs it tunes for
  ``prefer-256-bit``, with no per-function switch from numba: the explicit IR is how the
  kernel gets zmm;
* ``"avx2"`` (2 classes): the same tiles on 32-byte vectors, 4 x 2 (8 accumulators
  + 6 operands fit the 16 ymm registers);
* ``"portable"`` (1 class): the same tiles on 32-byte vectors, 4 x 1, multiplying then
  adding (no FMA needed; any ISA). They replaced numba loops compiled with
  reassociation, whose summation order LLVM chose per compiled copy.

Measured on the Xeon (float32, D=3073, C=10, one thread, in-cache tiles): scores 86 and
update 51 GFLOP/s with the former numba 4 x 5 / 4 x 2 loops on misaligned rows; 149 and
150 with the zmm tiles on aligned rows (127 and 137 inside the kernel's loop structure;
sgemm's ceiling on this core is 163). svm_loss at N=10000: 27.2 -> 18-20 ms on one
thread. The figures per CPU class are in ``docs/performance.md``.

:func:`kernel_impl` chooses by the CPU features numba compiles for (``NUMBA_CPU_NAME`` /
``NUMBA_CPU_FEATURES`` included) and, among AVX-512 CPUs, by name: AMD Zen 4 runs 512-bit
vectors as two halves and gets the ymm tiles (:data:`YMM_FASTER_CPUS`);
``settings.linear_kernel_impl`` forces one (tests run each).

Determinism and accuracy: the rows are split into at most ``MAX_TASKS`` tasks whose
boundaries depend only on the number of rows (never on the thread count). Each task
sums its rows' gradients in the working precision over sub-blocks of ``SUB_ROWS`` rows,
directly into its partial ``part[t]``; a task of several sub-blocks sums them in
float64 and rounds the sum into ``part[t]`` once. The partials are then summed in
float64 in task order. Results are therefore bit-identical for any number of threads
and for the parallel and serial twins, and a float32 gradient never accumulates more
than ``SUB_ROWS`` rows in float32 (a single running float32 sum over 10000 rows drifted
to 1e-4 relative error). The partials are in the working precision, not float64, so
that a call of one sub-block per task (N=256: two tasks) writes no second copy of the
gradient and the reduction reads half the bytes, from the other core's cache. The
tile and the row block change the order of float32 sums (results then differ in the
last bits, within the tested 1e-5).

Public kernel names:

* ``linear_loss_grad_rows(X, y, idx, idx_next, WT, b, kind, bounds, part, wide,
  part_db, part_loss, tile, rblock, ticks, scratch)`` and its serial twin
  ``linear_loss_grad_rows_serial``, on the padded buffers of :func:`loss_buffers`;
* ``finish_gradient(part, scale, WT, reg, penalty, beta, dWT)``: reduce the partials,
  add the penalty (transposed layout);
* ``linear_loss_grad(...)``: one public-loss call end to end (transpose of ``W``, kernel,
  reduction, gradient in ``W``'s layout), so Python dispatches once per call;
* ``sgd_linear_steps(...)``: a chunk of SGD steps, entirely compiled (used by
  :mod:`fastcls.optim`);
* ``task_bounds(n_rows)``, ``kernel_impl()``, ``tile_token(impl)``, ``use_parallel(...)``,
  ``loss_buffers(...)``, ``padded_shape(...)``, ``needs_wide(bounds)``,
  ``prefetch_min_bytes(impl)``, ``prefetch_next_batch()`` (plain Python);
* ``LOSS_CODES`` / ``PENALTY_CODES`` / ``CLASS_TILES``: the integer codes the kernels
  take, by name (the only place these integers appear).
"""

from __future__ import annotations

import platform
from typing import Any

import numpy as np
from numba import get_thread_id, prange, types
from numba.extending import intrinsic, overload

from fastcls._config import jit, settings
from fastcls._runtime import best_simd, cpu_name
from fastcls._validation import MAX_ABS_VALUE
from fastcls.kernels._rows import aligned_zeros, transpose_into
from fastcls.kernels.linear_tiles import (
    PACK,
    PLAIN,
    SPARSE_VECTORS,
    TILE_SHAPES,
    scores_tile_avx2,
    scores_tile_avx512,
    scores_tile_portable,
    sparse_update_avx2,
    sparse_update_avx2_1,
    sparse_update_portable,
    sparse_update_portable_1,
    update_tile_avx2,
    update_tile_avx512,
    update_tile_portable,
)

#: ``llvm.readcyclecounter`` is ``rdtsc`` on x86 (a constant-rate counter the cores
#: share); on AArch64 it reads a register user code may not (SIGILL), so elsewhere the
#: counter is 0 and the tasks go untimed
_CYCLE_COUNTER = platform.machine().lower() in {"x86_64", "amd64", "i386", "i686"}


@intrinsic
def cycle_counter(typingctx):
    """The CPU's cycle counter (x86), to compare the tasks of a parallel call with each
    other (not a clock); 0 on other CPUs."""
    sig = types.int64()

    def codegen(context, builder, signature, args):
        from llvmlite import ir
        from numba.core import cgutils

        i64 = ir.IntType(64)
        if not _CYCLE_COUNTER:
            return ir.Constant(i64, 0)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(i64, []), "llvm.readcyclecounter"
        )
        return builder.call(fn, [])

    return sig, codegen


#: loss kinds understood by the kernel
SVM = 0
SOFTMAX = 1
#: kernel code of each loss, by the names of :data:`fastcls.losses.LOSSES`
LOSS_CODES = {"svm": SVM, "softmax": SOFTMAX}

#: rows accumulated in the working precision before a sum in float64 (tasks of more rows).
#: 1024 rather than 256: at N=10000 (16 tasks of 625 rows) the float64 sums of the
#: sub-blocks cost 6-9% of a call (svm_loss, D=3073, C=10: 16.0-16.4 -> 14.5-15.2 ms on 1
#: thread, 8.0-8.3 -> 7.1-7.6 on 2), and the float32 gradient's error against float64 went
#: from 3.0e-7 to 5.1e-7 of its largest entry (N=10000; 2.9e-7 -> 6.7e-7 at 49000 x 785),
#: the level of NumPy's float32 product (5.1e-7 / 4.9e-7)
SUB_ROWS = 1024
#: CPUs (LLVM names, :func:`fastcls._runtime.cpu_name`) whose passes take 4 KiB chunks of
#: features instead of 2 (:func:`chunk_bytes`): half the tile calls, hence half the tile
#: reductions and epilogues, while the 10 weight rows' chunk (40 KiB) streams from L2,
#: whose 32 bytes a cycle cover the tiles' 2 weight loads per 8 FMAs. Measured on an EPYC
#: Zen 3 (32 KiB L1d, 512 KiB L2), 2026-12-03, svm_loss / softmax_loss float32 D=3073
#: C=10, alternated processes (medians of 5-9 per-round ratios, 4096 / 2048, a noisy
#: host): N=256 1 thread 0.86-0.99x, N=10000 1 thread 0.88-0.98x, 2 threads 0.89-0.97x,
#: 12 of 14 comparisons below 1; 16 KiB (one chunk a row) 0.99-1.07x; 1 KiB 1.04-1.14x.
#: The Intel Xeon's AVX-512 tiles were tuned at 2 KiB; other CPUs were not measured
WIDE_CHUNK_CPUS = frozenset({"znver3"})


def chunk_bytes(name: str) -> int:
    """Bytes of features per inner pass on CPU ``name`` (512 float32 / 256 float64 values,
    or twice that on :data:`WIDE_CHUNK_CPUS`): a chunk of the 10 weight rows (or
    accumulator rows) stays in L1 (or L2) while the block's rows pass over it. A chunk
    boundary orders the sums, so the CPU decides the last bits (as its vector width does)."""
    return 4096 if name in WIDE_CHUNK_CPUS else 2048


#: this CPU's :func:`chunk_bytes`, a constant of the compiled kernels (numba's cache is
#: keyed by the CPU name, so a cache never crosses to a CPU of another chunk)
_CHUNK_BYTES = chunk_bytes(cpu_name())
#: most tasks (partial gradients) per call; independent of the thread count
MAX_TASKS = 16
#: fewest rows per task (below this, fewer tasks). Every task costs a zeroed partial to
#: reduce (C x D): 128 rather than 64 made
#: svm_loss at N=256 (D=3073, C=10, float32, one thread) 0.78 -> 0.73 ms and an SGD
#: step of 200 rows 3% faster on the 2-core Xeon (2 tasks instead of 4)
MIN_TASK_ROWS = 128

#: classes per register tile (4 rows x tile classes), by micro-kernel name
CLASS_TILES = {"avx512": 5, "avx2": 2, "portable": 1}
#: CPUs (LLVM names, :func:`fastcls._runtime.cpu_name`) that have AVX-512 but run the
#: ymm tiles faster than the zmm ones: AMD Zen 4 executes a 512-bit operation as two
#: 256-bit halves (no more arithmetic per cycle) and a 512-bit store in two cycles, so
#: the zmm update tile's accumulator stores cost more than its FMAs. Measured on an EPYC
#: Zen 4, 2 cores, svm_loss float32 D=3073 C=10, interleaved, fastest of 25-300 calls:
#: N=10000 on 2 threads 17.2 (zmm) vs 12.8 ms (ymm), on 1 thread 19.7 vs 19.8;
#: N=256 0.51 vs 0.48 ms on 1 thread, 0.49 vs 0.40 on 2. Zen 5's server and desktop
#: parts run 512-bit vectors at full width: not listed (not measured)
YMM_FASTER_CPUS = frozenset({"znver4"})
#: rows' bytes from which a single loss call prefetches its next blocks, by micro-kernel
#: (``settings.linear_prefetch_min_bytes`` overrides): always with the zmm tiles (their
#: arithmetic outruns the reads even from L3: N=256 4-7% faster on the Xeon), only rows
#: that stream from memory with the AVX2 tiles (neutral from 64 to 1000 rows on the AVX2
#: build; a 512 KiB L2, Zen 3's, holds less of what the prefetch brings); never for
#: the portable tiles (CPUs without AVX2, where it was never measured)
PREFETCH_MIN_BYTES = {"avx512": 0, "avx2": 32 * 2**20, "portable": 2**62}
#: thresholds of :data:`PREFETCH_MIN_BYTES` per (micro-kernel, CPU name) where a CPU was
#: measured to gain below the micro-kernel's own. Zen 4 (1 MiB of L2 per core) with its
#: ymm tiles: rows read from L3 gained from about 8 MiB (svm_loss float32 D=3073 C=10,
#: prefetch against none alternated in one process, medians of 7 per-round speed-ups,
#: two runs, 1 / 2 threads: N=1000 (11.7 MiB) 1.16-1.18x / 1.08-1.13x, N=1500 1.13x /
#: 1.17x, N=2600 1.16x / 1.12x, N=768 (9 MiB) 1.03x / 1.01x) and not below (N=640 0.98x /
#: 1.02x, N=384 0.87x / 0.98x, N=256 0.99x / 0.96x)
PREFETCH_MIN_BYTES_BY_CPU = {("avx2", "znver4"): 8 * 2**20}
#: CPUs (LLVM names) on which the SGD loop prefetches each step's next batch by default
#: (:func:`prefetch_next_batch`). A mini-batch row's start is a cold miss no hardware
#: prefetcher predicts. Measured on an EPYC Zen 4, 2 cores, 1500 steps of 200 rows of
#: 49000 x 3073 float32, interleaved A/B, median of 7 per-round ratios: 1.13x faster on
#: 2 threads (539 vs 586 ms), 1.20x on 1 (761 vs 918); 60000 x 785 neutral (1.01x). On
#: an EPYC Zen 3 (``znver3``, 512 KiB of L2 per core), 2 cores, the same A/B
#: (2026-12-03, ``linear_prefetch_next_batch`` True / False, medians of 7-9 per-round
#: ratios, two runs each): 0.917x / 0.927x the time on 2 threads (540 vs 601 ms), 0.948x
#: / 0.961x on 1; 60000 x 785 neutral (1.01x). On the Sapphire-Rapids-class Xeon the
#: prefetches cost more than they saved (5-9% slower), and other CPUs were not measured
PREFETCH_NEXT_BATCH_CPUS = frozenset({"znver3", "znver4"})


def task_bounds(n_rows: int) -> np.ndarray:
    """Row boundaries of the tasks: depends on ``n_rows`` only, multiples of 4 rows."""
    n_tasks = max(1, min(MAX_TASKS, -(-n_rows // MIN_TASK_ROWS)))
    groups = -(-n_rows // 4)
    bounds = np.array([min(n_rows, 4 * ((groups * t) // n_tasks)) for t in range(n_tasks + 1)])
    bounds[-1] = n_rows
    return bounds.astype(np.int64)


def padded_shape(C: int, D: int, tile: tuple[int, ...]) -> tuple[int, int]:
    """``(Cp, Dp)``: the classes rounded up to the tile's, the features to 16 (the layout
    of the weights and the partials the tiles work on)."""
    return C + (-C) % len(tile), D + (-D) % 16


def needs_wide(bounds: np.ndarray) -> bool:
    """Whether a task of ``bounds`` has more than ``SUB_ROWS`` rows (float64 sub-block sums)."""
    return bool((np.diff(bounds) > SUB_ROWS).any())


def loss_buffers(
    bounds: np.ndarray, C: int, D: int, tile: tuple[int, ...], dtype: np.dtype, rblock: int
) -> tuple[Any, ...]:
    """New buffers ``(WT, part, wide, part_db, part_loss, ticks, scratch)`` of the fused
    kernel for the tasks ``bounds``, ``C`` classes, ``D`` features, the micro-kernel
    ``tile`` and rows in blocks of ``rblock`` (:func:`row_block`; the kernel must be
    called with the same).

    ``WT`` (``Cp`` x ``Dp``, :func:`padded_shape`) and ``part`` (``T`` x ``Cp`` x ``Dp``)
    are zeros in ``dtype``, 64-byte aligned (``Dp`` values are a whole number of cache
    lines, so every row and every ``part[t]`` is too); write the weights into
    ``WT[:C, :D]`` and the padding stays zero. ``wide`` (float64) has a task per task
    only when a task needs it (:func:`needs_wide`). ``ticks`` (T x 2, int64) receives the
    tasks' cycle counts; ``scratch`` is a tuple of per-thread work arrays, one slot per
    thread numba may start (``numba.config.NUMBA_NUM_THREADS``): the row block (aligned,
    zero-padded), the scores and derivatives, the derivatives in ``dtype`` (zero beyond
    ``C``) and the row numbers of a block.
    """
    import numba

    T = bounds.shape[0] - 1
    Cp, Dp = padded_shape(C, D, tile)
    slots = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    scratch = (
        aligned_zeros((slots, rblock, Dp), dtype),
        np.zeros((slots, 2, rblock, C)),
        aligned_zeros((slots, rblock, Cp), dtype),
        np.zeros((slots, 2, rblock + 3), np.int64),
        # the sparse update's lists: per class (and the row total, list C) the block's
        # rows, their weights, and the lists' lengths (the last column of the rows);
        # whole cache lines per slot, so two threads never write to one line. Then the
        # complement form's sum of rows (_sparse_update)
        aligned_zeros((slots, C + 1, rblock + 1 + (-(rblock + 1)) % 8), np.dtype(np.int64)),
        aligned_zeros((slots, C + 1, rblock + (-rblock) % 16), dtype),
        aligned_zeros((slots, 1, Dp), dtype),
    )
    return (
        aligned_zeros((Cp, Dp), dtype),
        aligned_zeros((T, Cp, Dp), dtype),
        np.empty((T if needs_wide(bounds) else 0, C, D)),
        np.empty((T, C)),
        np.empty(T),
        np.zeros((T, 2), np.int64),
        scratch,
    )


def kernel_impl() -> str:
    """The micro-kernel used: ``settings.linear_kernel_impl`` if set, else the CPU's best.

    ``"avx512"`` needs AVX-512 (32 vector registers), ``"avx2"`` AVX2, ``"portable"`` runs
    anywhere. The CPUs of :data:`YMM_FASTER_CPUS` (AVX-512 on 256-bit halves) get
    ``"avx2"`` unless forced. Every one is correct on any CPU (they differ in register
    pressure only), but forcing one the CPU lacks is refused, as for the other micro-kernels.
    """
    available = best_simd({"avx512": ("avx512f",), "avx2": ("avx2", "fma")})
    forced = settings.linear_kernel_impl
    if forced is None:
        if available[0] == "avx512" and cpu_name() in YMM_FASTER_CPUS:
            return "avx2"
        return available[0]
    if forced not in CLASS_TILES:
        raise ValueError(
            f"linear_kernel_impl must be None or one of {tuple(CLASS_TILES)}, got {forced!r}"
        )
    if forced not in available:
        raise ValueError(f"linear_kernel_impl={forced!r} is not supported by this CPU")
    return forced


def prefetch_min_bytes(impl: str) -> int:
    """Rows' bytes from which a single loss call on micro-kernel ``impl`` prefetches its
    next blocks: ``settings.linear_prefetch_min_bytes`` if set, else this CPU's entry of
    :data:`PREFETCH_MIN_BYTES_BY_CPU`, else :data:`PREFETCH_MIN_BYTES`. Results never
    depend on it."""
    forced = settings.linear_prefetch_min_bytes
    if forced is not None:
        if isinstance(forced, (bool, np.bool_)) or not isinstance(forced, (int, np.integer)):
            raise TypeError(f"linear_prefetch_min_bytes must be None or an integer, got {forced!r}")
        return int(forced)
    return PREFETCH_MIN_BYTES_BY_CPU.get((impl, cpu_name()), PREFETCH_MIN_BYTES[impl])


def prefetch_next_batch() -> bool:
    """Whether the SGD loop prefetches the next batch's rows:
    ``settings.linear_prefetch_next_batch`` if set, else whether this CPU is one of
    :data:`PREFETCH_NEXT_BATCH_CPUS`. Results never depend on it."""
    forced = settings.linear_prefetch_next_batch
    if forced is None:
        return cpu_name() in PREFETCH_NEXT_BATCH_CPUS
    if not isinstance(forced, (bool, np.bool_)):
        raise TypeError(f"linear_prefetch_next_batch must be None, True or False, got {forced!r}")
    return bool(forced)


def loss_impl() -> str:
    """The micro-kernel, the SVM's update and the SGD loop's prefetch, e.g.
    ``"avx2 (SVM update sparse, SGD prefetch on)"`` (``fastcls info``)."""
    impl = kernel_impl()
    update = "sparse" if impl in SPARSE_UPDATE else "dense"
    prefetch = "on" if prefetch_next_batch() else "off"
    return f"{impl} (SVM update {update}, SGD prefetch {prefetch})"


def tile_token(impl: str) -> tuple[int, ...]:
    """The argument that selects micro-kernel ``impl`` in the kernels: ``CLASS_TILES[impl]`` zeros.

    A tuple's length is part of its numba type, so each micro-kernel is a separate
    specialisation (compiled, and cached, only when used) chosen without a literal.
    """
    return (0,) * CLASS_TILES[impl]


def twin_token(parallel: bool) -> tuple[int, ...]:
    """The argument choosing the kernel twin: ``(0,)`` the parallel one, ``()`` the serial one.

    The two tuples are different numba types, so an entry point compiles only the twin it
    is called with: a small problem (the README tour, the demo) never compiles the
    parallel twin, whose parfor pipeline costs about 3 s per dtype.
    """
    return (0,) if parallel else ()


#: rows per block of the multiclass SVM where its update is sparse (SPARSE_UPDATE), and of
#: every other loss and micro-kernel. The sparse update loads and stores a class's
#: gradient row once per list per block, so longer blocks halve that traffic; the dense
#: tiles' scores keep a block's chunk in L1 and the prefetch is spread over 16 rows.
#: Measured on the AVX2 build of the Xeon (interleaved in one process, 7 rounds, 16 / 32):
#: svm N=256 1.02x / 1.09x (1 / 2 threads), N=10000 0.99x / 1.06x; softmax 0.96x throughout
SPARSE_ROW_BLOCK = 32
DENSE_ROW_BLOCK = 16


def row_block(loss: str, impl: str | None = None) -> int:
    """Rows per block for ``loss`` on micro-kernel ``impl`` (default :func:`kernel_impl`):
    ``settings.linear_row_block_rows`` when set (a positive multiple of 4), else
    ``SPARSE_ROW_BLOCK`` for the multiclass SVM on a sparse-update micro-kernel and
    ``DENSE_ROW_BLOCK`` otherwise."""
    forced = settings.linear_row_block_rows
    if forced is None:
        if loss == "svm" and (impl or kernel_impl()) in SPARSE_UPDATE:
            return SPARSE_ROW_BLOCK
        return DENSE_ROW_BLOCK
    if isinstance(forced, bool) or not isinstance(forced, (int, np.integer)):
        raise TypeError(f"linear_row_block_rows must be None or an int, got {forced!r}")
    rb = int(forced)
    if rb < 4 or rb % 4:
        raise ValueError(f"linear_row_block_rows must be a positive multiple of 4, got {rb}")
    return rb


def use_parallel(n_rows: int, D: int, C: int) -> bool:
    """Whether a call on ``n_rows`` rows runs the parallel twin (see ``PARALLEL_MIN_WORK``)."""
    import numba

    return (
        numba.get_num_threads() > 1
        and n_rows > MIN_TASK_ROWS  # one task: nothing to share
        and n_rows * D * C >= settings.linear_parallel_min_work
    )


@jit(inline="always")
def _row_derivative(s, yi, kind, g):
    """Loss of one row from its scores ``s`` (C,) float64; writes dloss/dscores to ``g``."""
    C = s.shape[0]
    if kind == SVM:
        sy = s[yi]
        loss = 0.0
        count = 0.0
        for j in range(C):
            m = s[j] - sy + 1.0
            if j != yi and m > 0.0:
                loss += m
                g[j] = 1.0
                count += 1.0
            else:
                g[j] = 0.0
                if m - m != 0.0:  # a non-finite score (NaN or inf in the row, or float32
                    # overflow) makes the loss non-finite: the sparse update never
                    # multiplies this row by 0 (which made the dense one's gradient NaN)
                    loss += m
        g[yi] = -count
        return loss
    smax = s[0]
    for j in range(1, C):
        if s[j] > smax:
            smax = s[j]
    total = 0.0
    for j in range(C):
        e = np.exp(s[j] - smax)
        g[j] = e
        total += e
    for j in range(C):
        g[j] = g[j] / total
    g[yi] -= 1.0
    return np.log(total) - (s[yi] - smax)


@jit
def _pack_tail(xb, nr, X, src):
    """Rows of a last group of fewer than 4, packed before the tiles; zero rows after them."""
    D = X.shape[1]
    nr4 = nr + (-nr) % 4
    # element loops, not ``xb[r, :D] = X[src[r]]``: an array-to-slice copy makes numba
    # compile its shape-mismatch message formatting (1.8 s of a cold first call)
    for r in range(nr - nr % 4, nr):
        xr = src[r]
        for d in range(D):
            xb[r, d] = X[xr, d]
    for r in range(nr, nr4):
        for d in range(D):
            xb[r, d] = 0
    return nr4, nr - nr % 4


def _tile_name(tile) -> str | None:
    """The micro-kernel's name of a tile token's numba type, or None."""
    names = {count: name for name, count in CLASS_TILES.items()}
    if not isinstance(tile, types.UniTuple) or tile.count not in names:
        return None
    return names[tile.count]


def _simd_tiles(tile):
    """(score tile, update tile, vector bytes) of a SIMD micro-kernel's token (compile time)."""
    raise NotImplementedError  # pragma: no cover - compiled through the overload below


@overload(_simd_tiles, jit_options={"nogil": True})
def _simd_tiles_overload(tile):
    name = _tile_name(tile)
    if name is None:
        return None
    score, update = {
        "avx512": (scores_tile_avx512, update_tile_avx512),
        "avx2": (scores_tile_avx2, update_tile_avx2),
        "portable": (scores_tile_portable, update_tile_portable),
    }[name]
    vec_bytes = TILE_SHAPES[name][0]

    def impl(tile):
        return score, update, vec_bytes

    return impl


#: the micro-kernels whose multiclass SVM update goes through the sparse lists (the
#: sparse tiles and their one-vector twins). Not the zmm tiles: the sparse tile loads and
#: stores its accumulators once per list per feature range for about 2 entries, which
#: the wide FMAs of the dense tile pay for, and on 2 threads (the rows streaming from
#: memory) it lost. Measured on a 2-core Xeon (AVX-512), svm_loss float32 D=3073 C=10,
#: interleaved with NumPy's loss (``bench/bench_linear.py interleaved 5``), ratio to NumPy
#: dense -> sparse: N=10000 2.64x -> 2.69x on 1 thread, 3.03x -> 2.86x on 2; N=256 2.07x
#: -> 2.28x and 1.92x both; SGD training 3.30x -> 3.21x. The ymm tiles (the same machine
#: limited to Haswell's features), alternated processes: N=10000 22.7 -> 17.3-18.5 ms on
#: 1 thread; interleaved ratios N=10000 1.85x -> 2.25x (1 thread), 2.07x -> 2.19x (2),
#: N=256 1.34x -> 1.81x, 1.50x -> 1.61x, SGD 2.56x -> 2.76x
SPARSE_UPDATE = {
    "avx2": (sparse_update_avx2, sparse_update_avx2_1),
    "portable": (sparse_update_portable, sparse_update_portable_1),
}

#: a block's update goes through the sparse lists when they hold at most this fraction
#: of its rows x classes (else the dense tiles): a listed entry costs about what a dense
#: one does, plus the lists
SPARSE_MAX_FILL = 0.5


def _sparse_update(tile, g, nr, y, src, lists, list_weights, xb, acc, total, total_used):
    """Add a multiclass SVM block's update to ``acc`` through the sparse lists when they
    are short enough (and the micro-kernel has sparse tiles); returns (done, total_used).

    ``g`` holds the block's derivatives (``nr`` rows). ``total`` gathers the complement
    form's rows for the sub-block; it is zeroed on its first use, and ``total_used``
    tells the caller to add it to every class at the sub-block's end.
    """
    raise NotImplementedError  # pragma: no cover - compiled through the overload below


@overload(_sparse_update, jit_options={"nogil": True})
def _sparse_update_overload(tile, g, nr, y, src, lists, list_weights, xb, acc, total, total_used):
    name = _tile_name(tile)
    if name not in SPARSE_UPDATE:  # the dense update, always

        def dense(tile, g, nr, y, src, lists, list_weights, xb, acc, total, total_used):
            return False, total_used

        return dense
    sparse_tile, one_tile = SPARSE_UPDATE[name]
    nvec = SPARSE_VECTORS[name]
    vec_bytes = TILE_SHAPES[name][0]

    # One function, not three: each compiled function costs about 0.1-0.2 s of the cold
    # compile, and every top-level kernel that calls this one optimises it again.
    def impl(tile, g, nr, y, src, lists, list_weights, xb, acc, total, total_used):
        # The lists. Row r (label y[src[r]]) has 1 for each of its m violated margins and
        # -m at its label, and is listed in the shorter of two exact forms: its m + 1
        # nonzero g[r, c] in list c; or (the complement form, for rows mostly equal to 1,
        # as every row is at a small initial W) the row in list C with weight 1, meaning
        # "add to every class", and g[r, c] - 1 in list c where g[r, c] != 1 (C - m + 1
        # entries). lists[c, :n] / list_weights[c, :n] hold list c in row order and
        # lists[c, -1] its length n. (m comes from the label's derivative, not from a loop
        # over the classes: LLVM vectorises that loop, at a cost in compile time.)
        C = g.shape[1]
        last = lists.shape[1] - 1
        for c in range(C + 1):
            lists[c, last] = 0
        entries = 0
        for r in range(nr):
            violated = -g[r, y[src[r]]]
            if violated == 0.0:
                continue
            base = 1.0 if C < 2.0 * violated else 0.0
            if base == 1.0:
                n = lists[C, last]
                lists[C, n] = r
                list_weights[C, n] = 1.0
                lists[C, last] = n + 1
                entries += 1
            for c in range(C):
                v = g[r, c] - base
                if v != 0.0:
                    n = lists[c, last]
                    lists[c, n] = r
                    list_weights[c, n] = v
                    lists[c, last] = n + 1
                    entries += 1
        if entries > SPARSE_MAX_FILL * C * nr:
            return False, total_used
        if lists[C, last] > 0 and not total_used:
            for d in range(total.shape[1]):  # (a slice assignment compiles slowly)
                total[0, d] = 0.0
            total_used = True
        # List c into acc[c], list C into total[0], feature range by feature range: a
        # range of the block's rows stays in L1 while every list walks it. No prefetch:
        # before a sparse update the scores take every prefetch of the next block
        # (passes of _block_scores).
        lanes = vec_bytes // xb.itemsize
        n_vectors = xb.shape[1] // lanes
        whole = n_vectors - n_vectors % nvec
        for v0 in range(0, whole, nvec):
            sparse_tile(xb, lists, list_weights, acc, total, v0 * lanes)
        for v0 in range(whole, n_vectors):
            one_tile(xb, lists, list_weights, acc, total, v0 * lanes)
        return True, total_used

    return impl


@jit(inline="always")
def _prefetch_segment(call, n_calls, n_segments):
    """The segment of the next block that tile call ``call`` of ``n_calls`` prefetches, or -1.

    The next block's rows are cut into ``n_segments`` segments of one chunk each, in row
    order (row ``m // n_chunks``, chunk ``m % n_chunks``), and each segment is given to one
    call, spread evenly over the calls of the block (scores and update): the prefetches
    walk the rows in address order at the pace of the arithmetic.
    """
    if call >= n_calls:
        return -1
    if (call * n_segments) % n_calls < n_segments:
        return (call * n_segments) // n_calls
    return -1


@jit(inline="always")
def _prefetch_target(call, n_calls, n_full, n_rows, chunk):
    """``(row of nxt, first feature, whether)`` tile call ``call`` prefetches: its
    segment (:func:`_prefetch_segment`) over ``n_rows`` rows of ``n_full`` chunks of
    ``chunk`` features each."""
    m = _prefetch_segment(call, n_calls, n_rows * n_full)
    if m < 0:
        return 0, 0, False
    return m // n_full, (m % n_full) * chunk, True


@jit(inline="always")
def _chunk_span(ci, n_full, chunk, Dp, lanes):
    """``(d0, nvec)`` of feature chunk ``ci`` of the SIMD passes: ``max(1, n_full)``
    chunks of ``chunk`` features, the last also taking the remainder (D=3073: 5 x 512 +
    528 features, not 6 x 512 + 16: a tile call of one vector paid a whole tile's
    reduction and epilogue). The scores and the update walk the same chunks, so their
    tile calls number alike for the prefetch (:func:`_prefetch_segment`)."""
    d0 = ci * chunk
    last = ci == max(1, n_full) - 1
    return d0, ((Dp if last else d0 + chunk) - d0) // lanes


@jit
def _block_scores(tile, xb, WT, nr, s, X, src, nxt, has_next, passes):
    """Add the block's scores into ``s``, packing its rows into ``xb`` on the way.

    ``s[r, c] += x_r . WT[c]`` for ``r < nr``, ``c < C``, where ``x_r`` is ``X[src[r]]``.
    With ``has_next`` the tiles prefetch part of the next block's rows ``X[nxt]`` (see
    :func:`_prefetch_segment`). ``WT`` has ``Cp >= C`` rows (zero weights beyond ``C``,
    so the tiles need no class tail) and ``Dp`` columns, a multiple of 16, zero beyond
    the features. The first class tile of each group of 4 rows reads ``X`` and stores
    the aligned, zero-padded copy ``xb`` (read by the later tiles and the update). Rows
    of a last group of fewer than 4 are packed first (zero rows after them).

    ``tile`` is the micro-kernel's token (:func:`tile_token`): its type chooses the tile
    functions at compile time (:func:`_simd_tiles`), so only the chosen micro-kernel is
    compiled.
    """
    score_tile, _, vec_bytes = _simd_tiles(tile)
    w = len(tile)
    C = s.shape[1]
    Cp = WT.shape[0]
    Dp = xb.shape[1]
    nr4, full = _pack_tail(xb, nr, X, src)
    chunk = _CHUNK_BYTES // xb.itemsize
    lanes = vec_bytes // xb.itemsize
    # tile calls of the full chunks in the scores and the update (see _prefetch_segment)
    n_full = Dp // chunk
    per_chunk = passes * (nr4 // 4) * (Cp // w)
    n_calls = n_full * per_chunk if has_next else 0
    # chunk-major: the chunk of WT (every class) stays in L1 while the block's rows pass
    # over it, and a group's rows, packed by its first class tile, are read from L1 by the
    # others. (Group-major first tiles streamed WT from L2 for every group: half the FMA
    # rate on AVX2 and AVX-512.)
    for ci in range(max(1, n_full)):
        d0, nvec = _chunk_span(ci, n_full, chunk, Dp, lanes)
        for j in range(0, nr4, 4):
            for c in range(0, Cp, w):
                mode = PACK if c == 0 and j < full else PLAIN
                call = ci * per_chunk + (j // 4) * (Cp // w) + c // w
                q, pf_d0, pf = _prefetch_target(call, n_calls, n_full, xb.shape[0], chunk)
                t = score_tile(xb, WT, j, c, d0, nvec, X, src, mode, nxt, q, pf_d0, pf)
                for r in range(4):
                    for k in range(w):
                        if c + k < C:
                            s[j + r, c + k] += t[r * w + k]


@jit
def _block_update(tile, xb, gw, nr4, acc, X, nxt, has_next, src, nr, passes):
    """Add ``sum_r gw[r, c] * xb[r]`` to ``acc[c]`` over the block (``Cp`` rows of ``acc``).

    With ``has_next`` the tiles of the scores and the update prefetch the next block's
    rows ``X[nxt]`` (see :func:`_prefetch_segment`). ``tile``: as for
    :func:`_block_scores`.
    """
    _, update_tile, vec_bytes = _simd_tiles(tile)
    w = len(tile)
    Cp = acc.shape[0]
    Dp = xb.shape[1]
    chunk = _CHUNK_BYTES // xb.itemsize
    lanes = vec_bytes // xb.itemsize
    n_full = Dp // chunk
    n_score_calls = (nr4 // 4) * (Cp // w)
    per_chunk = passes * n_score_calls
    n_calls = n_full * per_chunk if has_next else 0
    for ci in range(max(1, n_full)):
        d0, nvec = _chunk_span(ci, n_full, chunk, Dp, lanes)
        for j in range(0, nr4, 4):
            for c in range(0, Cp, w):
                call = ci * per_chunk + n_score_calls + (j // 4) * (Cp // w) + c // w
                q, pf_d0, pf = _prefetch_target(call, n_calls, n_full, xb.shape[0], chunk)
                update_tile(xb, gw, j, acc, c, d0, nvec, X, nxt, q, pf_d0, pf)


@jit
def linear_loss_grad_rows_serial(
    X, y, idx, idx_next, WT, b, kind, bounds, part, wide, part_db, part_loss, tile, rblock,
    ticks, scratch,
):  # fmt: skip
    """:func:`linear_loss_grad_rows` on the calling thread (same tasks, same bits).

    The parallel driver runs this on one task at a time (``bounds[t : t + 2]``), so the
    two share one body. It works on aligned, zero-padded arrays: ``WT`` (``Cp`` x ``Dp``:
    classes rounded up to the tile, features to 16, made by the caller once per call,
    not once per task), the task's partial ``part[t]`` in the same layout, which the
    tiles accumulate into directly, and the row block ``xb`` (``rblock`` x ``Dp``). Each
    block of rows is scored (the scores copy the rows into ``xb`` as they first read
    them, padding columns zero; rows ``nr`` up to the next multiple of 4 are zero rows
    with zero update weights, so the tiles always take 4 rows: that is the call's one
    read of ``X`` from memory, the later tiles and the update read ``xb`` from L2),
    differentiated, and its gradient added to ``part[t]``.

    A task of more than ``SUB_ROWS`` rows sums each sub-block in ``part[t]`` and the
    sub-blocks in float64 in ``wide[t]``, then rounds that sum into ``part[t]`` once.

    The row block and the per-block scores, derivatives and row numbers live in
    ``scratch`` (:func:`loss_buffers`), one slot per thread of the pool
    (``numba.get_thread_id()``; the calling thread's is 0): allocating them here cost a
    compiled ``np.empty`` / ``np.zeros`` per signature, 0.4-0.5 s of a cold first fit.

    The block step is written out here rather than called: every compiled level costs
    numba a re-optimisation and machine code of its whole call tree (0.7 s of a cold fit).
    """
    C = b.shape[0]
    D = X.shape[1]
    slot = get_thread_id()
    xb = scratch[0][slot]  # the block's rows, aligned; columns from D on stay zero
    s = scratch[1][slot, 0]  # the block's scores (float64)
    g = scratch[1][slot, 1]  # their derivatives
    gw = scratch[2][slot]  # the derivatives in the working precision; zero beyond C
    src = scratch[3][slot, 0]  # this block's rows of X
    nxt = scratch[3][slot, 1]  # the rows the next block will pack
    lists = scratch[4][slot]  # the sparse update's rows per class (_sparse_update)
    list_weights = scratch[5][slot]
    total = scratch[6][slot]  # rows every class gets (the lists' complement form)
    # passes over a block whose tile calls prefetch the next block's rows: the scores
    # and a dense update, or the scores alone before a sparse update (which a multiclass
    # SVM's blocks nearly always take or nearly never, so a block expects what the last did)
    passes = np.int64(2)  # not the literal 2: the tiles would compile twice, for each type
    for t in range(bounds.shape[0] - 1):
        ticks[t, 0] = cycle_counter()
        pt = part[t]
        pdb = part_db[t]
        for c in range(C):
            pdb[c] = 0.0
        loss = 0.0
        start = bounds[t]
        stop = bounds[t + 1]
        several = stop - start > SUB_ROWS  # sub-blocks summed in float64 in wide[t]
        # the task this thread runs next (the serial twin's): its first rows follow
        next_stop = bounds[t + 2] if t + 2 < bounds.shape[0] else stop
        pt[:] = 0  # an empty task's partial, and the first sub-block's start
        for s0 in range(start, stop, SUB_ROWS):
            s1 = min(s0 + SUB_ROWS, stop)
            if s0 > start:
                pt[:] = 0
            total_used = False
            for r0 in range(s0, s1, rblock):
                nr = min(rblock, s1 - r0)
                nr4 = nr + (-nr) % 4
                # the rows the next block packs: this task's next rows, else the first
                # rows of the task this thread runs next (the serial twin's next task),
                # else the first rows of this task in the next call (``idx_next``, an
                # SGD loop's next batch). Only callers that pass ``idx_next`` prefetch:
                # SGD loops when settings.linear_prefetch_next_batch asks (a random
                # mini-batch row's start is a cold miss no hardware prefetcher predicts,
                # yet since the task body became one function it made the step 4-9%
                # slower), and single calls (settings.linear_prefetch_min_bytes, by
                # default per micro-kernel)
                has_next = idx_next.shape[0] > 0 and (
                    r0 + nr < next_stop or idx_next.shape[0] > start
                )
                for r in range(rblock):
                    p = r0 + nr + r
                    if p < next_stop:
                        nxt[r] = idx[p]
                    elif start + p - stop < idx_next.shape[0]:
                        nxt[r] = idx_next[start + p - stop]
                    else:
                        nxt[r] = nxt[r - 1] if r > 0 else 0
                for r in range(nr):
                    src[r] = idx[r0 + r]
                for r in range(nr4):
                    for c in range(C):
                        s[r, c] = b[c]
                _block_scores(tile, xb, WT, nr, s, X, src, nxt, has_next, passes)
                for r in range(nr):
                    loss += _row_derivative(s[r], y[src[r]], kind, g[r])
                    for c in range(C):
                        gw[r, c] = g[r, c]
                        pdb[c] += g[r, c]
                sparse = False
                if kind == SVM:
                    sparse, total_used = _sparse_update(
                        tile, g, nr, y, src, lists, list_weights, xb, pt, total, total_used
                    )
                if not sparse:
                    for r in range(nr, nr4):
                        for c in range(C):
                            gw[r, c] = 0.0
                    _block_update(tile, xb, gw, nr4, pt, X, nxt, has_next, src, nr, passes)
                passes = 1 if sparse else 2  # the next block expects what this one did
            if total_used:  # the complement form's rows, added to every class
                for c in range(C):
                    for d in range(D):
                        pt[c, d] += total[0, d]
            if several:  # the sub-block (working precision) into the float64 sum
                wt = wide[t]
                if s0 == start:
                    for c in range(C):
                        for d in range(D):
                            wt[c, d] = pt[c, d]
                else:
                    for c in range(C):
                        for d in range(D):
                            wt[c, d] += pt[c, d]
        if several:  # rounded once into the working precision
            wt = wide[t]
            for c in range(C):
                for d in range(D):
                    pt[c, d] = wt[c, d]
        part_loss[t] = loss
        ticks[t, 1] = cycle_counter()


@jit(parallel=True)
def linear_loss_grad_rows(
    X, y, idx, idx_next, WT, b, kind, bounds, part, wide, part_db, part_loss, tile, rblock,
    ticks, scratch,
):  # fmt: skip
    """Fused data loss and gradient over the rows ``X[idx]``, per task.

    Parameters (all C-contiguous, no validation)
    ----------
    X : (N, D) float32 or float64
    y : (N,) int64 labels in 0..C-1 (indexed through ``idx``)
    idx : (M,) int64 rows of ``X`` to use (with repetitions allowed)
    idx_next : (M',) int64 rows the *next* call will use (an SGD loop's next batch; may be
        empty): only prefetched, never read as data
    WT : (Cp, Dp) weights, transposed, dtype of ``X``, zero-padded and 64-byte aligned
        (:func:`padded_shape`, :func:`loss_buffers`)
    b : (C,) bias, dtype of ``X``
    kind : int, ``SVM`` or ``SOFTMAX``
    bounds : (T+1,) int64 task boundaries into ``idx`` (:func:`task_bounds`)
    part : (T, Cp, Dp) out, dtype of ``X``, each ``part[t]`` 64-byte aligned: per-task
        *sums* of ``x_i g_i^T`` (transposed; zero in the padding)
    wide : (T, C, D) float64 scratch for tasks of more than ``SUB_ROWS`` rows (may have no
        tasks when none has: :func:`needs_wide`)
    part_db : (T, C) float64 out: per-task sums of ``g_i``
    part_loss : (T,) float64 out: per-task sums of the row losses
    tile : tuple, the micro-kernel's token (:func:`tile_token`; its length is the number
        of classes per register tile)
    rblock : int, rows per block (a positive multiple of 4)
    ticks : (T, 2) int64 out: :func:`cycle_counter` when each task started and ended
    scratch : the per-thread work arrays of :func:`loss_buffers`
    """
    for t in prange(bounds.shape[0] - 1):
        # one task each: the task's boundaries are absolute, so the slices keep meaning
        linear_loss_grad_rows_serial(
            X, y, idx, idx_next, WT, b, kind, bounds[t : t + 2], part[t : t + 1],
            wide[t : t + 1], part_db[t : t + 1], part_loss[t : t + 1], tile, rblock,
            ticks[t : t + 1], scratch,
        )  # fmt: skip


def _rows_fn(twin):
    """:func:`linear_loss_grad_rows` or its serial twin, chosen by the type of ``twin``.

    Returned as a value for the caller to call: an overload that called it itself would
    be one more compiled level, and numba re-optimises and re-emits the machine code of
    a function's whole call tree at every level (0.5 s of a cold first fit). One
    function per chooser: a tuple of two would be typed as numba's experimental
    first-class function type.
    """
    raise NotImplementedError  # pragma: no cover - compiled through the overload below


@overload(_rows_fn, jit_options={"nogil": True})
def _rows_fn_overload(twin):
    if not isinstance(twin, types.BaseTuple):
        return None
    fn = linear_loss_grad_rows if len(twin) == 1 else linear_loss_grad_rows_serial

    def impl(twin):
        return fn

    return impl


#: penalty codes understood by :func:`finish_gradient`
PENALTY_CODES = {"l2": 0, "l1": 1, "elasticnet": 2}


@jit(inline="always")
def _add_in_lanes(v, n, l0, l1, l2, l3, l4, l5, l6, l7):
    """``v[:n]`` added into 8 lanes in a written order: ``v[d]`` into lane ``d % 8``, the
    last ``n % 8`` values into lane 0; returns the lanes. Strict arithmetic: however LLVM
    vectorises it, the bits are the same (see :func:`finish_gradient`)."""
    n8 = n - n % 8
    for d in range(0, n8, 8):
        l0 += v[d]
        l1 += v[d + 1]
        l2 += v[d + 2]
        l3 += v[d + 3]
        l4 += v[d + 4]
        l5 += v[d + 5]
        l6 += v[d + 6]
        l7 += v[d + 7]
    for d in range(n8, n):
        l0 += v[d]
    return l0, l1, l2, l3, l4, l5, l6, l7


@jit(inline="always")
def _lanes_total(l0, l1, l2, l3, l4, l5, l6, l7):
    """The 8 lanes of :func:`_add_in_lanes` added by a fixed tree."""
    return ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))


@jit(inline="always")
def _partials_sum(part, c, D, g):
    """``g[:D] = part[0, c] + part[1, c] + ...`` in float64, the partials in task order
    (the order that makes the gradient independent of the thread count); the first two
    in one pass (the same sum as ``g = p0; g += p1``). Shared by both finishes."""
    T = part.shape[0]
    p0 = part[0, c]
    if T > 1:
        p1 = part[1, c]
        for d in range(D):
            g[d] = np.float64(p0[d]) + p1[d]
    else:
        for d in range(D):
            g[d] = p0[d]
    for t in range(2, T):
        pt = part[t, c]
        for d in range(D):
            g[d] += pt[d]


@jit(inline="always")
def _class_gradient(c, part, scale, WT, reg, penalty, beta, dWT, g, terms):
    """Class ``c`` of :func:`finish_gradient_parallel`: the partials reduced in task
    order in float64 (in ``g``), scaled, the penalty gradient added, cast into
    ``dWT[c]``; the penalty's terms (in ``terms``) added in 8 interleaved lanes
    (:func:`_add_in_lanes`) and the lanes by the fixed tree of :func:`_lanes_total`.
    Returns ``(every entry finite, the class's penalty value before the factor reg)``.

    The same operations in the same order as one class of :func:`finish_gradient`'s
    loop (both sum the partials with :func:`_partials_sum`), which writes the rest out
    instead of calling this: inlined there, the serial
    finish took 0.15-0.2 s longer to compile, which every cold first fit pays. The tests
    pin both to one reference order, bit for bit."""
    D = dWT.shape[1]
    _partials_sum(part, c, D, g)
    w = WT[c]
    o = dWT[c]
    ok = True
    if penalty == 0:
        for d in range(D):
            wd = np.float64(w[d])
            terms[d] = wd * wd
            o[d] = g[d] * scale + 2.0 * reg * wd
            ok &= np.isfinite(o[d])
    elif penalty == 1:
        for d in range(D):
            wd = np.float64(w[d])
            terms[d] = abs(wd)
            o[d] = g[d] * scale + reg * np.sign(wd)
            ok &= np.isfinite(o[d])
    else:
        for d in range(D):
            wd = np.float64(w[d])
            terms[d] = beta * wd * wd + abs(wd)
            o[d] = g[d] * scale + reg * (2.0 * beta * wd + np.sign(wd))
            ok &= np.isfinite(o[d])
    l0, l1, l2, l3, l4, l5, l6, l7 = _add_in_lanes(terms, D, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    return ok, _lanes_total(l0, l1, l2, l3, l4, l5, l6, l7)


@jit(inline="always")
def _finish_totals(part_db, part_loss, scale, db, finite):
    """``db`` and the data loss, sums in task order; returns ``(data loss, finite)``
    with ``finite`` also False when one of them is not. Both finishes end with it
    (inlined: it cost their compilation nothing measurable)."""
    T = part_db.shape[0]
    for c in range(db.shape[0]):
        h = 0.0
        for t in range(T):
            h += part_db[t, c]
        db[c] = h * scale
        finite &= np.isfinite(db[c])
    data = 0.0
    for t in range(T):
        data += part_loss[t]
    data *= scale
    return data, finite and np.isfinite(data)


@jit
def finish_gradient(part, part_db, part_loss, scale, WT, reg, penalty, beta, dWT, db):
    """Reduce the per-task partials and add the penalty, on the calling thread.

    ``dWT[c, d] = scale * sum_t part[t, c, d] + penalty gradient(WT[c, d])`` in float64
    for ``c < C``, ``d < D`` (``dWT``'s shape; ``part`` and ``WT`` may be padded beyond
    it), partials summed in task order, so the result does not depend on the thread count,
    cast to ``dWT``'s dtype; ``db[c] = scale * sum_t part_db[t, c]``. One compiled pass
    replaces a reduction, a penalty and a cast done as separate NumPy calls.

    Every sum has an order written here, none left to the compiler. The penalty value:
    per class, 8 interleaved lanes (weight ``d`` into lane ``d % 8``, the last ``D % 8``
    into lane 0) added by a fixed tree, then the classes in order. LLVM may vectorise
    that as it likes without changing a bit, and :func:`finish_gradient_parallel`,
    which shares the classes among the threads, adds the same terms in the same order.
    A strict single sum was a 30000-long dependency chain (54 us of a 150 us call at
    D=3073, C=10); a reassociated one is summed in whatever lanes the vectoriser picks,
    which differed between the copies of this function compiled into the parallel and
    the serial twin: 4 lanes in one, 8 or more in the other, a loss 1 ulp apart on 2
    threads and on 1 (seen once in a cold test run).

    part : (T, >= C, >= D) float32 or float64; part_db : (T, C) float64; part_loss : (T,)
    float64; WT : (>= C, >= D); dWT : (C, D); db : (C,), dtype of ``dWT``; penalty : a
    code of ``PENALTY_CODES``.
    Returns ``(data loss = scale * sum_t part_loss[t], penalty value, every entry of
    dWT and db and the data loss finite)``.
    """
    C = dWT.shape[0]
    D = dWT.shape[1]
    g = np.empty(D, dtype=np.float64)
    terms = np.empty(D, dtype=np.float64)  # a class's penalty terms
    finite = True
    pen = 0.0
    for c in range(C):
        _partials_sum(part, c, D, g)
        w = WT[c]
        o = dWT[c]
        # the finiteness check in the penalty's pass, not a pass of its own: with the
        # first two partials in one pass, 24 -> 18 us at D=3073, C=10, T=2 (AVX2 build)
        ok = True
        if penalty == 0:
            for d in range(D):
                wd = np.float64(w[d])
                terms[d] = wd * wd
                o[d] = g[d] * scale + 2.0 * reg * wd
                ok &= np.isfinite(o[d])
        elif penalty == 1:
            for d in range(D):
                wd = np.float64(w[d])
                terms[d] = abs(wd)
                o[d] = g[d] * scale + reg * np.sign(wd)
                ok &= np.isfinite(o[d])
        else:
            for d in range(D):
                wd = np.float64(w[d])
                terms[d] = beta * wd * wd + abs(wd)
                o[d] = g[d] * scale + reg * (2.0 * beta * wd + np.sign(wd))
                ok &= np.isfinite(o[d])
        l0, l1, l2, l3, l4, l5, l6, l7 = _add_in_lanes(
            terms, D, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
        )
        pen += _lanes_total(l0, l1, l2, l3, l4, l5, l6, l7)
        finite &= ok
    data, finite = _finish_totals(part_db, part_loss, scale, db, finite)
    return data, reg * pen, finite


#: most tasks (partials) after which the parallel twin shares the finish among the
#: threads (:func:`finish_gradient_parallel`); after more, the calling thread finishes.
#: With few tasks the finish is a share of the call worth sharing (N=256, 2 tasks:
#: 41-46 -> 29-30 us of a 0.21-0.25 ms call); at N=10000 (16 tasks) it saved about 40 us
#: of 7 ms, and a second parallel region costs more when other threads hold the cores:
#: alternated with a 512 x 512 NumPy product (OpenBLAS's threads spin on after it),
#: svm_loss N=10000 on 2 threads took 23-24 ms a round against 18-21 with the finish on
#: the calling thread. (Small contended calls go to the serial twin: fastcls.losses.)
FINISH_SHARED_MAX_TASKS = 4


@jit(parallel=True)
def finish_gradient_parallel(part, part_db, part_loss, scale, WT, reg, penalty, beta, dWT, db):
    """:func:`finish_gradient` with the classes shared among the threads (the same bits),
    after at most ``FINISH_SHARED_MAX_TASKS`` tasks; after more, :func:`finish_gradient`.

    After the parallel kernel each task's partial sits in its own core's cache; on the
    calling thread alone the reduction read the other core's lines one by one. svm_loss
    N=256, D=3073, C=10, 2 threads on the Xeon: 41-46 us from the tasks' end to the
    return, 29-30 with the classes shared. The price is one more parallel region to
    compile (1.2-1.9 s, once: the cache keeps it), paid only by calls that run the
    parallel twin.
    """
    if part.shape[0] > FINISH_SHARED_MAX_TASKS:
        return finish_gradient(part, part_db, part_loss, scale, WT, reg, penalty, beta, dWT, db)
    C = dWT.shape[0]
    D = dWT.shape[1]
    oks = np.empty(C, dtype=np.bool_)
    class_pens = np.empty(C)
    for cc in prange(C):
        c = np.int64(cc)  # prange's index is unsigned: one compiled body, not two
        g = np.empty(D, dtype=np.float64)
        terms = np.empty(D, dtype=np.float64)
        oks[c], class_pens[c] = _class_gradient(
            c, part, scale, WT, reg, penalty, beta, dWT, g, terms
        )  # fmt: skip
    finite = True
    pen = 0.0
    for c in range(C):
        finite &= oks[c]
        pen += class_pens[c]
    data, finite = _finish_totals(part_db, part_loss, scale, db, finite)
    return data, reg * pen, finite


def _finish_fn(twin):
    """:func:`finish_gradient` or its parallel twin, chosen by the type of ``twin`` (a
    :func:`twin_token`), so a serial call never compiles the parallel finish. Returned as
    a value for the caller to call (see :func:`_rows_fn` for why)."""
    raise NotImplementedError  # pragma: no cover - compiled through the overload below


@overload(_finish_fn, jit_options={"nogil": True})
def _finish_fn_overload(twin):
    if not isinstance(twin, types.BaseTuple):
        return None
    fn = finish_gradient_parallel if len(twin) == 1 else finish_gradient

    def impl(twin):
        return fn

    return impl


@jit
def linear_loss_grad(
    X, y, idx, W, b, kind, bounds, part, wide, part_db, part_loss, tile, rblock, parallel,
    reg, penalty, beta, WT, dWT, dW, db, ticks, scratch, prefetch=False,
):  # fmt: skip
    """One call of the public losses, compiled end to end (no NumPy between the steps).

    Transposes ``W`` (D, C) into the padded scratch ``WT`` (Cp, Dp, zero beyond C and D:
    :func:`loss_buffers`), runs the fused kernel
    (``parallel``, a :func:`twin_token`, chooses the twin), reduces the partials with
    :func:`finish_gradient` into the scratch ``dWT`` and writes the gradient in ``W``'s
    layout into ``dW`` (D, C). One dispatch from Python instead of five (two NumPy
    transposes, the kernel, the reduction, the allocations): measured 0.13 ms of fixed cost
    per call at N=256 before, most of it Python. Returns what :func:`finish_gradient` returns,
    with ``finite`` also False when ``W`` holds NaN, infinity or a value beyond
    ``MAX_ABS_VALUE`` (the caller then scans ``W`` to name the problem), the task
    speed-up (:func:`task_speedup`) and whether every label used lies in ``0..C-1``:
    when one does not, nothing else is computed (a label indexes the scores; the public
    losses leave this check to this pass, one load per row). With ``prefetch`` each
    block's tiles prefetch the rows its task packs next (the same bits either way).
    ``ticks`` and ``scratch``: the kernel's work arrays of :func:`loss_buffers`.
    """
    D = W.shape[0]
    C = W.shape[1]
    labels_ok = True
    for i in range(idx.shape[0]):
        label = y[idx[i]]
        labels_ok &= (label >= 0) & (label < C)
    if not labels_ok:
        return np.nan, 0.0, False, np.inf, False
    # the public losses leave W's scan to this pass, which reads it anyway (a separate
    # NumPy scan cost 15-45 us at N=256, W evicted by the previous call's rows); the
    # check runs over WT's contiguous rows (element by element, the strided stores and
    # the check's dependency chain took 17-22 us of a 0.27 ms N=256 call). Shared among
    # the threads as the finish is, it saved 1-2 us of 0.21 ms: not worth a parallel
    # region's compilation
    transpose_into(W, WT)
    w_ok = True
    for c in range(C):
        row_ok = True
        w = WT[c]
        for d in range(D):
            row_ok &= abs(w[d]) <= MAX_ABS_VALUE  # False for NaN
        w_ok &= row_ok
    # with ``prefetch`` each block's tiles prefetch the rows its task packs next (a
    # task's last block prefetches the next task's first rows on the serial twin, its own
    # first rows again on the parallel one: harmless, one block in many)
    idx_next = idx if prefetch else idx[:0]
    rows = _rows_fn(parallel)
    start = cycle_counter()
    rows(
        X, y, idx, idx_next, WT, b, kind, bounds, part, wide, part_db, part_loss, tile, rblock,
        ticks, scratch,
    )  # fmt: skip
    out = _finish_fn(parallel)(
        part, part_db, part_loss, 1.0 / idx.shape[0], WT, reg, penalty, beta, dWT, db
    )
    transpose_into(dWT, dW)
    data, pen, finite = out
    return data, pen, finite and w_ok, task_speedup(ticks, start), True


@jit(inline="always")  # a compiled level of its own cost 0.1 s of a cold first call
def task_speedup(ticks, start):
    """The tasks' summed durations over the span from ``start`` (the cycle counter when
    the parallel region was entered) or the first task's start, whichever came first, to
    the last end.

    About the thread count when every thread ran its tasks at once; below 1 when the
    threads started late (their cores held by other spinning threads: OpenBLAS's, after
    a NumPy product) and the calling thread alone would have been done sooner. Measured
    from the region's entry, not the first task's start: after a product every thread,
    the calling one included, may start its task late (svm_loss N=256, 2 threads: calls
    of 2.4 ms whose tasks, once started, ran side by side). Infinite when the tasks took
    no measurable time (no cycle counter: nothing is known).
    """
    first = min(start, ticks[0, 0])
    last = ticks[0, 1]
    work = 0
    for t in range(ticks.shape[0]):
        first = min(first, ticks[t, 0])
        last = max(last, ticks[t, 1])
        work += ticks[t, 1] - ticks[t, 0]
    if last <= first:
        return np.inf
    return work / (last - first)


@jit
def _centred_bias(WT, mu, b, bias):
    """``bias = b - mu @ W`` in float64, cast to the dtype of ``bias`` (``WT`` may be padded
    beyond ``C = b.shape[0]`` and ``D = mu.shape[0]``).

    Each dot product in 8 interleaved lanes added by a fixed tree, an order written here
    rather than left to the vectoriser (see :func:`finish_gradient`): the parallel and
    serial twins of the SGD loop compile their own copies, and must agree to the bit.
    """
    C = b.shape[0]
    D = mu.shape[0]
    products = np.empty(D, dtype=np.float64)
    for c in range(C):
        w = WT[c]
        for d in range(D):
            products[d] = mu[d] * np.float64(w[d])
        l0, l1, l2, l3, l4, l5, l6, l7 = _add_in_lanes(
            products, D, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
        )
        t = _lanes_total(l0, l1, l2, l3, l4, l5, l6, l7)
        bias[c] = np.float64(b[c]) - t


@jit
def sgd_linear_steps(
    X, y, batches, full, WT, b, vWT, vb, it0, n_steps, lrs, momentum, kind, reg, penalty,
    beta, mu, centre, fit_bias, tile, rblock, parallel, bounds, part, wide, part_db,
    part_loss, dWT, db, bias, history, ticks, scratch, prefetch,
):  # fmt: skip
    """``n_steps`` SGD steps of a linear model, entirely compiled (no Python per step).

    Step ``k`` (global iteration ``it = it0 + k``) uses the rows ``batches[k]`` (``full``:
    ``batches[0]`` every step), computes the loss and gradient with the fused kernel
    (``parallel``, a :func:`twin_token`, chooses the twin), then updates ``WT`` (the
    padded layout of :func:`loss_buffers`: its padding stays zero) and ``b`` in their
    dtype, exactly as :func:`fastcls.optim.sgd` does in NumPy:
    ``W -= lr * dW`` or, with ``momentum > 0``, ``v = momentum * v; v -= lr * dW;
    W += v``. ``lrs[it]`` is the step size (float64, cast to the dtype). ``history[it]``
    receives the loss.

    With ``centre`` the model is ``scores = (x - mu) W + b``, computed as
    ``x W + (b - mu W)``; its gradient is the raw gradient minus ``db mu^T``. Without
    ``fit_bias`` the bias is zero and ``b`` is left alone.

    With ``prefetch`` each step's gradient pass also prefetches the next step's rows
    (:func:`prefetch_next_batch`).

    Returns the number of steps taken: ``n_steps``, or fewer when a step's loss or
    gradient was not finite (that step's loss is recorded, its update applied).
    """
    C = dWT.shape[0]
    D = dWT.shape[1]
    dt = WT.dtype.type
    mom = dt(momentum)
    fused = _rows_fn(parallel)
    for k in range(n_steps):
        it = it0 + k
        rows = batches[0] if full else batches[k]
        if not prefetch:
            nxt_rows = batches[0][:0]
        elif full:
            nxt_rows = batches[0]
        elif k + 1 < n_steps:
            nxt_rows = batches[k + 1]
        else:  # the next chunk's batches are not drawn yet
            nxt_rows = batches[0][:0]
        m = rows.shape[0]
        if not fit_bias:
            bias[:] = 0.0
        elif centre:
            _centred_bias(WT, mu, b, bias)
        else:
            for c in range(b.shape[0]):  # element loop: see _pack_tail
                bias[c] = b[c]
        fused(
            X, y, rows, nxt_rows, WT, bias, kind, bounds, part, wide, part_db, part_loss, tile,
            rblock, ticks, scratch,
        )  # fmt: skip
        data, pen, finite = _finish_fn(parallel)(
            part, part_db, part_loss, 1.0 / m, WT, reg, penalty, beta, dWT, db
        )
        if centre and fit_bias:
            for c in range(C):
                dbc = np.float64(db[c])
                for d in range(D):
                    dWT[c, d] -= dt(mu[d] * dbc)
        loss = data + pen
        history[it] = loss
        lr = dt(lrs[it])
        if momentum == 0.0:
            for c in range(C):
                for d in range(D):
                    WT[c, d] -= lr * dWT[c, d]
            if fit_bias:
                for c in range(C):
                    b[c] -= lr * db[c]
        else:
            for c in range(C):
                for d in range(D):
                    v = vWT[c, d] * mom
                    v -= lr * dWT[c, d]
                    vWT[c, d] = v
                    WT[c, d] += v
            if fit_bias:
                for c in range(C):
                    v = vb[c] * mom
                    v -= lr * db[c]
                    vb[c] = v
                    b[c] += v
        if not (finite and np.isfinite(loss)):
            return k + 1
    return n_steps


#: the default of ``settings.linear_parallel_min_work``: below this many multiply-adds
#: (rows x D x C) a call runs the serial twin. Measured on the 2-core Xeon (svm_loss,
#: float32, D=3073, C=10, 2 threads, alone): 64 rows (one task) 0.331 ms parallel vs
#: 0.328 serial; 96 rows 0.322 vs 0.437; 200 rows 0.499 vs 0.730; 256 rows 0.565 vs
#: 0.845. Alternated with a NumPy product, the parallel twin waits for OpenBLAS's
#: spinning threads (2.6-2.8 ms at 256 rows, against 0.84 serial): see the
#: "Interference" part of docs/performance.md. The SGD loop of ``fit`` makes no BLAS
#: call between steps.
PARALLEL_MIN_WORK = 1 << 21
