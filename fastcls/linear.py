"""Linear classifiers trained by (mini-batch) stochastic gradient descent.

:class:`LinearSVM` (multiclass hinge) and :class:`Softmax` (cross-entropy) share
:class:`LinearClassifier`: ``scores = X @ W_ + b_`` with ``W_`` of shape (D, C).
Each SGD step calls the fused loss + gradient kernel of :mod:`fastcls.kernels.losses`
on the sampled rows *by index* (the mini-batch is never copied). Inputs are validated
once per ``fit``, not once per step.

Mini-batches are drawn exactly as the lecture code does (with replacement), from one
seeded ``numpy.random.Generator`` that is used in this order:

1. ``W = init_scale * rng.standard_normal((D, C))`` (in float64, then cast),
2. for every iteration: ``idx = rng.integers(0, n_samples, size=batch_size)``.

So a plain NumPy loop with ``np.random.default_rng(seed)`` sees the very same batches
(``bench/bench_linear.py`` relies on this).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from fastcls import _validation as V
from fastcls._config import num_threads
from fastcls.base import BaseEstimator, ClassifierMixin
from fastcls.losses import PENALTIES, _fused
from fastcls.optim import SCHEDULES, learning_rate_at

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, C) scores (shifted by the row maximum; rows sum to 1)."""
    z = scores - scores.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


