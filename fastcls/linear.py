"""Linear classifiers trained by (mini-batch) stochastic gradient descent.

:class:`LinearSVM` (multiclass hinge) and :class:`Softmax` (cross-entropy) share
:class:`LinearClassifier`: ``scores = X @ W_ + b_`` with ``W_`` of shape (D, C).
Each class names its loss in ``loss_name`` (a key of :data:`fastcls.losses.LOSSES`).
``fit`` validates the inputs and parameters once, encodes the labels, and hands the
training loop to :func:`fastcls.optim.sgd_linear`, which runs it compiled, chunks of
steps at a time (the fused kernel of :mod:`fastcls.kernels.losses` on the sampled rows
*by index*: the mini-batch is never copied; no Python per step). The result is what
:func:`fastcls.optim.sgd` driven by :func:`fastcls.losses.loss_and_gradient` computes.

Mini-batches are drawn exactly as the lecture code does (with replacement), from one
seeded ``numpy.random.Generator`` that is used in this order:

1. ``W = init_scale * rng.standard_normal((D, C))`` (in float64, then cast),
2. for every iteration: ``idx = rng.integers(0, n_samples, size=batch_size)``.

So a plain NumPy loop with ``np.random.default_rng(seed)`` sees the very same batches
(``bench/bench_linear.py`` relies on this).
"""

from __future__ import annotations

import numbers
from typing import Any, ClassVar

import numpy as np

