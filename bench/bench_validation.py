"""The NaN / infinity / magnitude check of large inputs: fastcls's one parallel pass
(:func:`fastcls.kernels.finite.all_within`, what ``fastcls._validation.assert_all_finite``
runs on arrays of 4M+ values) beside NumPy's ways of answering the same question.

Workload: 49000 x 3073 float32 (the CIFAR-10 training set with a bias column, 602 MB;
``FASTCLS_BENCH_SMALL=1``: 2000 x 3073). Implementations: ``fastcls`` (the kernel),
``numpy-max-min`` (what validation ran before: ``max`` and ``min``, one pass each, one
core), ``numpy-isfinite`` (``np.isfinite(A).all()``, one pass plus a boolean temporary; it
does not check the magnitude bound). Every implementation must answer True on these finite
rows.

Run::

    pytest bench/bench_validation.py --benchmark-enable -p no:cacheprovider
"""

from __future__ import annotations

import numpy as np
import pytest

import fastcls
from fastcls._validation import MAX_ABS_VALUE
from fastcls.kernels.finite import all_within
from fastcls.reference import all_within_reference
from fastcls.testing import bench_small

SMALL = bench_small()
N, D = (2000, 3073) if SMALL else (49000, 3073)

IMPLEMENTATIONS = {
    "fastcls": lambda A: all_within(A, MAX_ABS_VALUE),
    "numpy-max-min": lambda A: max(float(A.max()), -float(A.min())) <= MAX_ABS_VALUE,
    "numpy-isfinite": lambda A: bool(np.isfinite(A).all()),
}


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(0)
    return rng.standard_normal((N, D), dtype=np.float32) * np.float32(60.0)


@pytest.mark.parametrize("library", list(IMPLEMENTATIONS))
def test_all_within(benchmark, rows, library):
    fn = IMPLEMENTATIONS[library]
    fn(rows)  # JIT warm-up
    benchmark.group = f"all_within|{N}x{D}-float32"
    benchmark.extra_info.update({"threads": fastcls.get_num_threads()})
    result = benchmark.pedantic(fn, args=(rows,), rounds=5, iterations=1)
    # finite data: every implementation must say so (the kernel against its reference on
    # random and hostile arrays: tests/test_kernels_finite.py)
    assert bool(result) is True
    if SMALL:
        assert all_within_reference(rows, MAX_ABS_VALUE) is True
