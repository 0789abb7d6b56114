"""The compiled SGD loop (optim.sgd_linear) against a plain NumPy loop on the same batches."""

from __future__ import annotations

import numpy as np
import pytest

import fastcls
from fastcls._config import override
from fastcls.optim import learning_rate_at, sgd, sgd_linear
from fastcls.reference.losses import linear_loss_reference


def data(n=150, D=12, C=4, seed=0, dtype=np.float32, shift=0.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2, (C, D))
    y = rng.integers(0, C, n)
    X = (centres[y] + rng.standard_normal((n, D)) + shift).astype(dtype)
    return X, y.astype(np.int64)


def numpy_loop(kind, X, y, W0, b0, *, reg, penalty, beta, mu, lr, n_iters, batch_size,
               momentum, schedule, lr_decay, lr_step, seed):  # fmt: skip
    """The straightforward loop: sample, vectorised loss (float64 reference), update."""
    rng = np.random.default_rng(seed)
    W = W0.astype(np.float64)
    b = None if b0 is None else b0.astype(np.float64)
    vW, vb = np.zeros_like(W), None if b is None else np.zeros_like(b)
    Xc = X.astype(np.float64) - (0.0 if mu is None else mu)
    hist = []
    for it in range(n_iters):
        idx = None if batch_size is None else rng.integers(0, len(y), size=batch_size)
        loss, dW, db = linear_loss_reference(kind, W, Xc, y, reg, b, penalty, beta, idx)
        step = learning_rate_at(schedule, lr, it, lr_decay, lr_step)
        vW = momentum * vW - step * dW
        W = W + vW
        if b is not None:
            vb = momentum * vb - step * db
            b = b + vb
        hist.append(loss)
    return W, b, np.array(hist)


