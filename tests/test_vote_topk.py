"""Vote and top-k merge kernels against their NumPy references."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastcls.kernels.topk import (
    merge_sorted_topk,
    merge_sorted_topk_serial,
    merge_topk,
    new_topk,
    use_block_selection,
)
from fastcls.kernels.vote import argmax_rows, majority_vote_all_k, vote_proba
from fastcls.reference.knn import knn_predict_reference, knn_vote_reference


@st.composite
def neighbour_lists(draw):
    nq = draw(st.integers(1, 6))
    k = draw(st.integers(1, 7))
    c = draw(st.integers(1, 4))
    labels = draw(hnp.arrays(np.int64, (nq, k), elements=st.integers(0, c - 1)))
    # few distinct distance values -> many ties, zeros included
    dist = draw(hnp.arrays(np.float64, (nq, k), elements=st.sampled_from([0.0, 0.5, 1.0, 2.0])))
    return labels, np.sort(dist, axis=1), c


@given(neighbour_lists(), st.sampled_from(["uniform", "distance"]))
def test_vote_proba_matches_reference(data, weights):
    labels, dist, c = data
    got = vote_proba(labels, dist, c, weights == "distance")
    np.testing.assert_allclose(got, knn_vote_reference(labels, dist, c, weights), rtol=1e-12)


@given(neighbour_lists())
def test_majority_vote_all_k_matches_per_k_reference(data):
    labels, _, c = data
    k_max = labels.shape[1]
    ks = np.arange(1, k_max + 1)
    got = majority_vote_all_k(labels, ks, c)
    # the reference votes from a distance matrix: neighbours j at distance j
    n = labels.shape[0]
    for t, k in enumerate(ks):
        for q in range(n):
            dists = np.arange(k_max, dtype=float)[None, :]
            expect = knn_predict_reference(dists, labels[q], k)[0]
            assert got[t, q] == expect
        uniform = argmax_rows(vote_proba(labels[:, :k], np.ones((n, k)), c, False))
        np.testing.assert_array_equal(got[t], uniform)


@st.composite
def topk_pairs(draw):
    nq = draw(st.integers(1, 4))
    k = draw(st.integers(1, 6))
    n = draw(st.integers(1, 12))
    d = draw(hnp.arrays(np.float64, (nq, n), elements=st.sampled_from([0.0, 1.0, 2.0, 3.0])))
    split = draw(st.integers(0, n))
    return d, k, split


@given(topk_pairs())
def test_merge_topk_equals_stable_sort_of_union(data):
    d, k, split = data
    nq, n = d.shape

    def topk_of(cols):
        bd, bi = new_topk(nq, k)
        for q in range(nq):
            order = sorted(cols, key=lambda j: (d[q, j], j))[:k]
            bd[q, : len(order)] = d[q, order]
            bi[q, : len(order)] = order
        return bd, bi

    # merge the two halves in the "wrong" order (higher indices first)
    bd, bi = topk_of(list(range(split, n)))
    od, oi = topk_of(list(range(split)))
    merge_topk(bd, bi, od, oi)
    ed, ei = topk_of(list(range(n)))
    np.testing.assert_array_equal(bi, ei)
    np.testing.assert_array_equal(bd, ed)


# --------------------------------------------------------------------------- large k
@st.composite
def sorted_lists(draw):
    """Two disjoint index sets with few distinct distances, as sorted top-k lists."""
    nq = draw(st.integers(1, 4))
    n = draw(st.integers(1, 14))
    k = draw(st.integers(1, n + 2))
    ko = draw(st.integers(1, n + 2))
    d = draw(hnp.arrays(np.float64, (nq, n), elements=st.sampled_from([0.0, 1.0, 2.0, 3.0])))
    mine = draw(hnp.arrays(np.bool_, n))
    return d, k, ko, mine


def _topk_of(d, cols, k):
    nq = d.shape[0]
    bd, bi = new_topk(nq, k)
    for q in range(nq):
        order = sorted(cols, key=lambda j: (d[q, j], j))[:k]
        bd[q, : len(order)] = d[q, order]
        bi[q, : len(order)] = order
    return bd, bi


@given(sorted_lists())
def test_merge_sorted_topk_equals_stable_sort_of_union(data):
    """Linear merge: any split of the rows, lists shorter than k, empty slots."""
    d, k, ko, mine = data
    n = d.shape[1]
    bd, bi = _topk_of(d, [j for j in range(n) if mine[j]], k)
    od, oi = _topk_of(d, [j for j in range(n) if not mine[j]], ko)
    expect = []
    for q in range(d.shape[0]):  # the k first of the two lists' union, by (distance, index)
        kept = [int(j) for j in np.concatenate([bi[q], oi[q]]) if j >= 0]
        expect.append(_topk_of(d[q : q + 1], kept, k))
    sd, si = bd.copy(), bi.copy()
    merge_sorted_topk(bd, bi, od, oi)
    merge_sorted_topk_serial(sd, si, od, oi)  # the serial twin: the same rows
    for got_d, got_i in ((bd, bi), (sd, si)):
        np.testing.assert_array_equal(got_i, np.concatenate([e[1] for e in expect]))
        np.testing.assert_array_equal(got_d, np.concatenate([e[0] for e in expect]))


def test_block_selection_choice():
    from fastcls._config import override

    assert use_block_selection(40000, 40000)  # the case that took 27.5 s
    assert use_block_selection(5000, 50000)
    assert not use_block_selection(10, 10**6)
    assert not use_block_selection(300, 10**6)
    with override(knn_selection="insert"):
        assert not use_block_selection(40000, 40000)
    with override(knn_selection="blocks"):
        assert use_block_selection(1, 10)
    with override(knn_selection="heap"), pytest.raises(ValueError, match="knn_selection"):
        use_block_selection(1, 10)


@pytest.mark.parametrize("metric", ["l1", "l2", "sqeuclidean"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_block_selection_equals_insertion_and_reference(metric, dtype):
    """Large k through the API: identical to sorted insertion and to the reference,
    ties (duplicate rows) in index order, k up to the number of rows."""
    import fastcls
    from fastcls._config import override
    from fastcls.reference import kneighbors_reference

    rng = np.random.default_rng(5)
    X = rng.integers(0, 4, (300, 9)).astype(dtype)  # few values: many exact ties
    X[100:160] = X[0]
    Q = np.ascontiguousarray(X[[0, 5, 7]])
    if dtype != np.uint8:
        Q[1] += dtype(0.5)
    for k in (64, 150, 300):
        dr, ir = kneighbors_reference(Q, X, k, metric)
        runs = {}
        for mode in ("insert", "blocks"):
            with override(knn_selection=mode):
                runs[mode] = fastcls.kneighbors(Q, X, k, metric, train_tile=97)
        for d, i in runs.values():
            np.testing.assert_array_equal(i, ir)
            np.testing.assert_allclose(d, dr, rtol=1e-12, atol=0)
        np.testing.assert_array_equal(runs["blocks"][0], runs["insert"][0])
