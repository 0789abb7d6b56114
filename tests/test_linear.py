"""LinearSVM / Softmax: training, conventions, determinism, errors; optim helpers."""

from __future__ import annotations

import numpy as np
import pytest

import fastcls
from fastcls.base import FittedState
from fastcls.linear import LinearClassifier
from fastcls.losses import LOSSES, loss_and_gradient
from fastcls.optim import SGDResult, learning_rate_at, random_search, sgd
from fastcls.reference.losses import linear_loss_reference

CLASSES = [fastcls.LinearSVM, fastcls.Softmax]


def blobs(n=120, D=4, C=3, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (C, D))
    y = rng.integers(0, C, n)
    X = (centres[y] + rng.standard_normal((n, D))).astype(dtype)
    return X, y


@pytest.fixture(scope="module")
def digits_split():
    ds = fastcls.datasets.load_default()
    X = ds.images.reshape(len(ds.images), -1).astype(np.float64)
    y = ds.labels
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(y))
    tr, te = perm[:1300], perm[1300:]
    mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-8
    Xs = ((X - mu) / sd).astype(np.float32)
    return Xs[tr], y[tr], Xs[te], y[te]


@pytest.mark.parametrize("cls,sk", [(fastcls.LinearSVM, "svc"), (fastcls.Softmax, "logreg")])
def test_accuracy_on_embedded_digits_comparable_to_sklearn(digits_split, cls, sk):
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    Xtr, ytr, Xte, yte = digits_split
    acc = cls(seed=0).fit(Xtr, ytr).score(Xte, yte)
    peer = LinearSVC() if sk == "svc" else LogisticRegression(max_iter=1000)
    peer_acc = peer.fit(Xtr, ytr).score(Xte, yte)
    assert acc >= 0.92
    assert acc >= peer_acc - 0.03, (acc, peer_acc)


@pytest.mark.parametrize("cls", CLASSES)
def test_fit_attributes_and_predictions(cls):
    X, y = blobs()
    labels = np.array(["cat", "dog", "eel"])[y]
    clf = cls(n_iters=300, batch_size=32, seed=1).fit(X, labels)
    assert clf.W_.shape == (4, 3) and clf.W_.dtype == np.float32
    assert clf.b_.shape == (3,)
    assert list(clf.classes_) == ["cat", "dog", "eel"]
    assert clf.n_features_in_ == 4
    assert clf.loss_history_.shape == (300,)
    assert clf.loss_history_[-20:].mean() < clf.loss_history_[:20].mean()
    scores = clf.decision_function(X)
    np.testing.assert_allclose(scores, X @ clf.W_ + clf.b_, rtol=1e-6)
    pred = clf.predict(X)
    np.testing.assert_array_equal(pred, clf.classes_[scores.argmax(1)])
    assert clf.score(X, labels) > 0.9
    proba = clf.predict_proba(X)
    assert proba.shape == (120, 3)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    np.testing.assert_array_equal(proba.argmax(1), scores.argmax(1))


