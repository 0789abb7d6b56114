"""Finite-difference gradient checks (the lecture's ``grad_check_sparse``).

Use them to verify an analytic gradient: the relative error
``|num - ana| / max(|num| + |ana|, tiny)`` is about 1e-7 or less for a correct
float64 gradient away from kinks (the hinge's ``max(0, .)`` can give larger errors
when a margin crosses 0 within ``h``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fastcls import _validation as V


def _check_x(x: Any) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        raise TypeError("x must be a floating-point numpy array (it is perturbed in place)")
    if not x.flags.writeable:
        raise ValueError("x must be writeable (it is perturbed in place, then restored)")
    return x


def numerical_gradient(
    f: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-5
) -> np.ndarray:
    """Centred-difference gradient of a scalar function, one coordinate at a time.

    Parameters
    ----------
    f : callable
        ``f(x) -> float``; it reads ``x`` (which is perturbed in place).
    x : ndarray of float, any shape
        Point of evaluation; every entry is restored after its perturbation.
    h : float, default 1e-5
        Step: ``(f(x + h e_i) - f(x - h e_i)) / (2h)``.

    Returns
    -------
    ndarray, shape of ``x``, float64

    Examples
    --------
    >>> import numpy as np
    >>> from fastcls.gradcheck import numerical_gradient
    >>> x = np.array([1.0, -2.0])
    >>> np.round(numerical_gradient(lambda v: float(np.sum(v ** 2)), x), 6)
    array([ 2., -4.])
    >>> x  # restored
    array([ 1., -2.])
    """
    x = _check_x(x)
    h = V.check_float(h, "h", min_value=0.0, strict_min=True)
    grad = np.zeros(x.shape, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        fp = float(f(x))
        x[i] = old - h
        fm = float(f(x))
        x[i] = old
        grad[i] = (fp - fm) / (2.0 * h)
        it.iternext()
    return grad


def relative_error(a: Any, b: Any) -> np.ndarray:
    """``|a - b| / (|a| + |b|)``, defined as 0 where both are 0 (never NaN)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    num = np.abs(a - b)
    den = np.abs(a) + np.abs(b)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def grad_check_sparse(
    f: Callable[[np.ndarray], float],
    x: np.ndarray,
    analytic_grad: Any,
    num_checks: int = 10,
    h: float = 1e-5,
    seed: Any = None,
    verbose: bool = False,
) -> np.ndarray:
    """Compare ``analytic_grad`` with centred differences at ``num_checks`` random entries.

    Parameters
    ----------
    f : callable
        ``f(x) -> float``.
    x : ndarray of float
        Point of evaluation (perturbed in place, restored).
    analytic_grad : array-like, shape of ``x``
    num_checks : int, default 10
        Entries drawn uniformly with replacement.
    h : float, default 1e-5
    seed : None, int or numpy Generator
    verbose : bool
        Print each comparison as the lecture code does.

    Returns
    -------
    ndarray of shape (num_checks,)
        Relative errors ``|num - ana| / (|num| + |ana|)`` (0 where both are 0).

    Examples
    --------
    >>> import numpy as np
    >>> from fastcls.gradcheck import grad_check_sparse
    >>> x = np.arange(6.0).reshape(2, 3)
    >>> err = grad_check_sparse(lambda v: float(np.sum(v ** 3)), x, 3 * x ** 2, seed=0)
    >>> bool(err.max() < 1e-8)
    True
    """
    x = _check_x(x)
    ana = np.asarray(analytic_grad)
    if ana.shape != x.shape:
        raise ValueError(f"analytic_grad has shape {ana.shape} but x has shape {x.shape}")
    num_checks = V.check_int(num_checks, "num_checks", min_value=1)
    h = V.check_float(h, "h", min_value=0.0, strict_min=True)
    rng = V.check_random_state(seed)
    errors = np.empty(num_checks)
    for k in range(num_checks):
        i = tuple(int(rng.integers(n)) for n in x.shape)
        old = x[i]
        x[i] = old + h
        fp = float(f(x))
        x[i] = old - h
        fm = float(f(x))
        x[i] = old
        num = (fp - fm) / (2.0 * h)
        errors[k] = relative_error(num, ana[i])
        if verbose:
            print(f"numerical: {num:f} analytic: {float(ana[i]):f}, relative error: {errors[k]:e}")
    return errors
