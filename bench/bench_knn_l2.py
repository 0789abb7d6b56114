"""Exact L2 k-NN: fastcls vs the NumPy reference vs FAISS vs scikit-learn.

Workload: random uint8 pixels, 1000 queries x 10000 training rows x 3072 features,
k = 10 (CIFAR-10 shaped, :func:`fastcls.testing.knn_problem`); the float32 group uses
the same values as float32. Set ``FASTCLS_BENCH_SMALL=1`` (see
:func:`fastcls.testing.bench_small`) for a smoke-sized run (50 x 500 x 3072) and
``FASTCLS_BENCH_THREADS=n`` to pin every implementation to ``n`` threads (default:
all cores).

Run::

    pytest bench/bench_knn_l2.py --benchmark-enable -p no:cacheprovider

Groups ``kneighbors-l2|<shape>-float32`` and ``kneighbors-l2|<shape>-uint8`` time, side
by side, the L2 implementations of :data:`fastcls.testing.IMPLEMENTATIONS` ``["kneighbors"]``
(the table that ``tests/test_implementations.py`` checks):

* ``fastcls``: ``fastcls.kneighbors(Q, X, k, "l2")`` (centred sgemm + fused selection +
  certified exact rerank; exact);
* ``reference``: :func:`fastcls.reference.kneighbors_reference` (float64, a loop over the
  queries) on a slice of the queries (id ``[q10]``; ``extra_info["scale"]`` converts);
* ``numpy-no-loops``: the lecture's vectorised reference, ``l2_distances_no_loops`` (float64 GEMM
  trick) + a stable argsort, on the full problem (80 MB distance matrix);
* ``faiss``: ``faiss.knn(Q, X, k)`` (float32, METRIC_L2; approximate in the last bits);
* ``sklearn``: ``NearestNeighbors(algorithm="brute").fit(X).kneighbors(Q)``.

FAISS has no uint8 search: in the uint8 group it searches the same values as float32.
Thread counts: numba and FAISS through ``fastcls.set_num_threads``, BLAS and OpenMP
(NumPy, scikit-learn) through ``threadpoolctl``. fastcls is JIT-warmed before timing.

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

import numpy as np
import pytest

import fastcls
from fastcls.testing import IMPLEMENTATIONS, bench_small, knn_problem, near_duplicates

SMALL = bench_small()
THREADS = int(os.environ.get("FASTCLS_BENCH_THREADS", "0")) or None
N_QUERIES, N_TRAIN, N_FEATURES, K = (50, 500, 3072, 10) if SMALL else (1000, 10000, 3072, 10)
METRIC = "l2"
#: near-duplicates: n_queries x D >= 128000, or faiss takes its exact non-GEMM path
ND_QUERIES, ND_TRAIN, ND_FEATURES = (128, 400, 1024) if SMALL else (128, 4000, 1024)
ROUNDS = {"fastcls": 5, "faiss": 5, "reference": 1, "numpy-no-loops": 1, "sklearn": 1}
#: queries given to the slow peers (their time is scaled to N_QUERIES)
SLICES = {"reference": 10 if not SMALL else 5}
#: the shared table's L2 k-NN implementations
TABLE = {n: impl for n, impl in IMPLEMENTATIONS["kneighbors"].items() if impl.supports(METRIC)}
#: options per library: every implementation pinned to THREADS
OPTIONS = {"fastcls": {"n_jobs": THREADS}, "sklearn": {"n_jobs": THREADS or -1}}


def _limits():
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=fastcls.get_num_threads())


@pytest.fixture(scope="module")
def data():
    Q, X = knn_problem(N_QUERIES, N_TRAIN, N_FEATURES, np.uint8, seed=0)
    fastcls.set_num_threads(THREADS)
    return {"uint8": (Q, X), "float32": (Q.astype(np.float32), X.astype(np.float32))}


def _setup(library, Q, X):
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


@pytest.mark.parametrize("impl", list(TABLE), ids=_ids)
@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_knn_l2(benchmark, data, dtype, impl):
    Q, X = data[dtype]
    fn = _setup(impl, Q, X)
    n_q = SLICES.get(impl, N_QUERIES)
    benchmark.group = f"kneighbors-{METRIC}|{N_QUERIES}x{N_TRAIN}x{N_FEATURES}-{dtype}"
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
    with _limits():
        warm = 1 if impl in ("fastcls", "faiss") else 0
        benchmark.pedantic(fn, rounds=ROUNDS.get(impl, 1), iterations=1, warmup_rounds=warm)
        d, i = fn()
    ref_d, ref_i = TABLE["reference"](Q[:5], X, k=K, metric=METRIC)()
    benchmark.extra_info["recall_first5"] = _recall(i[:5], ref_i)
    if impl == "fastcls":  # the timed result is the exact one
        np.testing.assert_array_equal(i[:5], ref_i)
        np.testing.assert_allclose(d[:5], ref_d, rtol=1e-12)


@pytest.mark.parametrize("impl", ["fastcls", "faiss"])
def test_knn_l2_near_duplicates(benchmark, impl):
    Q, X = near_duplicates(ND_QUERIES, ND_TRAIN, ND_FEATURES)
    fastcls.set_num_threads(THREADS)
    fn = _setup(impl, Q, X)
    benchmark.group = f"kneighbors-{METRIC}-near-duplicates|{ND_QUERIES}x{ND_TRAIN}x{ND_FEATURES}"
    from fastcls.kernels import l2

    before = l2.STATS["fallback_queries"]
    with _limits():
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

    Q, X = knn_problem(N_QUERIES, N_TRAIN, N_FEATURES, np.uint8, seed=0)
    Xf, Qf = X.astype(np.float32), Q.astype(np.float32)
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
        for _ in range(reps):
            for name, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    med = {name: float(np.median(t)) * 1e3 for name, t in times.items()}
    fa = np.array(times["faiss-float32"])
    print(f"threads={threads} reps={reps} shape={N_QUERIES}x{N_TRAIN}x{N_FEATURES} k={K}")
    for name in runs:
        per_rep = float(np.median(np.array(times[name]) / fa))
        ratio = med[name] / med["faiss-float32"]
        print(
            f"  {name:16s} median {med[name]:8.1f} ms   / faiss: {ratio:.3f}"
            f" (median per-rep ratio {per_rep:.3f})"
        )
    return med


if __name__ == "__main__":  # python bench/bench_knn_l2.py [threads] [reps]
    import sys

    interleaved_ab(
        int(sys.argv[1]) if len(sys.argv) > 1 else 2, int(sys.argv[2]) if len(sys.argv) > 2 else 9
    )