from fastcls import _validation as V
from fastcls._config import num_threads
from fastcls.base import (
    BaseEstimator,
    ClassifierMixin,
    FittedState,
    check_state_fields,
    classes_from_state,
    classes_to_state,
    profile_from_state,
    profile_to_state,
    state_int,
)
from fastcls.losses import LOSSES, PENALTIES
from fastcls.optim import SCHEDULES, sgd_linear

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
        Threads for the kernels (None: the current :func:`fastcls.num_threads`
        setting, all cores by default; -1: all cores). Results do not depend on it.

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
    n_iter_ : int
        Number of SGD steps taken.
    loss_name : str
        Class attribute: the loss, a key of :data:`fastcls.losses.LOSSES` (``"svm"`` for
        :class:`LinearSVM`, ``"softmax"`` for :class:`Softmax`).
    """

    #: the loss, a key of :data:`fastcls.losses.LOSSES` (set by each subclass)
    loss_name: ClassVar[str] = ""
    #: ``k`` of the ``"auto"`` learning rate ``k / mean ||x||^2``
    _auto_lr_factor: ClassVar[float] = 1.0

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
        p["fit_intercept"] = V.check_bool(self.fit_intercept, "fit_intercept")
        p["center"] = V.check_bool(self.center, "center")
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
        if self.loss_name not in LOSSES:
            raise TypeError(
                f"{type(self).__name__} names no loss (loss_name={self.loss_name!r}): use "
                f"LinearSVM or Softmax, or a subclass whose loss_name is one of {tuple(LOSSES)}"
            )
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
        # the documented stream: W first, then sgd draws the batches from the same rng
        W0 = (p["init_scale"] * rng.standard_normal((D, C))).astype(dtype)
        b0 = np.zeros(C, dtype=dtype) if p["fit_intercept"] else None
        mu = None
        if p["fit_intercept"] and p["center"]:
            mu = Xa.mean(axis=0, dtype=np.float64)
        lr0 = p["learning_rate"]
        if lr0 == "auto":
            sq = float(np.einsum("ij,ij->", Xa, Xa, dtype=np.float64)) / n
            if mu is not None:  # mean squared norm of the centred rows
                sq = max(sq - float(mu @ mu), 0.0)
            lr0 = self._auto_lr_factor / max(sq + (1.0 if p["fit_intercept"] else 0.0), 1e-12)
        with num_threads(self.n_jobs):
            res = sgd_linear(
                self.loss_name,
                np.ascontiguousarray(Xa),
                y_enc,
                W0,
                b0,
                reg=p["reg"],
                penalty=p["penalty"],
                beta=p["beta"],
                mu=mu,
                learning_rate=float(lr0),
                n_iters=p["n_iters"],
                batch_size=p["batch_size"],
                momentum=p["momentum"],
                schedule=p["lr_schedule"],
                lr_decay=p["lr_decay"],
                lr_step=p["lr_step"],
                seed=rng,
                verbose=p["verbose_every"],
                name=type(self).__name__,
            )
        W, b = res.W, res.b
        if mu is not None and b is not None:
            with np.errstate(over="ignore", invalid="ignore"):
                b = (b - mu @ W).astype(dtype)  # the bias for raw (uncentred) rows
            if not np.isfinite(b).all():
                raise FloatingPointError(
                    f"the bias for uncentred data (b - mean(X) @ W) overflows {dtype}: "
                    f"learning_rate={float(lr0):g} is too large for this data (try a "
                    "smaller one, or 'auto')"
                )
        self.W_ = W
        self.b_ = b if b is not None else np.zeros(C, dtype=dtype)
        self.classes_ = classes
        self.n_features_in_ = D
        # for the query checks (one image given for a batch, queries on another scale)
        self._fit_profile = V.FitProfile(self.W_, V.value_range(Xa), V.image_shape(X))
        self.loss_history_ = res.loss_history
        self.learning_rate_ = float(res.learning_rate)
        self.n_iter_ = res.n_iter
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
        profile = getattr(self, "_fit_profile", None)
        # weights restored since fit (set_fitted_state): what fit saw no longer applies
        profile = profile.for_owner(self.W_) if profile is not None else None
        Xa = V.check_query(X, self, "X", profile)
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

    # ------------------------------------------------------------------ state
    def get_fitted_state(self) -> FittedState:
        """What ``fit`` learned, as plain arrays and JSON-able metadata.

        Arrays: ``W`` (n_features, n_classes) and ``b`` (n_classes,) in the training
        dtype, ``classes`` (see :func:`fastcls.base.classes_to_state`), ``loss_history``
        (n_iter,) float64. Metadata: ``loss`` (``loss_name``), ``n_features_in``,
        ``learning_rate``, ``n_iter`` and the labels' kind and dtype. The arrays are
        copies.

        Returns
        -------
        FittedState

        Raises
        ------
        NotFittedError
            The model has not been fitted.
        """
        V.check_is_fitted(self, _FITTED)
        classes, labels_meta = classes_to_state(self.classes_)
        arrays = {
            "W": np.array(self.W_, copy=True),
            "b": np.array(self.b_, copy=True),
            "classes": np.array(classes, copy=True),
            "loss_history": np.array(self.loss_history_, dtype=np.float64, copy=True),
        }
        metadata = {
            "loss": self.loss_name,
            "n_features_in": int(self.n_features_in_),
            "learning_rate": float(self.learning_rate_),
            "n_iter": int(self.n_iter_),
            **labels_meta,
            **profile_to_state(getattr(self, "_fit_profile", None), self.W_),
        }
        return FittedState(arrays, metadata)

    def set_fitted_state(self, state: FittedState) -> LinearClassifier:
        """Restore what :meth:`get_fitted_state` returned; returns ``self``.

        Everything is checked before anything is assigned: the arrays and metadata that
        must be present, dtypes (float32 / float64 weights, ``b`` of the same dtype),
        shapes (``W`` (n_features_in, n_classes), ``b`` (n_classes,), ``loss_history``
        (n_iter,)), finite values, labels (non-empty, 1-D, at least two, sorted and
        distinct) and the loss (it must be this class's ``loss_name``).

        Raises
        ------
        TypeError
            ``state`` is not a ``(arrays, metadata)`` pair of dicts.
        ValueError
            A field is missing or malformed (the message names it); the model is left
            as it was.
        """
        from fastcls._config import resolve_n_jobs
        from fastcls.base import FittedStateError, check_state_classes, state_array, state_param

        arrays, meta = check_state_fields(state, _ARRAY_FIELDS, _META_FIELDS)
        if meta["loss"] != self.loss_name:
            raise FittedStateError(
                f"fitted state field 'loss' is {meta['loss']!r} but {type(self).__name__} "
                f"trains the {self.loss_name!r} loss",
                "loss",
            )
        # the parameters are checked as fit checks them (the sample count only bounds
        # batch_size, which a restored model never uses: no bound here)
        state_param("params", self._check_params, 2**62)
        state_param("n_jobs", resolve_n_jobs, self.n_jobs)
        n_features = state_int(meta, "n_features_in", 1)
        n_iter = state_int(meta, "n_iter", 1)
        lr = meta["learning_rate"]
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not 0 < float(lr) < np.inf:
            raise FittedStateError(
                f"fitted state field 'learning_rate' must be a positive finite number, got {lr!r}",
                "learning_rate",
            )
        classes = classes_from_state(arrays["classes"], meta)
        check_state_classes(classes, "classes", min_classes=2)
        C = classes.shape[0]
        W = state_array(arrays, "W", (n_features, C), _FLOAT_DTYPES)
        b = state_array(arrays, "b", (C,), _FLOAT_DTYPES)
        if b.dtype != W.dtype:
            raise FittedStateError(
                f"fitted state field 'b' has dtype {b.dtype} but 'W' has {W.dtype}; "
                "they must match",
                "b",
            )
        history = state_array(arrays, "loss_history", (n_iter,), (np.float64,))
        W_restored = np.array(W, order="C", copy=True)
        profile = profile_from_state(meta, W_restored, n_features)
        self.W_ = W_restored
        self._fit_profile = profile
        self.b_ = np.array(b, order="C", copy=True)
        self.classes_ = np.array(classes, copy=True)
        self.n_features_in_ = n_features
        self.loss_history_ = np.array(history, dtype=np.float64, copy=True)
        self.learning_rate_ = float(lr)
        self.n_iter_ = n_iter
        return self

    def save(self, path: Any, *, compress: bool = False) -> None:
        """Save the fitted model to exactly ``path`` (``.npz`` layout + JSON, never pickle).

        Atomic; reload with :func:`fastcls.load`. See :func:`fastcls.io.save` and
        ``docs/saving.md``.
        """
        from fastcls.io import save

        save(self, path, compress=compress)


class LinearSVM(LinearClassifier):
    """Multiclass linear SVM (Weston-Watkins hinge, margin 1) trained by mini-batch SGD.

    Parameters
    ----------
    learning_rate : float or "auto", default "auto"
        Step size. ``"auto"`` uses ``1 / mean_i ||x_i||^2``: about the largest stable step
        of the hinge loss, so that standardised features and raw 0..255 pixels train alike;
        give a number to follow the lectures (e.g. ``1e-7`` on raw CIFAR pixels).
    reg : float, default 1e-4
        Regularisation strength (>= 0).
    penalty : {"l2", "l1", "elasticnet"}, default "l2"
        ``reg * sum(W**2)``, ``reg * sum(|W|)`` or ``reg * sum(beta * W**2 + |W|)``.
    beta : float, default 1.0
        Elastic-net weight of the squared term.
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
        Factor of the ``"step"`` schedule.
    lr_step : int or None, default None
        Iterations between decays; ``None``: one epoch (``ceil(n_samples / batch_size)``).
    fit_intercept : bool, default True
        Learn a bias ``b_`` (not regularised). ``False``: ``b_`` is zero; the bias trick
        (a column of ones in ``X``) is the alternative.
    center : bool, default True
        With ``fit_intercept``, run SGD on mean-centred features, as the lectures do by
        hand (``X`` is not copied); ``W_`` and ``b_`` always apply to the raw ``X``.
        ``False``: plain SGD on ``X`` (the exact lecture loop).
    init_scale : float, default 1e-3
        Standard deviation of the initial weights.
    seed : None, int or numpy Generator
        Seeds the initial weights and the mini-batches.
    verbose : bool or int, default False
        Print a progress line to stderr every ``n_iters // 10`` steps (or every
        ``verbose`` steps when an int > 1).
    n_jobs : int or None
        Threads for the kernels (None: the current :func:`fastcls.num_threads`
        setting, all cores by default; -1: all cores). Results do not depend on it.

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
    n_iter_ : int
        Number of SGD steps taken.

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

    loss_name = "svm"


