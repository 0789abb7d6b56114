"""Fused loss + gradient kernels for the linear classifiers (multiclass SVM, softmax).

One pass over the rows of ``X``: for a group of four rows the kernel computes the
scores (four rows x four classes at a time, sixteen independent SIMD accumulators
across ``D``, then pairs of classes), the hinge or softmax derivative of each row, and
the rank-4 update
``dW^T[c] += sum_r g[r, c] * x_r`` while the four rows are still in L1 cache. ``X``
is read once from memory per call; no ``N x C`` temporary exists.

Kernels work on the *transposed* weights ``WT`` (C, D), so that every inner loop runs
over contiguous memory along ``D``; the API transposes ``W`` (D, C) and back (cheap:
``D*C`` values).

Determinism: the rows are split into at most ``MAX_TASKS`` tasks whose boundaries
depend only on the number of rows (never on the thread count). Each task sums its
rows' gradients in the working precision over sub-blocks of ``SUB_ROWS`` rows and
flushes each sub-block into its own float64 partial; the partials are then summed in
task order. Results are therefore bit-identical for any number of threads, and a
float32 gradient never accumulates more than ``SUB_ROWS`` rows in float32 (a single
running float32 sum over 10000 rows drifted to 1e-4 relative error).

Public kernel names:

* ``linear_loss_grad_rows(X, y, idx, WT, b, kind, bounds, part, part_db, part_loss)``
* ``finish_gradient(part, scale, W, reg, penalty, beta, dW)``: reduce the partials, add
  the penalty.
* ``task_bounds(n_rows)`` (plain Python): the deterministic row partition.
* ``LOSS_CODES`` / ``PENALTY_CODES``: the integer codes the kernels take, by name (the
  only place these integers appear).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from fastcls._config import FMA, jit

#: loss kinds understood by the kernel
SVM = 0
SOFTMAX = 1
#: kernel code of each loss, by the names of :data:`fastcls.losses.LOSSES`
LOSS_CODES = {"svm": SVM, "softmax": SOFTMAX}

#: rows accumulated in the working precision before flushing to float64
SUB_ROWS = 256
#: columns per inner pass: 4 rows + 10 weight rows of a chunk stay in L1
D_CHUNK = 512
#: most tasks (float64 partial gradients) per call; independent of the thread count
MAX_TASKS = 16
#: fewest rows per task (below this, fewer tasks)
MIN_TASK_ROWS = 64


def task_bounds(n_rows: int) -> np.ndarray:
    """Row boundaries of the tasks: depends on ``n_rows`` only, multiples of 4 rows."""
    n_tasks = max(1, min(MAX_TASKS, -(-n_rows // MIN_TASK_ROWS)))
    groups = -(-n_rows // 4)
    bounds = np.array([min(n_rows, 4 * ((groups * t) // n_tasks)) for t in range(n_tasks + 1)])
    bounds[-1] = n_rows
    return bounds.astype(np.int64)


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
def _scores4_chunk(x0, x1, x2, x3, WT, d0, d1, s):
    """``s[r, c] += x_r[d0:d1] . WT[c, d0:d1]`` (four rows x four, then two, classes per pass)."""
    C = WT.shape[0]
    y0 = x0[d0:d1]
    y1 = x1[d0:d1]
    y2 = x2[d0:d1]
    y3 = x3[d0:d1]
    n = d1 - d0
    c = 0
    while c + 4 <= C:
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
        s[0, c] += a00
        s[0, c + 1] += a01
        s[0, c + 2] += a02
        s[0, c + 3] += a03
        s[1, c] += a10
        s[1, c + 1] += a11
        s[1, c + 2] += a12
        s[1, c + 3] += a13
        s[2, c] += a20
        s[2, c + 1] += a21
        s[2, c + 2] += a22
        s[2, c + 3] += a23
        s[3, c] += a30
        s[3, c + 1] += a31
        s[3, c + 2] += a32
        s[3, c + 3] += a33
        c += 4
    while c + 2 <= C:
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
        s[0, c] += a00
        s[0, c + 1] += a01
        s[1, c] += a10
        s[1, c + 1] += a11
        s[2, c] += a20
        s[2, c + 1] += a21
        s[3, c] += a30
        s[3, c + 1] += a31
        c += 2
    if c < C:
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
        s[0, c] += a00
        s[1, c] += a10
        s[2, c] += a20
        s[3, c] += a30


@jit
def _scores4(x0, x1, x2, x3, WT, b, s):
    """``s[r, c] = x_r . WT[c] + b[c]`` for four rows, ``D`` walked in L1-sized chunks."""
    C = WT.shape[0]
    D = WT.shape[1]
    for r in range(4):
        for c in range(C):
            s[r, c] = b[c]
    for d0 in range(0, D, D_CHUNK):
        _scores4_chunk(x0, x1, x2, x3, WT, d0, min(d0 + D_CHUNK, D), s)


@jit(fastmath=FMA)
def _update4_chunk(x0, x1, x2, x3, gw, acc, d0, d1):
    """``acc[c, d0:d1] += sum_r gw[r, c] * x_r[d0:d1]`` (rank-4, four then two classes a pass)."""
    C = acc.shape[0]
    y0 = x0[d0:d1]
    y1 = x1[d0:d1]
    y2 = x2[d0:d1]
    y3 = x3[d0:d1]
    n = d1 - d0
    c = 0
    while c + 4 <= C:
        g00 = gw[0, c]
        g10 = gw[1, c]
        g20 = gw[2, c]
        g30 = gw[3, c]
        g01 = gw[0, c + 1]
        g11 = gw[1, c + 1]
        g21 = gw[2, c + 1]
        g31 = gw[3, c + 1]
        g02 = gw[0, c + 2]
        g12 = gw[1, c + 2]
        g22 = gw[2, c + 2]
        g32 = gw[3, c + 2]
        g03 = gw[0, c + 3]
        g13 = gw[1, c + 3]
        g23 = gw[2, c + 3]
        g33 = gw[3, c + 3]
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
    while c + 2 <= C:
        g00 = gw[0, c]
        g10 = gw[1, c]
        g20 = gw[2, c]
        g30 = gw[3, c]
        g01 = gw[0, c + 1]
        g11 = gw[1, c + 1]
        g21 = gw[2, c + 1]
        g31 = gw[3, c + 1]
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
    if c < C:
        g0 = gw[0, c]
        g1 = gw[1, c]
        g2 = gw[2, c]
        g3 = gw[3, c]
        a = acc[c, d0:d1]
        for d in range(n):
            a[d] += g0 * y0[d] + g1 * y1[d] + g2 * y2[d] + g3 * y3[d]


@jit
def _update4(x0, x1, x2, x3, gw, acc):
    """``acc[c] += sum_r gw[r, c] * x_r``, ``D`` walked in L1-sized chunks."""
    D = acc.shape[1]
    for d0 in range(0, D, D_CHUNK):
        _update4_chunk(x0, x1, x2, x3, gw, acc, d0, min(d0 + D_CHUNK, D))


@jit(fastmath=FMA)
def _scores1(x0, WT, b, s):
    C = WT.shape[0]
    D = WT.shape[1]
    for c in range(C):
        w0 = WT[c]
        a = w0[0] - w0[0]
        for d in range(D):
            a += x0[d] * w0[d]
        s[0, c] = a + b[c]


@jit(fastmath=FMA)
def _update1(x0, gw, acc):
    C = acc.shape[0]
    D = acc.shape[1]
    for c in range(C):
        g0 = gw[0, c]
        a = acc[c]
        for d in range(D):
            a[d] += g0 * x0[d]


@jit(fastmath=FMA)
def _loss_grad_task(X, y, idx, WT, b, kind, bounds, part, part_db, part_loss, t):
    """Task ``t`` of :func:`linear_loss_grad_rows`: its rows' loss and gradient sums."""
    C = WT.shape[0]
    D = WT.shape[1]
    acc = np.zeros_like(WT)
    gw = np.zeros((4, C), dtype=WT.dtype)
    s = np.zeros((4, C), dtype=np.float64)
    g = np.zeros((4, C), dtype=np.float64)
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
        i = s0
        while i + 4 <= s1:
            r0 = idx[i]
            r1 = idx[i + 1]
            r2 = idx[i + 2]
            r3 = idx[i + 3]
            x0 = X[r0]
            x1 = X[r1]
            x2 = X[r2]
            x3 = X[r3]
            _scores4(x0, x1, x2, x3, WT, b, s)
            loss += _row_derivative(s[0], y[r0], kind, g[0])
            loss += _row_derivative(s[1], y[r1], kind, g[1])
            loss += _row_derivative(s[2], y[r2], kind, g[2])
            loss += _row_derivative(s[3], y[r3], kind, g[3])
            for r in range(4):
                for c in range(C):
                    gw[r, c] = g[r, c]
                    pdb[c] += g[r, c]
            _update4(x0, x1, x2, x3, gw, acc)
            i += 4
        while i < s1:
            r0 = idx[i]
            x0 = X[r0]
            _scores1(x0, WT, b, s)
            loss += _row_derivative(s[0], y[r0], kind, g[0])
            for c in range(C):
                gw[0, c] = g[0, c]
                pdb[c] += g[0, c]
            _update1(x0, gw, acc)
            i += 1
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
def linear_loss_grad_rows(X, y, idx, WT, b, kind, bounds, part, part_db, part_loss):
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
    """
    for t in prange(bounds.shape[0] - 1):
        _loss_grad_task(X, y, idx, WT, b, kind, bounds, part, part_db, part_loss, t)


@jit
def linear_loss_grad_rows_serial(X, y, idx, WT, b, kind, bounds, part, part_db, part_loss):
    """:func:`linear_loss_grad_rows` on the calling thread (same tasks, same bits)."""
    for t in range(bounds.shape[0] - 1):
        _loss_grad_task(X, y, idx, WT, b, kind, bounds, part, part_db, part_loss, t)


#: penalty codes understood by :func:`finish_gradient`
PENALTY_CODES = {"l2": 0, "l1": 1, "elasticnet": 2}


@jit
def finish_gradient(part, scale, W, reg, penalty, beta, dW):
    """Reduce the per-task partials and add the penalty, in one serial pass.

    ``dW[d, c] = scale * sum_t part[t, c, d] + penalty gradient(W[d, c])`` in float64
    (partials summed in task order, so the result does not depend on the thread count),
    cast to ``dW``'s dtype. One compiled pass replaces a reduction, a penalty and a cast
    done as separate NumPy calls: in SGD steps of 200 rows those cost a third of a step.

    part : (T, C, D) float64; W, dW : (D, C); penalty : a code of ``PENALTY_CODES``.
    Returns ``(penalty value, every entry of dW finite)``.
    """
    T = part.shape[0]
    C = part.shape[1]
    D = part.shape[2]
    pen = 0.0
    finite = True
    for d in range(D):
        for c in range(C):
            g = 0.0
            for t in range(T):
                g += part[t, c, d]
            g *= scale
            w = np.float64(W[d, c])
            if penalty == 0:
                pen += w * w
                gp = 2.0 * reg * w
            elif penalty == 1:
                pen += abs(w)
                gp = reg * np.sign(w)
            else:
                pen += beta * w * w + abs(w)
                gp = reg * (2.0 * beta * w + np.sign(w))
            dW[d, c] = g + gp
            if not np.isfinite(dW[d, c]):
                finite = False
    return reg * pen, finite


#: below this many multiply-adds (rows x D x C; 2^22 is about 0.1 ms of one core) a call
#: runs the serial twins, since waking the thread pool is not worth it. SGD batches of
#: 200 CIFAR rows (6e6) run in parallel: 223 us vs 476 us serial, measured on an idle
#: 2-core machine. On a busy one a parallel region waits for every thread to be
#: scheduled (50-60 ms per call was seen with 6 other jobs running), and OpenBLAS
#: threads left spinning by a BLAS call just before have the same effect: the callers
#: (losses.py, linear.py) therefore make no BLAS calls between kernel calls.
PARALLEL_MIN_WORK = 1 << 22

