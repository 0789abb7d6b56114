"""k-nearest-neighbour references (CS231n assignment 1, written for clarity).

All distances are computed in float64 (inputs are converted first, so uint8 pixels
never wrap around on subtraction). Ties: equal distances -> lower training index
first (a stable sort); equal vote counts -> the smallest label.
"""

from __future__ import annotations

import numpy as np


def _f64(A):
    return np.asarray(A, dtype=np.float64)


def l2_distances_two_loops(X_test, X_train):
    """Euclidean distances with a double loop over (test, train) pairs."""
    X_test, X_train = _f64(X_test), _f64(X_train)
    dists = np.zeros((X_test.shape[0], X_train.shape[0]))
    for i in range(X_test.shape[0]):
        for j in range(X_train.shape[0]):
            dists[i, j] = np.sqrt(np.sum((X_test[i] - X_train[j]) ** 2))
    return dists


def l2_distances_one_loop(X_test, X_train):
    """Euclidean distances with one loop over test rows (broadcast over training rows)."""
    X_test, X_train = _f64(X_test), _f64(X_train)
    dists = np.zeros((X_test.shape[0], X_train.shape[0]))
    for i in range(X_test.shape[0]):
        dists[i, :] = np.sqrt(np.sum((X_train - X_test[i]) ** 2, axis=1))
    return dists


def l2_distances_no_loops(X_test, X_train):
    """Euclidean distances by ||x||^2 + ||y||^2 - 2 x.y (one matrix product).

    Cancellation can make tiny squared distances slightly negative: they are clipped
    to 0 before the square root. This is the lecture's trick, not an exact method.
    """
    X_test, X_train = _f64(X_test), _f64(X_train)
    sq = (
        np.sum(X_test**2, axis=1)[:, None]
        + np.sum(X_train**2, axis=1)[None, :]
        - 2.0 * X_test @ X_train.T
    )
    return np.sqrt(np.maximum(sq, 0.0))


def l1_distances_two_loops(X_test, X_train):
    """Manhattan distances with a double loop over (test, train) pairs."""
    X_test, X_train = _f64(X_test), _f64(X_train)
    dists = np.zeros((X_test.shape[0], X_train.shape[0]))
    for i in range(X_test.shape[0]):
        for j in range(X_train.shape[0]):
            dists[i, j] = np.sum(np.abs(X_test[i] - X_train[j]))
    return dists


def l1_distances_one_loop(X_test, X_train):
    """Manhattan distances with one loop over test rows."""
    X_test, X_train = _f64(X_test), _f64(X_train)
    dists = np.zeros((X_test.shape[0], X_train.shape[0]))
    for i in range(X_test.shape[0]):
        dists[i, :] = np.sum(np.abs(X_train - X_test[i]), axis=1)
    return dists


def l1_distances_no_loops(X_test, X_train):
    """Manhattan distances by broadcasting to (n_test, n_train, D).

    L1 has no matrix-product trick; this materialises n_test * n_train * D values,
    so it is only for small inputs.
    """
    X_test, X_train = _f64(X_test), _f64(X_train)
    return np.sum(np.abs(X_test[:, None, :] - X_train[None, :, :]), axis=2)


def pairwise_distances_reference(X, Y, metric="l2"):
    """Distance matrix (n_X, n_Y) in float64 for ``metric`` in l1 / l2 / sqeuclidean."""
    X, Y = _f64(X), _f64(Y)
    out = np.empty((X.shape[0], Y.shape[0]))
    for i in range(X.shape[0]):
        diff = Y - X[i]
        if metric == "l1":
            out[i] = np.sum(np.abs(diff), axis=1)
        else:
            out[i] = np.sum(diff * diff, axis=1)
    return np.sqrt(out) if metric == "l2" else out


def narrow_to_float32_reference(src, take_sqrt):
    """float64 distances rounded once to float32 (square root first if asked).

    Returns ``(dst, n_overflow, n_underflow)``: entries that became ``inf``, and
    non-zero entries below float32's smallest normal number (squares only).
    """
    v = np.sqrt(src) if take_sqrt else np.asarray(src, dtype=np.float64)
    with np.errstate(over="ignore"):
        dst = v.astype(np.float32)
    tiny = np.finfo(np.float32).tiny
    n_under = 0 if take_sqrt else int(((v > 0) & (v < tiny)).sum())
    return dst, int(np.isinf(dst).sum()), n_under