class Softmax(LinearClassifier):
    """Softmax (multinomial logistic regression) trained by mini-batch SGD.

    Parameters
    ----------
    learning_rate : float or "auto", default "auto"
        Step size. ``"auto"`` uses ``4 / mean_i ||x_i||^2`` (the softmax loss has curvature
        at most ``||x||^2 / 2``), so that standardised features and raw 0..255 pixels train
        alike; give a number to follow the lectures (e.g. ``1e-7`` on raw CIFAR pixels).
    reg : float, default 1e-4
        Regularisation strength (>= 0).
    penalty : {"l2", "l1", "elasticnet"}, default "l2"
        ``reg * sum(W**2)``, ``reg * sum(|W|)`` or ``reg * sum(beta * W**2 + |W|)``.
    beta : float, default 1.0
        Elastic-net weight of the squared term.
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
        Factor of the ``"step"`` schedule.
    lr_step : int or None, default None
        Iterations between decays; ``None``: one epoch (``ceil(n_samples / batch_size)``).
    fit_intercept : bool, default True
        Learn a bias ``b_`` (not regularised). ``False``: ``b_`` is zero; the bias trick
        (a column of ones in ``X``) is the alternative.
    center : bool, default True
        With ``fit_intercept``, run SGD on mean-centred features, as the lectures do by
        hand (``X`` is not copied); ``W_`` and ``b_`` always apply to the raw ``X``.
        ``False``: plain SGD on ``X`` (the exact lecture loop).
    init_scale : float, default 1e-3
        Standard deviation of the initial weights.
    seed : None, int or numpy Generator
        Seeds the initial weights and the mini-batches.
    verbose : bool or int, default False
        Print a progress line to stderr every ``n_iters // 10`` steps (or every
        ``verbose`` steps when an int > 1).
    n_jobs : int or None
        Threads for the kernels (None: the current :func:`fastcls.num_threads`
        setting, all cores by default; -1: all cores). Results do not depend on it.

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
    n_iter_ : int
        Number of SGD steps taken.

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

    loss_name = "softmax"
    _auto_lr_factor = 4.0


# --------------------------------------------------------------------------- fitted state
_FITTED = ("W_", "b_", "classes_", "n_features_in_", "loss_history_", "learning_rate_", "n_iter_")
_ARRAY_FIELDS = ("W", "b", "classes", "loss_history")
_META_FIELDS = ("loss", "n_features_in", "learning_rate", "n_iter")
