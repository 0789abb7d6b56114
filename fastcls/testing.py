"""Shared support for tests and benchmarks: one table of implementations and their data.

The correctness tests (``tests/test_implementations.py``) and the benchmarks
(``bench/``) read the same table, :data:`IMPLEMENTATIONS`: for every function or
workload, each library that computes it -- fastcls's Numba kernels, the plain NumPy
reference of :mod:`fastcls.reference`, FAISS, scikit-learn and a few other peers --
with a *setup* callable. A setup takes the workload's data (and keyword parameters),
does all the preparation that should not be timed (conversions, index building, JIT
warm-up) and returns a zero-argument callable that runs the computation::

    >>> import numpy as np
    >>> from fastcls.testing import IMPLEMENTATIONS, knn_problem
    >>> Q, X = knn_problem(3, 20, 8, seed=0)
    >>> run = IMPLEMENTATIONS["kneighbors"]["reference"](Q, X, k=2, metric="l1")
    >>> dist, idx = run()
    >>> idx.shape
    (3, 2)

Every implementation returns the same structure as the reference of its row (see
:data:`FUNCTIONS`), so a test compares them directly and a benchmark times them side
by side under ``benchmark.group = f"{func}|{shape}"``.

The data generators build the benchmark workloads (random pixels, CIFAR-like labelled
images, clustered features, linear-classifier problems) and *adversarial* inputs
(:data:`ADVERSARIAL_CASES`: distance ties, duplicated rows, all-zero rows, all-255
rows, large constant offsets). :func:`bench_small` is the one reader of the
``FASTCLS_BENCH_SMALL`` environment variable.

Nothing optional is imported here: numba (through fastcls's kernels), FAISS,
scikit-learn, scikit-image, matplotlib and torch are imported inside the callables,
when an implementation is set up. ``import fastcls`` does not import this module.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "ADVERSARIAL_CASES",
    "FUNCTIONS",
    "CPU_TARGETS",
    "HASWELL_FEATURES",
    "IMPLEMENTATIONS",
    "PRECISIONS",
    "Implementation",
    "adversarial_images",
    "adversarial_knn",
    "adversarial_linear",
    "adversarial_rows",
    "assert_kneighbors_equivalent",
    "bench_small",
    "cifar_like",
    "clustered",
    "env_flag",
    "images",
    "knn_problem",
    "linear_problem",
    "near_duplicates",
    "run_on_cpu_targets",
    "tolerances",
]

#: ``NUMBA_CPU_FEATURES`` of an AVX2 + FMA CPU without AVX-512 (with
#: ``NUMBA_CPU_NAME=haswell``): how tests and benchmarks compile for the AVX2 class (AMD
#: Zen 3 among others) on an AVX-512 machine; the name alone keeps the host's features
HASWELL_FEATURES = (
    "+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+cx8,+f16c,+fma,+fxsr,+lzcnt,+mmx,+movbe,"
    "+pclmul,+popcnt,+rdrnd,+sahf,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave,+xsaveopt"
)
#: ``(NUMBA_CPU_NAME, NUMBA_CPU_FEATURES)`` of three x86-64 classes a test can compile
#: for on one x86-64 machine: the host (``None``: numba's default), Haswell (AVX2 + FMA)
#: and the x86-64 baseline (SSE2, no FMA). See :func:`run_on_cpu_targets`.
CPU_TARGETS: tuple[tuple[str | None, str | None], ...] = (
    (None, None),
    ("haswell", HASWELL_FEATURES),
    ("x86-64", "+64bit,+cmov,+cx8,+fxsr,+mmx,+sse,+sse2"),
)


def run_on_cpu_targets(source: str, timeout: float = 900) -> list[str]:
    """The standard output of ``python -c source`` compiled for each of
    :data:`CPU_TARGETS`, in a fresh process each (numba's cache off, so every kernel is
    compiled for that target). Raises ``AssertionError`` with the end of stderr when a
    process fails. For tests that compare the bits several CPU classes compute."""
    import os
    import subprocess
    import sys

    outs = []
    for name, features in CPU_TARGETS:
        env = {**os.environ, "FASTCLS_NUMBA_CACHE": "0"}
        if name is not None and features is not None:
            env["NUMBA_CPU_NAME"] = name
            env["NUMBA_CPU_FEATURES"] = features
        out = subprocess.run(
            [sys.executable, "-c", source],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert out.returncode == 0, f"{name}: {out.stderr[-3000:]}"
        outs.append(out.stdout)
    return outs


# --------------------------------------------------------------------------- settings
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def env_flag(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Read a boolean environment variable.

    Parameters
    ----------
    name : str
        The variable's name.
    environ : mapping, optional
        Where to read it (default ``os.environ``).

    Returns
    -------
    bool
        True for ``1``, ``true``, ``yes``, ``on``; False when unset, empty or ``0``,
        ``false``, ``no``, ``off`` (case and surrounding spaces ignored).

    Raises
    ------
    ValueError
        For any other value, naming the variable.

    Examples
    --------
    >>> env_flag("FASTCLS_BENCH_SMALL", {"FASTCLS_BENCH_SMALL": " Yes "})
    True
    >>> env_flag("FASTCLS_BENCH_SMALL", {})
    False
    """
    env = os.environ if environ is None else environ
    value = env.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(
        f"environment variable {name} must be one of {sorted(_TRUE | _FALSE - {''})} "
        f"(or unset), got {env.get(name)!r}"
    )