@pytest.mark.parametrize("cls", CLASSES)
def test_same_batches_as_a_plain_numpy_sgd_loop(cls):
    """The documented recipe: one Generator, W first, then rng.integers per step."""
    X, y = blobs(dtype=np.float64)
    kind = "svm" if cls is fastcls.LinearSVM else "softmax"
    clf = cls(learning_rate=0.01, reg=0.01, n_iters=50, batch_size=16, seed=7, center=False)
    clf.fit(X, y)
    rng = np.random.default_rng(7)
    W = 1e-3 * rng.standard_normal((4, 3))
    b = np.zeros(3)
    for _ in range(50):
        idx = rng.integers(0, len(y), size=16)
        loss, dW, db = linear_loss_reference(kind, W, X[idx], y[idx], 0.01, b=b)
        W -= 0.01 * dW
        b -= 0.01 * db
    np.testing.assert_allclose(clf.W_, W, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(clf.b_, b, rtol=1e-9, atol=1e-12)
    assert clf.loss_history_[-1] == pytest.approx(loss, rel=1e-9)


@pytest.mark.parametrize("cls", CLASSES)
def test_deterministic_for_seed_and_thread_count(cls):
    X, y = blobs(n=2000, D=900, C=10, seed=3)  # large enough for the parallel kernel
    a = cls(n_iters=10, batch_size=2000, seed=5, n_jobs=1).fit(X, y)
    b = cls(n_iters=10, batch_size=2000, seed=5, n_jobs=2).fit(X, y)
    np.testing.assert_array_equal(a.W_, b.W_)
    np.testing.assert_array_equal(a.loss_history_, b.loss_history_)
    c = cls(n_iters=10, batch_size=2000, seed=6).fit(X, y)
    assert not np.array_equal(a.W_, c.W_)


def test_full_batch_momentum_step_schedule_and_penalties():
    X, y = blobs(seed=4)
    for kw in (
        {"batch_size": None},
        {"momentum": 0.9},
        {"lr_schedule": "step", "lr_decay": 0.5, "lr_step": 50},
        {"penalty": "l1", "reg": 0.01},
        {"penalty": "elasticnet", "reg": 0.01, "beta": 0.5},
        {"fit_intercept": False},
        {"learning_rate": 1e-3},
    ):
        clf = fastcls.Softmax(n_iters=200, seed=0, batch_size=kw.pop("batch_size", 32), **kw)
        clf.fit(X, y)
        assert clf.score(X, y) > 0.85, kw
        assert np.isfinite(clf.loss_history_).all()
    nob = fastcls.LinearSVM(n_iters=10, fit_intercept=False, seed=0).fit(X, y)
    assert np.all(nob.b_ == 0)


def test_uint8_images_train_in_float32():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 80)
    imgs = (rng.integers(0, 100, (80, 4, 4, 3)) + 120 * y[:, None, None, None]).astype(np.uint8)
    clf = fastcls.LinearSVM(n_iters=200, batch_size=20, seed=0).fit(imgs, y)
    assert clf.W_.dtype == np.float32 and clf.W_.shape == (48, 2)
    assert clf.score(imgs, y) > 0.95


def test_verbose_prints_progress_to_stderr(capsys):
    X, y = blobs()
    fastcls.Softmax(n_iters=30, batch_size=10, verbose=True, seed=0).fit(X, y)
    err = capsys.readouterr().err
    assert "Softmax iter 30/30 loss" in err and "it/s" in err
    assert err.count("\n") == 10


def test_params_roundtrip_and_repr():
    clf = fastcls.LinearSVM(reg=0.5, n_iters=10)
    params = clf.get_params()
    assert params["reg"] == 0.5 and params["n_iters"] == 10 and "learning_rate" in params
    clf.set_params(momentum=0.5)
    assert clf.momentum == 0.5
    assert "reg=0.5" in repr(clf)
    with pytest.raises(ValueError, match="Invalid parameter"):
        clf.set_params(nope=1)


def test_not_fitted_and_feature_mismatch():
    with pytest.raises(fastcls.NotFittedError, match="not fitted"):
        fastcls.Softmax().predict(np.ones((2, 3)))
    X, y = blobs()
    clf = fastcls.Softmax(n_iters=5, seed=0).fit(X, y)
    with pytest.raises(ValueError, match="3 features"):
        clf.predict(np.ones((2, 3)))


@pytest.mark.parametrize(
    "params,X,y,exc,match",
    [
        ({"batch_size": 500}, None, None, ValueError, r"batch_size=500 is larger than"),
        ({"reg": -1}, None, None, ValueError, r"reg must be >= 0"),
        ({"learning_rate": 0}, None, None, ValueError, r"learning_rate must be > 0"),
        ({"learning_rate": "fast"}, None, None, ValueError, r"learning_rate must be"),
        ({"momentum": 1.0}, None, None, ValueError, r"momentum must be in \[0, 1\)"),
        ({"penalty": "l0"}, None, None, ValueError, r"penalty must be one of"),
        ({"lr_schedule": "cosine"}, None, None, ValueError, r"lr_schedule must be one of"),
        ({"n_iters": 0}, None, None, ValueError, r"n_iters must be >= 1"),
        ({"seed": "x"}, None, None, TypeError, r"seed must be"),
        ({}, np.full((120, 4), np.nan), None, ValueError, r"X contains NaN"),
        ({}, None, np.zeros(119), ValueError, r"y has 119 labels"),
        ({}, None, np.zeros(120), ValueError, r"single class"),
        ({"learning_rate": 1e30}, None, None, FloatingPointError, r"too large"),
    ],
)
def test_bad_inputs(params, X, y, exc, match):
    X0, y0 = blobs()
    with pytest.raises(exc, match=match):
        clf = fastcls.LinearSVM(**{"n_iters": 5, **params})
        clf.fit(X0 if X is None else X, y0 if y is None else y)