class LinearClassifier(ClassifierMixin, BaseEstimator):
    """Linear classifier ``scores = X @ W_ + b_`` trained by mini-batch SGD.

    Use the subclasses :class:`LinearSVM` and :class:`Softmax`; they differ only in the
    loss.

    Parameters
    ----------
    learning_rate : float or "auto", default "auto"
        Step size. ``"auto"`` uses ``k / mean_i ||x_i||^2`` with ``k = 1`` for the SVM and
        ``k = 4`` for the softmax (whose loss has curvature at most ``||x||^2 / 2``), so that
        standardised features and raw 0..255 pixels train alike; give a number to follow
        the lectures (e.g. ``1e-7`` on CIFAR pixels).
    reg : float, default 1e-4
        Regularisation strength (>= 0).
    penalty : {"l2", "l1", "elasticnet"}, default "l2"
    beta : float, default 1.0
        Elastic-net weight of the squared term: ``reg * sum(beta * W**2 + |W|)``.
    n_iters : int, default 1500
        Number of SGD steps.
    batch_size : int, "auto" or None, default "auto"
        Rows per step, sampled with replacement (an int larger than the data is an
        error). ``"auto"``: ``min(200, n_samples)``, the lectures' 200. ``None``:
        full-batch gradient descent.
    momentum : float, default 0.0
        Classical momentum ``v = momentum * v - lr * g; W += v`` (0: vanilla SGD).
    lr_schedule : {"constant", "step"}, default "constant"
        ``"step"``: multiply the rate by ``lr_decay`` every ``lr_step`` iterations.
    lr_decay : float, default 0.95
    lr_step : int or None, default None
        Iterations between decays; ``None``: one epoch (``ceil(n_samples / batch_size)``).
    fit_intercept : bool, default True
        Learn a bias ``b_`` (not regularised). ``False``: ``b_`` is zero; the bias trick
        (a column of ones in ``X``) is the alternative.
    center : bool, default True
        With ``fit_intercept``, run SGD on mean-centred features, as the lectures do by
        hand (the mean is folded into the bias at every step: ``X`` is not copied).
        Raw pixels (all positive, large mean) then train as fast as standardised
        features. ``W_`` and ``b_`` always apply to the raw ``X``. ``False``: plain SGD
        on ``X`` (the exact lecture loop).
    init_scale : float, default 1e-3
        Standard deviation of the initial weights.
    seed : None, int or numpy Generator
        Seeds the initial weights and the mini-batches.
    verbose : bool or int, default False
        Print a progress line to stderr every ``n_iters // 10`` steps (or every
        ``verbose`` steps when an int > 1).
    n_jobs : int or None
        Threads for the kernels (None: all cores). Results do not depend on it.

    Attributes
    ----------
    W_ : ndarray of shape (n_features, n_classes)
    b_ : ndarray of shape (n_classes,)
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    loss_history_ : ndarray of shape (n_iters,)
        Loss of each step (on its mini-batch, penalty included).
    learning_rate_ : float
        The initial learning rate actually used (resolves ``"auto"``).
    """

    _loss_kind: int = -1
    _auto_lr_factor: float = 1.0

    def __init__(
        self,
        learning_rate: float | str = "auto",
        reg: float = 1e-4,
        penalty: str = "l2",
        beta: float = 1.0,
        n_iters: int = 1500,
        batch_size: int | str | None = "auto",
        momentum: float = 0.0,
        lr_schedule: str = "constant",
        lr_decay: float = 0.95,
        lr_step: int | None = None,
        fit_intercept: bool = True,
        center: bool = True,
        init_scale: float = 1e-3,
        seed: Any = None,
        verbose: bool | int = False,
        n_jobs: int | None = None,
    ) -> None:
        self.learning_rate = learning_rate
        self.reg = reg
        self.penalty = penalty
        self.beta = beta
        self.n_iters = n_iters
        self.batch_size = batch_size
        self.momentum = momentum
        self.lr_schedule = lr_schedule
        self.lr_decay = lr_decay
        self.lr_step = lr_step
        self.fit_intercept = fit_intercept
        self.center = center
        self.init_scale = init_scale
        self.seed = seed
        self.verbose = verbose
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ helpers
    def _check_params(self, n_samples: int) -> dict[str, Any]:
        p: dict[str, Any] = {}
        if isinstance(self.learning_rate, str):
            if self.learning_rate != "auto":
                raise ValueError(
                    f"learning_rate must be a positive number or 'auto', got {self.learning_rate!r}"
                )
            p["learning_rate"] = "auto"
        else:
            p["learning_rate"] = V.check_float(
                self.learning_rate, "learning_rate", min_value=0.0, strict_min=True
            )
        p["reg"] = V.check_float(self.reg, "reg", min_value=0.0)
        p["penalty"] = V.check_choice(self.penalty, "penalty", PENALTIES)
        p["beta"] = V.check_float(self.beta, "beta", min_value=0.0)
        p["n_iters"] = V.check_int(self.n_iters, "n_iters", min_value=1)
        if self.batch_size is None:
            p["batch_size"] = None
        elif isinstance(self.batch_size, str):
            if self.batch_size != "auto":
                raise ValueError(
                    "batch_size must be a positive integer, 'auto' or None, "
                    f"got {self.batch_size!r}"
                )
            p["batch_size"] = min(200, n_samples)
        else:
            bs = V.check_int(self.batch_size, "batch_size", min_value=1)
            if bs > n_samples:
                raise ValueError(
                    f"batch_size={bs} is larger than the number of samples ({n_samples}); "
                    f"use batch_size <= {n_samples}, or batch_size=None for full-batch descent"
                )
            p["batch_size"] = bs
        p["momentum"] = V.check_float(self.momentum, "momentum", min_value=0.0)
        if p["momentum"] >= 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {p['momentum']}")
        p["lr_schedule"] = V.check_choice(self.lr_schedule, "lr_schedule", SCHEDULES)
        p["lr_decay"] = V.check_float(
            self.lr_decay, "lr_decay", min_value=0.0, max_value=1.0, strict_min=True
        )
        if self.lr_step is None:
            bs = p["batch_size"] or n_samples
            p["lr_step"] = -(-n_samples // bs)
        else:
            p["lr_step"] = V.check_int(self.lr_step, "lr_step", min_value=1)
        if not isinstance(self.fit_intercept, (bool, np.bool_)):
            raise TypeError(f"fit_intercept must be a bool, got {self.fit_intercept!r}")
        if not isinstance(self.center, (bool, np.bool_)):
            raise TypeError(f"center must be a bool, got {self.center!r}")
        p["center"] = bool(self.center)
        p["init_scale"] = V.check_float(self.init_scale, "init_scale", min_value=0.0)
        p["rng"] = V.check_random_state(self.seed)
        if isinstance(self.verbose, bool) or self.verbose is None:
            every = max(1, p["n_iters"] // 10) if self.verbose else 0
        else:
            every = V.check_int(self.verbose, "verbose", min_value=0)
            every = max(1, p["n_iters"] // 10) if every == 1 else every
        p["verbose_every"] = every
        return p

    def _check_X(self, X: Any) -> np.ndarray:
        Xa = V.check_array(X, "X")
        if Xa.dtype not in _FLOAT_DTYPES:  # uint8 pixels: train in float32
            Xa = Xa.astype(np.float32)
        return Xa

    # ------------------------------------------------------------------ API
    def fit(self, X: Any, y: Any) -> LinearClassifier:
        """Train by SGD.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or images (n_samples, H, W[, C])
            float32 (trained in float32), float64 (in float64) or uint8 (in float32).
        y : array-like of shape (n_samples,)
            Labels (integers or strings); at least two classes.

        Returns
        -------
        self
        """
        Xa = self._check_X(X)
        n, D = Xa.shape
        classes, y_enc = V.check_labels(y, n)
        if classes.shape[0] < 2:
            raise ValueError(
                f"y holds a single class ({classes[0]!r}); a classifier needs at least two"
            )
        p = self._check_params(n)
        C = classes.shape[0]
        dtype = Xa.dtype
        rng = p["rng"]
        W = (p["init_scale"] * rng.standard_normal((D, C))).astype(dtype)
        b = np.zeros(C, dtype=dtype) if self.fit_intercept else None
        mu = None
        if self.fit_intercept and p["center"]:
            mu = Xa.mean(axis=0, dtype=np.float64)
        lr0 = p["learning_rate"]
        if lr0 == "auto":
            sq = float(np.einsum("ij,ij->", Xa, Xa, dtype=np.float64)) / n
            if mu is not None:  # mean squared norm of the centred rows
                sq = max(sq - float(mu @ mu), 0.0)
            lr0 = self._auto_lr_factor / max(sq + (1.0 if self.fit_intercept else 0.0), 1e-12)
        vW = np.zeros_like(W) if p["momentum"] > 0 else None
        vb = np.zeros_like(b) if (b is not None and vW is not None) else None
        n_iters = p["n_iters"]
        history = np.empty(n_iters)
        every = p["verbose_every"]
        t0 = time.perf_counter()
        # divergence is reported by the FloatingPointError below, not by numpy warnings
        with num_threads(self.n_jobs), np.errstate(over="ignore", invalid="ignore"):
            for it in range(n_iters):
                idx = None
                if p["batch_size"] is not None:
                    idx = rng.integers(0, n, size=p["batch_size"])
                # centred model: scores = (x - mu) W + b = x W + (b - mu W); its gradient
                # is sum (x_i - mu) g_i^T = (raw gradient) - mu db^T: no centred copy of X
                # einsum, not BLAS: a BLAS call here wakes OpenBLAS's threads, whose
                # spinning then slows the numba parallel region that follows
                bias = b if mu is None else (b - np.einsum("d,dc->c", mu, W)).astype(dtype)
                out = _fused(
                    self._loss_kind, W, Xa, y_enc, p["reg"], bias, p["penalty"], p["beta"], idx
                )
                loss, dW = out[0], out[1]
                if mu is not None:
                    dW -= np.outer(mu, out[2]).astype(dtype)
                lr = learning_rate_at(p["lr_schedule"], lr0, it, p["lr_decay"], p["lr_step"])
                if vW is None:
                    W -= dtype.type(lr) * dW
                    if b is not None:
                        b -= dtype.type(lr) * out[2]
                else:
                    vW *= dtype.type(p["momentum"])
                    vW -= dtype.type(lr) * dW
                    W += vW
                    if b is not None:
                        vb *= dtype.type(p["momentum"])
                        vb -= dtype.type(lr) * out[2]
                        b += vb
                history[it] = loss
                if not np.isfinite(loss):
                    raise FloatingPointError(
                        f"the loss became {loss} at iteration {it}: learning_rate={lr:g} is "
                        "too large for this data (try a smaller one, or 'auto')"
                    )
                if every and ((it + 1) % every == 0 or it == n_iters - 1):
                    rate = (it + 1) / max(time.perf_counter() - t0, 1e-9)
                    print(
                        f"{type(self).__name__} iter {it + 1}/{n_iters} loss {loss:.5g} "
                        f"lr {lr:.3g} ({rate:.0f} it/s)",
                        file=sys.stderr,
                        flush=True,
                    )
        self.W_ = W
        if mu is not None:
            b = (b - mu @ W).astype(dtype)
        self.b_ = b if b is not None else np.zeros(C, dtype=dtype)
        self.classes_ = classes
        self.n_features_in_ = D
        self.loss_history_ = history
        self.learning_rate_ = float(lr0)
        self.n_iter_ = n_iters
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Class scores ``X @ W_ + b_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or images

        Returns
        -------
        ndarray of shape (n_samples, n_classes), dtype of ``W_``
        """
        V.check_is_fitted(self, ("W_", "b_", "classes_"))
        Xa = V.check_array(X, "X")
        V.check_n_features(Xa, self)
        return Xa.astype(self.W_.dtype, copy=False) @ self.W_ + self.b_

    def predict(self, X: Any) -> np.ndarray:
        """Label of the highest score (ties: the first class in ``classes_``).

        Returns
        -------
        ndarray of shape (n_samples,), labels from ``classes_``
        """
        scores = self.decision_function(X)  # checks fitted first
        return self.classes_[np.argmax(scores, axis=1)]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Softmax of the scores: probabilities for :class:`Softmax`. For :class:`LinearSVM`
        they are only a monotone normalisation of the scores, not calibrated.

        Returns
        -------
        ndarray of shape (n_samples, n_classes), rows summing to 1, columns in the order
        of ``classes_``
        """
        return softmax(self.decision_function(X).astype(np.float64))


class LinearSVM(LinearClassifier):
    """Multiclass linear SVM (Weston-Watkins hinge, margin 1) trained by mini-batch SGD.

    See :class:`LinearClassifier` for the parameters.

    Examples
    --------
    >>> import numpy as np, fastcls
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(-2, 1, (50, 2)), rng.normal(2, 1, (50, 2))]
    >>> y = np.r_[np.zeros(50, int), np.ones(50, int)]
    >>> clf = fastcls.LinearSVM(n_iters=200, batch_size=32, seed=0).fit(X, y)
    >>> clf.score(X, y) > 0.9
    True
    """

    _loss_kind = 0  # fastcls.kernels.losses.SVM


class Softmax(LinearClassifier):
    """Softmax (multinomial logistic regression) trained by mini-batch SGD.

    See :class:`LinearClassifier` for the parameters.

    Examples
    --------
    >>> import numpy as np, fastcls
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(-2, 1, (50, 2)), rng.normal(2, 1, (50, 2))]
    >>> y = np.array(["neg"] * 50 + ["pos"] * 50)
    >>> clf = fastcls.Softmax(n_iters=200, batch_size=32, seed=0).fit(X, y)
    >>> clf.predict(np.array([[3.0, 3.0]]))
    array(['pos'], dtype='<U3')
    >>> clf.predict_proba(np.array([[3.0, 3.0]])).sum()
    np.float64(1.0)
    """

    _loss_kind = 1  # fastcls.kernels.losses.SOFTMAX
    _auto_lr_factor = 4.0
