"""L1 (Manhattan) k-NN: fastcls vs FAISS (and the NumPy reference, scikit-learn) per workload.

Every L1 row of the k-NN table of ``docs/performance.md`` is a group of this file, so
one run measures them side by side (k = 10):

* ``kneighbors-l1|500x10000x3072-float32``: float32 values that are *not* whole
  numbers (pixels + a random fraction): fastcls's register-tiled float kernel with
  its certified exact rerank;
* ``kneighbors-l1|500x10000x3072-uint8``: random pixels, fastcls's exact ``vpsadbw``
  kernel; FAISS has no uint8 L1 and searches the same values as float32;
* ``kneighbors-l1|fashion-mnist-10000x60000x784-uint8``: the Fashion-MNIST test set
  against its training set when the files are present (see ``bench_knn_l2.py``);
  FAISS's L1 (no GEMM) runs on a slice of 1000 queries there (id ``[q1000]``,
  ``extra_info["scale"]`` converts).

Implementations: ``fastcls`` (``fastcls.kneighbors``), ``fastcls-fitted``
(``KNearestNeighbor`` fitted once, ``kneighbors`` timed), ``faiss`` (``faiss.knn``
with ``METRIC_L1``), and on the uint8 pixel workload the slow peers ``reference`` and
``sklearn`` on slices of the queries. ``FASTCLS_BENCH_SMALL=1`` runs smoke sizes.
Run::

    flock /tmp/fastcls-bench.lock pytest bench/bench_knn_l1.py --benchmark-enable \
        -p no:cacheprovider --benchmark-columns=median,min,max,rounds

AVX2 proxy: as in ``bench_knn_l2.py`` (FAISS is set to ``SIMDLevel_AVX2`` through
``faiss.SIMDConfig``, not ``FAISS_OPT_LEVEL``); ``extra_info["faiss_simd"]`` records
the level FAISS ran at.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

import fastcls
from fastcls.testing import IMPLEMENTATIONS, bench_small

sys.path.insert(0, str(Path(__file__).parent))
from bench_knn_l2 import faiss_simd_level, load_workload, rotated  # noqa: E402

SMALL = bench_small()
THREADS = int(os.environ.get("FASTCLS_BENCH_THREADS", "0")) or None
K = 10
METRIC = "l1"
N_QUERIES, N_TRAIN, N_FEATURES = (50, 500, 3072) if SMALL else (500, 10000, 3072)
#: workload name -> (n_queries, n_train, n_features, dtype, peers beside fastcls and faiss)
WORKLOADS = {
    "500x10000x3072-float32": (500, 10000, 3072, "float32", ()),
    "500x10000x3072-uint8": (500, 10000, 3072, "uint8", ("reference", "sklearn")),
    "fashion-mnist-10000x60000x784-uint8": (10000, 60000, 784, "uint8", ()),
}
if SMALL:
    WORKLOADS = {
        "50x500x3072-float32": (50, 500, 3072, "float32", ()),
        "50x500x3072-uint8": (50, 500, 3072, "uint8", ("reference", "sklearn")),
        "fashion-mnist-200x2000x784-uint8": (200, 2000, 784, "uint8", ()),
    }
#: queries given to the slow peers (their time is scaled to the workload's)
SLICES = {"reference": 10 if not SMALL else 5, "sklearn": 100 if not SMALL else 25}
FAISS_SLICE_FMNIST = 1000 if not SMALL else 100
ROUNDS = {"fastcls": 5, "fastcls-fitted": 5, "faiss": 3}
TABLE = {n: impl for n, impl in IMPLEMENTATIONS["kneighbors"].items() if impl.supports(METRIC)}
LIBRARIES = ["fastcls-fitted", *TABLE]  # TABLE starts with "fastcls"


def workload_data(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Queries and training rows of workload ``name`` (the L2 bench's generator)."""
    n_q, n_x, d, dtype, _ = WORKLOADS[name]
    return load_workload(n_q, n_x, d, dtype, name.startswith("fashion-mnist"))


def _n_timed(library: str, workload: str) -> int:
    n_q = WORKLOADS[workload][0]
    if library == "faiss" and workload.startswith("fashion-mnist"):
        return min(n_q, FAISS_SLICE_FMNIST)
    return min(n_q, SLICES.get(library, n_q))