# ----------------------------------------------------------------------------- optim
def test_learning_rate_schedules():
    assert learning_rate_at("constant", 0.1, 1000) == 0.1
    assert learning_rate_at("step", 1.0, 9, 0.5, 10) == 1.0
    assert learning_rate_at("step", 1.0, 10, 0.5, 10) == 0.5
    with pytest.raises(ValueError):
        learning_rate_at("linear", 1.0, 1)


def test_random_search_returns_the_best_try():
    X, y = blobs(dtype=np.float64)
    seen = []

    def f(W):
        loss, _ = fastcls.svm_loss(W, X, y, 0.0)
        seen.append(loss)
        return loss

    W, loss = random_search(f, (4, 3), n_tries=30, scale=0.1, seed=0)
    assert W.shape == (4, 3) and len(seen) == 30 and loss == min(seen)
    assert fastcls.svm_loss(W, X, y)[0] == pytest.approx(loss)
    assert loss < 2.0  # better than W = 0 (exactly C - 1)
    W2, loss2 = random_search(lambda W: fastcls.svm_loss(W, X, y), (4, 3), 30, 0.1, seed=0)
    np.testing.assert_array_equal(W, W2)
    with pytest.raises(ValueError, match="shape"):
        random_search(f, (4,), 3, 0.1)
    with pytest.raises(ValueError, match="scale"):
        random_search(f, (4, 3), 3, 0.0)


def test_classes_name_their_loss_in_the_registry():
    assert fastcls.LinearSVM.loss_name == "svm" and fastcls.Softmax.loss_name == "softmax"
    assert set(LOSSES) == {"svm", "softmax"}
    X, y = blobs()
    with pytest.raises(TypeError, match="names no loss"):
        LinearClassifier(n_iters=2).fit(X, y)


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fit_is_optim_sgd_on_the_documented_stream(cls, dtype):
    """fit == optim.sgd driven by loss_and_gradient, bit for bit (no intercept, no centring)."""
    X, y = blobs(dtype=dtype)
    kw = {"learning_rate": 0.05, "reg": 0.01, "n_iters": 40, "batch_size": 16, "momentum": 0.5}
    clf = cls(fit_intercept=False, seed=3, **kw).fit(X, y)
    rng = np.random.default_rng(3)
    W0 = (1e-3 * rng.standard_normal((4, 3))).astype(dtype)

    def loss_grad(W, b, rows):
        return loss_and_gradient(cls.loss_name, W, X, y, 0.01, None, "l2", 1.0, rows)

    res = sgd(
        loss_grad,
        W0,
        None,
        len(y),
        learning_rate=0.05,
        n_iters=40,
        batch_size=16,
        momentum=0.5,
        lr_step=8,
        seed=rng,
    )
    assert isinstance(res, SGDResult) and res.b is None and res.n_iter == 40
    np.testing.assert_array_equal(res.W, clf.W_)
    np.testing.assert_array_equal(res.loss_history, clf.loss_history_)
    assert res.W.dtype == dtype and not np.shares_memory(res.W, W0)