def kneighbors_reference(Q, X, k, metric="l2"):
    """Brute-force k nearest neighbours in float64.

    Parameters
    ----------
    Q : array (n_queries, D)
    X : array (n_train, D)
    k : int
    metric : {"l1", "l2", "sqeuclidean"}

    Returns
    -------
    distances : (n_queries, k) float64, ascending
    indices : (n_queries, k) int64; among equal distances the lower index comes first.
    """
    D = pairwise_distances_reference(Q, X, metric)
    order = np.argsort(D, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(D, order, axis=1), order.astype(np.int64)


def knn_predict_reference(dists, y_train, k=1):
    """Majority vote among the k nearest training labels (CS231n ``predict_labels``).

    Parameters
    ----------
    dists : (n_test, n_train) distance matrix
    y_train : (n_train,) non-negative integer labels
    k : int

    Returns
    -------
    (n_test,) int64 predicted labels; a tie in the vote goes to the smallest label.
    """
    y_train = np.asarray(y_train)
    y_pred = np.zeros(dists.shape[0], dtype=np.int64)
    for i in range(dists.shape[0]):
        closest_y = y_train[np.argsort(dists[i], kind="stable")[:k]]
        y_pred[i] = np.argmax(np.bincount(closest_y))  # argmax returns the first (smallest) max
    return y_pred


def knn_vote_reference(nbr_labels, nbr_dist, n_classes, weights="uniform"):
    """Class probabilities from neighbour labels (n_queries, k) and distances.

    ``weights="distance"``: shares proportional to 1/d, computed as ``min(d) / d``
    (equal shares; no overflow for subnormal d), except that a query with neighbours
    at distance exactly 0 lets only those vote (uniformly).
    """
    nbr_labels = np.asarray(nbr_labels)
    nbr_dist = np.asarray(nbr_dist, dtype=np.float64)
    proba = np.zeros((nbr_labels.shape[0], n_classes))
    for q in range(nbr_labels.shape[0]):
        if weights == "uniform":
            w = np.ones(nbr_labels.shape[1])
        else:
            zero = nbr_dist[q] == 0
            w = zero.astype(float) if zero.any() else nbr_dist[q].min() / nbr_dist[q]
        for lab, wj in zip(nbr_labels[q], w, strict=True):
            proba[q, lab] += wj
        proba[q] /= proba[q].sum()
    return proba


def bf16_split_reference(A):
    """``(hi, lo)``: the bfloat16 bits (uint16) of ``bf16(A)`` and ``bf16(A - hi)``.

    bfloat16 is the top half of a float32; rounding to it is to nearest, ties to even,
    written with integer arithmetic on the float32 bits. ``A - hi`` is exact in
    float32. Finite inputs.
    """
    A = np.asarray(A, dtype=np.float32)

    def round_bits(V):
        bits = V.view(np.uint32).astype(np.uint64)
        bits = bits + 0x7FFF + ((bits >> 16) & 1)
        return (bits >> 16).astype(np.uint16)

    hi = round_bits(A)
    hi_value = (hi.astype(np.uint32) << 16).view(np.float32)
    lo = round_bits((A - hi_value).astype(np.float32))
    return hi, lo


def bf16_value(bits):
    """The float64 values of bfloat16 bits (uint16)."""
    return (
        (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16)
        .view(np.float32)
        .astype(np.float64)
    )


def bf16x3_scores_reference(Q, X):
    """``Q_hi X_hi^T + Q_hi X_lo^T + Q_lo X_hi^T`` in float64: the three bfloat16 products the
    AMX scores of the L2 search sum (:mod:`fastcls.kernels.amx`), without their float32
    rounding."""
    qh, ql = (bf16_value(b) for b in bf16_split_reference(Q))
    xh, xl = (bf16_value(b) for b in bf16_split_reference(X))
    return qh @ xh.T + qh @ xl.T + ql @ xh.T


def exact_sq_distance_reference(a, b):
    """``sum_d (a[d] - b[d])^2`` in float64, summed in the order of
    :mod:`fastcls.kernels.exact_distance`, for the bit-for-bit test of that kernel.

    Element ``d`` goes to lane ``d % 8`` of accumulator ``(d // 8) % 4``, each lane adding
    its terms in increasing ``d`` (missing elements of the last block add ``+0.0``);
    then ``(a0 + a1) + (a2 + a3)`` lane by lane and the lanes by the tree
    ``((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))``. Each NumPy operation below
    is element by element, so NumPy adds nothing of its own order.
    """
    t = np.asarray(a).astype(np.float64) - np.asarray(b).astype(np.float64)
    terms = t * t
    padded = np.zeros(-(-terms.size // 32) * 32)
    padded[: terms.size] = terms
    acc = np.zeros((4, 8))
    for start in range(0, padded.size, 32):
        acc = acc + padded[start : start + 32].reshape(4, 8)
    v = (acc[0] + acc[1]) + (acc[2] + acc[3])
    return float(((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7])))


def group_sums_reference(A, group_of, n_groups):
    """``out[i, g]`` = the sum of row ``A[i]``'s features ``d`` with ``group_of[d] == g``,
    in int64: the group sums of the pruned k-NN's slab stage (:mod:`fastcls.kernels.slab`)."""
    A = np.asarray(A).astype(np.int64)
    out = np.zeros((A.shape[0], n_groups), dtype=np.int64)
    for d, g in enumerate(np.asarray(group_of)):
        out[:, g] += A[:, d]
    return out


def pooled_distances_reference(Q, X, group_of, n_groups, metric="l2"):
    """The slab stage's bound, before its factor: the squared L2 (``"l2"``) or the L1
    distance between the group sums of every query and row, int64 ``(len(Q), len(X))``.
    At most the group size times the squared distance (Cauchy-Schwarz) and at most the L1
    distance (triangle inequality)."""
    diff = (
        group_sums_reference(Q, group_of, n_groups)[:, None, :]
        - group_sums_reference(X, group_of, n_groups)[None, :, :]
    )
    return (diff**2).sum(-1) if metric == "l2" else np.abs(diff).sum(-1)