def _setup(library, Q, X, n_timed):
    if library == "fastcls-fitted":
        model = fastcls.KNearestNeighbor(k=K, metric=METRIC, n_jobs=THREADS)
        model.fit(X, np.arange(len(X)) % 2)
        model.kneighbors(Q[:4])  # JIT warm-up
        return lambda: model.kneighbors(Q)
    impl = TABLE[library]
    if not impl.available():
        pytest.skip(f"{library} needs {impl.requires}")
    return impl(Q[:n_timed], X, k=K, metric=METRIC)


@pytest.fixture(scope="module")
def threads():
    fastcls.set_num_threads(THREADS)
    return fastcls.get_num_threads()


@pytest.fixture(scope="module")
def faiss_level():
    """FAISS's SIMD level for this module (AVX2 on the proxy), recorded in extra_info."""
    return faiss_simd_level()


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_knn_l1(benchmark, threads, faiss_level, workload, library):
    n_q, n_x, d, dtype, peers = WORKLOADS[workload]
    if library not in ("fastcls", "fastcls-fitted", "faiss", *peers):
        pytest.skip(f"{library} is timed on the uint8 pixel workload only")
    Q, X = workload_data(workload)
    n_timed = _n_timed(library, workload)
    fn = _setup(library, Q, X, n_timed)
    benchmark.group = f"kneighbors-{METRIC}|{workload}"
    benchmark.extra_info.update(
        {
            "shape": f"{n_q}x{n_x}x{d}",
            "k": K,
            "queries_timed": n_timed,
            "scale": n_q / n_timed,
            "threads": threads,
            "input": "float32" if library == "faiss" else dtype,
            "faiss_simd": faiss_level,
        }
    )
    warm = 1 if library in ("fastcls", "fastcls-fitted") else 0
    benchmark.pedantic(fn, rounds=ROUNDS.get(library, 1), iterations=1, warmup_rounds=warm)
    if library.startswith("fastcls"):  # the timed result is the exact one
        d_got, i_got = fn()
        ref_d, ref_i = TABLE["reference"](Q[:3], X, k=K, metric=METRIC)()
        np.testing.assert_array_equal(i_got[:3], ref_i)
        np.testing.assert_array_equal(d_got[:3], ref_d)


def interleaved(rounds: int = 3, n_jobs: int | None = None) -> None:
    """Alternate fastcls (float32 non-integer, uint8) and FAISS runs; per-round ratios.

    On a shared machine the load drifts between pytest-benchmark's groups; ratios of
    runs taken back to back are steadier. ``python bench/bench_knn_l1.py``.
    """
    import time

    import faiss

    level = faiss_simd_level()
    Q, X = load_workload(N_QUERIES, N_TRAIN, N_FEATURES, "uint8", False)
    Qf, Xf = load_workload(N_QUERIES, N_TRAIN, N_FEATURES, "float32", False)
    fastcls.set_num_threads(n_jobs)
    faiss.omp_set_num_threads(fastcls.get_num_threads())
    runs = {
        "fastcls-float32": lambda: fastcls.kneighbors(Qf, Xf, K, metric="l1"),
        "fastcls-uint8": lambda: fastcls.kneighbors(Q, X, K, metric="l1"),
        "faiss-float32": lambda: faiss.knn(Qf, Xf, K, metric=faiss.METRIC_L1),
    }
    fastcls.kneighbors(Qf[:4], Xf[:64], K, metric="l1")  # JIT warm-up
    fastcls.kneighbors(Q[:4], X[:64], K, metric="l1")
    times: dict[str, list[float]] = {name: [] for name in runs}
    for rep in range(rounds):
        for name, fn in rotated(runs, rep):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {name: float(np.median(t)) for name, t in times.items()}
    print(
        f"{N_QUERIES}x{N_TRAIN}x{N_FEATURES}, k={K}, threads={fastcls.get_num_threads()},"
        f" faiss SIMD level {level}"
    )
    for name, t in med.items():
        rounds_s = [round(x, 2) for x in times[name]]
        print(f"  {name:16s} median {t * 1e3:9.1f} ms   rounds (s) {rounds_s}")
    for name in ("fastcls-float32", "fastcls-uint8"):
        ratios = [f / t for f, t in zip(times["faiss-float32"], times[name], strict=True)]
        print(f"  faiss / {name}: median per-round ratio {np.median(ratios):.1f}x")


