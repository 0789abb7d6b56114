"""The compiled range check against its NumPy reference, and its use in validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastcls._validation as V
from fastcls.kernels.finite import all_within
from fastcls.reference import all_within_reference

LIMIT = V.MAX_ABS_VALUE


@given(
    hnp.arrays(
        st.sampled_from([np.float32, np.float64]),
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=40),
        elements=st.floats(allow_nan=True, allow_infinity=True, width=32),
    )
)
def test_all_within_matches_reference(A):
    assert all_within(A, LIMIT) == all_within_reference(A, LIMIT)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 2e150, -2e150])
def test_one_bad_value_anywhere(dtype, bad):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((37, 53)).astype(dtype)
    assert all_within(A, LIMIT)
    for i, d in [(0, 0), (36, 52), (17, 3)]:
        B = A.copy()
        with np.errstate(over="ignore"):
            B[i, d] = bad
        expected = all_within_reference(B, LIMIT)  # 2e150 is inf in float32: also bad
        assert all_within(B, LIMIT) == expected is False


def test_limit_is_inclusive():
    A = np.full((3, 4), LIMIT)
    assert all_within(A, LIMIT) and all_within(-A, LIMIT)
    assert not all_within(np.nextafter(A, np.inf), LIMIT)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_validation_uses_the_kernel_on_large_arrays(dtype, monkeypatch):
    """Above FINITE_KERNEL_MIN_VALUES the kernel answers; the error still names the first
    offending value, as NumPy's path does."""
    monkeypatch.setattr(V, "FINITE_KERNEL_MIN_VALUES", 100)
    A = np.ones((300, 7), dtype=dtype)
    V.assert_all_finite(A, "X")
    A[211, 4] = np.nan
    with pytest.raises(ValueError, match=r"X contains NaN \(first at row 211\)"):
        V.assert_all_finite(A, "X")
    A[211, 4] = np.inf
    with pytest.raises(ValueError, match=r"X contains infinity \(first at row 211\)"):
        V.assert_all_finite(A, "X")


def test_read_only_memmap_through_the_kernel(tmp_path, monkeypatch):
    """A read-only memmap (training rows on disk) takes the compiled check chunk by chunk."""
    monkeypatch.setattr(V, "FINITE_KERNEL_MIN_VALUES", 1000)
    path = tmp_path / "rows.f32"
    A = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(600, 50))
    A[:] = 1.0
    A[457, 13] = -np.inf
    A.flush()
    del A
    rows = np.load(path, mmap_mode="r")
    assert not rows.flags.writeable
    with pytest.raises(ValueError, match=r"X contains infinity \(first at row 457\)"):
        V.assert_all_finite(rows, "X")
    assert all_within(np.asarray(rows[:400]), LIMIT)
