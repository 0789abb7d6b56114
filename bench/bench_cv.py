"""Benchmark: 5-fold cross-validation of k-NN over the lectures' 10 values of k.

Workload (issue 4): 5000 x 3072 uint8 images (CIFAR-sized, synthetic, 10 classes),
k in [1, 3, 5, 8, 10, 12, 15, 20, 50, 100], 5 contiguous folds, per metric.

Implementations, side by side (``benchmark.group = "cross_validate_knn-<metric>|<shape>"``);
``fastcls`` and ``sklearn_gridsearch`` are the entries of
:data:`fastcls.testing.IMPLEMENTATIONS` ``["cross_validate_knn"]`` (checked by
``tests/test_implementations.py``), on :func:`fastcls.testing.cifar_like` data:

* ``fastcls``: :func:`fastcls.model_selection.cross_validate_knn`: one neighbour search
  per fold for ``k_max`` neighbours, every k voted from the same sorted lists.
* ``numpy_per_fold``: the plain NumPy loop, distance matrix once per fold (float64
  GEMM trick for L2, exact on integer pixels; a query loop for L1), stable argsort,
  bincount vote for each k.
* ``sklearn_gridsearch``: ``GridSearchCV(KNeighborsClassifier(algorithm="brute",
  metric=...), {"n_neighbors": ks}, cv=KFold(5))``: one fit + predict per fold and k.
  At full size its L1 run takes many minutes on 2 cores, so it only runs with
  ``FASTCLS_BENCH_SLOW=1``; ``sklearn_one_fit`` times one fold at one k instead
  (GridSearchCV does 50 of those for 10 k x 5 folds).

Every implementation's fold accuracies are checked to be identical to fastcls's.

Run::

    pytest bench/bench_cv.py --benchmark-enable -p no:cacheprovider
    FASTCLS_BENCH_SMALL=1 pytest bench/bench_cv.py --benchmark-enable  # CI smoke run
"""

from __future__ import annotations

import numpy as np
import pytest

from fastcls.model_selection import kfold_indices
from fastcls.testing import IMPLEMENTATIONS, bench_small, cifar_like, env_flag

SMALL = bench_small()
SLOW = env_flag("FASTCLS_BENCH_SLOW")
N, D = (500, 192) if SMALL else (5000, 3072)
N_CLASSES = 10
N_FOLDS = 5
KS = [1, 3, 5, 8, 10, 12, 15, 20, 50, 100]
SK_METRIC = {"l1": "manhattan", "l2": "euclidean"}
#: timed rounds per implementation (the slow peers run once)
ROUNDS = {"fastcls": 3, "numpy_per_fold": 1, "sklearn_gridsearch": 1, "sklearn_one_fit": 1}


