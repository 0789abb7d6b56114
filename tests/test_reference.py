"""The references agree with each other and follow the lecture's tie rules."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastcls.reference import knn as ref


@st.composite
def two_matrices(draw, max_rows=8, max_d=6):
    d = draw(st.integers(1, max_d))
    elems = st.integers(0, 255)
    A = draw(hnp.arrays(np.uint8, (draw(st.integers(1, max_rows)), d), elements=elems))
    B = draw(hnp.arrays(np.uint8, (draw(st.integers(1, max_rows)), d), elements=elems))
    return A, B


@given(two_matrices())
def test_l2_three_ways_agree(AB):
    A, B = AB
    two = ref.l2_distances_two_loops(A, B)
    np.testing.assert_allclose(ref.l2_distances_one_loop(A, B), two, rtol=1e-12)
    # the GEMM trick loses accuracy through cancellation: compare squared values absolutely
    np.testing.assert_allclose(ref.l2_distances_no_loops(A, B) ** 2, two**2, atol=1e-6)


@given(two_matrices())
def test_l1_three_ways_agree(AB):
    A, B = AB
    two = ref.l1_distances_two_loops(A, B)
    np.testing.assert_array_equal(ref.l1_distances_one_loop(A, B), two)
    np.testing.assert_array_equal(ref.l1_distances_no_loops(A, B), two)


def test_uint8_does_not_wrap():
    a = np.array([[0]], np.uint8)
    b = np.array([[255]], np.uint8)
    assert ref.l1_distances_two_loops(a, b)[0, 0] == 255
    assert ref.pairwise_distances_reference(a, b, "sqeuclidean")[0, 0] == 255**2


def test_kneighbors_reference_ties_lower_index_first():
    X = np.array([[1.0], [-1.0], [1.0], [0.0]])
    d, i = ref.kneighbors_reference(np.array([[0.0]]), X, 4, "l1")
    assert i.tolist() == [[3, 0, 1, 2]]
    assert d.tolist() == [[0.0, 1.0, 1.0, 1.0]]


def test_knn_predict_reference_vote_tie_goes_to_smallest_label():
    dists = np.array([[0.0, 1.0, 2.0, 3.0]])
    y = np.array([5, 2, 5, 2])
    assert ref.knn_predict_reference(dists, y, k=2)[0] == 2
    assert ref.knn_predict_reference(dists, y, k=3)[0] == 5


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_knn_vote_reference_rows_sum_to_one(weights):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (20, 5))
    dist = np.sort(rng.random((20, 5)), axis=1)
    dist[0, :2] = 0.0
    p = ref.knn_vote_reference(labels, dist, 4, weights)
    np.testing.assert_allclose(p.sum(1), 1.0)
    if weights == "distance":
        expect = np.zeros(4)
        for lab in labels[0, :2]:
            expect[lab] += 0.5
        np.testing.assert_allclose(p[0], expect)
