"""Model selection: splits, k-fold CV of k-NN (all k in one pass) and the linear search.

The fast CV path is compared with the per-fold, per-k refitting reference
(:mod:`fastcls.reference.model_selection`), with refitting the public classifier
(``KNearestNeighbor(backend="numpy")``) and, when installed, with scikit-learn's
``cross_val_score`` / ``GridSearchCV``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastcls
from fastcls.base import BaseEstimator
from fastcls.kernels import vote
from fastcls.model_selection import (
    CVResult,
    Progress,
    cross_validate_knn,
    default_linear_grid,
    kfold_indices,
    search_linear,
    train_val_test_split,
)
from fastcls.reference.model_selection import (
    cross_validate_knn_reference,
    majority_vote_all_k_reference,
    weighted_vote_all_k_reference,
)


# --------------------------------------------------------------------------- helpers
def _tied_data(rng, n, d, levels, n_classes, dtype=np.uint8, duplicates=0):
    """Data with few distinct values, so many distance ties, plus duplicated rows."""
    X = rng.integers(0, levels, size=(n, d)).astype(dtype)
    if duplicates:
        src = rng.integers(0, n, size=duplicates)
        dst = rng.integers(0, n, size=duplicates)
        X[dst] = X[src]
    y = rng.integers(0, n_classes, size=n)
    return X, y


def _refit_per_fold(X, y, ks, metric, n_folds, weights="uniform"):
    """Per-fold, per-k refitting of the public classifier on its NumPy backend."""
    out = {}
    for k in ks:
        accs = []
        for train_idx, val_idx in kfold_indices(X.shape[0], n_folds):
            clf = fastcls.KNearestNeighbor(k=k, metric=metric, weights=weights, backend="numpy")
            clf.fit(X[train_idx], y[train_idx])
            accs.append(clf.score(X[val_idx], y[val_idx]))
        out[(metric, k)] = np.array(accs)
    return out


# --------------------------------------------------------------------------- folds
@pytest.mark.parametrize("n,n_folds", [(10, 2), (10, 3), (11, 5), (7, 7), (100, 10)])
def test_kfold_unshuffled_is_array_split(n, n_folds):
    folds = kfold_indices(n, n_folds)
    expected = np.array_split(np.arange(n), n_folds)
    assert len(folds) == n_folds
    for (train, val), exp in zip(folds, expected, strict=True):
        np.testing.assert_array_equal(val, exp)
        np.testing.assert_array_equal(train, np.setdiff1d(np.arange(n), exp))
        assert train.dtype == np.int64 and val.dtype == np.int64


def test_kfold_matches_sklearn_kfold():
    model_selection = pytest.importorskip("sklearn.model_selection")
    for n, f in [(23, 5), (10, 10), (9, 2)]:
        ours = kfold_indices(n, f)
        theirs = list(model_selection.KFold(f).split(np.zeros((n, 1))))
        for (a_tr, a_va), (b_tr, b_va) in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(a_tr, b_tr)
            np.testing.assert_array_equal(a_va, b_va)


def test_kfold_shuffled_partition_and_seed():
    a = kfold_indices(50, 4, shuffle=True, seed=3)
    b = kfold_indices(50, 4, shuffle=True, seed=3)
    c = kfold_indices(50, 4, shuffle=True, seed=4)
    vals = np.concatenate([v for _, v in a])
    np.testing.assert_array_equal(np.sort(vals), np.arange(50))
    for (tr, va), (tr2, va2) in zip(a, b, strict=True):
        np.testing.assert_array_equal(va, va2)
        np.testing.assert_array_equal(tr, tr2)
        assert np.all(np.diff(tr) > 0) and np.all(np.diff(va) > 0)  # sorted
        assert np.intersect1d(tr, va).size == 0 and tr.size + va.size == 50
    assert any(not np.array_equal(x[1], y[1]) for x, y in zip(a, c, strict=True))
    # unshuffled ignores the seed
    for (_, v1), (_, v2) in zip(kfold_indices(9, 3, seed=1), kfold_indices(9, 3), strict=True):
        np.testing.assert_array_equal(v1, v2)


@pytest.mark.parametrize(
    "n,n_folds,exc,match",
    [
        (5, 6, ValueError, r"n_folds=6 is larger than the number of samples \(5\)"),
        (5, 1, ValueError, "n_folds must be at least 2"),
        (5, 0, ValueError, "n_folds must be at least 2"),
        (5, 2.0, TypeError, "n_folds must be an integer"),
        (5, True, TypeError, "n_folds must be an integer"),
        (0, 2, ValueError, "n must be >= 1"),
    ],
)
def test_kfold_errors(n, n_folds, exc, match):
    with pytest.raises(exc, match=match):
        kfold_indices(n, n_folds)


# --------------------------------------------------------------------------- split
def test_split_sizes_cover_and_determinism():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 3))
    y = np.arange(100) % 4
    parts = train_val_test_split(X, y, 0.15, 20, seed=7)
    Xtr, Xva, Xte, ytr, yva, yte = parts
    assert (Xtr.shape[0], Xva.shape[0], Xte.shape[0]) == (65, 15, 20)
    rows = np.concatenate([Xtr, Xva, Xte])
    assert np.unique(rows, axis=0).shape[0] == 100  # a partition of the rows
    # labels travel with their rows
    lookup = {tuple(r): lab for r, lab in zip(X, y, strict=True)}
    for Xp, yp in ((Xtr, ytr), (Xva, yva), (Xte, yte)):
        assert [lookup[tuple(r)] for r in Xp] == yp.tolist()
    again = train_val_test_split(X, y, 0.15, 20, seed=7)
    for a, b in zip(parts, again, strict=True):
        np.testing.assert_array_equal(a, b)
    other = train_val_test_split(X, y, 0.15, 20, seed=8)
    assert not np.array_equal(parts[0], other[0])


def test_split_keeps_images_and_string_labels():
    X = np.arange(30 * 4 * 4, dtype=np.uint8).reshape(30, 4, 4)
    y = np.array(["cat", "dog", "emu"] * 10)
    Xtr, Xva, Xte, ytr, yva, yte = train_val_test_split(X, y, 6, 6, seed=0, stratify=True)
    assert Xtr.shape == (18, 4, 4) and Xtr.dtype == np.uint8
    assert ytr.dtype.kind == "U"
    for part in (ytr, yva, yte):
        assert set(part.tolist()) == {"cat", "dog", "emu"}
    assert sorted(np.unique(yva, return_counts=True)[1].tolist()) == [2, 2, 2]


@given(
    n_classes=st.integers(2, 5),
    per_class=st.lists(st.integers(3, 40), min_size=5, max_size=5),
    val_frac=st.floats(0.1, 0.4),
    seed=st.integers(0, 2**16),
)
def test_split_stratified_proportions(n_classes, per_class, val_frac, seed):
    counts = np.array(per_class[:n_classes])
    y = np.repeat(np.arange(n_classes), counts)
    X = np.arange(y.size, dtype=np.float64)[:, None]
    n = y.size
    n_val = max(n_classes, int(np.ceil(val_frac * n)))
    n_test = max(n_classes, n // 5)
    try:
        _, Xva, Xte, ytr, yva, yte = train_val_test_split(
            X, y, n_val, n_test, seed=seed, stratify=True
        )
    except ValueError as exc:  # a class too small for three parts: must be explained
        assert "too few" in str(exc) or "no training samples" in str(exc)
        return
    assert yva.size == n_val and yte.size == n_test
    for part, size in ((yva, n_val), (yte, n_test)):
        got = np.bincount(part, minlength=n_classes)
        assert np.all(got >= 1)
        # each class within one sample of its exact proportional share
        assert np.all(np.abs(got - counts * size / n) < 1.0 + 1e-9)
    assert np.all(np.bincount(ytr, minlength=n_classes) >= 1)


@pytest.mark.parametrize(
    "val,test,exc,match",
    [
        (0, 2, ValueError, "val_size must be >= 1"),
        (2, 0.0, ValueError, "test_size must be > 0"),
        (1.0, 2, ValueError, "val_size as a fraction must be < 1"),
        (-0.2, 2, ValueError, "val_size must be > 0"),
        (5, 5, ValueError, "leave no training samples"),
        (11, 1, ValueError, "val_size must be <= 10"),
        ("3", 1, TypeError, "val_size must be an int"),
        (True, 1, TypeError, "val_size must be an int"),
        (float("nan"), 1, ValueError, "val_size must be finite"),
    ],
)
def test_split_size_errors(val, test, exc, match):
    X = np.zeros((10, 2))
    y = np.arange(10) % 2
    with pytest.raises(exc, match=match):
        train_val_test_split(X, y, val, test, seed=0)


def test_split_stratified_empty_class_errors():
    X = np.zeros((20, 2))
    y = np.array([0] * 9 + [1] * 9 + [2] * 2)  # class 2 cannot reach three parts
    with pytest.raises(ValueError, match=r"class 2 has 2 sample\(s\), too few"):
        train_val_test_split(X, y, 4, 4, seed=0, stratify=True)
    with pytest.raises(ValueError, match="fewer than the 3 classes"):
        train_val_test_split(X, y, 2, 4, seed=0, stratify=True)


def test_split_other_errors():
    with pytest.raises(ValueError, match="y has 3 labels but X has 4 samples"):
        train_val_test_split(np.zeros((4, 2)), [0, 1, 0], 1, 1)
    with pytest.raises(ValueError, match="at least 3 samples"):
        train_val_test_split(np.zeros((2, 2)), [0, 1], 1, 1)
    with pytest.raises(ValueError, match="X must be 2-D"):
        train_val_test_split(np.zeros(5), np.zeros(5), 1, 1)
    with pytest.raises(TypeError, match="stratify must be True or False"):
        train_val_test_split(np.zeros((9, 2)), np.arange(9) % 3, 3, 3, stratify="yes")
    with pytest.raises(TypeError, match="seed must be None, an int"):
        train_val_test_split(np.zeros((9, 2)), np.arange(9) % 3, 3, 3, seed=1.5)


# --------------------------------------------------------------------------- all-k votes
@given(
    n=st.integers(1, 30),
    k_max=st.integers(1, 12),
    n_classes=st.integers(1, 5),
    zero_frac=st.sampled_from([0.0, 0.3, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_vote_all_k_kernels_match_references(n, k_max, n_classes, zero_frac, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, size=(n, k_max))
    # few distinct distances: equal weights tie often; zeros are a sorted prefix
    dist = np.sort(rng.choice([0.5, 1.0, 2.0, 4.0], size=(n, k_max)), axis=1)
    n_zero = rng.binomial(k_max, zero_frac, size=n)
    for i in range(n):
        dist[i, : n_zero[i]] = 0.0
    ks = np.unique(rng.integers(1, k_max + 1, size=4)).astype(np.int64)
    got = vote.majority_vote_all_k(labels, ks, n_classes)
    np.testing.assert_array_equal(got, majority_vote_all_k_reference(labels, ks, n_classes))
    got_w = vote.weighted_vote_all_k(labels, dist, ks, n_classes)
    np.testing.assert_array_equal(got_w, weighted_vote_all_k_reference(labels, dist, ks, n_classes))
    # and equal to the classifier's own vote on the first k neighbours
    for t, k in enumerate(ks.tolist()):
        proba = vote.vote_proba(
            np.ascontiguousarray(labels[:, :k]), np.ascontiguousarray(dist[:, :k]), n_classes, True
        )
        np.testing.assert_array_equal(got_w[t], vote.argmax_rows(proba))


def test_vote_all_k_tie_goes_to_smallest_label():
    labels = np.array([[2, 1, 1, 2]])
    # k=3: weights 1/1 for label 2 against 1/2 + 1/2 for label 1, a tie -> label 1;
    # k=4: 2.0 against 1.0 -> label 2
    dist = np.array([[1.0, 2.0, 2.0, 1.0]])
    ks = np.array([1, 2, 3, 4])
    assert vote.majority_vote_all_k(labels, ks, 3)[:, 0].tolist() == [2, 1, 1, 1]
    assert vote.weighted_vote_all_k(labels, dist, ks, 3)[:, 0].tolist() == [2, 2, 1, 2]
    zero = np.array([[0.0, 0.0, 1.0, 1.0]])
    assert vote.weighted_vote_all_k(np.array([[2, 1, 0, 0]]), zero, ks, 3)[:, 0].tolist() == [
        2,
        1,
        1,
        1,
    ]


# --------------------------------------------------------------------------- CV == refitting
@given(
    n=st.integers(6, 40),
    d=st.integers(1, 6),
    levels=st.sampled_from([2, 3, 256]),
    n_classes=st.integers(1, 4),
    n_folds=st.integers(2, 6),
    weights=st.sampled_from(["uniform", "distance"]),
    dtype=st.sampled_from([np.uint8, np.float32, np.float64]),
    duplicates=st.integers(0, 8),
    seed=st.integers(0, 2**16),
)
def test_cv_equals_reference_refitting(
    n, d, levels, n_classes, n_folds, weights, dtype, duplicates, seed
):
    rng = np.random.default_rng(seed)
    n_folds = min(n_folds, n)
    X, y = _tied_data(rng, n, d, levels, n_classes, dtype, duplicates)
    min_train = n - int(np.ceil(n / n_folds))
    ks = sorted({1, min_train, *rng.integers(1, min_train + 1, size=3).tolist()})
    metrics = ("l1", "l2", "sqeuclidean")
    res = cross_validate_knn(X, y, ks, metrics=metrics, n_folds=n_folds, weights=weights)
    ref = cross_validate_knn_reference(
        X, np.unique(y, return_inverse=True)[1], ks, metrics, n_folds, weights
    )
    assert set(res.fold_accuracies) == set(ref)
    for key, acc in ref.items():
        np.testing.assert_array_equal(res.fold_accuracies[key], acc, err_msg=str(key))


@pytest.mark.parametrize("weights", ["uniform", "distance"])
@pytest.mark.parametrize("metric", ["l1", "l2"])
def test_cv_equals_refitting_the_classifier(metric, weights):
    rng = np.random.default_rng(1)
    X, y = _tied_data(rng, 57, 5, 3, 3, np.uint8, duplicates=6)  # ties and duplicates
    labels = np.array(["ant", "bee", "cow"])[y]  # string labels
    ks = [1, 2, 3, 5, 8, 13]
    res = cross_validate_knn(X, labels, ks, metrics=(metric,), n_folds=4, weights=weights)
    ref = _refit_per_fold(X, labels, ks, metric, 4, weights)
    for key, acc in ref.items():
        np.testing.assert_array_equal(res.fold_accuracies[key], acc, err_msg=str(key))


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_cv_numpy_backend_and_threads_agree(weights):
    rng = np.random.default_rng(2)
    X, y = _tied_data(rng, 80, 7, 4, 3, np.uint8, duplicates=10)
    ks = [1, 3, 4, 10]
    base = cross_validate_knn(X, y, ks, n_folds=5, weights=weights)
    other = cross_validate_knn(X, y, ks, n_folds=5, weights=weights, backend="numpy")
    with fastcls.num_threads(1):
        single = cross_validate_knn(X, y, ks, n_folds=5, weights=weights)
    for key, acc in base.fold_accuracies.items():
        np.testing.assert_array_equal(other.fold_accuracies[key], acc)
        np.testing.assert_array_equal(single.fold_accuracies[key], acc)


@pytest.mark.parametrize("weights", ["uniform", "distance"])
@pytest.mark.parametrize("metric,sk_metric", [("l1", "manhattan"), ("l2", "euclidean")])
def test_cv_equals_sklearn_cross_val_score(metric, sk_metric, weights):
    sk_ms = pytest.importorskip("sklearn.model_selection")
    sk_nb = pytest.importorskip("sklearn.neighbors")
    rng = np.random.default_rng(3)
    # continuous data: no exact distance ties, where sklearn's neighbour order may differ
    X = rng.normal(size=(90, 6))
    y = rng.integers(0, 4, size=90)
    ks = [1, 2, 3, 6, 11]
    res = cross_validate_knn(X, y, ks, metrics=(metric,), n_folds=5, weights=weights)
    for k in ks:
        clf = sk_nb.KNeighborsClassifier(
            n_neighbors=k, algorithm="brute", metric=sk_metric, weights=weights
        )
        theirs = sk_ms.cross_val_score(clf, X, y, cv=sk_ms.KFold(5))
        np.testing.assert_array_equal(res.fold_accuracies[(metric, k)], theirs, err_msg=str(k))


def test_sklearn_gridsearchcv_on_our_estimator_gives_the_same_means():
    sk_ms = pytest.importorskip("sklearn.model_selection")
    rng = np.random.default_rng(4)
    X = rng.integers(0, 256, size=(60, 10), dtype=np.uint8)
    y = (X[:, 0] > 120).astype(int) + (X[:, 1] > 200)
    ks = [1, 3, 5]
    grid = sk_ms.GridSearchCV(
        fastcls.KNearestNeighbor(),
        {"k": ks, "metric": ["l1", "l2"]},
        cv=sk_ms.KFold(3),
    ).fit(X, y)
    res = cross_validate_knn(X, y, ks, n_folds=3)
    for params, mean in zip(
        grid.cv_results_["params"], grid.cv_results_["mean_test_score"], strict=True
    ):
        assert res.mean_accuracies[(params["metric"], params["k"])] == pytest.approx(mean)


def test_cv_shuffled_is_seeded_and_matches_refitting_on_its_folds():
    rng = np.random.default_rng(5)
    X, y = _tied_data(rng, 40, 4, 3, 2, np.float64, duplicates=4)
    a = cross_validate_knn(X, y, [1, 3, 5], n_folds=4, shuffle=True, seed=11)
    b = cross_validate_knn(X, y, [1, 3, 5], n_folds=4, shuffle=True, seed=11)
    for key in a.fold_accuracies:
        np.testing.assert_array_equal(a.fold_accuracies[key], b.fold_accuracies[key])
    for f, (tr, va) in enumerate(kfold_indices(40, 4, shuffle=True, seed=11)):
        for metric in ("l1", "l2"):
            clf = fastcls.KNearestNeighbor(k=3, metric=metric, backend="numpy").fit(X[tr], y[tr])
            assert a.fold_accuracies[(metric, 3)][f] == clf.score(X[va], y[va])


# --------------------------------------------------------------------------- CV result
def _fake_result(acc):
    ks = np.array([1, 3, 5])
    fold = {(m, k): np.asarray(acc[(m, k)], dtype=float) for m in ("l1", "l2") for k in ks}
    return CVResult(ks=ks, metrics=("l1", "l2"), n_folds=2, weights="uniform", fold_accuracies=fold)


def test_cv_result_summaries_and_best_tie_rule():
    acc = {
        ("l1", 1): [0.5, 0.7],
        ("l1", 3): [0.8, 0.6],
        ("l1", 5): [0.6, 0.6],
        ("l2", 1): [0.7, 0.7],
        ("l2", 3): [0.9, 0.5],
        ("l2", 5): [0.6, 0.8],
    }
    res = _fake_result(acc)
    assert res.mean_accuracies[("l1", 3)] == pytest.approx(0.7)
    assert res.std_accuracies[("l2", 3)] == pytest.approx(0.2)
    # four configurations tie at 0.7: the first metric, then the smallest k
    assert res.best_params_ == {"metric": "l1", "k": 3}
    assert res.best_score_ == pytest.approx(0.7)
    text = res.table()
    assert "l1 mean+-std" in text and len(text.splitlines()) == 4


def test_cv_result_plot_draws_folds_means_and_error_bars(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(6)
    X, y = _tied_data(rng, 30, 3, 256, 2)
    res = cross_validate_knn(X, y, [1, 3, 5], n_folds=3)
    ax = res.plot()
    # one scatter per (metric, k) plus one errorbar container per metric
    assert len(ax.collections) >= 2 * 3
    assert len(ax.containers) == 2
    assert ax.get_xlabel() == "k"
    ax.figure.savefig(tmp_path / "cv.png")
    assert (tmp_path / "cv.png").stat().st_size > 0
    plt.close("all")


# --------------------------------------------------------------------------- CV errors
@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"ks": []}, ValueError, "ks must hold at least one k"),
        ({"ks": [0, 1]}, ValueError, "ks must be >= 1"),
        ({"ks": [-3]}, ValueError, "ks must be >= 1"),
        ({"ks": [1.5]}, TypeError, "ks must be an integer"),
        ({"ks": None}, TypeError, "ks must be a sequence of positive integers"),
        ({"ks": [1, 17]}, ValueError, r"k=17, larger than the smallest training part of a fold"),
        ({"ks": [1], "n_folds": 21}, ValueError, "n_folds=21 is larger than the number"),
        ({"ks": [1], "n_folds": 1}, ValueError, "n_folds must be at least 2"),
        ({"ks": [1], "metrics": ()}, ValueError, "metrics must hold at least one metric"),
        ({"ks": [1], "metrics": ("l3",)}, ValueError, "metric must be one of"),
        ({"ks": [1], "weights": "gaussian"}, ValueError, "weights must be one of"),
        ({"ks": [1], "backend": "gpu"}, ValueError, "backend must be one of"),
    ],
)
def test_cv_errors(kwargs, exc, match):
    X = np.zeros((20, 3))
    y = np.arange(20) % 2
    # 20 samples, 5 folds: every training part holds 16 samples
    kwargs = {"n_folds": 5, **kwargs}
    with pytest.raises(exc, match=match):
        cross_validate_knn(X, y, **kwargs)


def test_cv_accepts_single_k_metric_aliases_and_images():
    rng = np.random.default_rng(7)
    imgs = rng.integers(0, 256, size=(24, 4, 4, 3), dtype=np.uint8)
    y = rng.integers(0, 3, size=24)
    res = cross_validate_knn(imgs, y, 3, metrics="manhattan", n_folds=3)
    assert res.metrics == ("l1",) and res.ks.tolist() == [3]
    flat = cross_validate_knn(imgs.reshape(24, -1), y, [3], metrics=["l1"], n_folds=3)
    np.testing.assert_array_equal(res.fold_accuracies[("l1", 3)], flat.fold_accuracies[("l1", 3)])


# --------------------------------------------------------------------------- search
class _ToyLinear(BaseEstimator):
    """A test double with the linear models' parameters: its accuracy depends only on
    (learning_rate, reg) through a known formula, so the search logic can be checked."""

    def __init__(self, learning_rate=1e-3, reg=0.0, n_iters=10, seed=None):
        self.learning_rate = learning_rate
        self.reg = reg
        self.n_iters = n_iters
        self.seed = seed

    def fit(self, X, y):
        self.quality_ = -abs(np.log10(self.learning_rate) + 2) - abs(self.reg - 0.1)
        self.loss_history_ = [10.0, 1.0 - self.quality_]
        self.fitted_seed_ = self.seed
        return self

    def score(self, X, y):
        return float(1.0 / (1.0 + abs(self.quality_)))


def test_search_grid_tries_every_pair_and_picks_the_best():
    X, y = np.zeros((10, 2)), np.arange(10) % 2
    grid = {"learning_rate": [1e-3, 1e-2, 1e-1], "reg": [0.0, 0.1]}
    res = search_linear(_ToyLinear(n_iters=7), X, y, X, y, grid=grid, progress=False)
    assert list(res.results) == [(lr, reg) for lr in grid["learning_rate"] for reg in grid["reg"]]
    assert res.best_params_ == {"learning_rate": 1e-2, "reg": 0.1}
    assert res.best_val_accuracy_ == 1.0
    assert res.best_model_.n_iters == 7 and res.best_model_.learning_rate == 1e-2
    tr, va, loss = res.results[(1e-1, 0.0)]
    assert va == pytest.approx(1 / 2.1) and loss == pytest.approx(2.1)
    results, best = res  # unpacks like the notebooks' (results, best_model)
    assert results is res.results and best is res.best_model_
    assert "*" in res.table()


def test_search_default_grid_scales_learning_rates_with_the_data():
    rng = np.random.default_rng(10)
    X = rng.normal(size=(40, 16))
    y = np.arange(40) % 2
    mean_sq = np.mean(np.sum(X**2, axis=1))
    grid = default_linear_grid(X)
    np.testing.assert_allclose(
        grid["learning_rate"], [0.5 / mean_sq, 2 / mean_sq, 8 / mean_sq], rtol=0.05
    )
    assert grid["reg"] == [1e-4, 1e-3, 1e-2]
    res = search_linear(_ToyLinear(), X, y, X, y, progress=False)
    assert list(res.results) == [(lr, r) for lr in grid["learning_rate"] for r in grid["reg"]]
    # a key left out of grid takes the default values
    res = search_linear(_ToyLinear(), X, y, X, y, grid={"reg": [0.5]}, progress=False)
    assert [k[0] for k in res.results] == grid["learning_rate"]
    # pixels 0..255: the scale follows (the lectures' ~1e-7 on raw CIFAR pixels)
    pixels = np.full((5, 3072), 128, dtype=np.uint8)
    assert default_linear_grid(pixels)["learning_rate"][0] == pytest.approx(
        0.5 / (3072 * 128**2), rel=0.05
    )


def test_search_random_is_log_uniform_in_range_and_seeded():
    X, y = np.zeros((10, 2)), np.arange(10) % 2
    grid = {"learning_rate": [1e-6, 1e-2], "reg": [1e-3, 1e3]}
    a = search_linear(_ToyLinear(), X, y, X, y, grid=grid, n_random=200, seed=5, progress=False)
    b = search_linear(_ToyLinear(), X, y, X, y, grid=grid, n_random=200, seed=5, progress=False)
    assert list(a.results) == list(b.results)
    assert a.best_model_.fitted_seed_ == b.best_model_.fitted_seed_ is not None
    lrs = np.log10([k[0] for k in a.results])
    regs = np.log10([k[1] for k in a.results])
    assert lrs.min() >= -6 and lrs.max() <= -2 and regs.min() >= -3 and regs.max() <= 3
    # log-uniform: about half of the draws below the geometric midpoint
    assert 0.35 < np.mean(lrs < -4) < 0.65 and 0.35 < np.mean(regs < 0) < 0.65


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"grid": {"lr": [1]}}, ValueError, "unknown key"),
        ({"grid": [1e-3]}, TypeError, "grid must be a dict"),
        ({"grid": {"learning_rate": []}}, ValueError, "must hold at least one value"),
        ({"grid": {"learning_rate": [-1.0]}}, ValueError, "must be > 0"),
        ({"grid": {"reg": [-1.0]}}, ValueError, "must be >= 0"),
        ({"n_random": 0}, ValueError, "n_random must be >= 1"),
        ({"grid": {"reg": [0.0, 1.0]}, "n_random": 3}, ValueError, "log-uniformly"),
    ],
)
def test_search_errors(kwargs, exc, match):
    X, y = np.zeros((10, 2)), np.arange(10) % 2
    with pytest.raises(exc, match=match):
        search_linear(_ToyLinear(), X, y, X, y, progress=False, **kwargs)


def test_search_rejects_non_estimators_and_mismatched_data():
    X, y = np.zeros((10, 2)), np.arange(10) % 2
    with pytest.raises(TypeError, match="model must be an estimator"):
        search_linear(object(), X, y, X, y, grid={"learning_rate": [1], "reg": [0]})
    with pytest.raises(ValueError, match="X_train has 2 features but X_val has 3"):
        search_linear(_ToyLinear(), X, y, np.zeros((4, 3)), y[:4])
    with pytest.raises(ValueError, match="y_val has 3 labels"):
        search_linear(_ToyLinear(), X, y, X[:4], y[:3])


@pytest.mark.parametrize("name", ["LinearSVM", "Softmax"])
def test_search_with_the_real_linear_models(name):
    linear = pytest.importorskip("fastcls.linear")
    rng = np.random.default_rng(8)
    centres = rng.normal(scale=3.0, size=(3, 6))
    y = rng.integers(0, 3, size=240)
    X = (centres[y] + rng.normal(size=(240, 6))).astype(np.float32)
    model = getattr(linear, name)(n_iters=60, batch_size=64)
    grid = {"learning_rate": [1e-3, 1e-1], "reg": [1e-4, 1e-2]}
    res = search_linear(model, X[:180], y[:180], X[180:], y[180:], grid=grid, seed=0)
    assert len(res.results) == 4
    assert res.best_val_accuracy_ == max(v for _, v, _ in res.results.values())
    assert res.best_val_accuracy_ > 0.8
    assert res.best_model_.score(X[180:], y[180:]) == res.best_val_accuracy_
    assert all(np.isfinite(loss) for _, _, loss in res.results.values())
    again = search_linear(model, X[:180], y[:180], X[180:], y[180:], grid=grid, seed=0)
    assert again.results == res.results  # deterministic with a seed
    assert model.get_params()["learning_rate"] not in (None,)  # the model is untouched


# --------------------------------------------------------------------------- progress
def test_progress_writes_only_when_enabled():
    import io

    buf = io.StringIO()
    with Progress(4, "work", enabled=True, stream=buf) as bar:
        for _ in range(4):
            bar.update()
    text = buf.getvalue()  # not a terminal: one plain line per step, no \r
    assert text.count("\n") == 4 and "work: 4/4 in" in text and "\r" not in text
    quiet = io.StringIO()
    with Progress(4, "work", stream=quiet) as bar:  # StringIO is not a terminal
        bar.update(4)
    assert quiet.getvalue() == ""


def test_sklearn_gridsearchcv_tunes_our_linear_models():
    sk_ms = pytest.importorskip("sklearn.model_selection")
    linear = pytest.importorskip("fastcls.linear")
    rng = np.random.default_rng(9)
    centres = rng.normal(scale=3.0, size=(3, 5))
    y = rng.integers(0, 3, size=150)
    X = (centres[y] + rng.normal(size=(150, 5))).astype(np.float32)
    grid = sk_ms.GridSearchCV(
        linear.Softmax(n_iters=40, seed=0),
        {"learning_rate": [1e-3, 1e-1], "reg": [1e-4]},
        cv=sk_ms.KFold(3),
    ).fit(X, y)
    assert grid.best_params_["learning_rate"] in (1e-3, 1e-1)
    assert grid.best_estimator_.n_iters == 40
    assert grid.best_score_ > 0.8


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.float64])
def test_cv_symmetric_pairs_equal_per_fold_search(shuffle, dtype, monkeypatch):
    """Each fold pair's distances computed once and used both ways: the same fold
    accuracies as searching every fold against the others (ties, both weightings)."""
    from fastcls import model_selection
    from fastcls._config import override

    calls = []
    real = model_selection._symmetric_neighbours
    monkeypatch.setattr(
        model_selection, "_symmetric_neighbours", lambda *a: calls.append(1) or real(*a)
    )

    rng = np.random.default_rng(3)
    X, y = _tied_data(rng, 90, 70, 3, 3, np.uint8, duplicates=12)  # 70: vector paths + tail
    X = X.astype(dtype)
    ks = [1, 2, 5, 9, 20]
    for weights in ("uniform", "distance"):
        kw = dict(metrics=("l1", "l2", "sqeuclidean"), n_folds=4, weights=weights)
        kw.update(shuffle=shuffle, seed=5)
        sym = cross_validate_knn(X, y, ks, **kw)
        with override(cv_symmetric_pairs=False):
            per_fold = cross_validate_knn(X, y, ks, **kw)
        for key, acc in per_fold.fold_accuracies.items():
            np.testing.assert_array_equal(sym.fold_accuracies[key], acc, err_msg=str(key))
    assert len(calls) == 6  # 3 metrics x 2 weightings, symmetric runs only
