"""Votes among neighbour labels: majority, distance-weighted, and every k at once.

Labels are encoded ``0..n_classes-1``; ties in a vote go to the smallest label
(the first maximum), the lecture's rule and scikit-learn's.
"""

from __future__ import annotations

import numpy as np

from fastcls._config import jit


@jit
def vote_proba(nbr_labels, nbr_dist, n_classes, distance_weighted):
    """Class scores (n_queries, n_classes), each row summing to 1.

    Uniform: the fraction of the k neighbours in each class. Distance-weighted:
    shares proportional to ``1/d``, computed as ``d_min/d`` with ``d_min`` the
    query's smallest voting distance (the same shares, and the nearest neighbour
    weighs exactly 1), so a subnormal distance never makes a weight infinite and
    the shares NaN. When a query has neighbours at distance exactly 0, only those
    vote (uniformly), which is the limit of ``1/d`` (scikit-learn's rule too).
    Slots with a negative label (an approximate search that found fewer than k
    rows) do not vote; a query with no neighbour at all gets uniform shares.
    """
    nq, k = nbr_labels.shape
    out = np.zeros((nq, n_classes))
    for q in range(nq):
        if distance_weighted:
            n_zero = 0
            d_min = np.inf
            for j in range(k):
                if nbr_labels[q, j] >= 0:
                    if nbr_dist[q, j] == 0.0:
                        n_zero += 1
                    elif nbr_dist[q, j] < d_min:
                        d_min = nbr_dist[q, j]
            if n_zero > 0:
                for j in range(k):
                    if nbr_labels[q, j] >= 0 and nbr_dist[q, j] == 0.0:
                        out[q, nbr_labels[q, j]] += 1.0
            else:
                # d_min / d <= 1 never overflows, while 1 / d does for subnormal d
                for j in range(k):
                    if nbr_labels[q, j] >= 0:
                        out[q, nbr_labels[q, j]] += d_min / nbr_dist[q, j]
        else:
            for j in range(k):
                if nbr_labels[q, j] >= 0:
                    out[q, nbr_labels[q, j]] += 1.0
        total = 0.0
        for c in range(n_classes):
            total += out[q, c]
        if total > 0.0:
            for c in range(n_classes):
                out[q, c] /= total
        else:  # no neighbour found (approximate search): no information
            for c in range(n_classes):
                out[q, c] = 1.0 / n_classes
    return out


@jit
def argmax_rows(scores):
    """Index of the first maximum of each row (ties -> smallest class)."""
    nq, nc = scores.shape
    out = np.empty(nq, dtype=np.int64)
    for q in range(nq):
        best = 0
        for c in range(1, nc):
            if scores[q, c] > scores[q, best]:
                best = c
        out[q] = best
    return out


@jit
def majority_vote_all_k(nbr_labels, ks, n_classes):
    """Majority-vote predictions for every k in ``ks`` from one sorted neighbour list.

    ``nbr_labels`` is (n, k_max) sorted by distance; returns (len(ks), n) labels.
    Counts are built incrementally, so all k cost one pass over k_max neighbours.
    ``ks`` must be sorted ascending.
    """
    n = nbr_labels.shape[0]
    out = np.empty((ks.shape[0], n), dtype=np.int64)
    for i in range(n):
        counts = np.zeros(n_classes, dtype=np.int64)
        t = 0
        for j in range(nbr_labels.shape[1]):
            counts[nbr_labels[i, j]] += 1
            while t < ks.shape[0] and ks[t] == j + 1:
                best = 0
                for c in range(1, n_classes):
                    if counts[c] > counts[best]:
                        best = c
                out[t, i] = best
                t += 1
    return out


@jit
def weighted_vote_all_k(nbr_labels, nbr_dist, ks, n_classes):
    """Distance-weighted predictions for every k in ``ks`` from one sorted neighbour list.

    ``nbr_labels`` / ``nbr_dist`` are (n, k_max) sorted by distance; returns
    (len(ks), n) labels. The vote for each k is exactly :func:`vote_proba` with
    ``distance_weighted=True`` on the first k neighbours followed by
    :func:`argmax_rows`: weights ``d_min/d`` summed in neighbour order (``d_min`` is
    the first neighbour's distance, the smallest as the list is sorted); when some of the
    first k neighbours lie at distance exactly 0, only those vote (uniformly); the
    scores are normalised by their total (summed in class order) before the argmax,
    so rounding matches the classifier's; ties -> the smallest label.
    ``ks`` must be sorted ascending.
    """
    n = nbr_labels.shape[0]
    out = np.empty((ks.shape[0], n), dtype=np.int64)
    for i in range(n):
        wsum = np.zeros(n_classes)
        zeros = np.zeros(n_classes)
        n_zero = 0
        t = 0
        for j in range(nbr_labels.shape[1]):
            d = nbr_dist[i, j]
            if d == 0.0:
                zeros[nbr_labels[i, j]] += 1.0
                n_zero += 1
            else:
                # once a zero is seen only the zeros vote, so wsum then goes unused
                wsum[nbr_labels[i, j]] += nbr_dist[i, 0] / d
            while t < ks.shape[0] and ks[t] == j + 1:
                scores = zeros if n_zero > 0 else wsum
                total = 0.0
                for c in range(n_classes):
                    total += scores[c]
                best = 0
                best_s = scores[0] / total
                for c in range(1, n_classes):
                    s = scores[c] / total
                    if s > best_s:
                        best = c
                        best_s = s
                out[t, i] = best
                t += 1
    return out
