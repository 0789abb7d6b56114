"""Small searches run the drivers' chunk functions on the calling thread
(``settings.knn_parallel_min_work``): the same results as the parallel drivers, which
the other kernel tests reach only above the threshold."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastcls._config import override
from fastcls.kernels import l1, l2int
from fastcls.kernels.topk import new_topk, run_serial
from fastcls.reference import kneighbors_reference, pairwise_distances_reference

SERIAL = {"knn_parallel_min_work": 1 << 62}
PARALLEL = {"knn_parallel_min_work": 0}


def data(seed, n_q, n_x, D, dtype, kind):
    rng = np.random.default_rng(seed)
    if dtype == np.uint8:
        Q = rng.integers(0, 256, (n_q, D), dtype=np.uint8)
        X = rng.integers(0, 256, (n_x, D), dtype=np.uint8)
    else:
        Q = (rng.random((n_q, D)) * 255).astype(dtype)
        X = (rng.random((n_x, D)) * 255).astype(dtype)
    if kind == "duplicates":
        X[1::3] = X[0]
        Q[0] = X[0]
    elif kind == "constant":
        X[:] = X[:, :1]
        Q[:] = Q[:, :1]
    return Q, X


def topk(kernel, Q, X, k, tile, options):
    best_d, best_i = new_topk(Q.shape[0], k)
    with override(l1_uint8_shortcut=False, **options):
        for s in range(0, X.shape[0], tile):
            kernel(Q, np.ascontiguousarray(X[s : s + tile]), s, best_d, best_i)
    return best_d, best_i


CASES = st.tuples(
    st.integers(0, 2**16),
    st.integers(1, 13),
    st.integers(1, 60),
    st.sampled_from([1, 7, 31, 64, 65, 200]),
    st.sampled_from(["random", "duplicates", "constant"]),
)


@pytest.mark.parametrize(
    "kernel,dtype",
    [
        (l1.l1_topk_uint8, np.uint8),
        (l1.l1_topk_float, np.float32),
        (l1.l1_topk_float, np.float64),
        (l2int.sqeuclidean_topk_int, np.uint8),
    ],
    ids=["l1-uint8", "l1-float32", "l1-float64", "l2-int"],
)
@settings(max_examples=25, deadline=None)
@given(case=CASES)
def test_serial_topk_equals_parallel_and_reference(kernel, dtype, case):
    seed, n_q, n_x, D, kind = case
    Q, X = data(seed, n_q, n_x, D, dtype, kind)
    k = min(5, n_x)
    tile = max(1, n_x // 2)
    serial = topk(kernel, Q, X, k, tile, SERIAL)
    parallel = topk(kernel, Q, X, k, tile, PARALLEL)
    np.testing.assert_array_equal(serial[1], parallel[1])
    np.testing.assert_array_equal(serial[0], parallel[0])
    metric = "l2" if kernel is l2int.sqeuclidean_topk_int else "l1"
    ref_d, ref_i = kneighbors_reference(Q, X, k, metric)
    np.testing.assert_array_equal(serial[1], ref_i)
    if metric == "l2":  # the kernel reports exact squared distances (integers)
        diff = Q[:, None, :].astype(np.int64) - X[serial[1]].astype(np.int64)
        np.testing.assert_array_equal(serial[0], (diff**2).sum(axis=2))
    else:
        np.testing.assert_allclose(serial[0], ref_d, rtol=1e-12, atol=0)


@pytest.mark.parametrize("bound", ["relative", "absolute"])
def test_serial_float_l1_with_each_bound(bound):
    Q, X = data(3, 9, 70, 130, np.float32, "duplicates")
    serial = topk(l1.l1_topk_float, Q, X, 6, 70, {**SERIAL, "l1_float_bound": bound})
    parallel = topk(l1.l1_topk_float, Q, X, 6, 70, {**PARALLEL, "l1_float_bound": bound})
    np.testing.assert_array_equal(serial[1], parallel[1])
    np.testing.assert_array_equal(serial[0], parallel[0])


@pytest.mark.parametrize("D", [1, 17, 64, 100])
def test_serial_pairwise_equals_parallel_and_reference(D):
    Q, X = data(D, 11, 23, D, np.uint8, "random")
    for kernel, metric in ((l1.l1_pairwise_uint8, "l1"), (l2int.sqeuclidean_pairwise_int, "l2")):
        outs = []
        for options in (SERIAL, PARALLEL):
            out = np.empty((11, 23))
            with override(**options):
                kernel(Q, X, out)
            outs.append(out)
        np.testing.assert_array_equal(outs[0], outs[1])
        if metric == "l1":
            np.testing.assert_array_equal(outs[0], pairwise_distances_reference(Q, X, "l1"))
        else:
            diff = Q[:, None, :].astype(np.int64) - X[None, :, :].astype(np.int64)
            np.testing.assert_array_equal(outs[0], (diff**2).sum(axis=2))


def test_threshold():
    with override(knn_parallel_min_work=1000):
        assert run_serial(2, 10, 49) and not run_serial(2, 10, 50)
