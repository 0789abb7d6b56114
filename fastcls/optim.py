"""Optimisers for the linear classifiers: mini-batch SGD, schedules, random search.

* :func:`sgd` -- mini-batch stochastic gradient descent with momentum and a learning-rate
  schedule, on any ``loss_grad(W, b, rows) -> (loss, dW, db)`` (``batch_size=None``:
  full-batch gradient descent). :meth:`fastcls.LinearClassifier.fit` validates its
  parameters, then calls it.
* :func:`learning_rate_at` -- the schedules, so that a plain NumPy loop can reproduce the
  steps exactly.
* :func:`random_search` -- the lecture's baseline (try random weights, keep the best).

Random stream
-------------
:func:`sgd` draws from one ``numpy.random.Generator`` and from nothing else: for every
iteration, ``rows = rng.integers(0, n_samples, size=batch_size)`` (with replacement;
nothing is drawn for full-batch descent). Passing the Generator that drew the initial
weights continues its stream, which is what :meth:`fastcls.LinearClassifier.fit` does.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from fastcls import _validation as V

__all__ = [
    "SCHEDULES",
    "LossGradFunction",
    "SGDResult",
    "learning_rate_at",
    "random_search",
    "sgd",
    "sgd_linear",
]

#: learning-rate schedules understood by :func:`learning_rate_at`
SCHEDULES = ("constant", "step")


def learning_rate_at(
    schedule: str, learning_rate: float, iteration: int, decay: float = 0.95, step: int = 1
) -> float:
    """Learning rate at ``iteration`` (0-based).

    ``"constant"``: ``learning_rate``; ``"step"``: ``learning_rate * decay ** (iteration // step)``.

    Examples
    --------
    >>> from fastcls.optim import learning_rate_at
    >>> learning_rate_at("step", 1.0, 25, decay=0.5, step=10)
    0.25
    """
    if schedule == "constant":
        return learning_rate
    if schedule == "step":
        return learning_rate * decay ** (iteration // step)
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")


def _check_steps(
    learning_rate: Any,
    n_iters: Any,
    batch_size: Any,
    momentum: Any,
    schedule: Any,
    lr_decay: Any,
    lr_step: Any,
    verbose: Any,
) -> tuple[float, int, int | None, float, str, float, int, int]:
    """Validate the step parameters shared by :func:`sgd` and :func:`sgd_linear`."""
    lr0 = V.check_float(learning_rate, "learning_rate", min_value=0.0, strict_min=True)
    n_iters = V.check_int(n_iters, "n_iters", min_value=1)
    if batch_size is not None:
        batch_size = V.check_int(batch_size, "batch_size", min_value=1)
    momentum = V.check_float(momentum, "momentum", min_value=0.0)
    if momentum >= 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    schedule = V.check_choice(schedule, "schedule", SCHEDULES)
    lr_decay = V.check_float(lr_decay, "lr_decay", min_value=0.0, max_value=1.0, strict_min=True)
    lr_step = V.check_int(lr_step, "lr_step", min_value=1)
    verbose = V.check_int(verbose, "verbose", min_value=0)
    return lr0, n_iters, batch_size, momentum, schedule, lr_decay, lr_step, verbose


def _progress_line(name: str, it: int, n_iters: int, loss: float, lr: float, t0: float) -> None:
    rate = (it + 1) / max(time.perf_counter() - t0, 1e-9)
    print(
        f"{name} iter {it + 1}/{n_iters} loss {loss:.5g} lr {lr:.3g} ({rate:.0f} it/s)",
        file=sys.stderr,
        flush=True,
    )


def _diverged(loss: float, it: int, lr: float) -> FloatingPointError:
    what = f"the loss became {loss}" if not np.isfinite(loss) else "the gradient overflowed"
    return FloatingPointError(
        f"{what} at iteration {it}: learning_rate={lr:g} is "
        "too large for this data (try a smaller one, or 'auto')"
    )


def _weights_not_finite(n_iters: int, lr0: float) -> FloatingPointError:
    return FloatingPointError(
        f"the weights are not finite after the last update (iteration {n_iters - 1}): "
        f"learning_rate={lr0:g} is too large for this data (try a smaller one, or 'auto')"
    )


#: ``loss_grad(W, b, rows) -> (loss, dW, db)``: the objective :func:`sgd` minimises
#: (``b`` and ``db`` are None without a bias; ``rows`` is None for every sample)
LossGradFunction = Callable[
    [np.ndarray, np.ndarray | None, np.ndarray | None],
    tuple[Any, np.ndarray, np.ndarray | None],
]


class SGDResult(NamedTuple):
    """What :func:`sgd` returns.

    Attributes
    ----------
    W : ndarray
        Final weights (dtype and shape of ``W0``).
    b : ndarray or None
        Final bias (None when ``b0`` was None).
    loss_history : ndarray of shape (n_iter,), float64
        ``loss_grad``'s loss at every step, before the step's update.
    learning_rate : float
        The initial learning rate.
    n_iter : int
        Number of steps taken.
    """

    W: np.ndarray
    b: np.ndarray | None
    loss_history: np.ndarray
    learning_rate: float
    n_iter: int


def sgd(
    loss_grad: LossGradFunction,
    W0: np.ndarray,
    b0: np.ndarray | None,
    n_samples: int,
    *,
    learning_rate: float,
    n_iters: int,
    batch_size: int | None = None,
    momentum: float = 0.0,
    schedule: str = "constant",
    lr_decay: float = 0.95,
    lr_step: int = 1,
    seed: Any = None,
    verbose: int = 0,
    name: str = "sgd",
) -> SGDResult:
    """Minimise ``loss_grad`` by (mini-batch) stochastic gradient descent.

    At step ``it`` (0-based): ``rows = rng.integers(0, n_samples, size=batch_size)``
    (``None`` for full-batch descent), ``loss, dW, db = loss_grad(W, b, rows)``,
    ``lr = learning_rate_at(schedule, learning_rate, it, lr_decay, lr_step)``, then
    ``W -= lr * dW`` (and ``b -= lr * db``), or with ``momentum > 0`` the classical
    update ``v = momentum * v - lr * g; W += v``. The scalars are cast to the dtype of
    ``W0`` and the arrays are updated in place, in that order, so a float32 model
    trains in float32 and a NumPy loop doing the same sees the same numbers.

    Parameters
    ----------
    loss_grad : callable
        ``loss_grad(W, b, rows) -> (loss, dW, db)``; ``dW`` (and ``db``) have the shape
        and dtype of ``W`` (and ``b``); ``db`` is ignored when ``b0`` is None. It must
        not keep ``W`` or ``b``, which are updated in place after each call.
    W0 : ndarray of float
        Initial weights (copied).
    b0 : ndarray of float or None
        Initial bias (copied), or None for a model without one.
    n_samples : int
        Rows the mini-batches are drawn from.
    learning_rate : float
        Initial step size (> 0).
    n_iters : int
        Number of steps (>= 1).
    batch_size : int or None, default None
        Rows per step, drawn with replacement; ``None``: full-batch gradient descent
        (``rows`` is None and nothing is drawn).
    momentum : float, default 0.0
        In ``[0, 1)``; 0 is plain SGD.
    schedule : {"constant", "step"}, default "constant"
    lr_decay : float, default 0.95
        Factor of the ``"step"`` schedule, in ``(0, 1]``.
    lr_step : int, default 1
        Steps between decays of the ``"step"`` schedule.
    seed : None, int or numpy Generator
        Source of the mini-batches (a Generator is used, and advanced, as it is).
    verbose : int, default 0
        Print a progress line to stderr every ``verbose`` steps and after the last one
        (0: silent).
    name : str, default "sgd"
        First word of the progress lines.

    Returns
    -------
    SGDResult

    Raises
    ------
    FloatingPointError
        The loss became NaN or infinite, or the weights are not finite after the last
        update (the learning rate is too large).

    Examples
    --------
    >>> import numpy as np
    >>> from fastcls.optim import sgd
    >>> data = np.array([1.0, 2.0, 3.0, 6.0])
    >>> def loss_grad(W, b, rows):  # mean squared distance of W to the rows used
    ...     d = W - (data if rows is None else data[rows])
    ...     return float(np.mean(d**2)), 2 * np.mean(d, keepdims=True), None
    >>> res = sgd(loss_grad, np.zeros(1), None, 4, learning_rate=0.5, n_iters=3)
    >>> res.W, res.loss_history  # full batch: one step of 0.5 reaches the mean
    (array([3.]), array([12.5,  3.5,  3.5]))
    >>> res = sgd(loss_grad, np.zeros(1), None, 4, learning_rate=0.05, n_iters=300,
    ...           batch_size=2, seed=0)
    >>> bool(abs(res.W[0] - 3.0) < 0.5)  # mini-batches: noisy, near the mean
    True
    """
    if not callable(loss_grad):
        raise TypeError(f"loss_grad must be callable, got {type(loss_grad).__name__}")
    for arr, what in ((W0, "W0"), (b0, "b0")):
        if what == "b0" and arr is None:
            continue
        if not isinstance(arr, np.ndarray) or arr.dtype.kind != "f":
            raise TypeError(f"{what} must be a floating-point numpy array")
    n_samples = V.check_int(n_samples, "n_samples", min_value=1)
    lr0, n_iters, batch_size, momentum, schedule, lr_decay, lr_step, verbose = _check_steps(
        learning_rate, n_iters, batch_size, momentum, schedule, lr_decay, lr_step, verbose
    )
    rng = V.check_random_state(seed)

    W = W0.copy()
    b = None if b0 is None else b0.copy()
    dtype = W.dtype
    vW = np.zeros_like(W) if momentum > 0 else None
    vb = np.zeros_like(b) if (b is not None and vW is not None) else None
    history = np.empty(n_iters)
    t0 = time.perf_counter()
    # divergence is reported by the FloatingPointError below, not by numpy warnings
    with np.errstate(over="ignore", invalid="ignore"):
        for it in range(n_iters):
            rows = None
            if batch_size is not None:
                rows = rng.integers(0, n_samples, size=batch_size)
            loss, dW, db = loss_grad(W, b, rows)
            lr = learning_rate_at(schedule, lr0, it, lr_decay, lr_step)
            if vW is None:
                W -= dtype.type(lr) * dW
                if b is not None:
                    b -= dtype.type(lr) * db
            else:
                vW *= dtype.type(momentum)
                vW -= dtype.type(lr) * dW
                W += vW
                if b is not None and vb is not None:
                    vb *= dtype.type(momentum)
                    vb -= dtype.type(lr) * db
                    b += vb
            history[it] = loss
            if not np.isfinite(loss):
                raise _diverged(loss, it, lr)
            if verbose and ((it + 1) % verbose == 0 or it == n_iters - 1):
                _progress_line(name, it, n_iters, loss, lr, t0)
    if not (np.isfinite(W).all() and (b is None or np.isfinite(b).all())):
        raise _weights_not_finite(n_iters, lr0)
    return SGDResult(W, b, history, lr0, n_iters)


def sgd_linear(
    loss: str,
    X: np.ndarray,
    y: np.ndarray,
    W0: np.ndarray,
    b0: np.ndarray | None,
    *,
    reg: float,
    penalty: str = "l2",
    beta: float = 1.0,
    mu: np.ndarray | None = None,
    learning_rate: float,
    n_iters: int,
    batch_size: int | None = None,
    momentum: float = 0.0,
    schedule: str = "constant",
    lr_decay: float = 0.95,
    lr_step: int = 1,
    seed: Any = None,
    verbose: int = 0,
    name: str = "sgd",
) -> SGDResult:
    """:func:`sgd` on a linear model's loss, with the whole loop compiled.

    The same steps, random stream and results as ``sgd(loss_grad, W0, b0, n, ...)`` with
    ``loss_grad`` calling :func:`fastcls.losses.loss_and_gradient` (bit for bit without
    centring), but no Python runs per step: a compiled function
    (:func:`fastcls.kernels.losses.sgd_linear_steps`) takes a chunk of steps (sample the
    rows, fused loss and gradient, momentum, step size, loss history, divergence
    check). Between chunks Python draws the next chunk's batches with
    ``rng.integers(0, n_samples, size=batch_size)`` per step, exactly the calls
    :func:`sgd` makes (one call per step: drawing a chunk in one call would consume the
    Generator's buffered 32-bit halves differently and change the batches), and prints
    the progress line. Chunks are ``verbose`` steps long (512 when silent).

    Parameters
    ----------
    loss : str
        A key of :data:`fastcls.losses.LOSSES` (``"svm"`` or ``"softmax"``).
    X : ndarray of shape (n_samples, D), float32 or float64, C-contiguous, finite
    y : ndarray of shape (n_samples,), int64 in ``0..C-1``
        Validated data (as :func:`fastcls.losses.check_loss_inputs` returns it).
    W0 : ndarray of shape (D, C), dtype of ``X``
        Initial weights (copied).
    b0 : ndarray of shape (C,) or None
        Initial bias (copied); ``None``: no bias (zero, not trained).
    reg, penalty, beta
        The penalty, as in :func:`fastcls.losses.svm_loss`.
    mu : ndarray of shape (D,), float64, optional
        Train on centred rows ``x - mu`` without copying ``X`` (with a bias only): the
        model is ``scores = (x - mu) W + b``; the returned ``b`` is that of the centred
        model.
    learning_rate, n_iters, batch_size, momentum, schedule, lr_decay, lr_step, seed, verbose, name
        As in :func:`sgd`.

    Returns
    -------
    SGDResult

    Raises
    ------
    FloatingPointError
        The loss or the gradient became NaN or infinite, or the weights are not finite
        after the last update (the learning rate is too large).

    Examples
    --------
    >>> import numpy as np
    >>> from fastcls.optim import sgd_linear
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((100, 3)); y = (X[:, 0] > 0).astype(np.int64)
    >>> res = sgd_linear("svm", X, y, np.zeros((3, 2)), np.zeros(2), reg=1e-3,
    ...                  learning_rate=0.1, n_iters=50, batch_size=20, seed=0)
    >>> res.loss_history.shape, bool(res.loss_history[-10:].mean() < res.loss_history[0])
    ((50,), True)
    """
    from fastcls.kernels import losses as K
    from fastcls.losses import LOSSES, PENALTIES

    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {tuple(LOSSES)}, got {loss!r}")
    penalty = V.check_choice(penalty, "penalty", PENALTIES)
    n, D = X.shape
    C = W0.shape[1]
    lr0, n_iters, batch_size, momentum, schedule, lr_decay, lr_step, verbose = _check_steps(
        learning_rate, n_iters, batch_size, momentum, schedule, lr_decay, lr_step, verbose
    )
    rng = V.check_random_state(seed)
    dtype = X.dtype
    fit_bias = b0 is not None
    b = np.array(b0, dtype=dtype) if fit_bias else np.zeros(C, dtype=dtype)
    vWT = np.zeros((C, D), dtype=dtype)
    centre = mu is not None and fit_bias
    mu64 = np.ascontiguousarray(mu, dtype=np.float64) if centre else np.zeros(D)
    vb = np.zeros_like(b)
    # the schedule in Python floats, exactly what sgd computes at each step
    lrs = np.array(
        [learning_rate_at(schedule, lr0, it, lr_decay, lr_step) for it in range(n_iters)]
    )
    m = batch_size if batch_size is not None else n
    bounds = K.task_bounds(m)
    impl = K.kernel_impl()
    tile = K.tile_token(impl)
    rblock = K.row_block(loss, impl)
    # the state the loop updates: W transposed into the kernel's padded layout (a copy)
    WT, part, wide, part_db, part_loss, ticks, scratch = K.loss_buffers(
        bounds, C, D, tile, dtype, rblock
    )
    WT[:C, :D] = W0.T
    dWT = np.empty((C, D), dtype=dtype)
    db = np.empty(C, dtype=dtype)
    bias = np.empty(C, dtype=dtype)
    history = np.empty(n_iters)
    parallel = K.twin_token(K.use_parallel(m, D, C))
    code = K.LOSS_CODES[loss]
    pcode = K.PENALTY_CODES[penalty]
    full = batch_size is None
    chunk = verbose if verbose else 512
    batches = np.arange(n, dtype=np.int64)[None, :] if full else np.empty((chunk, m), np.int64)
    t0 = time.perf_counter()
    for it0 in range(0, n_iters, chunk):
        k = min(chunk, n_iters - it0)
        if not full:
            for j in range(k):
                batches[j] = rng.integers(0, n, size=m)
        done = K.sgd_linear_steps(
            X, y, batches, full, WT, b, vWT, vb, it0, k, lrs, momentum, code, reg, pcode,
            beta, mu64, centre, fit_bias, tile, rblock, parallel, bounds, part, wide,
            part_db, part_loss, dWT, db, bias, history, ticks, scratch,
            K.prefetch_next_batch(),
        )  # fmt: skip
        it = it0 + done - 1
        if done < k or not np.isfinite(history[it]):
            raise _diverged(history[it], it, lrs[it])
        if verbose:
            _progress_line(name, it, n_iters, history[it], lrs[it], t0)
    W = np.ascontiguousarray(WT[:C, :D].T)
    if not (np.isfinite(W).all() and np.isfinite(b).all()):
        raise _weights_not_finite(n_iters, lr0)
    return SGDResult(W, b if fit_bias else None, history, lr0, n_iters)


def random_search(
    loss_fn: Callable[[np.ndarray], Any] | str,
    shape: tuple[int, int],
    n_tries: int = 1000,
    scale: float = 1e-4,
    seed: Any = None,
    *,
    X: Any = None,
    y: Any = None,
    reg: float = 0.0,
) -> tuple[np.ndarray, float]:
    """Random search over weights: draw ``W ~ scale * N(0, 1)`` ``n_tries`` times, keep the best.

    Parameters
    ----------
    loss_fn : callable or str
        ``loss_fn(W) -> loss`` or ``-> (loss, grad)`` (only the loss is used), e.g.
        ``lambda W: fastcls.svm_loss(W, X, y, 0.0)``; or the name of a loss of
        :data:`fastcls.losses.LOSSES` (``"svm"``, ``"softmax"``) with ``X``, ``y`` and
        ``reg``: the data are then validated once and every try runs the fused kernel
        directly (:func:`fastcls.losses.loss_and_gradient`, as the SGD loop does), with
        the same results as the lambda.
    shape : (D, C)
        Shape of the weights.
    n_tries : int, default 1000
    scale : float, default 1e-4
        Standard deviation of the random weights (> 0).
    seed : None, int or numpy Generator
    X, y, reg
        The data and penalty of a named loss (ignored for a callable).

    Returns
    -------
    best_W : ndarray of shape ``shape``, float64
    best_loss : float

    Examples
    --------
    >>> import numpy as np, fastcls
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((40, 5)); y = (X[:, 0] > 0).astype(int)
    >>> W, loss = fastcls.optim.random_search(
    ...     lambda W: fastcls.svm_loss(W, X, y), (5, 2), n_tries=50, scale=1.0, seed=0)
    >>> W.shape, bool(loss < 1.0)
    ((5, 2), True)
    >>> W2, loss2 = fastcls.optim.random_search("svm", (5, 2), 50, 1.0, seed=0, X=X, y=y)
    >>> loss2 == loss
    True
    """
    if not (callable(loss_fn) or isinstance(loss_fn, str)):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if (
        not isinstance(shape, (tuple, list))
        or len(shape) != 2
        or not all(isinstance(s, (int, np.integer)) and s > 0 for s in shape)
    ):
        raise ValueError(f"shape must be (D, C) with positive integers, got {shape!r}")
    fn: Callable[[np.ndarray], Any]
    if isinstance(loss_fn, str):
        from fastcls.losses import LOSSES, check_loss_inputs, loss_and_gradient

        if loss_fn not in LOSSES:
            raise ValueError(f"loss_fn must be callable or one of {tuple(LOSSES)}, got {loss_fn!r}")
        if X is None or y is None:
            raise TypeError(f"random_search({loss_fn!r}, ...) needs the data: pass X= and y=")
        name = loss_fn
        # float64 weights, as the draws are: the data are promoted once, here
        _, Xv, yv, regv, _, _, _, _ = check_loss_inputs(np.zeros(tuple(shape)), X, y, reg)

        def named(W: np.ndarray) -> float:
            return loss_and_gradient(name, W, Xv, yv, regv).loss

        fn = named
    else:
        fn = loss_fn

    n_tries = V.check_int(n_tries, "n_tries", min_value=1)
    scale = V.check_float(scale, "scale", min_value=0.0, strict_min=True)
    rng = V.check_random_state(seed)
    best_W = None
    best_loss = np.inf
    for _ in range(n_tries):
        W = rng.standard_normal(tuple(int(s) for s in shape)) * scale
        out = fn(W)
        loss = float(out[0] if isinstance(out, tuple) else out)
        if loss < best_loss:
            best_loss, best_W = loss, W
    if best_W is None:  # every loss was NaN
        raise ValueError("loss_fn returned NaN for every try")
    return best_W, best_loss
