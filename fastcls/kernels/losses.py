"""Fused loss + gradient kernels for the linear classifiers (multiclass SVM, softmax).

One pass over the rows of ``X`` per call. Rows are taken in *blocks* of ``rblock`` rows
(``settings.linear_row_block_rows``, 32 by default): for a block the kernel

1. computes the scores of every row of the block, ``D`` walked in chunks of
   ``D_CHUNK`` columns so that the chunk of the weights (C x 512 values, 20 KiB in
   float32) stays in L1 while every row of the block passes over it: a register tile
   of 4 rows x ``ctile`` classes (``4 * ctile`` independent SIMD accumulators along
   ``D``), the tile's sums added to float64 scores;
2. takes the hinge or softmax derivative of each row (float64);
3. adds the rank-4 updates ``dW^T[c] += sum_r g[r, c] * x_r``, again chunk by chunk, so
   that the chunk of the gradient accumulator stays in L1 while the block's rows (in
   L2 since step 1) pass over it.

``X`` is read from memory once per call; no ``N x C`` temporary exists. Blocking by row
block instead of by group of four rows cuts the traffic of the weights and of the
accumulator (123 KiB each at D=3073, C=10) between L2 and the core by ``rblock / 4``.

The micro-kernel per CPU class
------------------------------
The tile width ``ctile`` is the only thing that differs between CPU classes, and it is a
run-time argument (one compiled function serves all: no extra compile time):

* ``"avx512"`` (``ctile = 5``): a 4 x 5 tile for the scores (then 4 x 4, 4 x 2, 4 x 1 for
  the classes left), 20 accumulators plus 9 operands: needs the 32 vector registers of
  AVX-512 (LLVM then uses ymm16-31 even where it prefers 256-bit vectors);
* ``"avx2"`` (``ctile = 2``): a 4 x 2 tile, 8 accumulators plus 6 operands: fits the 16
  ymm registers of AVX2 (the 4 x 4 tile spilled 9 accumulators to the stack there, every
  FMA then waited on a store-to-load round trip: the 0.7x-of-NumPy of issue 14);
* ``"portable"`` (``ctile = 1``): 4 rows x 1 class, 4 accumulators: any register file.

The gradient update uses 4 rows x ``min(ctile, 2)`` classes: measured on 256 rows x 3073
(float32), its 4 x 4 form took 475 us against 334 us for 4 x 2 on the AVX-512 build and
330 vs 352 us on the AVX2 build; a rank-8 x 2 update took 308 us (not worth a second
specialisation). The scores: 253 us (4 x 4) / 286 (4 x 2) natively, 312 (4 x 4,
spilling) / 282 (4 x 2) on AVX2.

:func:`kernel_impl` chooses by the CPU features numba compiles for (``NUMBA_CPU_NAME`` /
``NUMBA_CPU_FEATURES`` included); ``settings.linear_kernel_impl`` forces one (tests run
each). The vector width is LLVM's choice for the target (8 float32 lanes on AVX2; on
AVX-512 CPUs that LLVM tunes for 256-bit vectors, also 8: on the measured Xeon, 512-bit
vectors forced through ``-prefer-256-bit`` ran no faster, 25.4 vs 26.2 ms at N=10000).

Determinism and accuracy: the rows are split into at most ``MAX_TASKS`` tasks whose
boundaries depend only on the number of rows (never on the thread count). Each task
sums its rows' gradients in the working precision over sub-blocks of ``SUB_ROWS`` rows
and flushes each sub-block into its own float64 partial; the partials are then summed
in task order. Results are therefore bit-identical for any number of threads and for
the parallel and serial twins, and a float32 gradient never accumulates more than
``SUB_ROWS`` rows in float32 (a single running float32 sum over 10000 rows drifted to
1e-4 relative error). The tile and the row block change the order of float32 sums
(results then differ in the last bits, within the tested 1e-5).

Public kernel names:

* ``linear_loss_grad_rows(X, y, idx, WT, b, kind, bounds, part, part_db, part_loss,
  ctile, rblock)`` and its serial twin ``linear_loss_grad_rows_serial``;
* ``finish_gradient(part, scale, WT, reg, penalty, beta, dWT)``: reduce the partials,
  add the penalty (transposed layout);
* ``linear_loss_grad(...)``: one public-loss call end to end (transpose of ``W``, kernel,
  reduction, gradient in ``W``'s layout), so Python dispatches once per call;
* ``sgd_linear_steps(...)``: a chunk of SGD steps, entirely compiled (used by
  :mod:`fastcls.optim`);
* ``task_bounds(n_rows)``, ``kernel_impl()``, ``use_parallel(...)`` (plain Python);
* ``LOSS_CODES`` / ``PENALTY_CODES`` / ``CLASS_TILES``: the integer codes the kernels
  take, by name (the only place these integers appear).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from fastcls._config import FMA, REDUCE, jit, settings
from fastcls._runtime import best_simd

#: loss kinds understood by the kernel
SVM = 0
SOFTMAX = 1
#: kernel code of each loss, by the names of :data:`fastcls.losses.LOSSES`
LOSS_CODES = {"svm": SVM, "softmax": SOFTMAX}

#: rows accumulated in the working precision before flushing to float64
SUB_ROWS = 256
#: columns per inner pass: a chunk of the 10 weight rows (or accumulator rows) stays in L1
D_CHUNK = 512
#: most tasks (float64 partial gradients) per call; independent of the thread count
MAX_TASKS = 16
#: fewest rows per task (below this, fewer tasks). Every task costs a zeroed accumulator,
#: a float64 flush and a partial to reduce (C x D each): 128 rather than 64 made
#: svm_loss at N=256 (D=3073, C=10, float32, one thread) 0.78 -> 0.73 ms and an SGD
#: step of 200 rows 3% faster on the 2-core Xeon (2 tasks instead of 4)
MIN_TASK_ROWS = 128

#: classes per register tile (4 rows x ctile classes), by micro-kernel name
CLASS_TILES = {"avx512": 5, "avx2": 2, "portable": 1}


def task_bounds(n_rows: int) -> np.ndarray:
    """Row boundaries of the tasks: depends on ``n_rows`` only, multiples of 4 rows."""
    n_tasks = max(1, min(MAX_TASKS, -(-n_rows // MIN_TASK_ROWS)))
    groups = -(-n_rows // 4)
    bounds = np.array([min(n_rows, 4 * ((groups * t) // n_tasks)) for t in range(n_tasks + 1)])
    bounds[-1] = n_rows
    return bounds.astype(np.int64)


def kernel_impl() -> str:
    """The micro-kernel used: ``settings.linear_kernel_impl`` if set, else the CPU's best.

    ``"avx512"`` needs AVX-512 (32 vector registers), ``"avx2"`` AVX2, ``"portable"`` runs
    anywhere. Every one is correct on any CPU (they differ in register pressure only),
    but forcing one the CPU lacks is refused, as for the other micro-kernels.
    """
    available = best_simd({"avx512": ("avx512f",), "avx2": ("avx2", "fma")})
    forced = settings.linear_kernel_impl
    if forced is None:
        return available[0]
    if forced not in CLASS_TILES:
        raise ValueError(
            f"linear_kernel_impl must be None or one of {tuple(CLASS_TILES)}, got {forced!r}"
        )
    if forced not in available:
        raise ValueError(f"linear_kernel_impl={forced!r} is not supported by this CPU")
    return forced


def row_block() -> int:
    """Rows per block (``settings.linear_row_block_rows``), a positive multiple of 4."""
    rb = int(settings.linear_row_block_rows)
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


@jit(fastmath=FMA)
def _scores4_chunk(x0, x1, x2, x3, WT, d0, d1, s, j, ctile):
    """``s[j + r, c] += x_r[d0:d1] . WT[c, d0:d1]``, classes ``ctile`` (5, 4, 2, 1) at a time.

    With ``ctile == 5`` (AVX-512's 32 registers: 20 accumulators + 9 operands, no spill in
    the assembly) C=10 takes two passes with no 4 x 2 tail: 5-7% faster than 4 x 4 + 4 x 2
    for the whole kernel on one thread (0.566 -> 0.53 ms at N=256, 26.5 -> 25.2 ms at
    N=10000). Remaining classes fall through to the 4-, 2- and 1-class tiles.
    """
    C = WT.shape[0]
    y0 = x0[d0:d1]
    y1 = x1[d0:d1]
    y2 = x2[d0:d1]
    y3 = x3[d0:d1]
    n = d1 - d0
    c = 0
    while ctile == 5 and c + 5 <= C:
        w0 = WT[c + 0, d0:d1]
        w1 = WT[c + 1, d0:d1]
        w2 = WT[c + 2, d0:d1]
        w3 = WT[c + 3, d0:d1]
        w4 = WT[c + 4, d0:d1]
        z = w0[0] - w0[0]
        a00 = z
        a01 = z
        a02 = z
        a03 = z
        a04 = z
        a10 = z
        a11 = z
        a12 = z
        a13 = z
        a14 = z
        a20 = z
        a21 = z
        a22 = z
        a23 = z
        a24 = z
        a30 = z
        a31 = z
        a32 = z
        a33 = z
        a34 = z
        for d in range(n):
            u0 = y0[d]
            u1 = y1[d]
            u2 = y2[d]
            u3 = y3[d]
            v0 = w0[d]
            v1 = w1[d]
            v2 = w2[d]
            v3 = w3[d]
            v4 = w4[d]
            a00 += u0 * v0
            a01 += u0 * v1
            a02 += u0 * v2
            a03 += u0 * v3
            a04 += u0 * v4
            a10 += u1 * v0
            a11 += u1 * v1
            a12 += u1 * v2
            a13 += u1 * v3
            a14 += u1 * v4
            a20 += u2 * v0
            a21 += u2 * v1
            a22 += u2 * v2
            a23 += u2 * v3
            a24 += u2 * v4
            a30 += u3 * v0
            a31 += u3 * v1
            a32 += u3 * v2
            a33 += u3 * v3
            a34 += u3 * v4
        s[j + 0, c + 0] += a00
        s[j + 0, c + 1] += a01
        s[j + 0, c + 2] += a02
        s[j + 0, c + 3] += a03
        s[j + 0, c + 4] += a04
        s[j + 1, c + 0] += a10
        s[j + 1, c + 1] += a11
        s[j + 1, c + 2] += a12
        s[j + 1, c + 3] += a13
        s[j + 1, c + 4] += a14
        s[j + 2, c + 0] += a20
        s[j + 2, c + 1] += a21
        s[j + 2, c + 2] += a22
        s[j + 2, c + 3] += a23
        s[j + 2, c + 4] += a24
        s[j + 3, c + 0] += a30
        s[j + 3, c + 1] += a31
        s[j + 3, c + 2] += a32
        s[j + 3, c + 3] += a33
        s[j + 3, c + 4] += a34
        c += 5
    while ctile >= 4 and c + 4 <= C:
        w0 = WT[c, d0:d1]
        w1 = WT[c + 1, d0:d1]
        w2 = WT[c + 2, d0:d1]
        w3 = WT[c + 3, d0:d1]
        z = w0[0] - w0[0]
        a00 = z
        a01 = z
        a02 = z
        a03 = z
        a10 = z
        a11 = z
        a12 = z
        a13 = z
        a20 = z
        a21 = z
        a22 = z
        a23 = z
        a30 = z
        a31 = z
        a32 = z
        a33 = z
        for d in range(n):
            u0 = y0[d]
            u1 = y1[d]
            u2 = y2[d]
            u3 = y3[d]
            v0 = w0[d]
            v1 = w1[d]
            v2 = w2[d]
            v3 = w3[d]
            a00 += u0 * v0
            a01 += u0 * v1
            a02 += u0 * v2
            a03 += u0 * v3
            a10 += u1 * v0
            a11 += u1 * v1
            a12 += u1 * v2
            a13 += u1 * v3
            a20 += u2 * v0
            a21 += u2 * v1
            a22 += u2 * v2
            a23 += u2 * v3
            a30 += u3 * v0
            a31 += u3 * v1
            a32 += u3 * v2
            a33 += u3 * v3
        s[j, c] += a00
        s[j, c + 1] += a01
        s[j, c + 2] += a02
        s[j, c + 3] += a03
        s[j + 1, c] += a10
        s[j + 1, c + 1] += a11
        s[j + 1, c + 2] += a12
        s[j + 1, c + 3] += a13
        s[j + 2, c] += a20
        s[j + 2, c + 1] += a21
        s[j + 2, c + 2] += a22
        s[j + 2, c + 3] += a23
        s[j + 3, c] += a30
        s[j + 3, c + 1] += a31
        s[j + 3, c + 2] += a32
        s[j + 3, c + 3] += a33
        c += 4
    while ctile >= 2 and c + 2 <= C:
        w0 = WT[c, d0:d1]
        w1 = WT[c + 1, d0:d1]
        z = w0[0] - w0[0]
        a00 = z
        a01 = z
        a10 = z
        a11 = z
        a20 = z
        a21 = z
        a30 = z
        a31 = z
        for d in range(n):
            u = w0[d]
            v = w1[d]
            a00 += y0[d] * u
            a01 += y0[d] * v
            a10 += y1[d] * u
            a11 += y1[d] * v
            a20 += y2[d] * u
            a21 += y2[d] * v
            a30 += y3[d] * u
            a31 += y3[d] * v
        s[j, c] += a00
        s[j, c + 1] += a01
        s[j + 1, c] += a10
        s[j + 1, c + 1] += a11
        s[j + 2, c] += a20
        s[j + 2, c + 1] += a21
        s[j + 3, c] += a30
        s[j + 3, c + 1] += a31
        c += 2
    while c < C:
        w0 = WT[c, d0:d1]
        z = w0[0] - w0[0]
        a00 = z
        a10 = z
        a20 = z
        a30 = z
        for d in range(n):
            u = w0[d]
            a00 += y0[d] * u
            a10 += y1[d] * u
            a20 += y2[d] * u
            a30 += y3[d] * u
        s[j, c] += a00
        s[j + 1, c] += a10
        s[j + 2, c] += a20
        s[j + 3, c] += a30
        c += 1


@jit(fastmath=FMA)
def _update4_chunk(x0, x1, x2, x3, gw, j, acc, d0, d1, ctile):
    """``acc[c, d0:d1] += sum_r gw[j + r, c] * x_r[d0:d1]`` (rank 4), ``ctile`` classes a pass."""
    C = acc.shape[0]
    y0 = x0[d0:d1]
    y1 = x1[d0:d1]
    y2 = x2[d0:d1]
    y3 = x3[d0:d1]
    n = d1 - d0
    c = 0
    while ctile >= 4 and c + 4 <= C:
        g00 = gw[j, c]
        g10 = gw[j + 1, c]
        g20 = gw[j + 2, c]
        g30 = gw[j + 3, c]
        g01 = gw[j, c + 1]
        g11 = gw[j + 1, c + 1]
        g21 = gw[j + 2, c + 1]
        g31 = gw[j + 3, c + 1]
        g02 = gw[j, c + 2]
        g12 = gw[j + 1, c + 2]
        g22 = gw[j + 2, c + 2]
        g32 = gw[j + 3, c + 2]
        g03 = gw[j, c + 3]
        g13 = gw[j + 1, c + 3]
        g23 = gw[j + 2, c + 3]
        g33 = gw[j + 3, c + 3]
        a0 = acc[c, d0:d1]
        a1 = acc[c + 1, d0:d1]
        a2 = acc[c + 2, d0:d1]
        a3 = acc[c + 3, d0:d1]
        for d in range(n):
            u0 = y0[d]
            u1 = y1[d]
            u2 = y2[d]
            u3 = y3[d]
            a0[d] += g00 * u0 + g10 * u1 + g20 * u2 + g30 * u3
            a1[d] += g01 * u0 + g11 * u1 + g21 * u2 + g31 * u3
            a2[d] += g02 * u0 + g12 * u1 + g22 * u2 + g32 * u3
            a3[d] += g03 * u0 + g13 * u1 + g23 * u2 + g33 * u3
        c += 4
    while ctile >= 2 and c + 2 <= C:
        g00 = gw[j, c]
        g10 = gw[j + 1, c]
        g20 = gw[j + 2, c]
        g30 = gw[j + 3, c]
        g01 = gw[j, c + 1]
        g11 = gw[j + 1, c + 1]
        g21 = gw[j + 2, c + 1]
        g31 = gw[j + 3, c + 1]
        a = acc[c, d0:d1]
        e = acc[c + 1, d0:d1]
        for d in range(n):
            u0 = y0[d]
            u1 = y1[d]
            u2 = y2[d]
            u3 = y3[d]
            a[d] += g00 * u0 + g10 * u1 + g20 * u2 + g30 * u3
            e[d] += g01 * u0 + g11 * u1 + g21 * u2 + g31 * u3
        c += 2
    while c < C:
        g0 = gw[j, c]
        g1 = gw[j + 1, c]
        g2 = gw[j + 2, c]
        g3 = gw[j + 3, c]
        a = acc[c, d0:d1]
        for d in range(n):
            a[d] += g0 * y0[d] + g1 * y1[d] + g2 * y2[d] + g3 * y3[d]
        c += 1


@jit
def _block(X, y, idx, r0, nr, WT, b, kind, ctile, s, g, gw, acc, pdb):
    """Rows ``idx[r0:r0+nr]``: scores, derivatives, gradient into ``acc``; returns their loss.

    Rows are taken four at a time; a last group of fewer than four repeats its last row
    with a zero weight in the update (the repeat is a row in use, so it is finite
    whenever the result is meaningful, and ``0 * x`` adds nothing).
    """
    C = WT.shape[0]
    D = WT.shape[1]
    last = nr - 1
    # the update's 4 x 4 tile ran slower than 4 x 2 on both AVX2 and AVX-512 builds
    # (475 vs 334 us for 256 rows natively): at most 2 classes a pass
    utile = min(ctile, 2)
    for r in range(nr):
        for c in range(C):
            s[r, c] = b[c]
    # scores: group-major, so each row streams from memory front to back (gathered
    # mini-batch rows are random 12 KiB reads: chunk-major order broke the prefetch)
    for j in range(0, nr, 4):
        x0 = X[idx[r0 + j]]
        x1 = X[idx[r0 + min(j + 1, last)]]
        x2 = X[idx[r0 + min(j + 2, last)]]
        x3 = X[idx[r0 + min(j + 3, last)]]
        for d0 in range(0, D, D_CHUNK):
            _scores4_chunk(x0, x1, x2, x3, WT, d0, min(d0 + D_CHUNK, D), s, j, ctile)
    loss = 0.0
    for r in range(nr):
        loss += _row_derivative(s[r], y[idx[r0 + r]], kind, g[r])
        for c in range(C):
            gw[r, c] = g[r, c]
            pdb[c] += g[r, c]
    for r in range(nr, nr + (-nr) % 4):
        for c in range(C):
            gw[r, c] = 0.0
    for d0 in range(0, D, D_CHUNK):
        d1 = min(d0 + D_CHUNK, D)
        for j in range(0, nr, 4):
            x0 = X[idx[r0 + j]]
            x1 = X[idx[r0 + min(j + 1, last)]]
            x2 = X[idx[r0 + min(j + 2, last)]]
            x3 = X[idx[r0 + min(j + 3, last)]]
            _update4_chunk(x0, x1, x2, x3, gw, j, acc, d0, d1, utile)
    return loss


@jit
def _loss_grad_task(X, y, idx, WT, b, kind, bounds, part, part_db, part_loss, t, ctile, rblock):
    """Task ``t`` of :func:`linear_loss_grad_rows`: its rows' loss and gradient sums."""
    C = WT.shape[0]
    D = WT.shape[1]
    acc = np.zeros_like(WT)
    s = np.empty((rblock, C), dtype=np.float64)
    g = np.empty((rblock, C), dtype=np.float64)
    gw = np.empty((rblock, C), dtype=WT.dtype)
    pt = part[t]
    pdb = part_db[t]
    for c in range(C):
        pdb[c] = 0.0
    loss = 0.0
    start = bounds[t]
    stop = bounds[t + 1]
    first = True
    for s0 in range(start, stop, SUB_ROWS):
        s1 = min(s0 + SUB_ROWS, stop)
        if not first:
            acc[:] = 0
        for r0 in range(s0, s1, rblock):
            nr = min(rblock, s1 - r0)
            loss += _block(X, y, idx, r0, nr, WT, b, kind, ctile, s, g, gw, acc, pdb)
        # flush the sub-block (working precision) into the task's float64 partial
        if first:
            for c in range(C):
                for d in range(D):
                    pt[c, d] = acc[c, d]
            first = False
        else:
            for c in range(C):
                for d in range(D):
                    pt[c, d] += acc[c, d]
    if first:  # empty task
        for c in range(C):
            for d in range(D):
                pt[c, d] = 0.0
    part_loss[t] = loss