def test_sgd_full_batch_draws_nothing_and_validates():
    rng = np.random.default_rng(0)
    before = rng.bit_generator.state

    def loss_grad(W, b, rows):
        assert rows is None
        return float(((W - 1.0) ** 2).sum()), 2 * (W - 1.0), 2 * (b - 2.0)

    res = sgd(loss_grad, np.zeros((2, 2)), np.zeros(2), 5, learning_rate=0.5, n_iters=2, seed=rng)
    assert rng.bit_generator.state == before
    np.testing.assert_array_equal(res.W, 1.0)
    np.testing.assert_array_equal(res.b, 2.0)
    np.testing.assert_array_equal(res.loss_history, [4.0, 0.0])
    ok = {"learning_rate": 0.1, "n_iters": 1}
    for kwargs, exc, match in [
        ({"learning_rate": 0.0}, ValueError, "learning_rate must be > 0"),
        ({"n_iters": 0}, ValueError, "n_iters must be >= 1"),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"momentum": 1.0}, ValueError, r"momentum must be in \[0, 1\)"),
        ({"schedule": "cosine"}, ValueError, "schedule must be one of"),
        ({"lr_step": 0}, ValueError, "lr_step must be >= 1"),
        ({"seed": "x"}, TypeError, "seed must be"),
    ]:
        with pytest.raises(exc, match=match):
            sgd(loss_grad, np.zeros((2, 2)), None, 5, **{**ok, **kwargs})
    with pytest.raises(TypeError, match="W0 must be a floating-point"):
        sgd(loss_grad, np.zeros((2, 2), dtype=int), None, 5, **ok)
    with pytest.raises(TypeError, match="loss_grad must be callable"):
        sgd(None, np.zeros((2, 2)), None, 5, **ok)


