"""Vote and top-k merge kernels against their NumPy references."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastcls.kernels.topk import merge_topk, new_topk
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