def make_data(n: int = N, d: int = D, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-like uint8 images (:func:`fastcls.testing.cifar_like`)."""
    return cifar_like(n, d, N_CLASSES, seed=seed)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_data()
    TABLE["fastcls"](X[:60], y[:60], ks=[1, 3], metric="l2", n_folds=N_FOLDS)  # JIT warm-up
    return X, y


@pytest.fixture(scope="module")
def truth(data) -> dict[str, dict[int, np.ndarray]]:
    """fastcls's fold accuracies per metric: what every peer must reproduce."""
    X, y = data
    return {m: run_fastcls(X, y, m) for m in ("l1", "l2")}


# --------------------------------------------------------------------------- implementations
TABLE = IMPLEMENTATIONS["cross_validate_knn"]


def run_fastcls(X, y, metric):
    return TABLE["fastcls"](X, y, ks=KS, metric=metric, n_folds=N_FOLDS)()


def _numpy_distances(Q, T, metric):
    if metric == "l2":  # the lecture's no-loop trick; exact here (integer pixels, float64)
        Qf, Tf = Q.astype(np.float64), T.astype(np.float64)
        return (Qf**2).sum(1)[:, None] + (Tf**2).sum(1)[None, :] - 2.0 * Qf @ Tf.T
    Tf = T.astype(np.float32)  # sums of integers < 2**24: exact in float32
    out = np.empty((Q.shape[0], T.shape[0]), dtype=np.float32)
    for i in range(Q.shape[0]):
        out[i] = np.abs(Tf - Q[i].astype(np.float32)).sum(axis=1)
    return out


def run_numpy_per_fold(X, y, metric):
    acc = {k: np.empty(N_FOLDS) for k in KS}
    for f, (tr, va) in enumerate(kfold_indices(X.shape[0], N_FOLDS)):
        dist = _numpy_distances(X[va], X[tr], metric)
        order = np.argsort(dist, axis=1, kind="stable")[:, : max(KS)]
        nbr = y[tr][order]
        for k in KS:
            pred = np.array([np.argmax(np.bincount(r[:k], minlength=N_CLASSES)) for r in nbr])
            acc[k][f] = np.mean(pred == y[va])
    return acc


def run_sklearn_one_fit(X, y, metric):
    """One of GridSearchCV's 50 fits: fold 0, k = 10."""
    from sklearn.neighbors import KNeighborsClassifier

    tr, va = kfold_indices(X.shape[0], N_FOLDS)[0]
    Xf = X.astype(np.float32)
    clf = KNeighborsClassifier(n_neighbors=10, algorithm="brute", metric=SK_METRIC[metric])
    return {10: np.array([clf.fit(Xf[tr], y[tr]).score(Xf[va], y[va])])}


def _table(library):
    """Set up the shared table's entry (untimed); the benchmark times the call."""
    return lambda X, y, metric: TABLE[library](X, y, ks=KS, metric=metric, n_folds=N_FOLDS)


def _plain(run):
    return lambda X, y, metric: lambda: run(X, y, metric)


#: implementation -> setup(X, y, metric) -> zero-argument callable
IMPLS = {
    "fastcls": _table("fastcls"),
    "numpy_per_fold": _plain(run_numpy_per_fold),
    "sklearn_gridsearch": _table("sklearn"),
    "sklearn_one_fit": _plain(run_sklearn_one_fit),
}


@pytest.mark.parametrize("metric", ["l2", "l1"])
@pytest.mark.parametrize("impl", list(IMPLS))
def test_cv_knn(benchmark, data, truth, impl, metric):
    if impl.startswith("sklearn"):
        pytest.importorskip("sklearn")
    if impl == "sklearn_gridsearch" and metric == "l1" and not (SMALL or SLOW):
        pytest.skip("full-size L1 GridSearchCV takes many minutes; FASTCLS_BENCH_SLOW=1 runs it")
    X, y = data
    benchmark.group = f"cross_validate_knn-{metric}|{N}x{D}"
    benchmark.extra_info.update(
        {"n_folds": N_FOLDS, "ks": KS, "fits": N_FOLDS * len(KS) if "grid" in impl else None}
    )
    fn = IMPLS[impl](X, y, metric)
    got = benchmark.pedantic(fn, rounds=ROUNDS[impl], iterations=1, warmup_rounds=0)
    differ = [
        (int(k), f)
        for k in got
        for f in range(got[k].size)
        if got[k][f] != truth[metric][int(k)][f]
    ]
    benchmark.extra_info["identical_accuracies"] = not differ
    if impl.startswith("sklearn"):
        # scikit-learn orders exactly equal distances its own way: any difference must
        # come from a distance tie straddling the k-th neighbour
        unexplained = [(k, f) for k, f in differ if not _tie_at_kth(X, metric, k, f)]
        benchmark.extra_info["differ_only_at_distance_ties"] = differ
        assert not unexplained, unexplained
    else:
        # exact integer distances and the same tie rules: the accuracies must agree
        assert not differ, differ


def _tie_at_kth(X, metric, k, fold):
    """Whether some query of ``fold`` has equal k-th and (k+1)-th neighbour distances."""
    from fastcls import kneighbors

    tr, va = kfold_indices(X.shape[0], N_FOLDS)[fold]
    dist, _ = kneighbors(X[va], X[tr], k + 1, metric)
    return bool(np.any(dist[:, k - 1] == dist[:, k]))
