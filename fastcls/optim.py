"""Optimisation helpers for the linear classifiers: random search, learning-rate schedules.

:func:`random_search` is the lecture's baseline (try random weights, keep the best).
The SGD loop itself lives in :meth:`fastcls.LinearClassifier.fit`; the schedules it
uses are defined here, so that a plain NumPy loop can reproduce its steps exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fastcls import _validation as V

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


def random_search(
    loss_fn: Callable[[np.ndarray], Any],
    shape: tuple[int, int],
    n_tries: int = 1000,
    scale: float = 1e-4,
    seed: Any = None,
) -> tuple[np.ndarray, float]:
    """Random search over weights: draw ``W ~ scale * N(0, 1)`` ``n_tries`` times, keep the best.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(W) -> loss`` or ``-> (loss, grad)`` (only the loss is used), e.g.
        ``lambda W: fastcls.svm_loss(W, X, y, 0.0)``.
    shape : (D, C)
        Shape of the weights.
    n_tries : int, default 1000
    scale : float, default 1e-4
        Standard deviation of the random weights (> 0).
    seed : None, int or numpy Generator

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
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if (
        not isinstance(shape, (tuple, list))
        or len(shape) != 2
        or not all(isinstance(s, (int, np.integer)) and s > 0 for s in shape)
    ):
        raise ValueError(f"shape must be (D, C) with positive integers, got {shape!r}")
    n_tries = V.check_int(n_tries, "n_tries", min_value=1)
    scale = V.check_float(scale, "scale", min_value=0.0, strict_min=True)
    rng = V.check_random_state(seed)
    best_W = None
    best_loss = np.inf
    for _ in range(n_tries):
        W = rng.standard_normal(tuple(int(s) for s in shape)) * scale
        out = loss_fn(W)
        loss = float(out[0] if isinstance(out, tuple) else out)
        if loss < best_loss:
            best_loss, best_W = loss, W
    if best_W is None:  # every loss was NaN
        raise ValueError("loss_fn returned NaN for every try")
    return best_W, best_loss
