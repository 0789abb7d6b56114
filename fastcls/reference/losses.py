"""Plain NumPy references for the linear classifiers' losses (the lecture's code).

Every function has the signature ``(W, X, y, reg) -> (loss, dW)`` with

* ``W`` of shape (D, C): one column of weights per class,
* ``X`` of shape (N, D): one sample per row,
* ``y`` of shape (N,): integer labels in ``0..C-1``,
* ``reg``: L2 regularisation strength.

The data loss is averaged over the N samples and ``reg * sum(W * W)`` is added
(gradient ``2 * reg * W``). The SVM is the Weston-Watkins multiclass hinge
``sum_{j != y_i} max(0, s_j - s_{y_i} + 1)``; the softmax is the cross-entropy with
the scores shifted by their row maximum for numerical stability.

Nothing here is fast: the fused kernels of :mod:`fastcls.kernels.losses` are tested
against these functions. Computations are done in float64 whatever the input dtype.
"""

from __future__ import annotations

import numpy as np

DELTA = 1.0


def svm_loss_naive(W: np.ndarray, X: np.ndarray, y: np.ndarray, reg: float):
    """Multiclass SVM loss and gradient with explicit loops over samples and classes."""
    W = np.asarray(W, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    dW = np.zeros_like(W)
    num_classes = W.shape[1]
    num_train = X.shape[0]
    loss = 0.0
    for i in range(num_train):
        scores = X[i].dot(W)
        correct_class_score = scores[y[i]]
        for j in range(num_classes):
            if j == y[i]:
                continue
            margin = scores[j] - correct_class_score + DELTA
            if margin > 0:
                loss += margin
                dW[:, j] += X[i]
                dW[:, y[i]] -= X[i]
    loss /= num_train
    dW /= num_train
    loss += reg * np.sum(W * W)
    dW += 2 * reg * W
    return loss, dW


def svm_loss_vectorized(W: np.ndarray, X: np.ndarray, y: np.ndarray, reg: float):
    """Multiclass SVM loss and gradient, vectorised (no Python loop)."""
    W = np.asarray(W, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    num_train = X.shape[0]
    rows = np.arange(num_train)
    scores = X @ W
    correct = scores[rows, y][:, None]
    margins = np.maximum(0.0, scores - correct + DELTA)
    margins[rows, y] = 0.0
    loss = margins.sum() / num_train + reg * np.sum(W * W)
    mask = (margins > 0).astype(np.float64)
    mask[rows, y] = -mask.sum(axis=1)
    dW = X.T @ mask / num_train + 2 * reg * W
    return loss, dW


def softmax_loss_naive(W: np.ndarray, X: np.ndarray, y: np.ndarray, reg: float):
    """Softmax (cross-entropy) loss and gradient with explicit loops."""
    W = np.asarray(W, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    dW = np.zeros_like(W)
    num_classes = W.shape[1]
    num_train = X.shape[0]
    loss = 0.0
    for i in range(num_train):
        scores = X[i].dot(W)
        scores = scores - np.max(scores)  # shift for numerical stability
        exp_scores = np.exp(scores)
        total = np.sum(exp_scores)
        loss += -scores[y[i]] + np.log(total)
        for j in range(num_classes):
            p = exp_scores[j] / total
            dW[:, j] += (p - (j == y[i])) * X[i]
    loss /= num_train
    dW /= num_train
    loss += reg * np.sum(W * W)
    dW += 2 * reg * W
    return loss, dW


def softmax_loss_vectorized(W: np.ndarray, X: np.ndarray, y: np.ndarray, reg: float):
    """Softmax (cross-entropy) loss and gradient, vectorised."""
    W = np.asarray(W, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    num_train = X.shape[0]
    rows = np.arange(num_train)
    scores = X @ W
    scores -= scores.max(axis=1, keepdims=True)
    log_total = np.log(np.exp(scores).sum(axis=1))
    loss = np.sum(log_total - scores[rows, y]) / num_train + reg * np.sum(W * W)
    probs = np.exp(scores - log_total[:, None])
    probs[rows, y] -= 1.0
    dW = X.T @ probs / num_train + 2 * reg * W
    return loss, dW


# ---------------------------------------------------------------------------------------
# General form used to check the fused kernels: bias, penalties, any dtype (float64 math)
def penalty_reference(W: np.ndarray, reg: float, penalty: str = "l2", beta: float = 1.0):
    """Penalty value and gradient: ``l2`` reg*sum W^2, ``l1`` reg*sum|W|,
    ``elasticnet`` reg*sum(beta*W^2 + |W|). The subgradient of |w| at 0 is taken as 0."""
    W = np.asarray(W, dtype=np.float64)
    if penalty == "l2":
        return reg * np.sum(W * W), 2 * reg * W
    if penalty == "l1":
        return reg * np.sum(np.abs(W)), reg * np.sign(W)
    if penalty == "elasticnet":
        return reg * np.sum(beta * W * W + np.abs(W)), reg * (2 * beta * W + np.sign(W))
    raise ValueError(f"unknown penalty {penalty!r}")


def linear_loss_reference(
    kind: str,
    W: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    reg: float,
    b: np.ndarray | None = None,
    penalty: str = "l2",
    beta: float = 1.0,
    idx: np.ndarray | None = None,
):
    """Vectorised SVM (``kind="svm"``) or softmax loss with a bias, a penalty and
    batch indices, in float64: returns ``(loss, dW, db)`` (``db`` is None without ``b``).
    The bias is not regularised."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if idx is not None:
        X, y = X[idx], y[idx]
    W = np.asarray(W, dtype=np.float64)
    n = X.shape[0]
    rows = np.arange(n)
    scores = X @ W
    if b is not None:
        scores = scores + np.asarray(b, dtype=np.float64)
    if kind == "svm":
        margins = np.maximum(0.0, scores - scores[rows, y][:, None] + DELTA)
        margins[rows, y] = 0.0
        data_loss = margins.sum() / n
        dS = (margins > 0).astype(np.float64)
        dS[rows, y] = -dS.sum(axis=1)
    elif kind == "softmax":
        scores = scores - scores.max(axis=1, keepdims=True)
        log_total = np.log(np.exp(scores).sum(axis=1))
        data_loss = np.sum(log_total - scores[rows, y]) / n
        dS = np.exp(scores - log_total[:, None])
        dS[rows, y] -= 1.0
    else:
        raise ValueError(f"unknown loss kind {kind!r}")
    dS /= n
    pen, dpen = penalty_reference(W, reg, penalty, beta)
    dW = X.T @ dS + dpen
    db = dS.sum(axis=0) if b is not None else None
    return data_loss + pen, dW, db