# ----------------------------------------------------------------------------- fitted state
LABELS = {
    "int": np.array([-3, 7, 12]),
    "str": np.array(["cat", "dog", "eel"]),
    "bytes": np.array([b"cat", b"dog", b"eel"]),
}


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("labels", list(LABELS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fitted_state_round_trip(cls, labels, dtype):
    import json

    X, y = blobs(dtype=dtype)
    yl = LABELS[labels][y]
    clf = cls(n_iters=30, batch_size=16, seed=2, reg=0.01).fit(X, yl)
    state = clf.get_fitted_state()
    assert isinstance(state, FittedState)
    assert all(a.dtype.kind != "O" for a in state.arrays.values())
    json.dumps(state.metadata)
    new = cls(**clf.get_params()).set_fitted_state(state)
    state.arrays["W"][:] = 0  # the model owns copies
    for method in ("predict", "decision_function", "predict_proba"):
        a, b = getattr(clf, method)(X), getattr(new, method)(X)
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    for attr in ("W_", "b_", "classes_", "loss_history_"):
        assert getattr(new, attr).dtype == getattr(clf, attr).dtype
        np.testing.assert_array_equal(getattr(new, attr), getattr(clf, attr))
    for attr in ("n_features_in_", "learning_rate_", "n_iter_"):
        assert getattr(new, attr) == getattr(clf, attr)
    assert new.score(X, yl) == clf.score(X, yl)


def _mutate(state, arrays=None, drop=(), **meta):
    new_arrays = {k: v for k, v in state.arrays.items() if k not in drop}
    new_arrays.update(arrays or {})
    new_meta = {k: v for k, v in state.metadata.items() if k not in drop}
    new_meta.update(meta)
    return FittedState(new_arrays, new_meta)


@pytest.fixture(scope="module")
def svm_state():
    X, y = blobs()
    return fastcls.LinearSVM(n_iters=10, batch_size=16, seed=0).fit(X, y).get_fitted_state()


BAD_STATES = [
    ({"drop": ("W",)}, "lacks the array 'W'"),
    ({"drop": ("n_iter",)}, "lacks the metadata field 'n_iter'"),
    ({"arrays": {"W": np.ones((3, 3), np.float32)}}, r"'W' must have shape \(4, 3\)"),
    ({"arrays": {"W": np.ones((4, 3), np.int64)}}, "'W' must be float32 or float64"),
    ({"arrays": {"W": np.full((4, 3), np.nan, np.float32)}}, "'W' holds NaN"),
    ({"arrays": {"W": np.ones((4, 3), object)}}, "'W' must be a numeric or unicode"),
    ({"arrays": {"b": np.ones(3, np.float64)}}, "'b' has dtype float64 but 'W'"),
    ({"arrays": {"b": np.ones(2, np.float32)}}, r"'b' must have shape \(3,\)"),
    ({"arrays": {"b": np.array([0, np.inf, 0], np.float32)}}, "'b' holds NaN or infinity"),
    ({"arrays": {"classes": np.array([[0, 1, 2]])}}, "'classes'"),
    ({"arrays": {"classes": np.array([], dtype=np.int64)}}, "'classes'"),
    ({"arrays": {"classes": np.array([2, 1, 0])}}, "'classes' must hold sorted, distinct"),
    ({"arrays": {"classes": np.array([0, 0, 1])}}, "'classes' must hold sorted, distinct"),
    ({"arrays": {"classes": np.array([0, 1])}}, r"'W' must have shape \(4, 2\)"),
    ({"arrays": {"classes": np.array([0])}}, "'classes' must be 1-D with at least 2"),
    ({"arrays": {"loss_history": np.ones(9)}}, r"'loss_history' must have shape \(10,\)"),
    ({"arrays": {"extra": np.ones(2)}}, "unknown arrays"),
    ({"labels_kind": "pickle"}, "'classes'"),
    ({"labels_dtype": "<U3"}, "'classes'"),
    ({"loss": "softmax"}, "'loss' is 'softmax' but LinearSVM"),
    ({"n_features_in": True}, "'n_features_in' must be an integer >= 1"),
    ({"n_features_in": 5}, r"'W' must have shape \(5, 3\)"),
    ({"n_iter": 0}, "'n_iter' must be an integer >= 1"),
    ({"learning_rate": -1.0}, "'learning_rate' must be a positive finite number"),
    ({"learning_rate": "auto"}, "'learning_rate' must be a positive finite number"),
]


@pytest.mark.parametrize("change,match", BAD_STATES)
def test_malformed_fitted_state_raises_and_changes_nothing(svm_state, change, match):
    bad = _mutate(svm_state, **change)
    fresh = fastcls.LinearSVM()
    with pytest.raises(ValueError, match=match):
        fresh.set_fitted_state(bad)
    assert not hasattr(fresh, "W_") and not hasattr(fresh, "classes_")
    X, y = blobs(seed=1)
    fitted = fastcls.LinearSVM(n_iters=5, seed=1).fit(X, y)
    W, scores = fitted.W_.copy(), fitted.decision_function(X)
    with pytest.raises(ValueError, match=match):
        fitted.set_fitted_state(bad)
    np.testing.assert_array_equal(fitted.W_, W)
    np.testing.assert_array_equal(fitted.decision_function(X), scores)


def test_fitted_state_errors_for_wrong_containers_and_unfitted_models():
    with pytest.raises(fastcls.NotFittedError, match="not fitted"):
        fastcls.Softmax().get_fitted_state()
    with pytest.raises(TypeError, match="FittedState"):
        fastcls.Softmax().set_fitted_state(None)
    with pytest.raises(TypeError, match="dicts"):
        fastcls.Softmax().set_fitted_state(FittedState([], {}))


# ----------------------------------------------------------------------------- plots
def test_plots_loss_curve_and_weight_templates():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fastcls import plots

    ds = fastcls.datasets.load_default()
    clf = fastcls.Softmax(n_iters=50, seed=0).fit(ds.images[:300], ds.labels[:300])
    ax = plots.plot_loss_curve(clf, smooth=10)
    assert len(ax.lines) == 2 and ax.get_xlabel() == "iteration"
    fig = plots.plot_weight_templates(clf, image_shape=(8, 8))
    assert len(fig.axes) == 10 and fig.axes[3].get_title() == "3"
    T = plots.weight_templates(clf.W_, (8, 8))
    assert T.shape == (10, 8, 8) and T.min() >= 0 and T.max() <= 1
    # bias row (bias trick) dropped; RGB templates; constant column -> 0.5
    Wb = np.vstack([np.random.default_rng(0).random((12, 2)), np.ones((1, 2))])
    Wb[:, 1] = 0.0
    T = plots.weight_templates(Wb, (2, 2, 3))
    assert T.shape == (2, 2, 2, 3) and np.all(T[1] == 0.5)
    with pytest.raises(ValueError, match="pixels"):
        plots.weight_templates(np.ones((10, 2)), (8, 8))
    with pytest.raises(ValueError, match="empty"):
        plots.plot_loss_curve([])
    plt.close("all")
