"""Full distance matrices: ``fastcls.pairwise_distances`` vs the NumPy reference vs
scikit-learn.

Workload: 500 x 5000 rows of 256 features (``FASTCLS_BENCH_SMALL=1``: 40 x 300 x 32),
random normal data, float32 and float64, each metric. float32 L2 / squared L2 are
accumulated in float64 and rounded once (so 1e20 and 1e-30 survive); this suite keeps
that path's cost beside the peers. The implementations are those of
:data:`fastcls.testing.IMPLEMENTATIONS` ``["pairwise_distances"]`` (scikit-learn runs
on float64 copies: its float32 path is not exact).

Run::

    pytest bench/bench_pairwise.py --benchmark-enable -p no:cacheprovider

Groups ``pairwise_distances-<metric>|<shape>-<dtype>``; every fastcls result is checked
against the float64 reference after timing.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastcls
from fastcls.testing import IMPLEMENTATIONS, bench_small

SMALL = bench_small()
N_Q, N_X, D = (40, 300, 32) if SMALL else (500, 5000, 256)
TABLE = IMPLEMENTATIONS["pairwise_distances"]
ROUNDS = {"fastcls": 7, "reference": 3, "sklearn": 3}


@pytest.fixture(scope="module", params=["float32", "float64"])
def data(request):
    rng = np.random.default_rng(0)
    dtype = np.dtype(request.param)
    return rng.standard_normal((N_Q, D)).astype(dtype), rng.standard_normal((N_X, D)).astype(dtype)


@pytest.mark.parametrize("metric", ["l2", "sqeuclidean", "l1"])
@pytest.mark.parametrize("library", list(TABLE))
def test_pairwise(benchmark, data, metric, library):
    Q, X = data
    impl = TABLE[library]
    if not impl.available():
        pytest.skip(f"{library} needs {impl.requires}")
    if not impl.supports(metric):
        pytest.skip(f"{library} does not compute {metric}")
    fn = impl(Q, X, metric=metric)
    benchmark.group = f"pairwise_distances-{metric}|{N_Q}x{N_X}x{D}-{Q.dtype}"
    benchmark.extra_info.update({"threads": fastcls.get_num_threads(), "dtype": str(Q.dtype)})
    result = benchmark.pedantic(fn, rounds=ROUNDS.get(library, 1), iterations=1)
    if library == "fastcls":
        want = TABLE["reference"](Q.astype(np.float64), X.astype(np.float64), metric=metric)()
        rtol = 1e-6 if Q.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(result, want, rtol=rtol, atol=1e-5 if metric == "l1" else 0)