@jit(parallel=True)
def linear_loss_grad_rows(X, y, idx, WT, b, kind, bounds, part, part_db, part_loss, ctile, rblock):
    """Fused data loss and gradient over the rows ``X[idx]``, per task.

    Parameters (all C-contiguous, no validation)
    ----------
    X : (N, D) float32 or float64
    y : (N,) int64 labels in 0..C-1 (indexed through ``idx``)
    idx : (M,) int64 rows of ``X`` to use (with repetitions allowed)
    WT : (C, D) weights, transposed, dtype of ``X``
    b : (C,) bias, dtype of ``X``
    kind : int, ``SVM`` or ``SOFTMAX``
    bounds : (T+1,) int64 task boundaries into ``idx`` (:func:`task_bounds`)
    part : (T, C, D) float64 out: per-task *sums* of ``x_i g_i^T`` (transposed)
    part_db : (T, C) float64 out: per-task sums of ``g_i``
    part_loss : (T,) float64 out: per-task sums of the row losses
    ctile : int, classes per register tile (a value of ``CLASS_TILES``)
    rblock : int, rows per block (a positive multiple of 4)
    """
    for t in prange(bounds.shape[0] - 1):
        _loss_grad_task(X, y, idx, WT, b, kind, bounds, part, part_db, part_loss, t, ctile, rblock)


