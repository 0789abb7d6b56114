"""L1 (Manhattan) k-NN: fastcls vs the NumPy reference vs FAISS vs scikit-learn.

Workload: random uint8 pixels, 1000 queries x 10000 training rows x 3072 features,
k = 10 (CIFAR-10 shaped); the float32 group uses the same values as float32. Set
``FASTCLS_BENCH_SMALL=1`` for a smoke-sized run (50 x 500 x 3072).

Run::

    pytest bench/bench_knn_l1.py --benchmark-enable -p no:cacheprovider

Groups ``knn-l1-float32`` and ``knn-l1-uint8``; implementations are parameters, so one
run times them side by side. The slow peers (the NumPy reference, scikit-learn) run on
a slice of the queries: their parameter id says so (``[q100]``) and
``extra_info["scale"]`` is the factor that converts their time to the full query count.
FAISS has no uint8 L1: in the uint8 group it searches the same values as float32.
The float32 values here are pixels (integers 0..255), so plain ``fastcls`` takes the
exact uint8 shortcut of :mod:`fastcls.kernels.l1`; ``fastcls-floatkernel`` switches the
shortcut off and times the register-tiled float kernel itself.
Every implementation uses all cores (``fastcls.set_num_threads(None)`` also sets
FAISS's OpenMP pool); fastcls is JIT-warmed on a small input before timing.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import fastcls

SMALL = os.environ.get("FASTCLS_BENCH_SMALL", "").strip().lower() in {"1", "true", "yes", "on"}
N_QUERIES, N_TRAIN, N_FEATURES, K = (50, 500, 3072, 10) if SMALL else (1000, 10000, 3072, 10)
#: queries given to the slow peers (their time is scaled to N_QUERIES)
SLICES = {"numpy": 10 if not SMALL else 5, "sklearn": 100 if not SMALL else 25}
ROUNDS = {"fastcls": 5, "fastcls-floatkernel": 3, "faiss": 3, "numpy": 1, "sklearn": 1}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (N_TRAIN, N_FEATURES), dtype=np.uint8)
    Q = rng.integers(0, 256, (N_QUERIES, N_FEATURES), dtype=np.uint8)
    fastcls.set_num_threads(None)
    return {"uint8": (Q, X), "float32": (Q.astype(np.float32), X.astype(np.float32))}


def _fastcls(Q, X):
    fastcls.kneighbors(Q[:4], X[:64], K, metric="l1")  # JIT warm-up, untimed
    return lambda: fastcls.kneighbors(Q, X, K, metric="l1")


def _fastcls_float_kernel(Q, X):
    """fastcls with the pixel shortcut off: the float kernel itself (float32 group only)."""
    if Q.dtype == np.uint8:
        pytest.skip("the float kernel is timed in the float32 group")
    from fastcls.kernels import l1

    def run():
        previous, l1.UINT8_SHORTCUT = l1.UINT8_SHORTCUT, False
        try:
            return fastcls.kneighbors(Q, X, K, metric="l1")
        finally:
            l1.UINT8_SHORTCUT = previous

    fastcls.kneighbors(Q[:4] + np.float32(0.5), X[:64], K, metric="l1")  # JIT warm-up
    return run


def _numpy(Q, X):
    Qs = Q[: SLICES["numpy"]]
    return lambda: fastcls.kneighbors(Qs, X, K, metric="l1", backend="numpy")


def _faiss(Q, X):
    faiss = pytest.importorskip("faiss")
    fastcls.set_num_threads(None)  # sets FAISS's thread count too, now that it is loaded
    Qf = np.ascontiguousarray(Q, dtype=np.float32)
    Xf = np.ascontiguousarray(X, dtype=np.float32)
    return lambda: faiss.knn(Qf, Xf, K, metric=faiss.METRIC_L1)


def _sklearn(Q, X):
    neighbors = pytest.importorskip("sklearn.neighbors")
    nn = neighbors.NearestNeighbors(
        n_neighbors=K, algorithm="brute", metric="manhattan", n_jobs=-1
    ).fit(X)
    Qs = Q[: SLICES["sklearn"]]
    return lambda: nn.kneighbors(Qs)


IMPLEMENTATIONS = {
    "fastcls": _fastcls,
    "fastcls-floatkernel": _fastcls_float_kernel,
    "numpy": _numpy,
    "faiss": _faiss,
    "sklearn": _sklearn,
}


def _ids(name: str) -> str:
    return f"{name}[q{SLICES[name]}]" if name in SLICES else name


@pytest.mark.parametrize("impl", list(IMPLEMENTATIONS), ids=_ids)
@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_knn_l1(benchmark, data, dtype, impl):
    Q, X = data[dtype]
    fn = IMPLEMENTATIONS[impl](Q, X)
    n_q = SLICES.get(impl, N_QUERIES)
    benchmark.group = f"knn-l1-{dtype}"
    benchmark.extra_info.update(
        {
            "shape": f"{N_QUERIES}x{N_TRAIN}x{N_FEATURES}",
            "k": K,
            "queries_timed": n_q,
            "scale": N_QUERIES / n_q,
            "threads": fastcls.get_num_threads(),
            "input": "float32" if impl == "faiss" else dtype,
        }
    )
    benchmark.pedantic(fn, rounds=ROUNDS[impl], iterations=1, warmup_rounds=0)
    if impl == "fastcls":  # the timed result is the exact one
        d, i = fn()
        ref_d, ref_i = fastcls.kneighbors(Q[:3], X, K, metric="l1", backend="numpy")
        np.testing.assert_array_equal(i[:3], ref_i)
        np.testing.assert_array_equal(d[:3], ref_d)


def interleaved(rounds: int = 3, n_jobs: int | None = None) -> None:
    """Alternate fastcls (float32, uint8) and FAISS runs and print per-round ratios.

    On a shared machine the load drifts between pytest-benchmark's groups; ratios of
    runs taken back to back are steadier. ``python bench/bench_knn_l1.py``.
    """
    import time

    import faiss

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (N_TRAIN, N_FEATURES), dtype=np.uint8)
    Q = rng.integers(0, 256, (N_QUERIES, N_FEATURES), dtype=np.uint8)
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
