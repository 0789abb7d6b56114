"""The exact float squared distance (:mod:`fastcls.kernels.exact_distance`).

Every exact L2 path (rerank, fallback scan, pairwise fix-up) computes its distances with
this one kernel, and their answers are compared bit for bit; so its bits must not depend
on the compiled copy, the thread count or the CPU. Checked here against the NumPy model
of its order (:func:`fastcls.reference.knn.exact_sq_distance_reference`), in parallel and
serial compiled contexts, and in processes compiled for other CPUs.
"""

from __future__ import annotations

import math
import platform

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numba import njit, prange

import fastcls
from fastcls.kernels.exact_distance import exact_sq_distance
from fastcls.reference.knn import exact_sq_distance_reference
from fastcls.testing import run_on_cpu_targets

SPECIALS = (0.0, -0.0, 1e-310, -1e-310, 1e150, -3e38, np.inf, -np.inf, np.nan)


@njit
def _one(A, i, B, j):
    return exact_sq_distance(A, i, B, j)


@njit(parallel=True)
def _matrix_parallel(A, B, out):
    for i in prange(A.shape[0]):
        for j in range(B.shape[0]):
            out[i, j] = exact_sq_distance(A, i, B, j)


@njit
def _matrix_serial(A, B, out):
    for i in range(A.shape[0]):
        for j in range(B.shape[0]):
            out[i, j] = exact_sq_distance(A, i, B, j)


def _layout(M, kind):
    """``M`` as C-contiguous, Fortran-ordered, or a view with an element stride of 2."""
    if kind == "C":
        return np.ascontiguousarray(M)
    if kind == "F":
        return np.asfortranarray(M)
    wide = np.zeros((M.shape[0], 2 * M.shape[1]), M.dtype)
    wide[:, ::2] = M
    return wide[:, ::2]


def _bits(x: float) -> bytes:
    return np.float64(x).tobytes()


@given(
    D=st.one_of(st.integers(1, 80), st.sampled_from([255, 256, 257, 784, 3073])),
    a_dtype=st.sampled_from([np.float32, np.float64]),
    b_dtype=st.sampled_from([np.float32, np.float64]),
    a_layout=st.sampled_from(["C", "F", "strided"]),
    b_layout=st.sampled_from(["C", "F", "strided"]),
    n_special=st.integers(0, 3),
    scale=st.sampled_from([1e-30, 1.0, 1e30]),
    seed=st.integers(0, 2**16),
)
def test_equals_the_written_order_bit_for_bit(
    D, a_dtype, b_dtype, a_layout, b_layout, n_special, scale, seed
):
    rng = np.random.default_rng(seed)
    A = (rng.standard_normal((3, D)) * scale).astype(a_dtype)
    B = (rng.standard_normal((2, D)) * scale).astype(b_dtype)
    with np.errstate(over="ignore"):
        for _ in range(n_special):
            A[rng.integers(3), rng.integers(D)] = rng.choice(SPECIALS)
    for i in range(3):
        for j in range(2):
            got = _one(_layout(A, a_layout), i, _layout(B, b_layout), j)
            expect = exact_sq_distance_reference(A[i], B[j])
            assert _bits(got) == _bits(expect), (i, j, got, expect)
            if math.isfinite(expect):  # and close to the exactly rounded sum
                terms = (A[i].astype(np.float64) - B[j].astype(np.float64)) ** 2
                exact = math.fsum(terms)
                assert abs(got - exact) <= D * 2.0**-52 * exact + 1e-300


def test_parallel_and_serial_copies_agree_bit_for_bit():
    """The same kernel compiled into a parallel region and a plain loop: the same bits
    on 1 and 2 threads (a reassociated loop may be vectorised differently per copy)."""
    rng = np.random.default_rng(7)
    A = rng.standard_normal((37, 1000)).astype(np.float32) * 1e3
    B = A[::-1] + rng.standard_normal((37, 1000)).astype(np.float32) * 1e-3
    serial = np.empty((37, 37))
    _matrix_serial(A, B, serial)
    for threads in (1, 2):
        with fastcls.num_threads(threads):
            out = np.empty((37, 37))
            _matrix_parallel(A, B, out)
        assert out.tobytes() == serial.tobytes()
    for i in (0, 11, 36):
        assert _bits(serial[i, 5]) == _bits(exact_sq_distance_reference(A[i], B[5]))


def test_rejects_what_it_does_not_compute():
    with pytest.raises(numba.core.errors.TypingError):
        _one(np.zeros((2, 3), np.int32), 0, np.zeros((2, 3), np.int32), 1)
    with pytest.raises(numba.core.errors.TypingError):
        _one(np.zeros((2, 3), np.float16), 0, np.zeros((2, 3), np.float16), 1)


_CHILD = r"""
import numpy as np
from numba import njit
from fastcls.kernels.exact_distance import exact_sq_distance

@njit
def matrix(A, B, out):
    for i in range(A.shape[0]):
        for j in range(B.shape[0]):
            out[i, j] = exact_sq_distance(A, i, B, j)

rng = np.random.default_rng(3)
for D in (1, 7, 31, 33, 784, 3073):
    A = (rng.standard_normal((9, D)) * 10.0 ** rng.integers(-5, 5, (9, D))).astype(np.float32)
    B = rng.standard_normal((4, D))
    out = np.empty((9, 4))
    matrix(A, B, out)
    print(D, out.tobytes().hex())
"""


@pytest.mark.slow
def test_same_bits_when_compiled_for_other_cpus():
    """Compiled for the host, for Haswell (AVX2) and for the x86-64 baseline (SSE2):
    the lanes are written in the IR, so the three give the same bits."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("an x86-64 host runs the other targets")
    outs = run_on_cpu_targets(_CHILD)
    assert outs[0] == outs[1] == outs[2]
