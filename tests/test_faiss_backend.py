"""FAISS backend: Flat equals the numba search, approximate indexes reach their recall,
recall_at_k, search parameters, conversions, threads, and the missing-extra error."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastcls
from fastcls.backends.faiss import recall_at_k
from fastcls.reference.knn import kneighbors_reference, pairwise_distances_reference


@pytest.fixture(scope="module")
def faiss():
    return pytest.importorskip("faiss")


@pytest.fixture(scope="module")
def clustered():
    """2000 points in 20 well separated clusters (D=16) and 100 queries near them."""
    rng = np.random.default_rng(7)
    centres = rng.normal(0, 10, (20, 16))
    X = (centres[rng.integers(0, 20, 2000)] + rng.normal(0, 1, (2000, 16))).astype(np.float32)
    Q = (centres[rng.integers(0, 20, 100)] + rng.normal(0, 1, (100, 16))).astype(np.float32)
    return X, Q


def assert_same_neighbours(d_ref, i_ref, d, i, Q, X, metric, rtol):
    """Distances equal within ``rtol``; neighbour sets equal except among near-ties at
    the k-th distance; each returned distance is the true distance of its index."""
    np.testing.assert_allclose(d, d_ref, rtol=rtol, atol=rtol)
    for q in range(d.shape[0]):
        true = pairwise_distances_reference(Q[q : q + 1], X[i[q]], metric)[0]
        np.testing.assert_allclose(d[q], true, rtol=rtol, atol=rtol)
        kth = d_ref[q, -1]
        margin = rtol * max(1.0, kth)
        sure = set(i_ref[q][d_ref[q] < kth - margin])
        assert sure <= set(i[q]), (q, sure, i[q])


uint8_rows = st.integers(1, 6).flatmap(
    lambda d: st.tuples(
        st.integers(1, 8).map(lambda n: (n, d)),
        st.integers(2, 40).map(lambda n: (n, d)),
        st.sampled_from([2, 4, 256]),  # tiny ranges give many ties and duplicates
        st.integers(0, 2**32 - 1),
    )
)


@given(uint8_rows, st.sampled_from(["l1", "l2", "sqeuclidean"]), st.integers(1, 5))
def test_flat_uint8_equals_numba_exactly(faiss, case, metric, k):
    # small integer data: FAISS's float32 distances are exact, so even tie order matches
    qshape, xshape, hi, seed = case
    rng = np.random.default_rng(seed)
    Q = rng.integers(0, hi, qshape).astype(np.uint8)
    X = rng.integers(0, hi, xshape).astype(np.uint8)
    k = min(k, X.shape[0])
    d0, i0 = fastcls.kneighbors(Q, X, k, metric)
    d1, i1 = fastcls.kneighbors(Q, X, k, metric, backend="faiss")
    assert d1.dtype == np.float64 and i1.dtype == np.int64
    np.testing.assert_array_equal(i1, i0)
    np.testing.assert_allclose(d1, d0, rtol=1e-6)


@pytest.mark.parametrize("metric", ["l1", "l2", "sqeuclidean"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_flat_equals_numba_within_float32(faiss, metric, dtype):
    rng = np.random.default_rng(1)
    if dtype == np.uint8:
        Q = rng.integers(0, 256, (30, 48)).astype(np.uint8)
        X = rng.integers(0, 256, (400, 48)).astype(np.uint8)
        X[10] = X[11] = Q[3]  # duplicates of a query: a tie at distance 0
    else:
        Q = rng.normal(size=(30, 48)).astype(dtype)
        X = rng.normal(size=(400, 48)).astype(dtype)
        X[200:210] = X[0]  # duplicate rows
    d0, i0 = fastcls.kneighbors(Q, X, 10, metric)
    d1, i1 = fastcls.kneighbors(Q, X, 10, metric, backend="faiss", index="Flat")
    assert_same_neighbours(d0, i0, d1, i1, Q, X, metric, rtol=1e-4)
    if dtype == np.uint8:
        assert (i1[3, :2] == [10, 11]).all() and (d1[3, :2] == 0).all()


def test_l2_is_the_square_root_of_sqeuclidean(faiss, clustered):
    X, Q = clustered
    d2, i2 = fastcls.kneighbors(Q, X, 5, "l2", backend="faiss")
    ds, i_s = fastcls.kneighbors(Q, X, 5, "sqeuclidean", backend="faiss")
    np.testing.assert_array_equal(i2, i_s)
    np.testing.assert_allclose(d2, np.sqrt(ds), rtol=1e-7)
    d_ref, _ = kneighbors_reference(Q, X, 5, "l2")
    np.testing.assert_allclose(d2, d_ref, rtol=1e-4)


def test_ties_list_lower_index_first(faiss):
    X = np.zeros((6, 3), np.float32)  # every row at the same distance
    d, i = fastcls.kneighbors(np.ones((2, 3), np.float32), X, 6, "l1", backend="faiss")
    np.testing.assert_array_equal(i, np.tile(np.arange(6), (2, 1)))
    assert (d == 3).all()


@pytest.mark.parametrize(
    ("index", "params", "floor"),
    [
        ("IVF16,Flat", {"nprobe": 16}, 1.0),  # every list visited: exhaustive
        ("IVF16,Flat", {"nprobe": 4}, 0.9),
        ("HNSW32", {"efSearch": 128}, 0.95),
        ("IVF16,PQ8x4", {"nprobe": 16}, 0.3),
    ],
)
def test_approximate_indexes_reach_their_recall(faiss, clustered, index, params, floor):
    X, Q = clustered
    _, exact = fastcls.kneighbors(Q, X, 10, "l2")
    _, approx = fastcls.kneighbors(Q, X, 10, "l2", backend="faiss", index=index, **params)
    r = fastcls.recall_at_k(approx, exact)
    assert floor <= r <= 1.0, (index, params, r)


def test_recall_grows_with_nprobe(faiss, clustered):
    X, Q = clustered
    y = np.arange(X.shape[0]) % 3
    _, exact = fastcls.kneighbors(Q, X, 10, "l1")
    clf = fastcls.KNearestNeighbor(k=10, metric="l1", backend="faiss", index="IVF32,Flat")
    clf.fit(X, y)
    recalls = []
    for nprobe in (1, 4, 32):
        clf.set_params(nprobe=nprobe)
        recalls.append(recall_at_k(clf.kneighbors(Q, return_distance=False), exact))
    assert recalls[0] <= recalls[1] <= recalls[2] == 1.0, recalls


def test_unfound_slots_and_votes(faiss, clustered):
    # IVF with nprobe=1 and k larger than a list: missing slots are (inf, -1), last
    X, Q = clustered
    y = np.arange(X.shape[0]) % 4
    clf = fastcls.KNearestNeighbor(k=300, backend="faiss", index="IVF32,Flat", nprobe=1)
    d, i = clf.fit(X, y).kneighbors(Q)
    missing = i < 0
    assert missing.any()
    assert np.isinf(d[missing]).all()
    assert (np.diff(missing.astype(int), axis=1) >= 0).all()  # -1 only at the end of a row
    proba = clf.predict_proba(Q)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    q = int(np.flatnonzero(missing.any(axis=1))[0])
    found = i[q][i[q] >= 0]
    expected = np.bincount(y[found], minlength=4) / found.size
    np.testing.assert_allclose(proba[q], expected)


def test_classifier_flat_predicts_like_numba(faiss, clustered):
    X, Q = clustered
    y = np.array(["a", "b", "c"])[np.arange(X.shape[0]) % 3]
    for weights in ("uniform", "distance"):
        p0 = fastcls.KNearestNeighbor(k=7, weights=weights).fit(X, y).predict(Q)
        p1 = fastcls.KNearestNeighbor(k=7, weights=weights, backend="faiss").fit(X, y).predict(Q)
        np.testing.assert_array_equal(p1, p0)


def test_search_parameter_errors(faiss, clustered):
    X, Q = clustered
    with pytest.raises(ValueError, match="nprobe does not apply"):
        fastcls.kneighbors(Q, X, 3, backend="faiss", index="Flat", nprobe=4)
    with pytest.raises(ValueError, match="efSearch does not apply"):
        fastcls.kneighbors(Q, X, 3, backend="faiss", index="IVF8,Flat", efSearch=4)
    with pytest.raises(ValueError, match="could not build index 'NoSuchIndex'"):
        fastcls.kneighbors(Q, X, 3, backend="faiss", index="NoSuchIndex")
    with pytest.raises(ValueError, match="index must be a faiss index_factory string"):
        fastcls.kneighbors(Q, X, 3, backend="faiss", index="")
    with pytest.raises(TypeError, match="backend 'numba' takes no option"):
        fastcls.kneighbors(Q, X, 3, index="Flat")
    with pytest.raises(ValueError, match="nprobe must be >= 1"):
        fastcls.KNearestNeighbor(backend="faiss", nprobe=0).fit(X, np.zeros(len(X)))
    with pytest.raises(TypeError, match="efSearch must be an integer"):
        fastcls.KNearestNeighbor(backend="faiss", efSearch=1.5).fit(X, np.zeros(len(X)))


def test_one_thread_knob_governs_faiss(faiss):
    fastcls.backends.faiss.import_faiss()
    before = fastcls.get_num_threads()
    try:
        with fastcls.num_threads(1):
            assert faiss.omp_get_max_threads() == 1
        fastcls.set_num_threads(before)
        assert faiss.omp_get_max_threads() == before
    finally:
        fastcls.set_num_threads(before)


def test_results_do_not_depend_on_thread_count(faiss, clustered):
    X, Q = clustered
    a = fastcls.kneighbors(Q, X, 5, "l1", backend="faiss", n_jobs=1)
    b = fastcls.kneighbors(Q, X, 5, "l1", backend="faiss", n_jobs=-1)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])


def test_missing_faiss_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    X = np.eye(3, dtype=np.float32)
    with pytest.raises(ImportError, match=r"pip install fastcls\[faiss\]"):
        fastcls.kneighbors(X, X, 1, backend="faiss")
    with pytest.raises(ImportError, match=r"pip install fastcls\[faiss\]"):
        fastcls.KNearestNeighbor(backend="faiss").fit(X, [0, 1, 2])
    # the default backend does not need faiss
    assert fastcls.KNearestNeighbor().fit(X, [0, 1, 2]).predict(X).tolist() == [0, 1, 2]


# ------------------------------------------------------------------------ recall_at_k
def test_recall_at_k_hand_computed():
    approx = np.array([[0, 1, 2], [5, -1, -1], [9, 8, 7]])
    exact = np.array([[2, 1, 0], [5, 6, 7], [1, 2, 3]])
    assert recall_at_k(approx, exact) == pytest.approx((3 + 1 + 0) / 9)
    assert recall_at_k(approx, exact, k=1) == pytest.approx(1 / 3)  # only 5 == 5
    assert recall_at_k(np.array([[-1, -1]]), np.array([[-1, 0]])) == 0.0  # -1 never matches


@given(st.integers(1, 20), st.integers(1, 8), st.integers(0, 2**32 - 1))
def test_recall_at_k_properties(nq, k, seed):
    rng = np.random.default_rng(seed)
    exact = np.stack([rng.permutation(50)[:k] for _ in range(nq)])
    assert recall_at_k(exact, exact) == 1.0
    shuffled = np.stack([rng.permutation(row) for row in exact])
    assert recall_at_k(shuffled, exact) == 1.0  # order within the top k does not matter
    other = exact + 50  # disjoint indices
    assert recall_at_k(other, exact) == 0.0
    half = exact.copy()
    half[:, : k // 2] += 50
    assert recall_at_k(half, exact) == pytest.approx((k - k // 2) / k)


def test_recall_at_k_errors():
    with pytest.raises(ValueError, match="approx_indices must be 2-D"):
        recall_at_k(np.arange(3), np.zeros((3, 1), int))
    with pytest.raises(ValueError, match="has 2 queries but exact_indices has 3"):
        recall_at_k(np.zeros((2, 1), int), np.zeros((3, 1), int))
    with pytest.raises(TypeError, match="exact_indices must hold integer"):
        recall_at_k(np.zeros((2, 1), int), np.zeros((2, 1)))
    with pytest.raises(ValueError, match="k must be <= 2"):
        recall_at_k(np.zeros((2, 2), int), np.zeros((2, 5), int))
