"""Public k-NN API: KNearestNeighbor, kneighbors, pairwise_distances."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastcls
from fastcls.reference import (
    kneighbors_reference,
    knn_predict_reference,
    knn_vote_reference,
    pairwise_distances_reference,
)

METRICS = ["l1", "l2", "sqeuclidean"]


@st.composite
def knn_problem(draw):
    """Small problems with many ties: few distinct pixel values, duplicate rows."""
    d = draw(st.integers(1, 40))
    n = draw(st.integers(1, 30))
    nq = draw(st.integers(1, 8))
    values = st.sampled_from([0, 1, 2, 254, 255])
    X = draw(hnp.arrays(np.uint8, (n, d), elements=values))
    if n > 1 and draw(st.booleans()):
        X[-1] = X[0]  # a duplicate row
    Q = draw(hnp.arrays(np.uint8, (nq, d), elements=values))
    k = draw(st.integers(1, n))
    dtype = draw(st.sampled_from([np.uint8, np.float32, np.float64]))
    return Q.astype(dtype), X.astype(dtype), k


@given(knn_problem(), st.sampled_from(METRICS), st.sampled_from(["numba", "numpy"]))
def test_kneighbors_equals_float64_reference(problem, metric, backend):
    Q, X, k = problem
    d, i = fastcls.kneighbors(Q, X, k, metric, backend=backend)
    dr, ir = kneighbors_reference(Q, X, k, metric)
    np.testing.assert_array_equal(i, ir)
    np.testing.assert_allclose(d, dr, rtol=1e-12, atol=0)
    assert d.dtype == np.float64 and i.dtype == np.int64


@given(knn_problem(), st.sampled_from(METRICS))
def test_pairwise_distances_equal_reference(problem, metric):
    Q, X, _ = problem
    got = fastcls.pairwise_distances(Q, X, metric)
    expect = pairwise_distances_reference(Q, X, metric)
    rtol = 1e-6 if Q.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, expect, rtol=rtol, atol=1e-3 if Q.dtype == np.float32 else 0)
    assert got.dtype == (np.float32 if Q.dtype == np.float32 else np.float64)


def test_pairwise_defaults_to_self_and_uint8_is_exact():
    X = np.array([[0, 255], [255, 0]], np.uint8)
    np.testing.assert_array_equal(fastcls.pairwise_distances(X, metric="l1"), [[0, 510], [510, 0]])
    np.testing.assert_array_equal(
        fastcls.pairwise_distances(X, metric="sqeuclidean"), [[0, 130050], [130050, 0]]
    )


@pytest.mark.parametrize("metric", METRICS)
def test_results_do_not_depend_on_train_tile_or_threads(metric):
    rng = np.random.default_rng(1)
    X = rng.integers(0, 4, (300, 17)).astype(np.uint8)  # many exact ties
    Q = rng.integers(0, 4, (40, 17)).astype(np.uint8)
    base = fastcls.kneighbors(Q, X, 7, metric)
    for tile in (1, 7, 64, 299):
        for n in (1, 2):
            with fastcls.num_threads(n):
                d, i = fastcls.kneighbors(Q, X, 7, metric, train_tile=tile)
            np.testing.assert_array_equal(i, base[1])
            np.testing.assert_array_equal(d, base[0])


def test_uint8_equals_float64_on_same_values():
    rng = np.random.default_rng(2)
    X = rng.integers(0, 256, (200, 50)).astype(np.uint8)
    Q = rng.integers(0, 256, (20, 50)).astype(np.uint8)
    for metric in METRICS:
        a = fastcls.kneighbors(Q, X, 5, metric)
        b = fastcls.kneighbors(Q.astype(np.float64), X.astype(np.float64), 5, metric)
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(a[0], b[0])


# ----------------------------------------------------------------- classifier
@pytest.fixture
def blobs():
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0], [10, 10], [0, 10]], float)
    y = rng.integers(0, 3, 120)
    X = centers[y] + rng.normal(size=(120, 2))
    return X, y


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("k", [1, 3, 8])
def test_predict_matches_lecture_reference(blobs, metric, k):
    X, y = blobs
    Xtr, ytr, Xte = X[:90], y[:90], X[90:]
    clf = fastcls.KNearestNeighbor(k=k, metric=metric).fit(Xtr, ytr)
    dists = pairwise_distances_reference(Xte, Xtr, metric)
    np.testing.assert_array_equal(clf.predict(Xte), knn_predict_reference(dists, ytr, k))
    assert clf.score(Xte, y[90:]) > 0.9


def test_numpy_backend_equals_numba(blobs):
    X, y = blobs
    a = fastcls.KNearestNeighbor(k=5, backend="numba").fit(X, y)
    b = fastcls.KNearestNeighbor(k=5, backend="numpy").fit(X, y)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X))


def test_vote_tie_goes_to_smallest_label():
    X = np.array([[0.0], [1.0], [-1.0], [2.0]])
    clf = fastcls.KNearestNeighbor(k=2, metric="l1").fit(X, [7, 3, 3, 7])
    # neighbours of 0.1: index 0 (label 7) and 1 (label 3): one vote each -> 3
    assert clf.predict([[0.1]]).tolist() == [3]


def test_string_labels_and_image_input():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (12, 4, 4, 3)).astype(np.uint8)
    labels = np.array(["cat", "dog", "ship"] * 4)
    clf = fastcls.KNearestNeighbor(k=1, metric="l1").fit(imgs, labels)
    assert clf.n_features_in_ == 48
    assert clf.classes_.tolist() == ["cat", "dog", "ship"]
    np.testing.assert_array_equal(clf.predict(imgs), labels)
    assert clf.score(imgs, labels) == 1.0


def test_distance_weights_with_exact_matches():
    X = np.array([[0.0], [0.0], [1.0], [1.1]])
    y = np.array([1, 2, 0, 0])
    clf = fastcls.KNearestNeighbor(k=4, weights="distance").fit(X, y)
    p = clf.predict_proba([[0.0], [0.9]])
    # exact matches (distance 0) take the whole vote, shared equally
    np.testing.assert_allclose(p[0], [0.0, 0.5, 0.5])
    assert np.isfinite(p).all()
    d, i = clf.kneighbors([[0.9]])
    np.testing.assert_allclose(p[1], knn_vote_reference(y[i], d, 3, "distance")[0])
    assert clf.predict([[0.9]])[0] == 0


def test_kneighbors_method_and_params(blobs):
    X, y = blobs
    clf = fastcls.KNearestNeighbor(k=3).fit(X, y)
    idx = clf.kneighbors(X[:5], k=2, return_distance=False)
    assert idx.shape == (5, 2)
    assert (idx[:, 0] == np.arange(5)).all()  # each point is its own nearest neighbour
    assert clf.get_params() == {
        "backend": "numba",
        "efSearch": None,
        "index": "Flat",
        "k": 3,
        "metric": "l2",
        "n_jobs": None,
        "nprobe": None,
        "weights": "uniform",
    }
    assert clf.set_params(k=5).k == 5
    assert "k=5" in repr(clf)
    with pytest.raises(ValueError, match="Invalid parameter 'kk'"):
        clf.set_params(kk=1)


def test_memmap_training_data_is_not_copied(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.integers(0, 256, (100, 8)).astype(np.uint8)
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.uint8, shape=X.shape)
    mm[:] = X
    mm.flush()
    ro = np.load(tmp_path / "x.npy", mmap_mode="r")
    clf = fastcls.KNearestNeighbor(k=3, metric="l1").fit(ro, np.arange(100) % 3)
    assert isinstance(clf._index.X, np.memmap)
    d, i = fastcls.kneighbors(X[:10], ro, 3, "l1", train_tile=16)
    dr, ir = kneighbors_reference(X[:10], X, 3, "l1")
    np.testing.assert_array_equal(i, ir)


# ----------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"k": 0}, ValueError, "k must be >= 1"),
        ({"k": 2.5}, TypeError, "k must be an integer"),
        ({"k": 50}, ValueError, r"k=50 is larger than the number of training samples \(20\)"),
        ({"metric": "cosine"}, ValueError, "metric must be one of"),
        ({"metric": 3}, TypeError, "metric must be a string"),
        ({"weights": "inverse"}, ValueError, "weights must be one of"),
        ({"backend": "gpu"}, ValueError, "backend must be one of"),
        ({"n_jobs": 0}, ValueError, "n_jobs must be None, -1 or a positive integer"),
    ],
)
def test_bad_parameters_raise_at_fit_or_predict(kwargs, exc, match):
    X = np.zeros((20, 3))
    y = np.arange(20) % 2
    clf = fastcls.KNearestNeighbor(**kwargs)
    with pytest.raises(exc, match=match):
        clf.fit(X, y)
        clf.predict(X)


def test_predict_before_fit():
    with pytest.raises(fastcls.NotFittedError, match="not fitted yet"):
        fastcls.KNearestNeighbor().predict(np.zeros((2, 2)))


def test_feature_count_mismatch():
    clf = fastcls.KNearestNeighbor().fit(np.zeros((4, 3)), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="X has 2 features, but KNearestNeighbor is expecting 3"):
        clf.predict(np.zeros((1, 2)))


@pytest.mark.parametrize(
    "Q, X, k, metric, exc, match",
    [
        (np.zeros((2, 3)), np.zeros((4, 2)), 1, "l2", ValueError, "Q has 3 features but X has 2"),
        (np.zeros((2, 3)), np.zeros((0, 3)), 1, "l2", ValueError, r"X has 0 sample\(s\)"),
        (np.zeros((0, 3)), np.zeros((4, 3)), 1, "l2", ValueError, r"Q has 0 sample\(s\)"),
        (np.zeros(3), np.zeros((4, 3)), 1, "l2", ValueError, "Q must be 2-D"),
        (np.full((1, 3), np.nan), np.zeros((4, 3)), 1, "l2", ValueError, "Q contains NaN"),
        (np.zeros((1, 3)), np.full((4, 3), np.inf), 1, "l2", ValueError, "X contains infinity"),
        (np.zeros((1, 3)), np.zeros((4, 3)), 5, "l1", ValueError, "k=5 is larger"),
        (np.zeros((1, 3)), np.zeros((4, 3)), -1, "l1", ValueError, "k must be >= 1"),
        (np.zeros((1, 3)), np.zeros((4, 3)), 1, "cos", ValueError, "metric must be one of"),
        (np.array([["a", "b"]]), np.zeros((4, 2)), 1, "l2", TypeError, "Q must have a numeric"),
        (np.zeros((1, 2), complex), np.zeros((4, 2)), 1, "l2", ValueError, "Complex data"),
        (np.full((1, 2), 1e200), np.zeros((4, 2)), 1, "l2", ValueError, "magnitude 1e\\+200"),
    ],
)
def test_kneighbors_bad_inputs(Q, X, k, metric, exc, match):
    with pytest.raises(exc, match=match):
        fastcls.kneighbors(Q, X, k, metric)


@pytest.mark.parametrize(
    "y, exc, match",
    [
        (np.arange(3), ValueError, "y has 3 labels but X has 4 samples"),
        (np.zeros((4, 2)), ValueError, "y must be 1-D"),
        (np.array([0.5, 1, 2, 3]), ValueError, "continuous"),
        (np.array([0, 1, np.nan, 1]), ValueError, "NaN"),
        (None, ValueError, "requires y to be passed"),
    ],
)
def test_bad_labels(y, exc, match):
    with pytest.raises(exc, match=match):
        fastcls.KNearestNeighbor().fit(np.zeros((4, 2)), y)


def test_integer_dtypes_are_converted_exactly():
    X16 = np.array([[0, 300], [70000, 1]], dtype=np.int64)
    d, i = fastcls.kneighbors(X16, X16, 2, "l1")
    assert d[0, 1] == 70000 + 299
    with pytest.raises(ValueError, match="too large to convert to float64 exactly"):
        fastcls.kneighbors(np.array([[2**60]]), np.array([[0]]), 1)


def test_progress_bar_counts_training_tiles(capsys):
    rng = np.random.default_rng(4)
    X = rng.integers(0, 256, (100, 8)).astype(np.uint8)
    d, i = fastcls.kneighbors(X[:5], X, 2, "l1", train_tile=40, progress=True)
    err = capsys.readouterr().err
    assert "k-NN search (l1)" in err and "3/3" in err
    fastcls.kneighbors(X[:5], X, 2, "l1", train_tile=40)  # off by default
    assert capsys.readouterr().err == ""
    with pytest.raises(TypeError, match="takes no option"):
        fastcls.kneighbors(X[:5], X, 2, "l1", backend="numpy", progress=True)