def _kernel_ab(kernel, Q, X, variants: dict[str, dict], rounds: int) -> None:
    """Time ``kernel(Q, X, 0, best_d, best_i)`` (an L1 top-k kernel) under each variant's
    settings, the variants alternated in every round; the first round is a warm-up.
    Every variant must return the same exact top-k. Prints minima and medians."""
    import time

    from fastcls._config import override
    from fastcls._runtime import cpu_name
    from fastcls.kernels.topk import new_topk

    times: dict[str, list[float]] = {label: [] for label in variants}
    first = None
    for _ in range(rounds + 1):
        for label, changes in variants.items():
            with override(**changes):
                best_d, best_i = new_topk(Q.shape[0], K)
                t0 = time.perf_counter()
                kernel(Q, X, 0, best_d, best_i)
                times[label].append(time.perf_counter() - t0)
            if first is None:
                first = best_i.copy()
            assert np.array_equal(best_i, first)  # every variant: the same exact top-k
    print(f"{Q.shape[0]}x{X.shape[0]}x{N_FEATURES} {Q.dtype}, k={K}, CPU {cpu_name()}")
    for label, t in times.items():
        rest = sorted(t[1:])
        low, mid = rest[0] * 1e3, float(np.median(rest)) * 1e3
        print(f"  {label:24s} min {low:7.1f} ms  median {mid:7.1f} ms")


def accumulate_ab(rounds: int = 5) -> None:
    """Interleaved A/B of the float tiles' accumulation (``settings.l1_float_accumulate``
    "add" vs "fma") for each available SIMD tile and bound, on the float32 workload,
    calling the top-k kernel directly. ``python bench/bench_knn_l1.py accumulate 7``.
    The first round is a warm-up; minima and medians of the rest."""
    from fastcls._runtime import best_simd
    from fastcls.kernels import l1

    Qf, Xf = load_workload(N_QUERIES, N_TRAIN, N_FEATURES, "float32", False)
    simd = [i for i in best_simd() if i != "portable"]
    variants = {
        f"{i} {b} {a}": {"l1_uint8_impl": i, "l1_float_bound": b, "l1_float_accumulate": a}
        for i in simd
        for b in ("absolute", "relative")
        for a in ("add", "fma")
    }
    _kernel_ab(l1.l1_topk_float, Qf, Xf, variants, rounds)


def tiles_ab(rounds: int = 5) -> None:
    """Interleaved A/B of the tiles' widths, calling the top-k kernels directly: the
    uint8 tiles (``settings.l1_uint8_tile_cols`` 2 vs 4) for each available SIMD
    implementation on the uint8 workload, then the AVX-512 float tile
    (``settings.l1_float_tile_cols`` 2 vs 4, where the CPU has it) on the float32 one.
    ``python bench/bench_knn_l1.py tiles 7``: the figures that decide
    ``fastcls.kernels.l1.WIDE_SAD_TILES`` and ``WIDE_FLOAT_TILES`` for a CPU. The first
    round is a warm-up; minima and medians of the rest."""
    from fastcls._runtime import best_simd
    from fastcls.kernels import l1

    Q, X = load_workload(N_QUERIES, N_TRAIN, N_FEATURES, "uint8", False)
    variants = {
        f"{i} 4x{c}": {"l1_uint8_impl": i, "l1_uint8_tile_cols": c}
        for i in best_simd()
        if i != "portable"
        for c in (2, 4)
    }
    _kernel_ab(l1.l1_topk_uint8, Q, X, variants, rounds)
    if "avx512" in best_simd():
        Qf, Xf = load_workload(N_QUERIES, N_TRAIN, N_FEATURES, "float32", False)
        variants = {
            f"avx512 float 4x{c}": {"l1_uint8_impl": "avx512", "l1_float_tile_cols": c}
            for c in (2, 4)
        }
        _kernel_ab(l1.l1_topk_float, Qf, Xf, variants, rounds)


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 1 and sys.argv[1] == "accumulate":
        accumulate_ab(int(sys.argv[2]) if len(sys.argv) > 2 else 5)
    elif len(sys.argv) > 1 and sys.argv[1] == "tiles":
        tiles_ab(int(sys.argv[2]) if len(sys.argv) > 2 else 5)
    else:
        interleaved(n_jobs=int(sys.argv[1]) if len(sys.argv) > 1 else None)
