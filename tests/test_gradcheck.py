"""Finite-difference checks of every loss, penalty and the bias gradient."""

from __future__ import annotations

import numpy as np
import pytest

import fastcls
from fastcls.gradcheck import grad_check_sparse, numerical_gradient, relative_error
from fastcls.reference.losses import (
    softmax_loss_naive,
    softmax_loss_vectorized,
    svm_loss_naive,
    svm_loss_vectorized,
)

LOSSES = {"svm": fastcls.svm_loss, "softmax": fastcls.softmax_loss}


def data(seed=0, N=40, D=12, C=5):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D))
    y = rng.integers(0, C, N)
    W = rng.standard_normal((D, C)) * 0.5
    b = rng.standard_normal(C)
    return X, y, W, b


def test_numerical_gradient_of_a_quadratic_and_restores_x():
    A = np.array([[2.0, 1.0], [1.0, 3.0]])
    x = np.array([0.3, -1.2])
    before = x.copy()
    g = numerical_gradient(lambda v: float(v @ A @ v), x)
    np.testing.assert_allclose(g, 2 * A @ before, rtol=1e-8)
    np.testing.assert_array_equal(x, before)


def test_relative_error_is_zero_not_nan_when_both_vanish():
    err = relative_error(np.zeros(3), np.zeros(3))
    assert np.all(err == 0) and not np.isnan(err).any()
    assert relative_error(1.0, -1.0) == 1.0


def test_grad_check_sparse_detects_a_wrong_gradient():
    x = np.linspace(-1, 1, 12).reshape(3, 4)
    f = lambda v: float(np.sum(np.sin(v)))  # noqa: E731
    good = grad_check_sparse(f, x, np.cos(x), num_checks=20, seed=0)
    bad = grad_check_sparse(f, x, np.cos(x) * 1.01, num_checks=20, seed=0)
    assert good.shape == (20,) and good.max() < 1e-8
    assert bad.min() > 1e-3


def test_grad_check_sparse_is_seeded_and_restores_x():
    x = np.arange(8.0)
    f = lambda v: float(np.sum(v**3))  # noqa: E731
    a = grad_check_sparse(f, x, 3 * x**2, seed=3)
    b = grad_check_sparse(f, x, 3 * x**2, seed=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(x, np.arange(8.0))
    assert a[0] == 0.0 or a.max() < 1e-8  # x[0]=0: both gradients zero gives 0, not NaN


def test_grad_check_sparse_verbose_prints(capsys):
    x = np.ones(3)
    grad_check_sparse(lambda v: float(v.sum()), x, np.ones(3), num_checks=2, seed=0, verbose=True)
    assert "relative error" in capsys.readouterr().out


@pytest.mark.parametrize(
    "call,exc",
    [
        (lambda: numerical_gradient(lambda v: 0.0, [1.0, 2.0]), TypeError),
        (lambda: numerical_gradient(lambda v: 0.0, np.arange(3)), TypeError),
        (lambda: numerical_gradient(lambda v: 0.0, np.ones(3), h=0.0), ValueError),
        (lambda: grad_check_sparse(lambda v: 0.0, np.ones(3), np.ones(4)), ValueError),
        (lambda: grad_check_sparse(lambda v: 0.0, np.ones(3), np.ones(3), 0), ValueError),
    ],
)
def test_bad_arguments(call, exc):
    with pytest.raises(exc):
        call()


@pytest.mark.parametrize("kind", ["svm", "softmax"])
@pytest.mark.parametrize("penalty", ["l2", "l1", "elasticnet"])
def test_fused_loss_gradients_match_finite_differences(kind, penalty):
    X, y, W, b = data(1)
    loss = LOSSES[kind]
    _, dW, db = loss(W, X, y, 0.3, penalty, beta=0.7, b=b)
    fW = lambda w: loss(w, X, y, 0.3, penalty, beta=0.7, b=b)[0]  # noqa: E731
    fb = lambda v: loss(W, X, y, 0.3, penalty, beta=0.7, b=v)[0]  # noqa: E731
    # kinks (hinge at 0, |w| at 0) are measure-zero: with h=1e-6 none is crossed here
    errW = grad_check_sparse(fW, W.copy(), dW, num_checks=25, h=1e-6, seed=0)
    errb = grad_check_sparse(fb, b.copy(), db, num_checks=5, h=1e-6, seed=0)
    assert errW.max() < 1e-6, errW
    assert errb.max() < 1e-6, errb
    full = numerical_gradient(fW, W.copy(), h=1e-6)
    np.testing.assert_allclose(dW, full, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", ["svm", "softmax"])
def test_fused_loss_gradient_with_batch_indices(kind):
    X, y, W, _ = data(2, N=60)
    idx = np.random.default_rng(0).integers(0, 60, 25)
    _, dW = LOSSES[kind](W, X, y, 0.05, idx=idx)
    f = lambda w: LOSSES[kind](w, X, y, 0.05, idx=idx)[0]  # noqa: E731
    assert grad_check_sparse(f, W.copy(), dW, num_checks=20, h=1e-6, seed=1).max() < 1e-6


@pytest.mark.parametrize(
    "fn", [svm_loss_naive, svm_loss_vectorized, softmax_loss_naive, softmax_loss_vectorized]
)
def test_reference_gradients_match_finite_differences(fn):
    X, y, W, _ = data(3, N=20, D=6, C=4)
    _, dW = fn(W, X, y, 0.2)
    err = grad_check_sparse(lambda w: fn(w, X, y, 0.2)[0], W.copy(), dW, 15, h=1e-6, seed=2)
    assert err.max() < 1e-6
