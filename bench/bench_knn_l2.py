"""Exact L2 k-NN: fastcls vs FAISS (and the NumPy reference, scikit-learn) per workload.

Every L2 row of the k-NN table of ``docs/performance.md`` is a group of this file, so
one run measures them side by side (k = 10):

* ``kneighbors-l2|500x10000x3072-float32`` and ``...|1000x10000x3072-float32``:
  float32 values that are *not* whole numbers (pixels + a random fraction), so
  fastcls takes its float path (centred sgemm + fused selection + certified rerank);
* ``kneighbors-l2|1000x10000x3072-uint8``: random pixels; fastcls's exact integer
  kernel (:mod:`fastcls.kernels.l2int`), FAISS on the same values as float32;
* ``kneighbors-l2|500x10000x3072-float64``: the same non-integer values as float64
  (the CS231n loader's dtype), against the lecture's no-loop NumPy version too;
* ``kneighbors-l2|fashion-mnist-10000x60000x784-uint8``: the Fashion-MNIST test set
  against its training set, when the Debian files are present
  (``/usr/share/datasets/fashion-mnist``, package ``dataset-fashion-mnist``; or
  ``FASTCLS_FASHION_MNIST=<folder>``), read with :func:`fastcls.datasets.load_mnist`.

Implementations (:data:`fastcls.testing.IMPLEMENTATIONS` ``["kneighbors"]``): ``fastcls``
(``fastcls.kneighbors``: validates both inputs at each call), ``fastcls-fitted``
(``KNearestNeighbor`` fitted once, ``kneighbors`` timed: the training rows were
validated at ``fit``), ``faiss`` (``faiss.knn``, float32), and on the 1000-query
pixel workloads only, the slow peers ``reference`` (a slice of the queries, id
``[q10]``, ``extra_info["scale"]`` converts), ``numpy-no-loops`` (the lecture's
vectorised version) and ``sklearn`` (brute force).

``FASTCLS_BENCH_SMALL=1`` (:func:`fastcls.testing.bench_small`) runs smoke sizes;
``FASTCLS_BENCH_THREADS=n`` pins every implementation to ``n`` threads (default: all
cores). Run (the lock keeps timings of a shared machine apart)::

    flock /tmp/fastcls-bench.lock pytest bench/bench_knn_l2.py --benchmark-enable \
        -p no:cacheprovider --benchmark-columns=median,min,max,rounds

AVX2 proxy (fastcls's AVX2 kernels, FAISS's AVX2 code, on an AVX-512 machine): the same
command with ``NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=<haswell's features>``
(``fastcls.testing.HASWELL_FEATURES``) and ``OPENBLAS_CORETYPE=Haswell``. FAISS
then runs at ``SIMDLevel_AVX2`` through ``faiss.SIMDConfig.set_level`` (see
:func:`faiss_simd_level`; ``FAISS_OPT_LEVEL=avx2`` also asks for it, but faiss 1.15's
dispatching wheel ignores that variable by itself). ``extra_info["faiss_simd"]`` records
the level FAISS ran at.

Group ``kneighbors-l2-near-duplicates|<shape>`` (data from
:func:`fastcls.testing.near_duplicates`) is an accuracy readout more than a timing: two far
apart clusters of near-duplicate rows (x + eps on one feature), where float32 GEMM
distances lose the order. ``extra_info["recall"]`` is the fraction of the float64
reference's neighbour ids (with ties resolved by index) that each implementation
returns; fastcls must score 1.0. Every query there is refused by the certificate and
recomputed by the exact direct scan, so it also times that fallback. (faiss 1.15 uses
its GEMM path only when n_queries x D >= 128000: the readout is sized for it.)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import fastcls
from fastcls.testing import IMPLEMENTATIONS, bench_small, knn_problem, near_duplicates

SMALL = bench_small()
THREADS = int(os.environ.get("FASTCLS_BENCH_THREADS", "0")) or None
K = 10
METRIC = "l2"
#: workload name -> (n_queries, n_train, n_features, dtype, peers beside fastcls and faiss)
WORKLOADS = {
    "500x10000x3072-float32": (500, 10000, 3072, "float32", ()),
    "1000x10000x3072-float32": (
        1000, 10000, 3072, "float32", ("reference", "numpy-no-loops", "sklearn"),
    ),
    "1000x10000x3072-uint8": (
        1000, 10000, 3072, "uint8", ("reference", "numpy-no-loops", "sklearn"),
    ),
    "fashion-mnist-10000x60000x784-uint8": (10000, 60000, 784, "uint8", ()),
    "500x10000x3072-float64": (500, 10000, 3072, "float64", ("numpy-no-loops",)),
}  # fmt: skip
if SMALL:
    WORKLOADS = {
        "50x500x3072-float32": (50, 500, 3072, "float32", ("reference",)),
        "50x500x3072-uint8": (50, 500, 3072, "uint8", ("reference",)),
        "fashion-mnist-200x2000x784-uint8": (200, 2000, 784, "uint8", ()),
        "50x500x3072-float64": (50, 500, 3072, "float64", ("numpy-no-loops",)),
    }
#: near-duplicates: n_queries x D >= 128000, or faiss takes its exact non-GEMM path
ND_QUERIES, ND_TRAIN, ND_FEATURES = (128, 400, 1024) if SMALL else (128, 4000, 1024)
ROUNDS = {"fastcls": 5, "fastcls-fitted": 5, "faiss": 5}
#: queries given to the slow peers (their time is scaled to the workload's)
SLICES = {"reference": 10 if not SMALL else 5}
#: the shared table's L2 k-NN implementations
TABLE = {n: impl for n, impl in IMPLEMENTATIONS["kneighbors"].items() if impl.supports(METRIC)}
LIBRARIES = ["fastcls-fitted", *TABLE]  # TABLE starts with "fastcls"
#: options per library: every implementation pinned to THREADS
OPTIONS = {"fastcls": {"n_jobs": THREADS}, "sklearn": {"n_jobs": THREADS or -1}}


def avx2_requested() -> bool:
    """Whether the environment asks for the AVX2 proxy: ``FAISS_OPT_LEVEL=avx2``, or
    ``NUMBA_CPU_FEATURES`` set without ``+avx512f`` (numba compiling for an AVX2 CPU)."""
    if os.environ.get("FAISS_OPT_LEVEL", "").strip().lower() == "avx2":
        return True
    features = os.environ.get("NUMBA_CPU_FEATURES", "").replace(" ", "").split(",")
    return features != [""] and "+avx512f" not in features


def faiss_simd_level() -> str:
    """Put FAISS at its AVX2 level when :func:`avx2_requested`; the level it runs at.

    faiss 1.15's wheel picks its SIMD level at run time and ignores ``FAISS_OPT_LEVEL``
    (it stays at ``AVX512_SPR`` on this machine), so the AVX2 proxy sets the level with
    ``faiss.SIMDConfig.set_level``. Older faiss (one build per level, chosen by
    ``FAISS_OPT_LEVEL`` at import) has no ``SIMDConfig``: its level is reported from the
    loaded library's name. ``"unavailable"`` when faiss is not installed.
    """
    try:
        from fastcls.backends.faiss import import_faiss  # caps faiss's OpenMP spin

        faiss = import_faiss()
    except ImportError:
        return "unavailable"
    config = getattr(faiss, "SIMDConfig", None)
    if config is None:
        loader = getattr(faiss, "loader", None)
        return f"legacy:{getattr(loader, 'instruction_set', None) or 'generic'}"
    if avx2_requested() and config.get_level_name() != "AVX2":
        config.set_level(faiss.SIMDLevel_AVX2)
    return str(config.get_level_name())


def rotated(runs: dict, rep: int) -> list:
    """``runs``' items starting at item ``rep`` (mod its length): each repetition starts
    with another implementation.

    The first fastcls call after a FAISS L1 search is 25-40 ms slower (500 x 10000 x 3072
    uint8, 2 threads; not page faults, not idle spinning, still there after a 1 s sleep),
    whichever fastcls API it is; a fixed order charged it to the one after FAISS (the
    fitted search looked 85 ms against 67 ms one-shot).
    """
    items = list(runs.items())
    r = rep % len(items)
    return items[r:] + items[:r]


def fashion_mnist_path() -> Path | None:
    """The Fashion-MNIST folder (``FASTCLS_FASHION_MNIST`` or Debian's), if present."""
    path = Path(os.environ.get("FASTCLS_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
    return path if path.is_dir() else None


def load_workload(
    n_q: int, n_x: int, d: int, dtype: str, fashion: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Queries and training rows: Fashion-MNIST (skips when the files are missing), or
    random pixels, uint8, or pixels plus a random fraction (not whole numbers) as
    float32 or float64."""
    if fashion:
        path = fashion_mnist_path()
        if path is None:
            pytest.skip("Fashion-MNIST files not found (apt install dataset-fashion-mnist)")
        from fastcls.datasets import load_mnist

        X, _, Q, _ = load_mnist(path, n_train=n_x, n_test=n_q)
        return Q.reshape(n_q, -1), X.reshape(n_x, -1)
    Q, X = knn_problem(n_q, n_x, d, np.uint8, seed=0)
    if dtype == "uint8":
        return Q, X
    rng = np.random.default_rng(1)
    Qf = Q.astype(np.float32) + rng.random(Q.shape, dtype=np.float32)
    Xf = X.astype(np.float32) + rng.random(X.shape, dtype=np.float32)
    return Qf.astype(dtype), Xf.astype(dtype)


def workload_data(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Queries and training rows of workload ``name``."""
    n_q, n_x, d, dtype, _ = WORKLOADS[name]
    return load_workload(n_q, n_x, d, dtype, name.startswith("fashion-mnist"))


def _fitted(Q, X):
    """``KNearestNeighbor`` fitted once (training rows validated there), search timed."""
    model = fastcls.KNearestNeighbor(k=K, metric=METRIC, n_jobs=THREADS).fit(
        X, np.arange(len(X)) % 2
    )
    model.kneighbors(Q[:4])  # JIT warm-up
    return lambda: model.kneighbors(Q)


def _setup(library, Q, X):
    if library == "fastcls-fitted":
        return _fitted(Q, X)
    impl = TABLE[library]
    if not impl.available():
        pytest.skip(f"{library} needs {impl.requires}")
    Qs = Q[: SLICES.get(library, Q.shape[0])]
    return impl(Qs, X, k=K, metric=METRIC, **OPTIONS.get(library, {}))


def _recall(idx, ref_idx) -> float:
    pairs = zip(idx, ref_idx, strict=True)
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in pairs]))


def _ids(name: str) -> str:
    return f"{name}[q{SLICES[name]}]" if name in SLICES else name


@pytest.fixture(scope="module")
def threads():
    fastcls.set_num_threads(THREADS)
    return fastcls.get_num_threads()


@pytest.fixture(scope="module")
def faiss_level():
    """FAISS's SIMD level for this module (AVX2 on the proxy), recorded in extra_info."""
    return faiss_simd_level()


@pytest.mark.parametrize("library", LIBRARIES, ids=_ids)
@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_knn_l2(benchmark, threads, faiss_level, workload, library):
    n_q, n_x, d, dtype, peers = WORKLOADS[workload]
    if library not in ("fastcls", "fastcls-fitted", "faiss", *peers):
        pytest.skip(f"{library} is not timed on this workload")
    Q, X = workload_data(workload)
    fn = _setup(library, Q, X)
    n_timed = min(SLICES.get(library, n_q), n_q)
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
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        warm = 1 if library in ("fastcls", "fastcls-fitted", "faiss") else 0
        benchmark.pedantic(fn, rounds=ROUNDS.get(library, 1), iterations=1, warmup_rounds=warm)
        d_got, i_got = fn()
    ref_d, ref_i = TABLE["reference"](Q[:5], X, k=K, metric=METRIC)()
    benchmark.extra_info["recall_first5"] = _recall(i_got[:5], ref_i)
    if library.startswith("fastcls"):  # the timed result is the exact one
        np.testing.assert_array_equal(i_got[:5], ref_i)
        np.testing.assert_allclose(d_got[:5], ref_d, rtol=1e-12)


@pytest.mark.parametrize("impl", ["fastcls", "faiss"])
def test_knn_l2_near_duplicates(benchmark, threads, faiss_level, impl):
    Q, X = near_duplicates(ND_QUERIES, ND_TRAIN, ND_FEATURES)
    fn = _setup(impl, Q, X)
    benchmark.group = f"kneighbors-{METRIC}-near-duplicates|{ND_QUERIES}x{ND_TRAIN}x{ND_FEATURES}"
    from threadpoolctl import threadpool_limits

    from fastcls.kernels import l2

    before = l2.STATS["fallback_queries"]
    with threadpool_limits(limits=threads):
        benchmark.pedantic(fn, rounds=3, iterations=1, warmup_rounds=1)
        _, i = fn()
    _, ref_i = TABLE["reference"](Q, X, k=K, metric=METRIC)()
    recall = _recall(i, ref_i)
    benchmark.extra_info.update(
        {
            "shape": f"{ND_QUERIES}x{ND_TRAIN}x{ND_FEATURES}",
            "k": K,
            "recall": recall,
            "fastcls_fallback_queries": l2.STATS["fallback_queries"] - before,
            "faiss_simd": faiss_level,
        }
    )
    print(f"\nnear-duplicates recall@{K} vs float64 reference: {impl} = {recall:.3f}")
    if impl == "fastcls":
        np.testing.assert_array_equal(i, ref_i)


# --------------------------------------------------------------------------- A/B runner
def interleaved_ab(threads: int, reps: int) -> dict[str, float]:
    """fastcls float32, faiss.knn float32 and fastcls uint8 alternating in every rep.

    On a shared machine this is fairer than pytest-benchmark groups, whose
    implementations run minutes apart under different load. Returns median ms.
    """
    import time

    import faiss
    from threadpoolctl import threadpool_limits

    level = faiss_simd_level()
    n_queries, n_train, n_features = (50, 500, 3072) if SMALL else (1000, 10000, 3072)
    Q, X = knn_problem(n_queries, n_train, n_features, np.uint8, seed=0)
    Xf, Qf = X.astype(np.float32) + np.float32(0.5), Q.astype(np.float32)
    fastcls.set_num_threads(threads)
    runs = {
        "fastcls-float32": lambda: fastcls.kneighbors(Qf, Xf, K, n_jobs=threads),
        "faiss-float32": lambda: faiss.knn(Qf, Xf, K),
        "fastcls-uint8": lambda: fastcls.kneighbors(Q, X, K, n_jobs=threads),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    with threadpool_limits(limits=threads):
        for fn in runs.values():  # warm-up (JIT, scratch buffers, thread pools)
            fn()
        for rep in range(reps):
            for name, fn in rotated(runs, rep):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    med = {name: float(np.median(t)) * 1e3 for name, t in times.items()}
    fa = np.array(times["faiss-float32"])
    print(
        f"threads={threads} reps={reps} shape={n_queries}x{n_train}x{n_features} k={K}"
        f" faiss SIMD level={level}"
    )
    for name in runs:
        per_rep = float(np.median(np.array(times[name]) / fa))
        ratio = med[name] / med["faiss-float32"]
        print(
            f"  {name:16s} median {med[name]:8.1f} ms   / faiss: {ratio:.3f}"
            f" (median per-rep ratio {per_rep:.3f})"
        )
    return med


def interleaved_table(reps: int = 5, threads: int = 2) -> None:
    """Every row of the k-NN table, interleaved: fastcls fitted, fastcls one-shot and FAISS
    (and the no-loop NumPy version for float64) alternate within each repetition.

    Prints medians and the median per-repetition ratio FAISS time / fastcls time (the
    order rotates between repetitions, see :func:`rotated`). FAISS's
    L1 on Fashion-MNIST is not run here (about a minute per repetition; see the bench).
    ``python bench/bench_knn_l2.py table [reps]``.
    """
    import time

    import faiss

    from fastcls.kernels.l2 import selected_paths
    from fastcls.reference import l2_distances_no_loops

    fastcls.set_num_threads(threads)
    print(selected_paths(), "faiss SIMD level:", faiss_simd_level())

    from fastcls._config import override
    from fastcls.kernels.l2 import float_gemm

    def row(name, Q, X, metric, faiss_too=True, extra=None):
        y = np.arange(len(X)) % 2
        model = fastcls.KNearestNeighbor(k=K, metric=metric).fit(X, y)
        runs = {
            "fitted": lambda: model.kneighbors(Q),
            "kneighbors": lambda: fastcls.kneighbors(Q, X, K, metric),
        }
        if metric == "l2" and Q.dtype != np.uint8 and float_gemm() == "amx":

            def fitted_blas():  # the same search with the BLAS sgemm, for comparison
                with override(l2_float_gemm="blas"):
                    return model.kneighbors(Q)

            runs["fitted-blas"] = fitted_blas
        if faiss_too:
            Qf = np.ascontiguousarray(Q, np.float32)
            Xf = np.ascontiguousarray(X, np.float32)
            code = faiss.METRIC_L1 if metric == "l1" else faiss.METRIC_L2
            runs["faiss"] = lambda: faiss.knn(Qf, Xf, K, metric=code)
        runs.update(extra or {})
        for fn in runs.values():
            fn()
        times: dict[str, list[float]] = {n: [] for n in runs}
        for rep in range(reps):
            for n, fn in rotated(runs, rep):
                t0 = time.perf_counter()
                fn()
                times[n].append(time.perf_counter() - t0)
        base = np.array(times.get("faiss", times["fitted"]))
        cells = [f"{n} {np.median(v) * 1e3:.0f} ms (x{np.median(base / np.array(v)):.2f})"
                 for n, v in times.items()]  # fmt: skip
        print(f"{name}: " + "  ".join(cells), flush=True)

    P, X = load_workload(1000, 10000, 3072, "uint8", False)
    F, XF = load_workload(1000, 10000, 3072, "float32", False)
    row("L2 float32 500 q", F[:500], XF, "l2")
    row("L2 float32 1000 q", F, XF, "l2")
    row("L2 uint8 1000 q", P, X, "l2")
    row("L1 float32 500 q", F[:500], XF, "l1")
    row("L1 uint8 500 q", P[:500], X, "l1")
    F64, X64 = F[:500].astype(np.float64), XF.astype(np.float64)

    def no_loops():
        d = l2_distances_no_loops(F64, X64)
        return np.argsort(d, axis=1, kind="stable")[:, :K]

    row("L2 float64 500 q", F64, X64, "l2", extra={"no-loops": no_loops})
    if fashion_mnist_path() is not None:
        Qm, Xm = load_workload(10000, 60000, 784, "uint8", True)
        row("Fashion-MNIST L2", Qm, Xm, "l2")
        row("Fashion-MNIST L1", Qm, Xm, "l1", faiss_too=False)


def prune_ab(reps: int = 3, threads: int = 2) -> None:
    """Partial-distance pruning off and on, alternated: whole Fashion-MNIST searches of a
    fitted model (10000 queries x 60000 rows, k=5), ``settings.knn_prune`` "never" then
    "auto" in each round, L2 and L1; asserts identical neighbours.
    ``python bench/bench_knn_l2.py prune [reps]``."""
    import time

    from fastcls._config import override

    if fashion_mnist_path() is None:
        print("Fashion-MNIST files not found (apt install dataset-fashion-mnist)")
        return
    fastcls.set_num_threads(threads)
    Q, X = load_workload(10000, 60000, 784, "uint8", True)
    y = np.zeros(len(X), dtype=np.int64)
    for metric in ("l2", "l1"):
        model = fastcls.KNearestNeighbor(k=5, metric=metric).fit(X, y)
        found = {}
        for mode in ("never", "auto"):  # warm-up: compile, scratch
            with override(knn_prune=mode):
                found[mode] = model.kneighbors(Q[:2000])[1]
        times: dict[str, list[float]] = {"never": [], "auto": []}
        for _ in range(reps):
            for mode in times:
                with override(knn_prune=mode):
                    t0 = time.perf_counter()
                    found[mode] = model.kneighbors(Q)[1]
                    times[mode].append(time.perf_counter() - t0)
            assert np.array_equal(found["never"], found["auto"])
        ratios = np.array(times["auto"]) / np.array(times["never"])
        cells = "  ".join(f"{m} {' / '.join(f'{t:.2f}' for t in v)} s" for m, v in times.items())
        spread = f"{ratios.min():.2f}-{ratios.max():.2f}x"
        print(f"Fashion-MNIST {metric}: {cells}  (auto / never {spread})")


if (
    __name__ == "__main__"
):  # python bench/bench_knn_l2.py [threads] [reps] | table [reps] | prune [reps]
    import sys

    if len(sys.argv) > 1 and sys.argv[1] == "prune":
        prune_ab(int(sys.argv[2]) if len(sys.argv) > 2 else 3)
    elif len(sys.argv) > 1 and sys.argv[1] == "table":
        interleaved_table(int(sys.argv[2]) if len(sys.argv) > 2 else 5)
    else:
        interleaved_ab(
            int(sys.argv[1]) if len(sys.argv) > 1 else 2,
            int(sys.argv[2]) if len(sys.argv) > 2 else 9,
        )
