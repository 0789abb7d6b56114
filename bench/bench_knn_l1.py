"""L1 (Manhattan) k-NN: fastcls vs the NumPy reference vs FAISS vs scikit-learn.

Workload: random uint8 pixels, 1000 queries x 10000 training rows x 3072 features,
k = 10 (CIFAR-10 shaped, :func:`fastcls.testing.knn_problem`); the float32 group uses
the same values as float32. Set ``FASTCLS_BENCH_SMALL=1`` (read by
:func:`fastcls.testing.bench_small`) for a smoke-sized run (50 x 500 x 3072).

Run::

    pytest bench/bench_knn_l1.py --benchmark-enable -p no:cacheprovider

Groups ``kneighbors-l1|<shape>-float32`` and ``kneighbors-l1|<shape>-uint8``; the
implementations are those of :data:`fastcls.testing.IMPLEMENTATIONS` ``["kneighbors"]``
that compute L1 (the table that ``tests/test_implementations.py`` checks), as
parameters, so one run times them side by side. The slow peers (the NumPy reference,
scikit-learn) run on a slice of the queries: their parameter id says so (``[q100]``) and
``extra_info["scale"]`` is the factor that converts their time to the full query count.
FAISS has no uint8 L1: in the uint8 group it searches the same values as float32.
The float32 values here are pixels (integers 0..255), so plain ``fastcls`` takes the
exact uint8 shortcut of :mod:`fastcls.kernels.l1`; ``fastcls-floatkernel`` switches the
shortcut off (tunable ``l1_uint8_shortcut``) and times the register-tiled float kernel itself.
Every implementation uses all cores (``fastcls.set_num_threads(None)`` also sets
FAISS's OpenMP pool); fastcls is JIT-warmed on a small input before timing.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastcls
from fastcls.testing import IMPLEMENTATIONS, bench_small, knn_problem

SMALL = bench_small()
N_QUERIES, N_TRAIN, N_FEATURES, K = (50, 500, 3072, 10) if SMALL else (1000, 10000, 3072, 10)
METRIC = "l1"
#: queries given to the slow peers (their time is scaled to N_QUERIES)
SLICES = {"reference": 10 if not SMALL else 5, "sklearn": 100 if not SMALL else 25}
ROUNDS = {"fastcls": 5, "fastcls-floatkernel": 3, "faiss": 3, "reference": 1, "sklearn": 1}
#: the shared table's L1 k-NN implementations, plus fastcls's float kernel on its own
TABLE = {n: impl for n, impl in IMPLEMENTATIONS["kneighbors"].items() if impl.supports(METRIC)}
LIBRARIES = [*TABLE, "fastcls-floatkernel"]


@pytest.fixture(scope="module")
def data():
    Q, X = knn_problem(N_QUERIES, N_TRAIN, N_FEATURES, np.uint8, seed=0)
    fastcls.set_num_threads(None)
    return {"uint8": (Q, X), "float32": (Q.astype(np.float32), X.astype(np.float32))}


def _fastcls_float_kernel(Q, X):
    """fastcls with the pixel shortcut off: the float kernel itself (float32 group only)."""
    if Q.dtype == np.uint8:
        pytest.skip("the float kernel is timed in the float32 group")
    from fastcls._config import override  # not public yet: the tunables' one switch

    def run():
        with override(l1_uint8_shortcut=False):
            return fastcls.kneighbors(Q, X, K, metric=METRIC)

    fastcls.kneighbors(Q[:4] + np.float32(0.5), X[:64], K, metric=METRIC)  # JIT warm-up
    return run


def _setup(library, Q, X):
    if library == "fastcls-floatkernel":
        return _fastcls_float_kernel(Q, X)
    impl = TABLE[library]
    if not impl.available():
        pytest.skip(f"{library} needs {impl.requires}")
    return impl(Q[: SLICES.get(library, N_QUERIES)], X, k=K, metric=METRIC)


def _ids(name: str) -> str:
    return f"{name}[q{SLICES[name]}]" if name in SLICES else name


@pytest.mark.parametrize("library", LIBRARIES, ids=_ids)
@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_knn_l1(benchmark, data, dtype, library):
    Q, X = data[dtype]
    fn = _setup(library, Q, X)
    n_q = SLICES.get(library, N_QUERIES)
    benchmark.group = f"kneighbors-{METRIC}|{N_QUERIES}x{N_TRAIN}x{N_FEATURES}-{dtype}"
    benchmark.extra_info.update(
        {
            "shape": f"{N_QUERIES}x{N_TRAIN}x{N_FEATURES}",
            "k": K,
            "queries_timed": n_q,
            "scale": N_QUERIES / n_q,
            "threads": fastcls.get_num_threads(),
            "input": "float32" if library == "faiss" else dtype,
        }
    )
    benchmark.pedantic(fn, rounds=ROUNDS.get(library, 1), iterations=1, warmup_rounds=0)
    if library == "fastcls":  # the timed result is the exact one
        d, i = fn()
        ref_d, ref_i = TABLE["reference"](Q[:3], X, k=K, metric=METRIC)()
        np.testing.assert_array_equal(i[:3], ref_i)
        np.testing.assert_array_equal(d[:3], ref_d)


def interleaved(rounds: int = 3, n_jobs: int | None = None) -> None:
    """Alternate fastcls (float32, uint8) and FAISS runs and print per-round ratios.

    On a shared machine the load drifts between pytest-benchmark's groups; ratios of
    runs taken back to back are steadier. ``python bench/bench_knn_l1.py``.
    """
    import time

    import faiss

    Q, X = knn_problem(N_QUERIES, N_TRAIN, N_FEATURES, np.uint8, seed=0)
    Xf, Qf = X.astype(np.float32), Q.astype(np.float32)
    fastcls.set_num_threads(n_jobs)
    faiss.omp_set_num_threads(fastcls.get_num_threads())
    float_kernel = _fastcls_float_kernel(Qf, Xf)
    runs = {
        "fastcls-float32": lambda: fastcls.kneighbors(Qf, Xf, K, metric="l1"),
        "fastcls-uint8": lambda: fastcls.kneighbors(Q, X, K, metric="l1"),
        "fastcls-floatkernel": float_kernel,
        "faiss-float32": lambda: faiss.knn(Qf, Xf, K, metric=faiss.METRIC_L1),
    }
    fastcls.kneighbors(Qf[:4], Xf[:64], K, metric="l1")  # JIT warm-up
    fastcls.kneighbors(Q[:4], X[:64], K, metric="l1")
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {name: float(np.median(t)) for name, t in times.items()}
    print(f"{N_QUERIES}x{N_TRAIN}x{N_FEATURES}, k={K}, threads={fastcls.get_num_threads()}")
    for name, t in med.items():
        rounds_s = [round(x, 2) for x in times[name]]
        print(f"  {name:16s} median {t * 1e3:9.1f} ms   rounds (s) {rounds_s}")
    for name in ("fastcls-float32", "fastcls-floatkernel", "fastcls-uint8"):
        ratios = [f / t for f, t in zip(times["faiss-float32"], times[name], strict=True)]
        print(f"  faiss / {name}: median per-round ratio {np.median(ratios):.1f}x")


if __name__ == "__main__":
    import sys

    interleaved(n_jobs=int(sys.argv[1]) if len(sys.argv) > 1 else None)