def bench_small(environ: Mapping[str, str] | None = None) -> bool:
    """Whether benchmarks run at smoke-test sizes: ``FASTCLS_BENCH_SMALL`` is true.

    The one place that reads the variable (see :func:`env_flag` for the accepted
    values). CI runs ``FASTCLS_BENCH_SMALL=1 python -m pytest bench``.

    Examples
    --------
    >>> bench_small({"FASTCLS_BENCH_SMALL": "1"}), bench_small({"FASTCLS_BENCH_SMALL": "0"})
    (True, False)
    """
    return env_flag("FASTCLS_BENCH_SMALL", environ)


# --------------------------------------------------------------------------- data
def knn_problem(
    n_queries: int, n_train: int, n_features: int, dtype: Any = np.uint8, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Random pixel values 0..255: queries ``Q`` and training rows ``X``, in ``dtype``.

    The values do not depend on ``dtype`` (the float32 problem holds the uint8
    problem's integers), so dtypes can be compared on identical data.

    Returns
    -------
    Q : ndarray (n_queries, n_features)
    X : ndarray (n_train, n_features)
    """
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, (n_train, n_features), dtype=np.uint8)
    Q = rng.integers(0, 256, (n_queries, n_features), dtype=np.uint8)
    return Q.astype(dtype, copy=False), X.astype(dtype, copy=False)


def near_duplicates(
    n_queries: int = 128, n_train: int = 4000, n_features: int = 1024, *, seed: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Two far-apart clusters of near-duplicate rows, float32.

    Training rows alternate between two random pixel rows ``b1`` and ``b2``, each
    with one feature moved by a multiple of ``2**-12``; the queries lie near ``b1``.
    Float32 GEMM distances (``|q|^2 + |x|^2 - 2 q.x``) lose the order of these rows.

    Returns
    -------
    Q : ndarray (n_queries, n_features) float32
    X : ndarray (n_train, n_features) float32
    """
    rng = np.random.default_rng(seed)
    b1 = rng.integers(0, 256, n_features).astype(np.float64)
    b2 = rng.integers(0, 256, n_features).astype(np.float64)
    X = np.where(np.arange(n_train)[:, None] % 2 == 0, b1, b2)
    X[np.arange(n_train), rng.integers(0, n_features, n_train)] += (
        rng.integers(1, 64, n_train) * 2.0**-12
    )
    Q = b1 + rng.integers(-3, 4, (n_queries, n_features))
    return Q.astype(np.float32), X.astype(np.float32)


def clustered(n: int, d: int, n_centres: int, *, seed: int = 0) -> np.ndarray:
    """Float32 Gaussian mixture (realistic for approximate indexes; pure noise is not).

    ``n_centres`` standard normal centres in ``d`` dimensions, each row one centre
    plus noise of standard deviation 0.35.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.0, (n_centres, d)).astype(np.float32)
    X = centres[rng.integers(0, n_centres, n)]
    X += rng.normal(0.0, 0.35, (n, d)).astype(np.float32)
    return X


def cifar_like(
    n: int, d: int, n_classes: int = 10, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-like labelled uint8 rows: a shared mean image, faint class templates, noise.

    Returns
    -------
    X : ndarray (n, d) uint8
    y : ndarray (n,) int64, labels ``0..n_classes-1``
    """
    rng = np.random.default_rng(seed)
    base = rng.integers(64, 192, size=d)
    centres = base + rng.normal(0.0, 3.0, size=(n_classes, d))
    y = rng.integers(0, n_classes, size=n)
    X = np.clip(centres[y] + rng.normal(0.0, 50.0, size=(n, d)), 0, 255).astype(np.uint8)
    return X, y


def images(n: int, height: int = 32, width: int = 32, channels: int = 3, *, seed: int = 0):
    """Random uint8 images of shape (n, height, width, channels) (CIFAR-sized by default)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, height, width, channels), dtype=np.uint8)


def linear_problem(
    n: int, d: int, n_classes: int = 10, *, seed: int = 0, dtype: Any = np.float32
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A linear-classifier problem in the loss functions' argument order.

    Returns
    -------
    W : ndarray (d, n_classes), standard normal times 1e-3
    X : ndarray (n, d), standard normal
    y : ndarray (n,) int64, labels ``0..n_classes-1``
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d), dtype=np.float32)
    y = rng.integers(0, n_classes, n)
    W = rng.standard_normal((d, n_classes)) * 1e-3
    return W.astype(dtype), X.astype(dtype, copy=False), y


#: the adversarial cases every generator below understands
ADVERSARIAL_CASES = ("ties", "duplicates", "zero-rows", "all-255-rows", "large-offset")

#: the constant added by the ``"large-offset"`` case (float data only): 2**14 plus
#: integers 0..255 are exact in float32, while squared norms are about 2**28 per feature
LARGE_OFFSET = 2.0**14


def _check_case(case: Any) -> str:
    if case not in ADVERSARIAL_CASES:
        raise ValueError(f"case must be one of {ADVERSARIAL_CASES}, got {case!r}")
    return case


def adversarial_rows(case: str, n: int, d: int, dtype: Any = np.uint8, *, seed: int = 0):
    """Rows of pixel-like values built to break fast paths.

    Parameters
    ----------
    case : {"ties", "duplicates", "zero-rows", "all-255-rows", "large-offset"}
        ``"ties"``: values in {0, 2} (distances are small integers, mostly equal) and
        row 0 all ones (equidistant from every such row); ``"duplicates"``: about
        ``n / 3`` distinct random rows, each repeated at scattered positions;
        ``"zero-rows"`` / ``"all-255-rows"``: random rows with rows 0, 3, 6 ... all 0 /
        all 255; ``"large-offset"``: ``LARGE_OFFSET`` plus random integers 0..255
        (float dtypes only).
    n, d : int
        Shape of the result.
    dtype : dtype, default uint8
    seed : int

    Returns
    -------
    ndarray (n, d) of ``dtype``

    Raises
    ------
    ValueError
        Unknown ``case``, or ``"large-offset"`` with an integer ``dtype``.
    """
    case = _check_case(case)
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    A: np.ndarray = rng.integers(0, 256, (n, d)).astype(np.float64)
    if case == "ties":
        A = 2.0 * rng.integers(0, 2, (n, d))
        A[:1] = 1.0
    elif case == "duplicates":
        A = A[rng.integers(0, max(1, n // 3), n)]
    elif case == "zero-rows":
        A[::3] = 0.0
    elif case == "all-255-rows":
        A[::3] = 255.0
    else:
        if dtype.kind not in "f":
            raise ValueError(f"case 'large-offset' needs a float dtype, got dtype={dtype}")
        A += LARGE_OFFSET
    return A.astype(dtype)


def adversarial_knn(
    case: str,
    n_queries: int = 12,
    n_train: int = 60,
    n_features: int = 16,
    dtype: Any = np.uint8,
    *,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Queries and training rows for an adversarial k-NN case (see :func:`adversarial_rows`).

    For ``"duplicates"`` the queries also include exact copies of training rows
    (distance 0 to every copy); for ``"zero-rows"`` / ``"all-255-rows"`` a zero / 255
    query meets zero / 255 training rows.

    Returns
    -------
    Q : ndarray (n_queries, n_features)
    X : ndarray (n_train, n_features)
    """
    X = adversarial_rows(case, n_train, n_features, dtype, seed=seed)
    Q = adversarial_rows(case, n_queries, n_features, dtype, seed=seed + 1)
    if case == "duplicates":
        rng = np.random.default_rng(seed + 2)
        Q[::2] = X[rng.integers(0, n_train, Q[::2].shape[0])]
    return Q, X


def adversarial_linear(
    case: str, n: int = 40, d: int = 16, n_classes: int = 4, *, seed: int = 0, dtype=np.float32
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(W, X, y)`` for an adversarial loss case.

    ``X`` is :func:`adversarial_rows` scaled to ``[0, 1]`` (``"large-offset"``: not
    scaled, so scores are in the thousands); ``"ties"`` also sets ``W = 0``, so every
    score is equal; labels are random.
    """
    rng = np.random.default_rng(seed)
    X = adversarial_rows(case, n, d, np.float64, seed=seed)
    if case != "large-offset":
        X = X / 255.0
    W = rng.standard_normal((d, n_classes)) * (0.0 if case == "ties" else 1e-2)
    y = rng.integers(0, n_classes, n)
    return W.astype(dtype), X.astype(dtype), y


def adversarial_images(
    case: str, n: int = 6, height: int = 16, width: int = 16, *, seed: int = 0
) -> np.ndarray:
    """uint8 images (n, height, width, 3) for an adversarial feature case.

    ``"ties"`` gives flat and {0, 2}-valued images (gradients exactly on orientation
    bin edges); ``"large-offset"`` is not a uint8 case and raises ``ValueError``.
    """
    rows = adversarial_rows(case, n, height * width * 3, np.uint8, seed=seed)
    return rows.reshape(n, height, width, 3)


# --------------------------------------------------------------------------- table
#: what to expect of an implementation's output against the reference:
#: ``"exact"``: equal up to float64 rounding, ties broken as the reference does;
#: ``"float64"``: float64 arithmetic (float32 on float32 inputs), its own order among
#: equal distances;
#: ``"float32"``: float32 arithmetic; ``"different"``: comparable work, another
#: definition (only the output's shape is comparable)
PRECISIONS = ("exact", "float64", "float32", "different")


def tolerances(precision: str) -> tuple[float, float]:
    """``(rtol, atol_factor)`` for comparing values of ``precision`` with the reference.

    The absolute tolerance is ``atol_factor`` times the largest reference magnitude
    (values near zero are judged against the scale of the whole result).

    Examples
    --------
    >>> tolerances("float32")
    (0.0001, 1e-05)
    """
    table = {"exact": (1e-12, 1e-13), "float64": (1e-9, 1e-10), "float32": (1e-4, 1e-5)}
    if precision not in table:
        raise ValueError(f"precision must be one of {tuple(table)}, got {precision!r}")
    return table[precision]


@dataclass(frozen=True)
class Implementation:
    """One library's way of computing one function of the table.

    Attributes
    ----------
    library : str
        Its name in the table (``"fastcls"``, ``"reference"``, ``"faiss"`` ...).
    setup : callable
        ``setup(*data, **params)`` prepares everything (untimed) and returns a
        zero-argument callable that computes the result.
    requires : tuple of str
        Modules it imports (checked by :meth:`available`, never imported here).
    metrics : tuple of str or None
        The metrics it supports (None: every metric, or the function has none).
    precision : str
        One of :data:`PRECISIONS`.
    note : str
        What it is, for reports.
    """

    library: str
    setup: Callable[..., Callable[[], Any]]
    requires: tuple[str, ...] = ()
    metrics: tuple[str, ...] | None = None
    precision: str = "exact"
    note: str = ""

    def available(self) -> bool:
        """Whether every module in ``requires`` can be imported (nothing is imported)."""
        return all(importlib.util.find_spec(m.split(".")[0]) is not None for m in self.requires)

    def supports(self, metric: str | None) -> bool:
        """Whether it computes ``metric`` (always True for functions without a metric)."""
        return metric is None or self.metrics is None or metric in self.metrics

    def __call__(self, *data: Any, **params: Any) -> Callable[[], Any]:
        return self.setup(*data, **params)


def _module(name: str) -> Any:
    """Import an optional dependency when an implementation is set up."""
    return importlib.import_module(name)


# ---- kneighbors(Q, X, *, k, metric) -> (distances float64 ascending, indices int64)
def _knn_fastcls(Q, X, *, k, metric, n_jobs=None):
    import fastcls

    fastcls.kneighbors(Q[:4], X[:64], min(k, X[:64].shape[0]), metric, n_jobs=n_jobs)  # JIT
    if metric != "l1" and Q.shape[0] >= 64 and X.shape[0] >= 1024:
        fastcls.kneighbors(Q[:64], X[:1024], k, metric, n_jobs=n_jobs)  # the GEMM path too
    return lambda: fastcls.kneighbors(Q, X, k, metric, n_jobs=n_jobs)


def _knn_reference(Q, X, *, k, metric):
    from fastcls.reference import kneighbors_reference

    return lambda: kneighbors_reference(Q, X, k, metric)


def _knn_numpy_no_loops(Q, X, *, k, metric):
    from fastcls.reference import l2_distances_no_loops

    def run():
        dists = l2_distances_no_loops(Q, X)
        if metric == "sqeuclidean":
            dists *= dists
        idx = np.argsort(dists, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(dists, idx, axis=1), idx

    return run


def _knn_faiss(Q, X, *, k, metric):
    import fastcls

    faiss = _module("faiss")
    fastcls.set_num_threads(fastcls.get_num_threads())  # FAISS's pool too, now it is loaded
    Qf = np.ascontiguousarray(Q, dtype=np.float32)
    Xf = np.ascontiguousarray(X, dtype=np.float32)
    code = faiss.METRIC_L1 if metric == "l1" else faiss.METRIC_L2

    def run():
        d, i = faiss.knn(Qf, Xf, k, metric=code)
        d = d.astype(np.float64)
        return (np.sqrt(np.maximum(d, 0.0)) if metric == "l2" else d), i

    return run


_SK_METRIC = {"l1": "manhattan", "l2": "euclidean", "sqeuclidean": "sqeuclidean"}


def _knn_sklearn(Q, X, *, k, metric, n_jobs=-1):
    NearestNeighbors = _module("sklearn.neighbors").NearestNeighbors

    nn = NearestNeighbors(
        n_neighbors=k, algorithm="brute", metric=_SK_METRIC[metric], n_jobs=n_jobs
    ).fit(X)
    return lambda: nn.kneighbors(Q)


# ---- pairwise_distances(Q, X, *, metric) -> ndarray (n_Q, n_X)
def _pairwise_fastcls(Q, X, *, metric, n_jobs=None):
    import fastcls

    fastcls.pairwise_distances(Q[:2], X[:2], metric, n_jobs=n_jobs)  # JIT warm-up
    return lambda: fastcls.pairwise_distances(Q, X, metric, n_jobs=n_jobs)


def _pairwise_reference(Q, X, *, metric):
    from fastcls.reference import pairwise_distances_reference

    return lambda: pairwise_distances_reference(Q, X, metric)


def _pairwise_sklearn(Q, X, *, metric):
    pairwise_distances = _module("sklearn.metrics").pairwise_distances

    Qd, Xd = np.asarray(Q, np.float64), np.asarray(X, np.float64)
    return lambda: pairwise_distances(Qd, Xd, metric=_SK_METRIC[metric])


# ---- svm_loss / softmax_loss (W, X, y, *, reg) -> (loss, dW)
def _loss_fastcls(kind):
    def setup(W, X, y, *, reg):
        import fastcls

        fn = fastcls.svm_loss if kind == "svm" else fastcls.softmax_loss
        fn(W, X[:8], y[:8], reg)  # JIT warm-up
        return lambda: fn(W, X, y, reg)

    return setup


def _loss_reference(kind):
    def setup(W, X, y, *, reg):
        from fastcls.reference import softmax_loss_vectorized, svm_loss_vectorized

        fn = svm_loss_vectorized if kind == "svm" else softmax_loss_vectorized
        return lambda: fn(W, X, y, reg)

    return setup


def _loss_torch(kind):
    def setup(W, X, y, *, reg):
        torch = _module("torch")

        Xt, yt = torch.from_numpy(X), torch.from_numpy(np.asarray(y, np.int64))

        def run():
            Wt = torch.from_numpy(W).requires_grad_(True)
            s = Xt @ Wt
            if kind == "svm":
                m = torch.clamp(s - s.gather(1, yt[:, None]) + 1, min=0)
                loss = m.scatter(1, yt[:, None], 0.0).sum() / X.shape[0]
            else:
                loss = torch.nn.functional.cross_entropy(s, yt)
            loss = loss + reg * (Wt * Wt).sum()
            loss.backward()
            return float(loss), Wt.grad.numpy()

        return run

    return setup


# ---- hog / color_histogram_hsv (images) -> ndarray (n, n_features)
def _feature_fastcls(name):
    def setup(ims, *, n_jobs=None):
        import fastcls
        from fastcls import features

        fn = getattr(features, name)
        fn(ims[:2])  # JIT warm-up

        def run():
            with fastcls.num_threads(n_jobs):
                return fn(ims)

        return run

    return setup


def _feature_reference(name):
    def setup(ims):
        from fastcls import reference

        fn = getattr(reference, f"{name}_reference")
        return lambda: np.stack([fn(im) for im in ims])

    return setup


def _hog_skimage(ims):
    hog = _module("skimage.feature").hog

    kw = {"orientations": 9, "pixels_per_cell": (8, 8), "cells_per_block": (1, 1)}
    return lambda: np.stack([hog(im, channel_axis=-1, **kw) for im in ims])


def _hist_cs231n(ims):
    rgb_to_hsv = _module("matplotlib.colors").rgb_to_hsv

    edges = np.linspace(0, 255, 11)

    def one(im):  # the assignment's color_histogram_hsv(im, nbin=10), normalised
        hsv = rgb_to_hsv(im / 255.0) * 255
        hist, bin_edges = np.histogram(hsv[:, :, 0], bins=edges, density=True)
        return hist * np.diff(bin_edges)

    return lambda: np.stack([one(im) for im in ims])


# ---- cross_validate_knn(X, y, *, ks, metric, n_folds) -> {k: (n_folds,) accuracies}
def _cv_fastcls(X, y, *, ks, metric, n_folds=5):
    from fastcls.model_selection import cross_validate_knn

    cross_validate_knn(X[:30], y[:30], [1], metrics=(metric,), n_folds=3)  # JIT warm-up

    def run():
        res = cross_validate_knn(X, y, ks, metrics=(metric,), n_folds=n_folds)
        return {int(k): res.fold_accuracies[(metric, int(k))] for k in ks}

    return run


def _cv_reference(X, y, *, ks, metric, n_folds=5):
    from fastcls.reference import cross_validate_knn_reference

    def run():
        res = cross_validate_knn_reference(X, y, ks, metrics=(metric,), n_folds=n_folds)
        return {int(k): res[(metric, k)] for k in ks}

    return run


def _cv_sklearn(X, y, *, ks, metric, n_folds=5):
    ms = _module("sklearn.model_selection")
    GridSearchCV, KFold = ms.GridSearchCV, ms.KFold
    KNeighborsClassifier = _module("sklearn.neighbors").KNeighborsClassifier

    Xf = np.asarray(X, dtype=np.float32)

    def run():
        search = GridSearchCV(
            KNeighborsClassifier(algorithm="brute", metric=_SK_METRIC[metric]),
            {"n_neighbors": list(ks)},
            cv=KFold(n_folds),
        ).fit(Xf, y)
        res = search.cv_results_
        return {
            int(k): np.array([res[f"split{f}_test_score"][i] for f in range(n_folds)])
            for i, k in enumerate(res["param_n_neighbors"])
        }

    return run


_ALL = ("l1", "l2", "sqeuclidean")
_FAISS_NOTE = "faiss.knn on float32 copies (METRIC_L1 / METRIC_L2); no uint8 search"

#: function -> library -> :class:`Implementation`; ``"reference"`` is the truth
IMPLEMENTATIONS: dict[str, dict[str, Implementation]] = {
    "kneighbors": {
        "fastcls": Implementation("fastcls", _knn_fastcls, note="fastcls.kneighbors (numba)"),
        "reference": Implementation(
            "reference", _knn_reference, note="fastcls.reference.kneighbors_reference"
        ),
        "numpy-no-loops": Implementation(
            "numpy-no-loops",
            _knn_numpy_no_loops,
            metrics=("l2", "sqeuclidean"),
            precision="float64",
            note="the lecture's vectorised l2_distances_no_loops + stable argsort",
        ),
        "faiss": Implementation("faiss", _knn_faiss, ("faiss",), _ALL, "float32", note=_FAISS_NOTE),
        "sklearn": Implementation(
            "sklearn",
            _knn_sklearn,
            ("sklearn",),
            _ALL,
            "float64",
            note='NearestNeighbors(algorithm="brute")',
        ),
    },
    "pairwise_distances": {
        "fastcls": Implementation("fastcls", _pairwise_fastcls),
        "reference": Implementation("reference", _pairwise_reference),
        "sklearn": Implementation("sklearn", _pairwise_sklearn, ("sklearn",), _ALL, "float64"),
    },
    "svm_loss": {
        "fastcls": Implementation("fastcls", _loss_fastcls("svm"), precision="float32"),
        "reference": Implementation("reference", _loss_reference("svm")),
        "torch": Implementation("torch", _loss_torch("svm"), ("torch",), precision="float32"),
    },
    "softmax_loss": {
        "fastcls": Implementation("fastcls", _loss_fastcls("softmax"), precision="float32"),
        "reference": Implementation("reference", _loss_reference("softmax")),
        "torch": Implementation("torch", _loss_torch("softmax"), ("torch",), precision="float32"),
    },
    "hog": {
        "fastcls": Implementation("fastcls", _feature_fastcls("hog")),
        "reference": Implementation("reference", _feature_reference("hog")),
        "skimage": Implementation(
            "skimage",
            _hog_skimage,
            ("skimage",),
            precision="different",
            note="skimage.feature.hog, cells_per_block=(1, 1): strongest channel, L1 norm",
        ),
    },
    "color_histogram_hsv": {
        "fastcls": Implementation("fastcls", _feature_fastcls("color_histogram_hsv")),
        "reference": Implementation("reference", _feature_reference("color_histogram_hsv")),
        "cs231n": Implementation(
            "cs231n",
            _hist_cs231n,
            ("matplotlib",),
            precision="different",
            note="the CS231n assignment's matplotlib rgb_to_hsv + np.histogram",
        ),
    },
    "cross_validate_knn": {
        "fastcls": Implementation("fastcls", _cv_fastcls),
        "reference": Implementation("reference", _cv_reference),
        "sklearn": Implementation(
            "sklearn",
            _cv_sklearn,
            ("sklearn",),
            ("l1", "l2"),
            "float64",
            note="GridSearchCV(KNeighborsClassifier(algorithm='brute'), cv=KFold)",
        ),
    },
}

#: function -> what its data and parameters are, and what the callables return
FUNCTIONS: dict[str, str] = {
    "kneighbors": "(Q, X, *, k, metric) -> (distances (n_Q, k) ascending, indices (n_Q, k))",
    "pairwise_distances": "(Q, X, *, metric) -> distances (n_Q, n_X)",
    "svm_loss": "(W, X, y, *, reg) -> (loss, dW)",
    "softmax_loss": "(W, X, y, *, reg) -> (loss, dW)",
    "hog": "(images) -> features (n, 144) for 32x32 images",
    "color_histogram_hsv": "(images) -> hue histograms (n, 10)",
    "cross_validate_knn": "(X, y, *, ks, metric, n_folds) -> {k: fold accuracies (n_folds,)}",
}


# --------------------------------------------------------------------------- checks
def assert_kneighbors_equivalent(
    distances: Any,
    indices: Any,
    full_distances: Any,
    *,
    rtol: float = 1e-12,
    atol: float = 0.0,
) -> None:
    """Assert that a k-NN result is a correct one, up to the order of equal distances.

    Parameters
    ----------
    distances, indices : array-like (n_queries, k)
        The result to judge.
    full_distances : array-like (n_queries, n_train)
        The exact distance matrix (e.g. :func:`fastcls.reference.pairwise_distances_reference`).
    rtol, atol : float
        Two distances closer than ``atol + rtol * |d|`` count as equal: the result
        may list them in any order, and either may be the k-th neighbour.

    Raises
    ------
    AssertionError
        Naming the first query whose neighbours are wrong.
    """
    dist = np.asarray(distances, dtype=np.float64)
    idx = np.asarray(indices)
    full = np.asarray(full_distances, dtype=np.float64)
    n_q, k = idx.shape
    assert dist.shape == idx.shape, f"distances {dist.shape} vs indices {idx.shape}"
    assert full.shape[0] == n_q, f"full_distances has {full.shape[0]} rows, expected {n_q}"
    for q in range(n_q):
        ids, d = idx[q], dist[q]
        assert np.all((ids >= 0) & (ids < full.shape[1])), f"query {q}: index out of range {ids}"
        assert np.unique(ids).size == k, f"query {q}: repeated neighbour in {ids}"
        want = np.sort(full[q])[:k]
        tol = atol + rtol * np.abs(want).max(initial=0.0)
        assert np.all(np.abs(d - want) <= tol), f"query {q}: distances {d} vs {want}"
        true = full[q, ids]
        assert np.all(np.abs(true - d) <= tol), f"query {q}: ids {ids} are at {true}, not {d}"
        kth = want[-1]
        must = np.flatnonzero(full[q] < kth - tol)
        missing = np.setdiff1d(must, ids)
        assert missing.size == 0, f"query {q}: nearer rows {missing} missing from {ids}"