@jit
def linear_loss_grad_rows_serial(
    X, y, idx, WT, b, kind, bounds, part, part_db, part_loss, ctile, rblock
):
    """:func:`linear_loss_grad_rows` on the calling thread (same tasks, same bits)."""
    for t in range(bounds.shape[0] - 1):
        _loss_grad_task(X, y, idx, WT, b, kind, bounds, part, part_db, part_loss, t, ctile, rblock)


#: penalty codes understood by :func:`finish_gradient`
PENALTY_CODES = {"l2": 0, "l1": 1, "elasticnet": 2}


@jit(fastmath=REDUCE)
def finish_gradient(part, part_db, part_loss, scale, WT, reg, penalty, beta, dWT, db):
    """Reduce the per-task partials and add the penalty, in one serial pass.

    ``dWT[c, d] = scale * sum_t part[t, c, d] + penalty gradient(WT[c, d])`` in float64
    (partials summed in task order, so the result does not depend on the thread count),
    cast to ``dWT``'s dtype; ``db[c] = scale * sum_t part_db[t, c]``. One compiled pass
    replaces a reduction, a penalty and a cast done as separate NumPy calls. The penalty
    value is a reassociated (vectorised) sum: a strict one was a 30000-long dependency
    chain, 54 us of a 150 us call at D=3073, C=10.

    part : (T, C, D) float64; part_db : (T, C) float64; part_loss : (T,) float64;
    WT, dWT : (C, D); db : (C,), dtype of ``dWT``; penalty : a code of ``PENALTY_CODES``.
    Returns ``(data loss = scale * sum_t part_loss[t], penalty value, every entry of
    dWT and db and the data loss finite)``.
    """
    T = part.shape[0]
    C = part.shape[1]
    D = part.shape[2]
    pen = 0.0
    finite = True
    g = np.empty(D, dtype=np.float64)
    for c in range(C):
        p0 = part[0, c]
        for d in range(D):
            g[d] = p0[d]
        for t in range(1, T):
            pt = part[t, c]
            for d in range(D):
                g[d] += pt[d]
        w = WT[c]
        o = dWT[c]
        if penalty == 0:
            for d in range(D):
                wd = np.float64(w[d])
                pen += wd * wd
                o[d] = g[d] * scale + 2.0 * reg * wd
        elif penalty == 1:
            for d in range(D):
                wd = np.float64(w[d])
                pen += abs(wd)
                o[d] = g[d] * scale + reg * np.sign(wd)
        else:
            for d in range(D):
                wd = np.float64(w[d])
                pen += beta * wd * wd + abs(wd)
                o[d] = g[d] * scale + reg * (2.0 * beta * wd + np.sign(wd))
        ok = True
        for d in range(D):
            ok &= np.isfinite(o[d])
        finite &= ok
        h = 0.0
        for t in range(T):
            h += part_db[t, c]
        db[c] = h * scale
        finite &= np.isfinite(db[c])
    data = 0.0
    for t in range(T):
        data += part_loss[t]
    data *= scale
    finite &= np.isfinite(data)
    return data, reg * pen, finite