CASES = {
    "plain": {},
    "bias+centre": {"bias": True, "mu": True},
    "momentum+step": {"momentum": 0.8, "schedule": "step", "lr_decay": 0.7, "lr_step": 5},
    "l1": {"penalty": "l1", "reg": 0.01},
    "elasticnet+bias": {"penalty": "elasticnet", "reg": 0.01, "beta": 0.5, "bias": True},
    "full-batch": {"batch_size": None, "bias": True},
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kind", ["svm", "softmax"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_loop_matches_numpy_loop_on_the_same_batches(case, kind, dtype):
    cfg = {"reg": 1e-3, "penalty": "l2", "beta": 1.0, "momentum": 0.0, "schedule": "constant",
           "lr_decay": 0.95, "lr_step": 1, "batch_size": 32, **CASES[case]}  # fmt: skip
    X, y = data(dtype=dtype, shift=3.0)
    D, C = X.shape[1], 4
    W0 = (0.01 * np.random.default_rng(1).standard_normal((D, C))).astype(dtype)
    b0 = np.zeros(C, dtype) if cfg.pop("bias", False) else None
    mu = X.mean(axis=0, dtype=np.float64) if cfg.pop("mu", False) else None
    kw = {**cfg, "n_iters": 40, "seed": 5}
    res = sgd_linear(kind, X, y, W0, b0, mu=mu, learning_rate=0.02, **kw)
    W, b, hist = numpy_loop(kind, X, y, W0, b0, mu=mu, lr=0.02, **kw)
    rtol = 2e-4 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(res.loss_history, hist, rtol=rtol)
    np.testing.assert_allclose(res.W, W, rtol=rtol, atol=rtol * np.abs(W).max())
    assert res.W.dtype == dtype and res.W.flags.c_contiguous
    if b0 is None:
        assert res.b is None
    else:
        np.testing.assert_allclose(res.b, b, rtol=rtol, atol=rtol * np.abs(b).max())


@pytest.mark.parametrize("kind", ["svm", "softmax"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_loop_is_sgd_with_loss_and_gradient_bit_for_bit(kind, dtype):
    """Without centring the compiled loop is the Python loop of optim.sgd, to the bit."""
    from fastcls.losses import loss_and_gradient

    X, y = data(dtype=dtype)
    W0 = np.zeros((12, 4), dtype)
    b0 = np.zeros(4, dtype)
    kw = {"learning_rate": 0.05, "n_iters": 25, "batch_size": 16, "momentum": 0.5, "seed": 3}

    def loss_grad(W, b, rows):
        return loss_and_gradient(kind, W, X, y, 0.01, b, "elasticnet", 0.5, rows)

    ref = sgd(loss_grad, W0, b0, len(y), **kw)
    res = sgd_linear(kind, X, y, W0, b0, reg=0.01, penalty="elasticnet", beta=0.5, **kw)
    np.testing.assert_array_equal(res.loss_history, ref.loss_history)
    np.testing.assert_array_equal(res.W, ref.W)
    np.testing.assert_array_equal(res.b, ref.b)


def test_compiled_loop_thread_count_and_path_invariant():
    """Batches large enough for the parallel kernel: same bits on 1 and 2 threads and on
    every CPU path's serial/parallel twin (tasks depend on the batch size only)."""
    X, y = data(n=600, D=700, C=10, seed=2)
    W0 = np.zeros((700, 10), np.float32)
    kw = {"reg": 1e-3, "learning_rate": 1e-3, "n_iters": 6, "batch_size": 600, "seed": 0}
    runs = []
    for n_threads, min_work in ((1, 0), (2, 0), (2, 1 << 62)):
        with fastcls.num_threads(n_threads), override(linear_parallel_min_work=min_work):
            runs.append(sgd_linear("softmax", X, y, W0, np.zeros(10, np.float32), **kw))
    for r in runs[1:]:
        np.testing.assert_array_equal(r.W, runs[0].W)
        np.testing.assert_array_equal(r.loss_history, runs[0].loss_history)


@pytest.mark.parametrize("batch_size", [36, 600])
def test_prefetching_the_next_batch_changes_nothing(batch_size):
    """settings.linear_prefetch_next_batch only moves rows into the cache early."""
    X, y = data(n=600, D=300, C=10, seed=4)
    W0 = np.zeros((300, 10), np.float32)
    kw = {"reg": 1e-3, "learning_rate": 1e-3, "n_iters": 7, "batch_size": batch_size, "seed": 1}
    runs = []
    for prefetch in (False, True):
        with override(linear_prefetch_next_batch=prefetch, linear_parallel_min_work=0):
            runs.append(sgd_linear("svm", X, y, W0, np.zeros(10, np.float32), **kw))
    np.testing.assert_array_equal(runs[0].W, runs[1].W)
    np.testing.assert_array_equal(runs[0].b, runs[1].b)
    np.testing.assert_array_equal(runs[0].loss_history, runs[1].loss_history)


@pytest.mark.parametrize(
    "name, setting, expected",
    [
        ("znver4", None, True),  # measured faster there (docs/performance.md)
        ("sapphirerapids", None, False),  # measured slower there
        ("rocketlake", None, False),
        ("znver3", None, True),  # measured faster there too (5-8%)
        ("znver2", None, False),  # not measured: the hardware prefetchers alone
        ("znver4", False, False),  # a setting always wins
        ("rocketlake", True, True),
    ],
)
def test_next_batch_prefetch_by_cpu_name_then_setting(monkeypatch, name, setting, expected):
    from fastcls.kernels import losses as K

    monkeypatch.setattr(K, "cpu_name", lambda: name)
    with override(linear_prefetch_next_batch=setting):
        assert K.prefetch_next_batch() is expected
        assert K.loss_impl().endswith(f", SGD prefetch {'on' if expected else 'off'})")


def test_next_batch_prefetch_setting_must_be_a_bool():
    from fastcls.kernels import losses as K

    with override(linear_prefetch_next_batch="yes"):
        with pytest.raises(TypeError, match="linear_prefetch_next_batch"):
            K.prefetch_next_batch()


def test_progress_from_compiled_chunks(capsys):
    X, y = data()
    sgd_linear("svm", X, y, np.zeros((12, 4), np.float32), None, reg=0.0, learning_rate=0.01,
               n_iters=25, batch_size=8, seed=0, verbose=10, name="demo")  # fmt: skip
    lines = capsys.readouterr().err.strip().splitlines()
    assert [ln.split(" loss")[0] for ln in lines] == [
        "demo iter 10/25",
        "demo iter 20/25",
        "demo iter 25/25",
    ]


@pytest.mark.parametrize("cls", [fastcls.LinearSVM, fastcls.Softmax])
def test_float32_training_never_returns_non_finite_weights(cls):
    """Issue 10: lr=1e30 in float32 overflowed the weights at the last update unchecked."""
    X, y = data()
    with pytest.raises(FloatingPointError, match="too large"):
        cls(learning_rate=1e30, n_iters=2, batch_size=8, seed=0).fit(X, y)
    raised = 0
    for lr in (1e30, 1e36, 1e38):  # finite weights, or a clear error: never inf/NaN
        for n_iters in (1, 2, 3):
            try:
                clf = cls(learning_rate=lr, n_iters=n_iters, batch_size=8, seed=0).fit(X, y)
            except FloatingPointError as exc:
                assert "too large" in str(exc)
                raised += 1
            else:
                assert np.isfinite(clf.W_).all() and np.isfinite(clf.b_).all()
    assert raised >= 2


def test_python_sgd_checks_the_weights_after_the_last_update():
    def loss_grad(W, b, rows):
        return 1.0, np.full_like(W, 1e30), None

    with pytest.raises(FloatingPointError, match="weights are not finite"):
        sgd(loss_grad, np.zeros(3, np.float32), None, 4, learning_rate=1e30, n_iters=1)


def test_sgd_linear_refuses_unknown_names():
    X, y = data()
    W0 = np.zeros((12, 4), np.float32)
    with pytest.raises(ValueError, match="loss must be one of"):
        sgd_linear("hinge", X, y, W0, None, reg=0.0, learning_rate=0.1, n_iters=1)
    with pytest.raises(ValueError, match="penalty must be one of"):
        sgd_linear("svm", X, y, W0, None, reg=0.0, penalty="l0", learning_rate=0.1, n_iters=1)
    with pytest.raises(ValueError, match="momentum must be in"):
        sgd_linear("svm", X, y, W0, None, reg=0.0, learning_rate=0.1, n_iters=1, momentum=1.0)


def test_random_search_by_name_equals_the_callable():
    from fastcls.optim import random_search

    X, y = data(n=60, D=5, C=3, dtype=np.float32)
    for kind, fn in (("svm", fastcls.svm_loss), ("softmax", fastcls.softmax_loss)):
        a = random_search(lambda W, fn=fn: fn(W, X, y, 0.1), (5, 3), 20, 0.5, seed=4)
        b = random_search(kind, (5, 3), 20, 0.5, seed=4, X=X, y=y, reg=0.1)
        assert a[1] == b[1]
        np.testing.assert_array_equal(a[0], b[0])
    with pytest.raises(ValueError, match="callable or one of"):
        random_search("hinge", (5, 3), X=X, y=y)
    with pytest.raises(TypeError, match="pass X= and y="):
        random_search("svm", (5, 3))
