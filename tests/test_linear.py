"""LinearSVM / Softmax: training, conventions, determinism, errors; optim helpers."""

from __future__ import annotations

import numpy as np
import pytest

import fastcls
from fastcls.optim import learning_rate_at, random_search
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