@jit
def linear_loss_grad(
    X, y, idx, W, b, kind, bounds, part, part_db, part_loss, ctile, rblock, parallel, reg,
    penalty, beta, WT, dWT, dW, db,
):  # fmt: skip
    """One call of the public losses, compiled end to end (no NumPy between the steps).

    Transposes ``W`` (D, C) into the scratch ``WT`` (C, D), runs the fused kernel
    (``parallel`` chooses the twin), reduces the partials with :func:`finish_gradient`
    into the scratch ``dWT`` and writes the gradient in ``W``'s layout into ``dW``
    (D, C). One dispatch from Python instead of five (two NumPy transposes, the kernel,
    the reduction, the allocations): measured 0.13 ms of fixed cost per call at N=256
    before, most of it Python. Returns what :func:`finish_gradient` returns.
    """
    D = W.shape[0]
    C = W.shape[1]
    for d in range(D):
        for c in range(C):
            WT[c, d] = W[d, c]
    if parallel:
        linear_loss_grad_rows(
            X, y, idx, WT, b, kind, bounds, part, part_db, part_loss, ctile, rblock
        )
    else:
        linear_loss_grad_rows_serial(
            X, y, idx, WT, b, kind, bounds, part, part_db, part_loss, ctile, rblock
        )
    out = finish_gradient(
        part, part_db, part_loss, 1.0 / idx.shape[0], WT, reg, penalty, beta, dWT, db
    )
    for d in range(D):
        for c in range(C):
            dW[d, c] = dWT[c, d]
    return out


