"""Compile (or load from the cache) the kernels fastcls's estimators and CLI use.

A kernel is compiled by numba on its first use on a machine and kept in the on-disk
cache afterwards (see :mod:`fastcls._config`). :func:`warmup` runs every kernel group
once on tiny inputs, so that the compilation happens now, with a progress line per
group, instead of inside the first real call: after it, later processes load the
kernels from the cache in a fraction of a second. ``fastcls warmup`` is the same from
the command line.

Examples
--------
>>> import fastcls
>>> report = fastcls.warmup(["vote"], progress=False)
>>> sorted(report)
['vote']
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["GROUPS", "GroupTiming", "warmup"]


def _knn(metric: str) -> Callable[[], None]:
    def run() -> None:
        from fastcls._config import override
        from fastcls.neighbors import KNearestNeighbor, kneighbors, pairwise_distances

        rng = np.random.default_rng(0)
        for dtype in (np.uint8, np.float32, np.float64):
            if dtype == np.uint8:  # 70 features: the integer kernels' vector paths + tail
                X = rng.integers(0, 256, (48, 70)).astype(np.uint8)
            else:  # non-integer values: the float kernels, not the exact uint8 shortcut
                X = rng.random((48, 20)).astype(dtype)
            # small problems take the direct path; larger ones L2's GEMM path
            for direct_max_work in (None, 0):
                tunables = {} if direct_max_work is None else {"l2_direct_max_work": 0}
                with override(**tunables):
                    kneighbors(X[:6], X, 3, metric)
                    pairwise_distances(X[:3], X[:4], metric)
            with override(knn_selection="blocks"):  # the large-k selection's merge
                kneighbors(X[:2], X, 48, metric)
            if dtype == np.uint8:  # the pruning tiles (large calls choose them by sample)
                with override(knn_prune="always"):
                    kneighbors(X[:6], X, 3, metric)
        KNearestNeighbor(k=3, metric=metric).fit(X, np.arange(48) % 3).predict(X[:4])

    return run


def _vote() -> None:
    from fastcls.kernels.vote import (
        argmax_rows,
        majority_vote_all_k,
        vote_proba,
        weighted_vote_all_k,
    )

    labels = np.zeros((2, 3), dtype=np.int64)
    dist = np.ones((2, 3))
    ks = np.array([1, 3], dtype=np.int64)
    for weighted in (False, True):
        argmax_rows(vote_proba(labels, dist, 2, weighted))
    majority_vote_all_k(labels, ks, 2)
    weighted_vote_all_k(labels, dist, ks, 2)


def _linear() -> None:
    from fastcls._config import settings
    from fastcls.linear import LinearSVM, Softmax
    from fastcls.losses import softmax_loss, svm_loss

    rng = np.random.default_rng(0)
    y = np.arange(40) % 3
    # rows x features x classes above linear_parallel_min_work: the parallel twin
    n_big = settings.linear_parallel_min_work // (64 * 3) + 1
    for dtype in (np.float32, np.float64):
        X = rng.random((40, 12)).astype(dtype)
        # fit: the compiled SGD loop (one specialisation per dtype; loss, penalty,
        # centring, momentum and both kernel twins are run-time choices inside it)
        for cls in (LinearSVM, Softmax):
            cls(n_iters=2, batch_size=8, seed=0).fit(X, y)
        X_big = rng.random((n_big, 64)).astype(dtype)
        y_big = np.arange(n_big) % 3
        W = np.zeros((64, 3), dtype=dtype)
        for loss in (svm_loss, softmax_loss):
            loss(W, X_big, y_big, 1e-3)
            loss(W[:12], X, y, 1e-3)


def _features() -> None:
    from fastcls.features import color_histogram_hsv, hog

    rng = np.random.default_rng(0)
    for images in (
        rng.integers(0, 256, (2, 16, 16, 3)).astype(np.uint8),
        rng.random((2, 16, 16, 3)).astype(np.float32),
        rng.random((2, 16, 16, 3)),
    ):
        hog(images)
        color_histogram_hsv(images)


#: kernel group -> (description, function that runs every kernel of the group once)
GROUPS: dict[str, tuple[str, Callable[[], None]]] = {
    "knn-l1": ("k-NN L1 kernels (uint8, float32, float64)", _knn("l1")),
    "knn-l2": ("k-NN L2 kernels (uint8, float32, float64)", _knn("l2")),
    "vote": ("vote kernels (majority, distance-weighted, every k)", _vote),
    "linear": ("linear loss kernels (SVM, softmax; float32, float64)", _linear),
    "features": ("feature kernels (HOG, hue histogram)", _features),
}


@dataclass(frozen=True)
class GroupTiming:
    """Time one kernel group took: total, and the part numba spent compiling.

    ``compile_seconds == 0`` means every kernel came from the on-disk cache (or was
    already compiled in this process).
    """

    seconds: float
    compile_seconds: float


def warmup(
    groups: Iterable[str] | None = None, *, progress: bool | None = None, stream: Any = None
) -> dict[str, GroupTiming]:
    """Compile or load from the cache the kernels of ``groups`` (default: all).

    Parameters
    ----------
    groups : iterable of str, optional
        Names from :data:`GROUPS` (``"knn-l1"``, ``"knn-l2"``, ``"vote"``,
        ``"linear"``, ``"features"``).
    progress : bool or None
        A line per group on stderr (``None``: when stderr is a terminal).
    stream : file-like, optional
        Where progress goes (default ``sys.stderr``).

    Returns
    -------
    dict of str to GroupTiming
        Seconds per group, and the part of them spent compiling.
    """
    from fastcls._progress import compile_seconds

    names = list(GROUPS) if groups is None else list(groups)
    unknown = sorted(set(names) - set(GROUPS))
    if unknown:
        raise ValueError(f"unknown kernel group(s) {unknown}; groups are {list(GROUPS)}")
    out = sys.stderr if stream is None else stream
    if progress is None:
        isatty = getattr(out, "isatty", None)
        progress = bool(isatty and isatty())
    report: dict[str, GroupTiming] = {}
    for i, name in enumerate(names, 1):
        desc, run = GROUPS[name]
        if progress:
            out.write(f"[{i}/{len(names)}] {desc} ...")
            out.flush()
        c0, t0 = compile_seconds(), time.perf_counter()
        run()
        timing = GroupTiming(time.perf_counter() - t0, compile_seconds() - c0)
        report[name] = timing
        if progress:
            how = (
                f"compiled in {timing.compile_seconds:.1f} s"
                if timing.compile_seconds >= 0.05
                else "loaded from the cache"
            )
            out.write(f" {how} ({timing.seconds:.1f} s)\n")
            out.flush()
    return report
