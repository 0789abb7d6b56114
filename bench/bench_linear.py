"""Linear classifiers: fused loss + gradient and SGD training against the peers.

Run explicitly (benchmarks are disabled in the normal test run), under the shared lock
on a shared machine::

    flock /tmp/fastcls-bench.lock \
        pytest bench/bench_linear.py --benchmark-enable -p no:cacheprovider
    FASTCLS_BENCH_SMALL=1 pytest bench/bench_linear.py --benchmark-enable  # CI smoke sizes
    flock /tmp/fastcls-bench.lock python bench/bench_linear.py interleaved 7  # ratios

The last runs fastcls and the float32 NumPy code alternated batch by batch and prints the
median of the per-round ratios (:func:`interleaved`): steadier than separate groups when
the host's load drifts.

An AVX2 build on an AVX-512 machine (numba compiles for Haswell, the kernel picks its
AVX2 path): ``NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=<haswell's features>`` (see
``fastcls.testing.HASWELL_FEATURES``); the name alone keeps the host's features.

Groups
------
``svm_loss|N=..|threads=..|alone`` / ``...|alternated`` (and ``softmax_loss``): one loss +
gradient evaluation at D=3073, C=10, float32 (:func:`fastcls.testing.linear_problem`), on
1 and 2 threads (numba's and OpenBLAS's), for the implementations of
:data:`fastcls.testing.IMPLEMENTATIONS` and the float32 NumPy code:

* ``fastcls``: :func:`fastcls.svm_loss` / :func:`fastcls.softmax_loss` (fused kernel),
* ``numpy-f32``: the lecture's vectorised code in float32 (``X @ W``, mask, ``dS.T @ X``),
* ``reference``: :mod:`fastcls.reference.losses` as written (float64; alone only),
* ``torch``: PyTorch autograd (skipped when torch is not installed).

``alternated``: each timed call is preceded by a 512 x 512 float64 NumPy product (what
a real program does: some NumPy between two losses; OpenBLAS's threads then spin and
compete with the next parallel region). The ``product-only`` row of the group is the
product alone, to subtract.

``linear-train``: 1500 SGD steps with batches of 200 rows on 49000 x 3073 synthetic
float32 data: :meth:`fastcls.LinearSVM.fit` against the straightforward NumPy loop
(sample the batch, copy it, vectorised loss, update) drawing the very same batches
(the loss histories are compared).

``linear-epoch``: one epoch (``ceil(n / 200)`` steps of 200 rows, multiclass SVM) on
Fashion-MNIST-sized (60000 x 785) and CIFAR-sized (49000 x 3073) synthetic data, next to
scikit-learn's ``SGDClassifier(loss="hinge", max_iter=1)`` epoch on the same data
(one-vs-rest, one row per update, float64: a different algorithm with the same per-sample
cost model); ``extra_info["samples_per_s"]`` holds the throughput.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastcls
from fastcls.testing import IMPLEMENTATIONS, Implementation, bench_small, linear_problem

SMALL = bench_small()
D, C = (257, 10) if SMALL else (3073, 10)
SIZES = (256, 1000) if SMALL else (256, 10000)
THREADS = (1, 2)
TRAIN = (2000, 50, 64) if SMALL else (49000, 1500, 200)  # rows, iterations, batch
EPOCH_SHAPES = ((3000, 785), (2000, 3073)) if SMALL else ((60000, 785), (49000, 3073))
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

#: the NumPy product run before each call of the "alternated" groups
_PRODUCT = np.random.default_rng(9).standard_normal((512, 512))


def _product():
    return _PRODUCT @ _PRODUCT


def _threads(n):
    """numba and OpenBLAS both limited to ``n`` threads (a fair comparison)."""
    from contextlib import ExitStack

    from threadpoolctl import threadpool_limits

    stack = ExitStack()
    stack.enter_context(fastcls.num_threads(n))
    stack.enter_context(threadpool_limits(n, "blas"))
    return stack


@pytest.mark.parametrize("impl", [*IMPLS["svm"], "product-only"])
@pytest.mark.parametrize("mode", ["alone", "alternated"])
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("N", SIZES)
def test_loss_grad(benchmark, N, kind, threads, mode, impl):
    if impl == "product-only":
        if mode == "alone":
            pytest.skip("the product's own time belongs to the alternated groups")
        fn = _product
    else:
        if mode == "alternated" and impl not in ("fastcls", "numpy-f32"):
            pytest.skip("alternated runs compare fastcls with NumPy only")
        X, y, W = make_problem(N)
        entry = IMPLS[kind][impl]
        if not entry.available():
            pytest.skip(f"{impl} needs {entry.requires}")
        call = entry(W, X, y, reg=0.1)
        ref = call()  # warm the JIT (and check against the fused kernel)
        if impl != "fastcls":
            mine = IMPLS[kind]["fastcls"](W, X, y, reg=0.1)()
            scale = np.abs(ref[1]).max()
            np.testing.assert_allclose(mine[1], ref[1], rtol=1e-4, atol=1e-4 * scale)
        if mode == "alternated":

            def fn():
                _product()
                return call()

        else:
            fn = call
    benchmark.group = f"{kind}_loss|N={N}|D={D}|C={C}|threads={threads}|{mode}"
    benchmark.extra_info.update({"N": N, "D": D, "C": C, "threads": threads, "mode": mode})
    with _threads(threads):
        fn()
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


def synthetic(n, d, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d), dtype=np.float32) * np.float32(60.0)
    y = rng.integers(0, C, n)
    return X, y


@pytest.fixture(scope="module")
def train_data():
    n, _, _ = TRAIN
    return synthetic(n, D)


@pytest.mark.parametrize("impl", ["fastcls", "numpy-loop"])
def test_train(benchmark, train_data, impl):
    X, y = train_data
    _, n_iters, bs = TRAIN
    fn = fastcls_sgd if impl == "fastcls" else numpy_sgd
    fastcls_sgd(X, y, 2, bs, 0)  # warm the JIT
    benchmark.group = f"linear-train|N={X.shape[0]}|D={D}|iters={n_iters}|batch={bs}"
    benchmark.extra_info.update({"threads": fastcls.get_num_threads()})
    benchmark.pedantic(fn, args=(X, y, n_iters, bs, 0), rounds=3, iterations=1)
    # same batches, same losses (float32 tolerance)
    _, hist_np = numpy_sgd(X, y, 20, bs, 0)
    _, hist_fc = fastcls_sgd(X, y, 20, bs, 0)
    np.testing.assert_allclose(hist_fc, hist_np, rtol=1e-4)


# ------------------------------------------------------------------ per-sample cost
@pytest.mark.parametrize("impl", ["fastcls", "sklearn-SGDClassifier"])
@pytest.mark.parametrize("shape", EPOCH_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_epoch_throughput(benchmark, shape, impl):
    n, d = shape
    X, y = synthetic(n, d, seed=2)
    bs = 200
    steps = -(-n // bs)
    if impl == "fastcls":
        clf = fastcls.LinearSVM(learning_rate=LR, reg=REG, n_iters=steps, batch_size=bs, seed=0)
        clf.set_params(n_iters=2).fit(X, y)  # warm the JIT
        clf.set_params(n_iters=steps)
        args: tuple = (X, y)
    else:
        sklearn = pytest.importorskip("sklearn.linear_model")
        clf = sklearn.SGDClassifier(loss="hinge", max_iter=1, tol=None, random_state=0)
        args = (X.astype(np.float64), y)  # converted outside the timing (sklearn's dtype)
    import warnings

    def epoch():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn: max_iter=1 did not converge
            clf.fit(*args)

    benchmark.group = f"linear-epoch|N={n}|D={d}|C={C}"
    benchmark.pedantic(epoch, rounds=3, iterations=1)
    benchmark.extra_info["threads"] = fastcls.get_num_threads()
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["samples_per_s"] = n / benchmark.stats.stats.median


# ------------------------------------------------------------------ interleaved ratios
def interleaved(rounds: int = 7, gap: float = 0.3) -> None:
    """fastcls against the float32 NumPy code, alternated call batch by call batch.

    On a shared host the load drifts between pytest-benchmark's groups (the same NumPy
    group moved 1.4x between two runs on the Zen 4 of docs/performance.md); a ratio of
    batches taken back to back is steadier. Each round times a batch of calls of each
    side (the median call; the order flips every round) for every loss, size and thread
    count alone, then one 1500 x 200 SGD run of each; printed: the median of the
    per-round ratios and the median times. ``python bench/bench_linear.py interleaved 7``.

    Each batch starts ``gap`` seconds after the one before, so that neither side runs
    beside the other's spinning threads (OpenBLAS's spin for about 0.1 s after a product;
    without the gap, N=256 on 2 threads measured the alternated case: fastcls 0.39 ms,
    its serial twin, against 0.21 alone on the Xeon of docs/performance.md). The
    alternated case has its own groups in the pytest-benchmark suite (``...|alternated``).
    """
    import time

    from fastcls._runtime import cpu_name

    def median_call(fn, calls):
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    cases = [(kind, n, t) for kind in KINDS for n in SIZES for t in THREADS]
    print(f"D={D} C={C} float32, CPU {cpu_name()}; {rounds} rounds")
    for kind, n, threads in cases:
        X, y, W = make_problem(n)
        sides = {
            "fastcls": IMPLS[kind]["fastcls"](W, X, y, reg=0.1),
            "numpy-f32": IMPLS[kind]["numpy-f32"](W, X, y, reg=0.1),
        }
        calls = 200 if n <= 1000 else 15
        times: dict[str, list[float]] = {name: [] for name in sides}
        with _threads(threads):
            for fn in sides.values():
                fn()
            for r in range(rounds):
                order = list(sides) if r % 2 == 0 else list(sides)[::-1]
                for name in order:
                    time.sleep(gap)
                    times[name].append(median_call(sides[name], calls))
        ratio = np.median(np.array(times["numpy-f32"]) / np.array(times["fastcls"]))
        fc, npy = (float(np.median(times[s])) * 1e3 for s in ("fastcls", "numpy-f32"))
        print(
            f"  {kind:7s} N={n:<6d} threads={threads}: fastcls {fc:8.3f} ms  "
            f"numpy-f32 {npy:8.3f} ms  per-round ratio {ratio:.2f}x"
        )
    X, y = synthetic(TRAIN[0], D)
    _, n_iters, bs = TRAIN
    fastcls_sgd(X, y, 2, bs, 0)
    runs: dict[str, list[float]] = {"fastcls": [], "numpy-loop": []}
    for r in range(max(3, rounds // 2)):
        order = ["fastcls", "numpy-loop"] if r % 2 == 0 else ["numpy-loop", "fastcls"]
        for name in order:
            time.sleep(gap)
            fn = fastcls_sgd if name == "fastcls" else numpy_sgd
            t0 = time.perf_counter()
            fn(X, y, n_iters, bs, 0)
            runs[name].append(time.perf_counter() - t0)
    ratio = np.median(np.array(runs["numpy-loop"]) / np.array(runs["fastcls"]))
    fc, npy = (float(np.median(runs[s])) * 1e3 for s in ("fastcls", "numpy-loop"))
    print(
        f"  SGD {n_iters} x {bs} on {TRAIN[0]} x {D}: fastcls {fc:.0f} ms  numpy loop "
        f"{npy:.0f} ms  per-round ratio {ratio:.2f}x"
    )


if __name__ == "__main__":
    import sys

    interleaved(int(sys.argv[2]) if len(sys.argv) > 2 else 7)
