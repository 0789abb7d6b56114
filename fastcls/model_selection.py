"""Model selection: splits, k-fold cross-validation of k-NN (every k in one pass), search.

The lectures' rule: choose hyperparameters on validation data or by cross-validation,
and touch the test set once, at the end.

* :func:`train_val_test_split` and :func:`kfold_indices` make the splits.
* :func:`cross_validate_knn` cross-validates k-NN for many ``k`` and metrics at once:
  for each metric and fold it searches the ``k_max`` nearest neighbours of the fold's
  samples among the other folds (one pass over the sample pairs per metric, instead of
  one per fold *and* per ``k``), then votes for every ``k`` from those sorted lists.
  Fold accuracies are exactly those of refitting a :class:`~fastcls.KNearestNeighbor`
  per fold and per ``k``. On pixel data (uint8, or floats holding whole numbers
  0..255) each distance between two folds is computed once, by the exact integer
  kernels, and serves both folds (``settings.cv_symmetric_pairs``): half the work.
* :func:`search_linear` runs a grid or log-uniform random search over learning rate
  and regularisation for :class:`~fastcls.linear.LinearSVM` / ``Softmax``.
"""

from __future__ import annotations

import itertools
import numbers
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fastcls import _validation as V
from fastcls._config import num_threads, settings
from fastcls._progress import Progress, compile_seconds

__all__ = [
    "CVResult",
    "SearchResult",
    "cross_validate_knn",
    "default_linear_grid",
    "kfold_indices",
    "search_linear",
    "train_val_test_split",
]