@jit(fastmath=REDUCE)
def _centred_bias(WT, mu, b, bias):
    """``bias = b - mu @ W`` (float64 sums, reassociated), cast to the dtype of ``bias``."""
    C = WT.shape[0]
    D = WT.shape[1]
    for c in range(C):
        w = WT[c]
        t = 0.0
        for d in range(D):
            t += mu[d] * np.float64(w[d])
        bias[c] = np.float64(b[c]) - t


@jit
def sgd_linear_steps(
    X, y, batches, full, WT, b, vWT, vb, it0, n_steps, lrs, momentum, kind, reg, penalty,
    beta, mu, centre, fit_bias, ctile, rblock, parallel, bounds, part, part_db, part_loss,
    dWT, db, bias, history,
):  # fmt: skip
    """``n_steps`` SGD steps of a linear model, entirely compiled (no Python per step).

    Step ``k`` (global iteration ``it = it0 + k``) uses the rows ``batches[k]`` (``full``:
    ``batches[0]`` every step), computes the loss and gradient with the fused kernel
    (``parallel`` chooses the twin), then updates ``WT`` (C, D) and ``b`` in their dtype,
    exactly as :func:`fastcls.optim.sgd` does in NumPy: ``W -= lr * dW`` or, with
    ``momentum > 0``, ``v = momentum * v; v -= lr * dW; W += v``. ``lrs[it]`` is the
    step size (float64, cast to the dtype). ``history[it]`` receives the loss.

    With ``centre`` the model is ``scores = (x - mu) W + b``, computed as
    ``x W + (b - mu W)``; its gradient is the raw gradient minus ``db mu^T``. Without
    ``fit_bias`` the bias is zero and ``b`` is left alone.

    Returns the number of steps taken: ``n_steps``, or fewer when a step's loss or
    gradient was not finite (that step's loss is recorded, its update applied).
    """
    C = WT.shape[0]
    D = WT.shape[1]
    dt = WT.dtype.type
    mom = dt(momentum)
    for k in range(n_steps):
        it = it0 + k
        rows = batches[0] if full else batches[k]
        m = rows.shape[0]
        if not fit_bias:
            bias[:] = 0.0
        elif centre:
            _centred_bias(WT, mu, b, bias)
        else:
            bias[:] = b
        if parallel:
            linear_loss_grad_rows(
                X, y, rows, WT, bias, kind, bounds, part, part_db, part_loss, ctile, rblock
            )
        else:
            linear_loss_grad_rows_serial(
                X, y, rows, WT, bias, kind, bounds, part, part_db, part_loss, ctile, rblock
            )
        data, pen, finite = finish_gradient(
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
