"""Hostile inputs at the edges of the number range, and clear errors (issue 10).

Every numeric check compares against an independent float64 (or exact rational)
truth: the NumPy reference on data of ordinary magnitude, carried to extreme
magnitudes by exact power-of-two scaling, or ``fractions.Fraction`` arithmetic.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from fractions import Fraction

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastcls
from fastcls.kernels.vote import argmax_rows, vote_proba, weighted_vote_all_k
from fastcls.reference.knn import (
    kneighbors_reference,
    knn_vote_reference,
    pairwise_distances_reference,
)

F32_MAX = float(np.finfo(np.float32).max)


def _normal_rows(seed: int, n: int, d: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


# --------------------------------------------------------------------------- pairwise, float32
@pytest.mark.parametrize("metric", ["l2", "l1"])
@pytest.mark.parametrize("scale", [1e20, 1e-30, 1e30, 1e-40])
def test_pairwise_float32_extremes_are_right(metric, scale):
    # 1e20 apart: the square (1e40) overflows float32; 1e-30 apart: it (1e-60) underflows
    X = (_normal_rows(0, 7, 5) * scale).astype(np.float32)
    Y = (_normal_rows(1, 9, 5) * scale).astype(np.float32)
    got = fastcls.pairwise_distances(X, Y, metric)
    want = pairwise_distances_reference(X, Y, metric)  # float64 of the float32 values
    assert got.dtype == np.float32 and np.isfinite(got).all()
    rtol = 2e-7 if metric == "l2" else 5 * 6e-8 * X.shape[1]  # l1 sums in float32
    if scale < 1e-38:  # subnormal inputs: absolute resolution of float32 subnormals
        np.testing.assert_allclose(got, want, rtol=rtol, atol=2.0**-149 * 8)
    else:
        np.testing.assert_allclose(got, want, rtol=rtol)
    assert (got > 0).all()  # distinct rows never read as identical


@settings(max_examples=40, deadline=None)
@given(
    exponent=st.integers(-120, 110),
    n=st.integers(1, 6),
    m=st.integers(1, 6),
    d=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_pairwise_float32_l2_equals_float64_reference_at_any_magnitude(exponent, n, m, d, seed):
    rng = np.random.default_rng(seed)
    s = 2.0**exponent
    X = (rng.standard_normal((n, d)) * s).astype(np.float32)
    Y = (rng.standard_normal((m, d)) * s).astype(np.float32)
    got = fastcls.pairwise_distances(X, Y, "l2")
    want = pairwise_distances_reference(X, Y, "l2")
    # one rounding to float32 of a value computed in float64 (subnormals: absolute)
    np.testing.assert_allclose(got, want, rtol=2e-7, atol=2.0**-149 * 4)


def test_pairwise_float32_unrepresentable_results_raise():
    big = np.array([[3e38], [-3e38]], np.float32)  # l2 distance 6e38 > float32 max
    with pytest.raises(ValueError, match="float32's range.*float64"):
        fastcls.pairwise_distances(big, metric="l2")
    with pytest.raises(ValueError, match="float32's range"):
        fastcls.pairwise_distances(np.array([[0], [1e20]], np.float32), metric="sqeuclidean")
    with pytest.raises(ValueError, match="normal range"):
        fastcls.pairwise_distances(np.array([[0], [1e-30]], np.float32), metric="sqeuclidean")
    # the same data in float64 is fine
    np.testing.assert_allclose(
        fastcls.pairwise_distances(big.astype(np.float64), metric="l2"), [[0, 6e38], [6e38, 0]]
    )


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, max_side=5),
        elements=st.one_of(
            st.floats(0, 1e300),  # squares of float32 data reach 1e77; beyond: overflow
            st.floats(0, 1e-36),  # below float32's normal range, subnormals included
            st.sampled_from([0.0, 5e-324, F32_MAX, float(np.nextafter(F32_MAX, np.inf))]),
        ),
    ),
    st.booleans(),
)
def test_narrow_to_float32_kernel_matches_reference(src, take_sqrt):
    from fastcls.kernels.narrow import narrow_to_float32
    from fastcls.reference.knn import narrow_to_float32_reference

    dst = np.empty(src.shape, np.float32)
    n_over, n_under = narrow_to_float32(src, dst, take_sqrt)
    want, want_over, want_under = narrow_to_float32_reference(src, take_sqrt)
    np.testing.assert_array_equal(dst, want)  # one correctly rounded conversion
    assert (n_over, n_under) == (want_over, want_under)


# --------------------------------------------------------------------------- tiny float64 data
@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("metric", ["l2", "l1", "sqeuclidean"])
@pytest.mark.parametrize("exponent", [-565, -1000, -300, -256, 0])
def test_kneighbors_float64_tiny_data_is_ranked_right(backend, metric, exponent):
    # 1e-170 data: squared differences underflow float64; power-of-two scaling is exact,
    # so the truth is the reference on the unscaled data with distances times 2^e
    X = _normal_rows(2, 60, 4)
    Q = _normal_rows(3, 5, 4)
    s = 2.0**exponent
    d, i = fastcls.kneighbors(Q * s, X * s, 4, metric, backend=backend)
    dr, ir = kneighbors_reference(Q, X, 4, metric)
    np.testing.assert_array_equal(i, ir)
    factor = s * s if metric == "sqeuclidean" else s
    with np.errstate(under="ignore"):
        want = dr * s * s if metric == "sqeuclidean" else dr * s
    if metric == "sqeuclidean" and factor == 0.0:
        assert (d >= 0).all() and np.isfinite(d).all()  # true value below float64's range
    else:
        np.testing.assert_allclose(d, want, rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(exponent=st.integers(-1020, 0), seed=st.integers(0, 2**16), k=st.integers(1, 5))
def test_kneighbors_l2_is_scale_invariant_for_powers_of_two(exponent, seed, k):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((30, 3))
    Q = rng.standard_normal((4, 3))
    s = 2.0**exponent
    d, i = fastcls.kneighbors(Q * s, X * s, k, "l2")
    dr, ir = kneighbors_reference(Q, X, k, "l2")
    np.testing.assert_array_equal(i, ir)
    np.testing.assert_allclose(d, dr * s, rtol=1e-12)


def test_pairwise_float64_tiny_data_is_right():
    X, Y = _normal_rows(4, 6, 3), _normal_rows(5, 7, 3)
    s = 2.0**-600
    for metric in ("l2", "l1"):
        got = fastcls.pairwise_distances(X * s, Y * s, metric)
        np.testing.assert_allclose(got, pairwise_distances_reference(X, Y, metric) * s, rtol=1e-12)
    self_d = fastcls.pairwise_distances(X * s, metric="l2")
    np.testing.assert_allclose(self_d, pairwise_distances_reference(X, X, "l2") * s, rtol=1e-12)


def test_classifier_on_tiny_data_predicts_as_on_ordinary_data():
    rng = np.random.default_rng(6)
    X = rng.standard_normal((80, 4))
    y = rng.integers(0, 3, 80)
    Q = rng.standard_normal((20, 4))
    s = 2.0**-580
    for weights in ("uniform", "distance"):
        ordinary = fastcls.KNearestNeighbor(k=5, weights=weights).fit(X, y)
        tiny = fastcls.KNearestNeighbor(k=5, weights=weights).fit(X * s, y)
        np.testing.assert_array_equal(tiny.predict(Q * s), ordinary.predict(Q))
        np.testing.assert_allclose(tiny.predict_proba(Q * s), ordinary.predict_proba(Q), rtol=1e-12)


@pytest.mark.parametrize("scale", [1e20, 1e-30])
def test_kneighbors_float32_extremes_are_exact(scale):
    X = (_normal_rows(7, 300, 6) * scale).astype(np.float32)
    Q = (_normal_rows(8, 40, 6) * scale).astype(np.float32)
    for metric in ("l2", "l1", "sqeuclidean"):
        d, i = fastcls.kneighbors(Q, X, 5, metric)
        dr, ir = kneighbors_reference(Q, X, 5, metric)
        np.testing.assert_array_equal(i, ir)
        np.testing.assert_allclose(d, dr, rtol=1e-12)


# --------------------------------------------------------------------------- weighted vote
def _exact_shares(labels, dist, n_classes):
    """Vote shares in exact rational arithmetic (1/d, zeros only when present)."""
    out = np.zeros((labels.shape[0], n_classes))
    for q in range(labels.shape[0]):
        ds = [Fraction(float(v)) for v in dist[q]]
        zero = [v == 0 for v in ds]
        w = [Fraction(int(z)) for z in zero] if any(zero) else [1 / v for v in ds]
        total = sum(w)
        for lab, wj in zip(labels[q], w, strict=True):
            out[q, lab] += float(wj / total)
    return out


positive_distances = st.one_of(
    st.floats(min_value=5e-324, max_value=1e-300),  # subnormal and tiny
    st.floats(min_value=1e-3, max_value=1e3),
    st.just(0.0),
)


@settings(max_examples=80, deadline=None)
@given(
    hnp.arrays(np.float64, (3, 4), elements=positive_distances),
    hnp.arrays(np.int64, (3, 4), elements=st.integers(0, 2)),
)
def test_distance_vote_with_subnormal_distances_matches_exact_shares(dist, labels):
    dist = np.sort(dist, axis=1)
    got = vote_proba(labels, dist, 3, True)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-12)
    want = _exact_shares(labels, dist, 3)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(knn_vote_reference(labels, dist, 3, "distance"), want, rtol=1e-12)
    # the all-k vote agrees with the classifier's vote for every k
    ks = np.arange(1, 5)
    all_k = weighted_vote_all_k(labels, dist, ks, 3)
    for t, k in enumerate(ks):
        proba_k = vote_proba(labels[:, :k].copy(), dist[:, :k].copy(), 3, True)
        np.testing.assert_array_equal(all_k[t], argmax_rows(proba_k))


def test_distance_weighted_classifier_with_subnormal_distance():
    # L1 distance 5e-324 to the class-0 row: 1/d overflowed to inf, the vote was NaN
    X = np.array([[0.0], [1.0], [1.0]])
    clf = fastcls.KNearestNeighbor(k=3, metric="l1", weights="distance").fit(X, [0, 1, 1])
    Q = np.array([[5e-324]])
    proba = clf.predict_proba(Q)
    assert np.isfinite(proba).all() and proba[0, 0] == 1.0
    assert clf.predict(Q).tolist() == [0]
    # an exact match keeps its meaning: only the rows at distance 0 vote
    np.testing.assert_array_equal(clf.predict_proba(np.array([[1.0]])), [[0.0, 1.0]])


# --------------------------------------------------------------------------- FAISS
@pytest.fixture
def faiss():
    return pytest.importorskip("faiss")


@pytest.mark.parametrize("scale", [1e100, 1e30])
def test_faiss_refuses_training_data_beyond_float32_distances(faiss, scale):
    X = _normal_rows(9, 50, 4) * scale
    with pytest.raises(ValueError, match=r"X: values of magnitude.*backend='faiss'.*float32"):
        fastcls.KNearestNeighbor(backend="faiss").fit(X, np.arange(50) % 2)
    with pytest.raises(ValueError, match=r"X: values of magnitude"):
        fastcls.kneighbors(X[:2], X, 2, backend="faiss")


def test_faiss_refuses_training_data_whose_distances_underflow(faiss):
    X = _normal_rows(10, 50, 4) * 1e-30
    with pytest.raises(ValueError, match="underflow"):
        fastcls.KNearestNeighbor(backend="faiss").fit(X, np.arange(50) % 2)
    # all-zero rows are fine
    fastcls.KNearestNeighbor(backend="faiss").fit(np.zeros((5, 4)), np.arange(5) % 2)


def test_faiss_refuses_queries_beyond_float32_distances(faiss):
    X = _normal_rows(11, 50, 4)
    clf = fastcls.KNearestNeighbor(backend="faiss").fit(X, np.arange(50) % 2)
    with (
        pytest.raises(ValueError, match=r"the queries: values of magnitude up to \S+e\+100"),
        pytest.warns(fastcls.DataRangeWarning),  # another scale, warned before the search
    ):
        clf.predict(X[:3] * 1e100)
    assert clf.predict(X[:3]).shape == (3,)


@pytest.mark.parametrize("index", ["IVF4,PQ2", "IVF4,SQ8", "PQ2,RFlat", "SQ8", "PQ2", "RR4,Flat"])
def test_faiss_l1_with_quantised_indexes_is_refused_at_fit(faiss, index):
    X = np.random.default_rng(12).random((400, 4), dtype=np.float32)
    with pytest.raises(ValueError, match=r"cannot be used with metric='l1'.*'Flat'"):
        fastcls.KNearestNeighbor(metric="l1", backend="faiss", index=index).fit(
            X, np.arange(400) % 3
        )
    # the same index is fine with L2
    fastcls.KNearestNeighbor(metric="l2", backend="faiss", index=index).fit(X, np.arange(400) % 3)


def test_faiss_l1_hnsw_sq_is_refused_without_aborting_the_process(faiss):
    # faiss aborts the whole process (C++ terminate) when it trains HNSW-SQ for L1
    code = (
        "import numpy as np, fastcls\n"
        "X = np.random.default_rng(0).random((300, 4), dtype=np.float32)\n"
        "try:\n"
        "    fastcls.KNearestNeighbor(metric='l1', backend='faiss', index='HNSW8,SQ8')"
        ".fit(X, np.arange(300) % 2)\n"
        "except ValueError as e:\n"
        "    print('refused:', e)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "refused:" in run.stdout and "metric='l1'" in run.stdout


@pytest.mark.parametrize("index", ["Flat", "IVF4,Flat", "HNSW8"])
def test_faiss_l1_flat_indexes_return_l1_distances(faiss, index):
    rng = np.random.default_rng(13)
    X = rng.random((500, 6), dtype=np.float32)
    Q = rng.random((10, 6), dtype=np.float32)
    d, i = fastcls.kneighbors(Q, X, 4, "l1", backend="faiss", index=index)
    assert (i >= 0).all()
    brute = pairwise_distances_reference(Q, X, "l1")
    np.testing.assert_allclose(d, np.take_along_axis(brute, i, axis=1), rtol=1e-5)


# --------------------------------------------------------------------------- byte order, empties
@pytest.mark.parametrize("dtype", [">f8", ">f4", ">u2", ">i8", ">i4"])
def test_big_endian_arrays_give_the_native_results(dtype):
    rng = np.random.default_rng(14)
    X = rng.integers(0, 200, (40, 5)).astype(dtype)
    Q = rng.integers(0, 200, (6, 5)).astype(dtype)
    y = (np.arange(40) % 3).astype(">i8")
    native = X.astype(X.dtype.newbyteorder("="))
    Qn = Q.astype(Q.dtype.newbyteorder("="))
    got = fastcls.KNearestNeighbor(k=3).fit(X, y).predict(Q)
    want = fastcls.KNearestNeighbor(k=3).fit(native, y.astype(np.int64)).predict(Qn)
    np.testing.assert_array_equal(got, want)
    for metric in ("l1", "l2"):
        d, i = fastcls.kneighbors(Q, X, 3, metric)
        dr, ir = kneighbors_reference(Qn, native, 3, metric)
        np.testing.assert_array_equal(i, ir)
        np.testing.assert_allclose(d, dr, rtol=1e-6)
    np.testing.assert_allclose(
        fastcls.pairwise_distances(Q, X), pairwise_distances_reference(Qn, native), rtol=1e-6
    )
    svm = fastcls.LinearSVM(n_iters=3, seed=0)
    np.testing.assert_array_equal(
        svm.fit(X, y).predict(Q), fastcls.LinearSVM(n_iters=3, seed=0).fit(native, y).predict(Qn)
    )


def test_big_endian_images_and_lazy_rows():
    from fastcls.backends import LazyRows
    from fastcls.features import check_images

    imgs = np.random.default_rng(15).random((3, 4, 4, 3)).astype(">f4")
    out = check_images(imgs)
    assert out.dtype == np.float32 and out.dtype.isnative
    np.testing.assert_array_equal(out, imgs)

    class Rows:  # a row source (h5py-like) that stores big-endian floats
        def __init__(self, a):
            self.a, self.shape, self.dtype = a, a.shape, a.dtype

        def __getitem__(self, s):
            return self.a[s]

    X = np.random.default_rng(16).random((20, 3)).astype(">f8")
    rows = LazyRows(Rows(X))
    assert rows.dtype == np.float64
    np.testing.assert_array_equal(rows[0:20], X)


@pytest.mark.parametrize("shape", [(0, 8, 8), (0, 8, 8, 3)])
def test_empty_image_batch_names_the_argument(shape):
    empty = np.zeros(shape, np.uint8)
    X = np.zeros((4, *shape[1:]), np.uint8)
    with pytest.raises(ValueError, match=r"^X is an image batch of shape .*0 image"):
        fastcls.KNearestNeighbor().fit(empty, [])
    clf = fastcls.KNearestNeighbor().fit(X, [0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"^X is an image batch"):
        clf.predict(empty)
    with pytest.raises(ValueError, match=r"^Q is an image batch"):
        fastcls.kneighbors(empty, X, 1)
    with pytest.raises(ValueError, match=r"^X is an image batch"):
        fastcls.pairwise_distances(empty, X)
    with pytest.raises(ValueError, match=r"^X is an image batch"):
        fastcls.LinearSVM(n_iters=2).fit(empty, [])


# --------------------------------------------------------------------------- one image
def _estimators():
    return [
        fastcls.KNearestNeighbor(k=3),
        fastcls.LinearSVM(n_iters=5, seed=0),
        fastcls.Softmax(n_iters=5, seed=0),
    ]


@pytest.mark.parametrize("est", _estimators(), ids=lambda e: type(e).__name__)
def test_one_image_given_for_a_batch_says_pass_x_none(est):
    rng = np.random.default_rng(17)
    imgs = rng.integers(0, 256, (30, 6, 5, 3), dtype=np.uint8)
    est.fit(imgs, np.arange(30) % 3)
    with pytest.raises(ValueError, match=r"one image of the shape.*pass X\[None\]"):
        est.predict(imgs[0])
    assert est.predict(imgs[0][None]).shape == (1,)
    assert est.predict(imgs[:4]).shape == (4,)
    # a flattened batch of rows is accepted too
    np.testing.assert_array_equal(est.predict(imgs[:4].reshape(4, -1)), est.predict(imgs[:4]))
    # the same values in another layout (channels first) would compare the wrong pixels
    with pytest.raises(ValueError, match="fitted on images of shape"):
        est.predict(imgs[:4].reshape(4, 3, 6, 5))


@pytest.mark.parametrize("est", _estimators(), ids=lambda e: type(e).__name__)
def test_one_sample_given_to_a_model_fitted_on_rows(est):
    rng = np.random.default_rng(18)
    rows = rng.integers(0, 256, (30, 48), dtype=np.uint8)
    est.fit(rows, np.arange(30) % 3)
    with pytest.raises(ValueError, match=r"one sample \(48 values\).*pass X\[None\]"):
        est.predict(rows[0].reshape(4, 4, 3))
    with pytest.raises(ValueError, match=r"pass X\[None\].*Reshape your data"):
        est.predict(rows[0])
    with pytest.raises(ValueError, match="X has 24 features"):
        est.predict(rows[:4, :24])


def test_one_grayscale_image_is_recognised():
    imgs = np.random.default_rng(19).integers(0, 256, (20, 7, 7), dtype=np.uint8)
    clf = fastcls.KNearestNeighbor().fit(imgs, np.arange(20) % 2)
    with pytest.raises(ValueError, match="one image"):
        clf.predict(imgs[0])
    assert clf.predict(imgs[:1, :, :, None]).shape == (1,)


# --------------------------------------------------------------------------- query range
@pytest.mark.parametrize("est", _estimators(), ids=lambda e: type(e).__name__)
def test_queries_on_another_scale_warn(est):
    rng = np.random.default_rng(20)
    imgs = rng.integers(0, 256, (40, 4, 4, 3), dtype=np.uint8)
    est.fit(imgs, np.arange(40) % 4)
    with pytest.warns(
        fastcls.DataRangeWarning,
        match=r"values in \[0\.0\d+, 0\.99\d+\].*fitted on values in \[0, 255\]",
    ) as record:
        est.predict(imgs[:5] / 255.0)
    assert record[0].filename == __file__  # points at the caller, not at fastcls
    with warnings.catch_warnings():
        warnings.simplefilter("error", fastcls.DataRangeWarning)
        est.predict(imgs[:5])  # the training scale
        est.predict(np.full((1, 4, 4, 3), 7, np.uint8))  # one blank image: constant
        est.predict(imgs[:5].astype(np.float64))  # same values, another dtype


def test_queries_far_beyond_the_training_range_warn():
    rng = np.random.default_rng(21)
    X = rng.random((40, 6))  # fitted on [0, 1]
    clf = fastcls.KNearestNeighbor().fit(X, np.arange(40) % 2)
    with pytest.warns(fastcls.DataRangeWarning):
        clf.predict(X[:3] * 255)
    with warnings.catch_warnings():
        warnings.simplefilter("error", fastcls.DataRangeWarning)
        clf.predict(X[:3] * 1.5 - 0.2)  # a little outside is not another scale


@given(
    lo=st.floats(-1e6, 1e6),
    span=st.floats(1e-3, 1e6),
    a=st.floats(0, 1),
    b=st.floats(0, 1),
)
def test_range_rule_never_warns_for_queries_inside_a_fraction_or_more(lo, span, a, b):
    from fastcls._validation import RANGE_RATIO, query_range_warning

    q0, q1 = sorted((lo + a * span, lo + b * span))
    message = query_range_warning((q0, q1), (lo, lo + span))
    narrow = 0 < q1 - q0 <= span / RANGE_RATIO
    assert (message is not None) == narrow