# --------------------------------------------------------------------------- splits
def _largest_remainder(counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` over classes in proportion to ``counts`` (Hamilton's method).

    Remainder ties go to the class with the larger count, then the lower class index.
    """
    quota = counts * (total / counts.sum())
    alloc = np.floor(quota).astype(np.int64)
    short = total - int(alloc.sum())
    if short > 0:
        order = np.lexsort((np.arange(counts.size), -counts, -(quota - alloc)))
        alloc[order[:short]] += 1
    return alloc


def train_val_test_split(
    X: Any,
    y: Any,
    val_size: int | float,
    test_size: int | float,
    seed: int | np.random.Generator | None = None,
    stratify: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle and split data into training, validation and test parts.

    Parameters
    ----------
    X : array-like (n_samples, D) or images (n_samples, H, W[, C])
        Any numeric dtype; rows are taken as they are (no dtype conversion).
    y : array-like (n_samples,)
        Integer or string labels.
    val_size, test_size : int or float
        A count (int >= 1) or a fraction of ``n_samples`` (float in (0, 1), rounded up).
        At least one sample must be left for training.
    seed : int, numpy Generator or None
        Seed of the shuffle; the same seed gives the same split.
    stratify : bool, default False
        Keep the class proportions in every part (largest-remainder allocation per
        class). Every class must then reach every part: a class too small for that,
        or a part smaller than the number of classes, is an error.

    Returns
    -------
    X_train, X_val, X_test : ndarray
        Rows of ``X`` (same trailing shape and dtype).
    y_train, y_val, y_test : ndarray
        The matching labels. Each part keeps the shuffled order.

    Examples
    --------
    >>> import numpy as np
    >>> X, y = np.arange(20).reshape(10, 2), np.arange(10) % 2
    >>> Xtr, Xva, Xte, ytr, yva, yte = train_val_test_split(X, y, 2, 0.3, seed=0)
    >>> Xtr.shape, Xva.shape, Xte.shape
    ((5, 2), (2, 2), (3, 2))
    """
    Xa = V.as_numeric_array(X, "X")
    if Xa.ndim < 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features) or images, got shape {Xa.shape}")
    n = Xa.shape[0]
    if n < 3:
        raise ValueError(f"X must have at least 3 samples to split in three, got {n}")
    y_arr = np.asarray(y)
    classes, y_enc = V.check_labels(y_arr, n)
    if not isinstance(stratify, (bool, np.bool_)):
        raise TypeError(f"stratify must be True or False, got {stratify!r}")
    n_val = V.check_split_size(val_size, "val_size", n)
    n_test = V.check_split_size(test_size, "test_size", n)
    if n_val + n_test >= n:
        raise ValueError(
            f"val_size + test_size leave no training samples: {n_val} + {n_test} >= "
            f"{n} samples; make them smaller"
        )
    rng = V.check_random_state(seed)
    if not stratify:
        perm = rng.permutation(n)
        parts = [perm[n_val + n_test :], perm[:n_val], perm[n_val : n_val + n_test]]
    else:
        counts = np.bincount(y_enc, minlength=classes.size)
        for part, size in (("val_size", n_val), ("test_size", n_test)):
            if size < classes.size:
                raise ValueError(
                    f"stratify=True: {part} gives {size} samples, fewer than the "
                    f"{classes.size} classes, so some class would be empty; enlarge {part}"
                )
        val_c = _largest_remainder(counts, n_val)
        test_c = _largest_remainder(counts, n_test)
        train_c = counts - val_c - test_c
        for c in range(classes.size):
            if min(val_c[c], test_c[c], train_c[c]) < 1:
                raise ValueError(
                    f"stratify=True: class {classes[c].item()!r} has {counts[c]} sample(s), "
                    "too few to appear in the train, val and test parts (one of them would "
                    "have none of that class); remove the class, collect more samples, or use "
                    "stratify=False"
                )
        tr, va, te = [], [], []
        for c in range(classes.size):
            members = rng.permutation(np.flatnonzero(y_enc == c))
            va.append(members[: val_c[c]])
            te.append(members[val_c[c] : val_c[c] + test_c[c]])
            tr.append(members[val_c[c] + test_c[c] :])
        # one more shuffle per part so classes are interleaved
        parts = [rng.permutation(np.concatenate(p)) for p in (tr, va, te)]
    Xs = [Xa[p] for p in parts]
    ys = [y_arr[p] for p in parts]
    return Xs[0], Xs[1], Xs[2], ys[0], ys[1], ys[2]


def kfold_indices(
    n: int,
    n_folds: int = 5,
    shuffle: bool = False,
    seed: int | np.random.Generator | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Training and validation indices of each fold of k-fold cross-validation.

    Without shuffling the folds are contiguous, as ``np.array_split(np.arange(n),
    n_folds)`` (the first ``n % n_folds`` folds hold one extra sample), which is also
    scikit-learn's ``KFold(n_folds)``. With shuffling, the folds are contiguous chunks
    of a seeded permutation. Both index arrays of a fold are sorted ascending, so the
    training part keeps the other folds in their original order.

    Parameters
    ----------
    n : int
        Number of samples (>= ``n_folds``).
    n_folds : int, default 5
        Number of folds, ``2 <= n_folds <= n``.
    shuffle : bool, default False
    seed : int, numpy Generator or None
        Seed of the shuffle (ignored when ``shuffle`` is False).

    Returns
    -------
    list of (train_idx, val_idx)
        ``n_folds`` pairs of int64 arrays; the ``val_idx`` partition ``range(n)``.

    Examples
    --------
    >>> [v.tolist() for _, v in kfold_indices(5, 2)]
    [[0, 1, 2], [3, 4]]
    """
    n = V.check_int(n, "n", min_value=1)
    n_folds = V.check_n_folds(n_folds, n)
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle must be True or False, got {shuffle!r}")
    order = V.check_random_state(seed).permutation(n) if shuffle else np.arange(n)
    folds = []
    for chunk in np.array_split(order, n_folds):
        mask = np.zeros(n, dtype=bool)
        mask[chunk] = True
        folds.append((np.flatnonzero(~mask), np.flatnonzero(mask)))
    return folds


# --------------------------------------------------------------------------- k-NN CV
@dataclass
class CVResult:
    """Cross-validation accuracies of k-NN for every (metric, k).

    Attributes
    ----------
    ks : ndarray (n_ks,)
        The ``k`` values, ascending.
    metrics : tuple of str
        Canonical metric names, in the order given.
    n_folds : int
    weights : str
    fold_accuracies : dict
        ``fold_accuracies[(metric, k)]`` is an ndarray (n_folds,) of the validation
        accuracy of each fold.
    mean_accuracies, std_accuracies : dict
        Mean and (population) standard deviation over folds, same keys.
    best_params_ : dict
        ``{"metric": ..., "k": ...}`` of the highest mean accuracy; ties go to the
        first metric in ``metrics`` order, then the smallest ``k``.
    best_score_ : float
        Mean accuracy of ``best_params_``.
    times_ : dict
        Seconds spent per metric (search + votes).
    """

    ks: np.ndarray
    metrics: tuple[str, ...]
    n_folds: int
    weights: str
    fold_accuracies: dict[tuple[str, int], np.ndarray]
    times_: dict[str, float] = field(default_factory=dict)

    @property
    def mean_accuracies(self) -> dict[tuple[str, int], float]:
        return {key: float(np.mean(acc)) for key, acc in self.fold_accuracies.items()}

    @property
    def std_accuracies(self) -> dict[tuple[str, int], float]:
        return {key: float(np.std(acc)) for key, acc in self.fold_accuracies.items()}

    @property
    def best_params_(self) -> dict[str, Any]:
        means = self.mean_accuracies
        best = None
        for metric in self.metrics:
            for k in self.ks.tolist():
                if best is None or means[(metric, k)] > means[best]:
                    best = (metric, k)
        assert best is not None
        return {"metric": best[0], "k": best[1]}

    @property
    def best_score_(self) -> float:
        p = self.best_params_
        return self.mean_accuracies[(p["metric"], p["k"])]

    def table(self) -> str:
        """Plain-text table: one row per k, mean +- std per metric."""
        means, stds = self.mean_accuracies, self.std_accuracies
        head = f"{'k':>5} " + " ".join(f"{m + ' mean+-std':>18}" for m in self.metrics)
        lines = [head]
        for k in self.ks.tolist():
            cells = " ".join(f"{means[(m, k)]:>10.4f} +-{stds[(m, k)]:.4f}" for m in self.metrics)
            lines.append(f"{k:>5} {cells}")
        return "\n".join(lines)

    def plot(self, ax: Any = None, metric: str | None = None) -> Any:
        """The lectures' figure: accuracy vs k, one point per fold, mean line, std bars.

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Drawn into a new figure when omitted.
        metric : str, optional
            Plot one metric only (default: all, one colour each).

        Returns
        -------
        matplotlib Axes

        Raises
        ------
        ImportError
            When matplotlib is missing (``pip install 'fastcls[plots]'``).
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("plotting needs matplotlib: pip install 'fastcls[plots]'") from exc
        metrics = self.metrics if metric is None else (V.check_metric(metric),)
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4.5))
        ks = self.ks
        for i, m in enumerate(metrics):
            colour = f"C{i}"
            for k in ks.tolist():
                acc = self.fold_accuracies[(m, k)]
                ax.scatter([k] * acc.size, acc, s=12, color=colour, alpha=0.5)
            mean = np.array([np.mean(self.fold_accuracies[(m, k)]) for k in ks.tolist()])
            std = np.array([np.std(self.fold_accuracies[(m, k)]) for k in ks.tolist()])
            ax.errorbar(ks, mean, yerr=std, color=colour, marker="o", capsize=3, label=m)
        ax.set_title(f"{self.n_folds}-fold cross-validation of k")
        ax.set_xlabel("k")
        ax.set_ylabel("cross-validation accuracy")
        ax.legend(title="metric")
        return ax


def _pixels(X: np.ndarray) -> np.ndarray | None:
    """``X`` as uint8 when it holds only whole numbers 0..255 (exact integer kernels)."""
    if X.dtype == np.uint8:
        return X
    from fastcls.kernels.l1 import as_exact_uint8

    return as_exact_uint8(X) if X.dtype.kind == "f" else None


def _vote_all_k(
    labels: np.ndarray, dist: np.ndarray, ks: np.ndarray, n_classes: int, weights: str
) -> np.ndarray:
    from fastcls.kernels import vote

    if weights == "uniform":
        return vote.majority_vote_all_k(labels, ks, n_classes)
    return vote.weighted_vote_all_k(labels, dist, ks, n_classes)


def _symmetric_neighbours(
    Xu: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], k_max: int, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """Every sample's ``k_max`` nearest neighbours outside its own fold, by global index.

    Each pair of folds ``a < b`` is evaluated once: one exact distance block (the
    integer kernels, so the values are the ones a search reports) serves the rows of
    ``a`` (neighbours in ``b``) and, transposed, the rows of ``b`` (neighbours in
    ``a``): half the distance computations of searching each fold against the others.
    Lists merge by ``(distance, global index)``; since each fold's training part keeps
    the global order, the result equals the per-fold search, ties included.
    Distances are the surrogate (squared for ``"l2"``).
    """
    from fastcls.kernels.l1 import l1_pairwise_uint8
    from fastcls.kernels.l2int import sqeuclidean_pairwise_int
    from fastcls.kernels.topk import merge_block_cols, merge_block_rows, new_topk

    pairwise = l1_pairwise_uint8 if metric == "l1" else sqeuclidean_pairwise_int
    best_d, best_i = new_topk(Xu.shape[0], k_max)
    vals = [v for _, v in folds]
    rows = [np.ascontiguousarray(Xu[v]) for v in vals]
    for a in range(len(vals)):
        for b in range(a + 1, len(vals)):
            # blocks of at most about 32 MiB of float64 distances
            step = max(1, (32 << 20) // (8 * max(1, vals[b].size)))
            for s in range(0, vals[a].size, step):
                ids = vals[a][s : s + step]
                block = np.empty((ids.size, vals[b].size))
                pairwise(rows[a][s : s + step], rows[b], block)
                merge_block_rows(block, ids, vals[b], best_d, best_i)
                merge_block_cols(block, ids, vals[b], best_d, best_i)
    return best_d, best_i


def cross_validate_knn(
    X: Any,
    y: Any,
    ks: Sequence[int] | int,
    metrics: Sequence[str] | str = ("l1", "l2"),
    n_folds: int = 5,
    weights: str = "uniform",
    *,
    shuffle: bool = False,
    seed: int | np.random.Generator | None = None,
    backend: str = "numba",
    n_jobs: int | None = None,
    progress: bool | None = False,
) -> CVResult:
    """k-fold cross-validation of k-NN for every ``k`` in ``ks`` and every metric.

    For each metric and fold, the fold's samples are searched once against the other
    folds (concatenated in their original order) for their ``max(ks)`` nearest
    neighbours; the sorted label lists then vote for every ``k`` at once. Each
    (validation, training) pair of a fold is thus evaluated once per metric, instead
    of once per metric, fold *and* ``k`` by refitting. Ties follow
    :class:`~fastcls.KNearestNeighbor`: equal distances -> the lower training index
    (of the fold's training part, whose order is the original order), equal votes ->
    the smallest label, so the fold accuracies equal per-fold refitting exactly.

    Parameters
    ----------
    X : array-like (n_samples, D) or images (n_samples, H, W[, C])
        float32, float64 or uint8 (other numeric dtypes are converted exactly).
    y : array-like (n_samples,)
        Integer or string labels.
    ks : sequence of int or int
        Neighbour counts, each ``1 <= k <=`` the smallest training part of a fold.
    metrics : str or sequence of str, default ("l1", "l2")
        Any of "l1", "l2", "sqeuclidean" (and their aliases).
    n_folds : int, default 5
        ``2 <= n_folds <= n_samples``; folds as :func:`kfold_indices`.
    weights : {"uniform", "distance"}, default "uniform"
        Vote as :class:`~fastcls.KNearestNeighbor` does.
    shuffle : bool, default False
        Shuffle before cutting folds (contiguous folds otherwise, like scikit-learn's
        ``KFold(n_folds)``).
    seed : int, numpy Generator or None
        Seed of the shuffle.
    backend : {"numba", "numpy"}, default "numba"
        Neighbour search backend of :func:`fastcls.kneighbors`.
    n_jobs : int, optional
        Threads (None: the current :func:`fastcls.num_threads` setting, all cores
        by default; -1: all cores).
    progress : bool or None, default False
        Progress bar on stderr (None: only when stderr is a terminal).

    Returns
    -------
    CVResult
        ``fold_accuracies[(metric, k)]``, means, standard deviations, ``best_params_``
        and ``plot()``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 256, size=(60, 12), dtype=np.uint8)
    >>> y = (X[:, 0] > 127).astype(int)
    >>> res = cross_validate_knn(X, y, ks=[1, 3, 5], metrics="l1", n_folds=3)
    >>> res.fold_accuracies[("l1", 3)].shape
    (3,)
    >>> sorted(res.best_params_)
    ['k', 'metric']
    """
    from fastcls.neighbors import kneighbors

    Xa = V.check_array(X, "X")
    n = Xa.shape[0]
    _, y_enc = V.check_labels(y, n)
    n_classes = int(y_enc.max()) + 1
    n_folds = V.check_n_folds(n_folds, n)
    metrics_c = V.check_metrics(metrics)
    weights = V.check_choice(weights, "weights", ("uniform", "distance"))
    folds = kfold_indices(n, n_folds, shuffle=shuffle, seed=seed)
    min_train = min(tr.size for tr, _ in folds)
    ks_arr = V.check_ks(ks, min_train)
    k_max = int(ks_arr[-1])

    fold_acc = {(m, k): np.empty(n_folds) for m in metrics_c for k in ks_arr.tolist()}
    times: dict[str, float] = {}
    pixels = _pixels(Xa) if backend == "numba" and settings.cv_symmetric_pairs else None
    with Progress(len(metrics_c) * n_folds, "k-NN cross-validation", enabled=progress) as bar:
        for m in metrics_c:
            t0 = time.perf_counter()
            if pixels is not None:
                with num_threads(n_jobs):
                    all_d, all_i = _symmetric_neighbours(pixels, folds, k_max, m)
                if m == "l2":
                    np.sqrt(all_d, out=all_d)
            for f, (train_idx, val_idx) in enumerate(folds):
                if pixels is not None:
                    dist = np.ascontiguousarray(all_d[val_idx])
                    labels = np.ascontiguousarray(y_enc[all_i[val_idx]])
                    pred = _vote_all_k(labels, dist, ks_arr, n_classes, weights)
                    acc = (pred == y_enc[val_idx][None, :]).mean(axis=1)
                    for t, k in enumerate(ks_arr.tolist()):
                        fold_acc[(m, k)][f] = acc[t]
                    bar.update()
                    continue
                # the training part keeps the global order, so "lower index wins" in
                # the reduced set is the same rule as refitting on X[train_idx]
                dist, idx = kneighbors(
                    Xa[val_idx], Xa[train_idx], k_max, m, backend=backend, n_jobs=n_jobs
                )
                labels = np.ascontiguousarray(y_enc[train_idx][idx])
                pred = _vote_all_k(labels, dist, ks_arr, n_classes, weights)
                correct = pred == y_enc[val_idx][None, :]
                acc = correct.mean(axis=1)
                for t, k in enumerate(ks_arr.tolist()):
                    fold_acc[(m, k)][f] = acc[t]
                bar.update()
            times[m] = time.perf_counter() - t0
    return CVResult(
        ks=ks_arr,
        metrics=metrics_c,
        n_folds=n_folds,
        weights=weights,
        fold_accuracies=fold_acc,
        times_=times,
    )


# --------------------------------------------------------------------------- search
_SEARCH_PARAMS = ("learning_rate", "reg")
#: multiples of ``1 / mean ||x||^2`` tried as learning rates by the default grid
DEFAULT_LR_MULTIPLIERS = (0.5, 2.0, 8.0)
#: regularisation strengths tried by the default grid
DEFAULT_REGS = (1e-4, 1e-3, 1e-2)


def default_linear_grid(
    X_train: Any,
    lr_multipliers: Sequence[float] = DEFAULT_LR_MULTIPLIERS,
    regs: Sequence[float] = DEFAULT_REGS,
) -> dict[str, list[float]]:
    """The default search space of :func:`search_linear` for training rows ``X_train``.

    SGD on a linear model is stable for learning rates up to about ``1 / ||x||^2``, so
    the learning rates are ``lr_multipliers / mean_i ||x_i||^2`` (two significant
    digits): one grid suits standardised features, 64 digit pixels and 3072 raw CIFAR
    pixels alike (the lectures' ``1e-7`` on raw 0..255 CIFAR pixels is of this form).

    Parameters
    ----------
    X_train : array-like (n_train, D)
    lr_multipliers : sequence of float, default (0.5, 2, 8)
    regs : sequence of float, default (1e-4, 1e-3, 1e-2)

    Returns
    -------
    dict
        ``{"learning_rate": [...], "reg": [...]}``

    Examples
    --------
    >>> import numpy as np
    >>> default_linear_grid(np.ones((4, 100)))["learning_rate"]
    [0.005, 0.02, 0.08]
    """
    X = V.check_array(X_train, "X_train")
    total = 0.0
    for start in range(0, X.shape[0], 4096):  # float64 sums, bounded temporary memory
        block = np.asarray(X[start : start + 4096], dtype=np.float64)
        total += float(np.einsum("ij,ij->", block, block))
    base = 1.0 / max(total / X.shape[0], 1e-300)
    return {
        "learning_rate": [float(f"{m * base:.2g}") for m in lr_multipliers],
        "reg": [float(r) for r in regs],
    }


@dataclass
class SearchResult:
    """Outcome of :func:`search_linear`.

    Attributes
    ----------
    results : dict
        ``results[(learning_rate, reg)] = (train_accuracy, val_accuracy, final_loss)``,
        in the order tried (the CS231n notebooks' ``results`` dict, with the loss).
    best_params_ : dict
        ``{"learning_rate": ..., "reg": ...}`` of the highest validation accuracy
        (ties: the first tried).
    best_model_ : estimator
        The model fitted with ``best_params_``.
    best_val_accuracy_ : float
    times_ : dict
        Seconds spent fitting + scoring each configuration, numba compilation excluded.
    compile_times_ : dict
        Seconds of each configuration spent compiling kernels (non-zero only for the
        first configurations of a process, when a kernel is not in the cache yet).

    Unpacks as ``results, best_model = search_linear(...)``.
    """

    results: dict[tuple[float, float], tuple[float, float, float]]
    best_params_: dict[str, float]
    best_model_: Any
    best_val_accuracy_: float
    times_: dict[tuple[float, float], float] = field(default_factory=dict)
    compile_times_: dict[tuple[float, float], float] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Any]:
        yield self.results
        yield self.best_model_

    def table(self) -> str:
        """Plain-text table, one row per configuration, best marked with ``*``.

        ``time`` is the model's own time; a ``compile`` column shows the numba
        compilation the first configurations paid, when there was any.
        """
        best = (self.best_params_["learning_rate"], self.best_params_["reg"])
        compiled = any(v >= 0.005 for v in self.compile_times_.values())
        head = (
            f"  {'learning_rate':>13} {'reg':>10} {'train acc':>9} {'val acc':>8} "
            f"{'final loss':>10} {'time':>7}"
        )
        lines = [head + (f" {'compile':>8}" if compiled else "")]
        for key, (tr, va, loss) in self.results.items():
            mark = "*" if key == best else " "
            line = (
                f"{mark} {key[0]:>13.3g} {key[1]:>10.3g} {tr:>9.4f} {va:>8.4f} "
                f"{loss:>10.4g} {self.times_.get(key, float('nan')):>6.2f}s"
            )
            if compiled:
                c = self.compile_times_.get(key, 0.0)
                line += f" {c:>7.2f}s" if c >= 0.005 else f" {'-':>8}"
            lines.append(line)
        return "\n".join(lines)


def _check_grid(grid: Any, default: dict[str, list[float]]) -> dict[str, list[float]]:
    if grid is None:
        grid = default
    if not isinstance(grid, dict):
        raise TypeError(
            f"grid must be a dict {{'learning_rate': [...], 'reg': [...]}}, got "
            f"{type(grid).__name__}"
        )
    unknown = set(grid) - set(_SEARCH_PARAMS)
    if unknown:
        raise ValueError(
            f"grid may only hold {_SEARCH_PARAMS}, got unknown key(s) {sorted(unknown)}"
        )
    out: dict[str, list[float]] = {}
    for name in _SEARCH_PARAMS:
        values = grid.get(name, default[name])
        if isinstance(values, numbers.Real) and not isinstance(values, bool):
            values = [values]
        try:
            values = list(values)
        except TypeError:
            raise TypeError(f"grid[{name!r}] must be a list of numbers, got {values!r}") from None
        if not values:
            raise ValueError(f"grid[{name!r}] must hold at least one value")
        min_value = 0.0
        out[name] = [
            V.check_float(v, f"grid[{name!r}]", min_value=min_value, strict_min=name != "reg")
            for v in values
        ]
    return out


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, name: str) -> float:
    if lo <= 0.0:
        if hi <= 0.0:
            return 0.0
        raise ValueError(
            f"random search draws {name} log-uniformly, so its range must be > 0; got [{lo}, {hi}]"
        )
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _configs(
    grid: dict[str, list[float]], n_random: int | None, rng: np.random.Generator
) -> list[tuple[float, float]]:
    if n_random is None:
        return list(itertools.product(grid["learning_rate"], grid["reg"]))
    lr_lo, lr_hi = min(grid["learning_rate"]), max(grid["learning_rate"])
    reg_lo, reg_hi = min(grid["reg"]), max(grid["reg"])
    return [
        (
            _log_uniform(rng, lr_lo, lr_hi, "learning_rate"),
            _log_uniform(rng, reg_lo, reg_hi, "reg"),
        )
        for _ in range(n_random)
    ]


def _clone(model: Any, **params: Any) -> Any:
    if not hasattr(model, "get_params") or not hasattr(model, "fit"):
        raise TypeError(
            f"model must be an estimator with get_params / fit (e.g. fastcls.linear.Softmax()), "
            f"got {type(model).__name__}"
        )
    all_params = dict(model.get_params())
    missing = [p for p in params if p not in all_params]
    if missing:
        raise ValueError(
            f"{type(model).__name__} has no parameter(s) {missing}; search_linear tunes "
            f"{_SEARCH_PARAMS}"
        )
    all_params.update(params)
    return type(model)(**all_params)


def _final_loss(model: Any) -> float:
    hist = getattr(model, "loss_history_", None)
    if hist is None or len(hist) == 0:
        return float("nan")
    return float(np.asarray(hist)[-1])


def search_linear(
    model: Any,
    X_train: Any,
    y_train: Any,
    X_val: Any,
    y_val: Any,
    grid: dict[str, Iterable[float]] | None = None,
    n_random: int | None = None,
    seed: int | np.random.Generator | None = None,
    *,
    progress: bool | None = None,
) -> SearchResult:
    """Grid or random search over learning rate and regularisation on validation data.

    Each configuration fits a fresh copy of ``model`` (its other parameters kept) on
    the training data and scores it on the validation data; the test set is not
    involved.

    Parameters
    ----------
    model : estimator
        A configured :class:`~fastcls.linear.LinearSVM` or ``Softmax`` (or any
        estimator with ``learning_rate`` / ``reg`` parameters, ``fit`` and ``score``).
        It is not modified.
    X_train, y_train : array-like (n_train, D), (n_train,)
    X_val, y_val : array-like (n_val, D), (n_val,)
    grid : dict, optional
        ``{"learning_rate": [...], "reg": [...]}``. Grid search tries every pair; with
        ``n_random`` the smallest and largest value of each list bound a log-uniform
        draw (``reg`` may be 0 only as a grid value, or with both bounds 0). A missing
        key (or ``grid=None``) takes the values of :func:`default_linear_grid`:
        learning rates ``(0.5, 2, 8) / mean ||x||^2``, ``reg`` in ``(1e-4, 1e-3, 1e-2)``.
    n_random : int, optional
        Number of random configurations (random search). None: grid search.
    seed : int, numpy Generator or None
        Seed of the random draws; also passed to each model's ``seed`` parameter
        when the model has one and it is None, so a search is reproducible.
    progress : bool or None, default None
        Progress bar on stderr (None: only when stderr is a terminal).

    Returns
    -------
    SearchResult
        ``results[(lr, reg)] = (train_acc, val_acc, final_loss)``, ``best_params_``,
        ``best_model_`` (fitted), ``best_val_accuracy_``; unpacks as
        ``results, best_model``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcls.linear import Softmax
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 5)); y = (X[:, 0] > 0).astype(int)
    >>> res = search_linear(Softmax(n_iters=100), X[:150], y[:150], X[150:], y[150:],
    ...                     grid={"learning_rate": [1e-2, 1e-1], "reg": [1e-4]},
    ...                     seed=0, progress=False)
    >>> sorted(res.results)
    [(0.01, 0.0001), (0.1, 0.0001)]
    >>> res.best_val_accuracy_ > 0.8
    True
    """
    Xtr = V.check_array(X_train, "X_train")
    Xva = V.check_array(X_val, "X_val")
    V.check_same_n_features(Xtr, Xva, ("X_train", "X_val"))
    V.check_labels(y_train, Xtr.shape[0], "y_train")
    V.check_labels(y_val, Xva.shape[0], "y_val")
    grid_c = _check_grid(grid, default_linear_grid(Xtr))
    if n_random is not None:
        n_random = V.check_int(n_random, "n_random", min_value=1)
    rng = V.check_random_state(seed)
    base_params = model.get_params() if hasattr(model, "get_params") else {}
    extra: dict[str, Any] = {}
    if "seed" in base_params and base_params["seed"] is None and seed is not None:
        extra["seed"] = int(rng.integers(2**31 - 1))
    configs = _configs(grid_c, n_random, rng)

    results: dict[tuple[float, float], tuple[float, float, float]] = {}
    times: dict[tuple[float, float], float] = {}
    compile_times: dict[tuple[float, float], float] = {}
    best_key: tuple[float, float] | None = None
    best_model = None
    name = type(model).__name__
    with Progress(len(configs), f"search {name}", enabled=progress) as bar:
        for lr, reg in configs:
            c0, t0 = compile_seconds(), time.perf_counter()
            clf = _clone(model, learning_rate=lr, reg=reg, **extra)
            clf.fit(Xtr, y_train)
            train_acc = float(clf.score(Xtr, y_train))
            val_acc = float(clf.score(Xva, y_val))
            key = (float(lr), float(reg))
            results[key] = (train_acc, val_acc, _final_loss(clf))
            compile_times[key] = compile_seconds() - c0
            times[key] = time.perf_counter() - t0 - compile_times[key]
            # NaN accuracies never win; ties keep the first configuration tried
            if best_key is None or val_acc > results[best_key][1]:
                best_key, best_model = key, clf
            bar.update()
    assert best_key is not None
    return SearchResult(
        results=results,
        best_params_={"learning_rate": best_key[0], "reg": best_key[1]},
        best_model_=best_model,
        best_val_accuracy_=results[best_key][1],
        times_=times,
        compile_times_=compile_times,
    )
