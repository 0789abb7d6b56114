"""Linear classifiers: fused loss + gradient and SGD training against the peers.

Run explicitly (benchmarks are disabled in the normal test run)::

    pytest bench/bench_linear.py --benchmark-enable -p no:cacheprovider
    FASTCLS_BENCH_SMALL=1 pytest bench/bench_linear.py --benchmark-enable  # CI smoke sizes

Groups (``benchmark.group = "svm_loss|N=..."`` / ``"softmax_loss|N=..."``): one loss +
gradient evaluation at D=3073, C=10, float32 (:func:`fastcls.testing.linear_problem`), for
the implementations of :data:`fastcls.testing.IMPLEMENTATIONS` and the float32 NumPy code:

* ``fastcls``: :func:`fastcls.svm_loss` / :func:`fastcls.softmax_loss` (fused kernel),
* ``numpy-f32``: the lecture's vectorised code in float32 (``X @ W``, mask, ``X.T @ dS``),
* ``reference``: :mod:`fastcls.reference.losses` as written (computes in float64),
* ``torch``: PyTorch autograd (skipped when torch is not installed).

``linear-train``: 1500 SGD steps with batches of 200 rows on 49000 x 3073 synthetic
float32 data: :meth:`fastcls.LinearSVM.fit` against the straightforward NumPy loop
(sample the batch, copy it, vectorised loss, update) drawing the very same batches.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastcls
from fastcls.testing import IMPLEMENTATIONS, Implementation, bench_small, linear_problem

SMALL = bench_small()
D, C = (257, 10) if SMALL else (3073, 10)
SIZES = (256, 1000) if SMALL else (256, 10000)
TRAIN = (2000, 50, 64) if SMALL else (49000, 1500, 200)  # rows, iterations, batch
KINDS = ("svm", "softmax")


def make_problem(N: int, seed: int = 0):
    """``(X, y, W)`` of :func:`fastcls.testing.linear_problem`."""
    W, X, y = linear_problem(N, D, C, seed=seed)
    return X, y, W


# ------------------------------------------------------------------ NumPy float32 peer
def numpy_svm_f32(W, X, y, reg):
    n = X.shape[0]
    rows = np.arange(n)
    scores = X @ W
    margins = np.maximum(0, scores - scores[rows, y][:, None] + 1)
    margins[rows, y] = 0
    loss = margins.sum() / n + reg * np.sum(W * W)
    mask = (margins > 0).astype(X.dtype)
    mask[rows, y] = -mask.sum(axis=1)
    dW = (mask.T @ X).T / n + 2 * reg * W  # dS.T @ X: the faster OpenBLAS layout
    return loss, dW


def numpy_softmax_f32(W, X, y, reg):
    n = X.shape[0]
    rows = np.arange(n)
    scores = X @ W
    scores -= scores.max(axis=1, keepdims=True)
    e = np.exp(scores)
    total = e.sum(axis=1)
    loss = np.sum(np.log(total) - scores[rows, y]) / n + reg * np.sum(W * W)
    e /= total[:, None]
    e[rows, y] -= 1
    dW = (e.T @ X).T / n + 2 * reg * W
    return loss, dW


def _numpy_f32(kind):
    fn = numpy_svm_f32 if kind == "svm" else numpy_softmax_f32
    return lambda W, X, y, *, reg: lambda: fn(W, X, y, reg)


#: the shared table's loss implementations, plus the lecture's float32 NumPy code
IMPLS = {
    kind: {
        **IMPLEMENTATIONS[f"{kind}_loss"],
        "numpy-f32": Implementation("numpy-f32", _numpy_f32(kind), precision="float32"),
    }
    for kind in KINDS
}


@pytest.mark.parametrize("impl", list(IMPLS["svm"]))
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("N", SIZES)
def test_loss_grad(benchmark, N, kind, impl):
    X, y, W = make_problem(N)
    entry = IMPLS[kind][impl]
    if not entry.available():
        pytest.skip(f"{impl} needs {entry.requires}")
    fn = entry(W, X, y, reg=0.1)
    ref = fn()  # warm the JIT (and check against the fused kernel)
    if impl != "fastcls":
        mine = IMPLS[kind]["fastcls"](W, X, y, reg=0.1)()
        np.testing.assert_allclose(mine[1], ref[1], rtol=1e-4, atol=1e-4 * np.abs(ref[1]).max())
    benchmark.group = f"{kind}_loss|N={N}|D={D}|C={C}"
    benchmark.extra_info.update({"N": N, "D": D, "C": C, "threads": fastcls.get_num_threads()})
    benchmark(fn)


# ------------------------------------------------------------------ training
LR, REG = 1e-7, 2.5e4


def numpy_sgd(X, y, n_iters, batch_size, seed):
    """The lecture's loop, drawing batches in fastcls's documented order."""
    rng = np.random.default_rng(seed)
    W = (1e-3 * rng.standard_normal((X.shape[1], C))).astype(X.dtype)
    hist = []
    for _ in range(n_iters):
        idx = rng.integers(0, X.shape[0], size=batch_size)
        loss, dW = numpy_svm_f32(W, X[idx], y[idx], REG)
        W -= np.float32(LR) * dW.astype(np.float32)
        hist.append(loss)
    return W, hist


def fastcls_sgd(X, y, n_iters, batch_size, seed):
    clf = fastcls.LinearSVM(
        learning_rate=LR,
        reg=REG,
        n_iters=n_iters,
        batch_size=batch_size,
        fit_intercept=False,
        seed=seed,
    )
    clf.fit(X, y)
    return clf.W_, clf.loss_history_


@pytest.fixture(scope="module")
def train_data():
    n, _, _ = TRAIN
    rng = np.random.default_rng(1)
    X = rng.standard_normal((n, D), dtype=np.float32) * np.float32(60.0)
    y = rng.integers(0, C, n)
    return X, y


@pytest.mark.parametrize("impl", ["fastcls", "numpy-loop"])
def test_train(benchmark, train_data, impl):
    X, y = train_data
    _, n_iters, bs = TRAIN
    fn = fastcls_sgd if impl == "fastcls" else numpy_sgd
    fastcls_sgd(X, y, 2, bs, 0)  # warm the JIT
    benchmark.group = f"linear-train|N={X.shape[0]}|D={D}|iters={n_iters}|batch={bs}"
    benchmark.extra_info.update({"threads": fastcls.get_num_threads()})
    W, hist = benchmark.pedantic(fn, args=(X, y, n_iters, bs, 0), rounds=3, iterations=1)
    W_np, hist_np = numpy_sgd(X, y, 5, bs, 0)
    W_fc, hist_fc = fastcls_sgd(X, y, 5, bs, 0)
    np.testing.assert_allclose(hist_fc, hist_np, rtol=1e-4)  # same batches, same losses
