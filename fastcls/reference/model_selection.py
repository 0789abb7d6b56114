"""Model-selection references: all-k votes and k-fold CV by refitting (written for clarity).

The lecture's cross-validation loop: for every fold, every k and every metric, build
the distance matrix between the fold and the other folds, sort, vote, score. Fast
code in :mod:`fastcls.model_selection` must give exactly these accuracies.
"""

from __future__ import annotations

import numpy as np

from fastcls.reference.knn import knn_vote_reference, pairwise_distances_reference


def majority_vote_all_k_reference(nbr_labels, ks, n_classes):
    """Majority vote of the first k neighbours, for every k in ``ks``.

    Returns (len(ks), n) labels; a tie in the vote goes to the smallest label.
    """
    nbr_labels = np.asarray(nbr_labels)
    out = np.empty((len(ks), nbr_labels.shape[0]), dtype=np.int64)
    for t, k in enumerate(ks):
        for i in range(nbr_labels.shape[0]):
            counts = np.bincount(nbr_labels[i, :k], minlength=n_classes)
            out[t, i] = np.argmax(counts)  # the first maximum: the smallest label
    return out


def weighted_vote_all_k_reference(nbr_labels, nbr_dist, ks, n_classes):
    """Distance-weighted (1/d) vote of the first k neighbours, for every k in ``ks``.

    Neighbours at distance exactly 0, when present among the first k, are the only
    voters. Returns (len(ks), n) labels; ties go to the smallest label.
    """
    nbr_labels = np.asarray(nbr_labels)
    nbr_dist = np.asarray(nbr_dist, dtype=np.float64)
    out = np.empty((len(ks), nbr_labels.shape[0]), dtype=np.int64)
    for t, k in enumerate(ks):
        proba = knn_vote_reference(nbr_labels[:, :k], nbr_dist[:, :k], n_classes, "distance")
        out[t] = np.argmax(proba, axis=1)
    return out


def kfold_reference(n, n_folds):
    """Contiguous folds as ``np.array_split``: list of (train_idx, val_idx)."""
    folds = np.array_split(np.arange(n), n_folds)
    return [
        (np.concatenate([folds[g] for g in range(n_folds) if g != f]), folds[f])
        for f in range(n_folds)
    ]


def cross_validate_knn_reference(X, y, ks, metrics=("l1", "l2"), n_folds=5, weights="uniform"):
    """Per-fold, per-k refitting of a brute-force k-NN (the lecture's loop).

    Parameters
    ----------
    X : (n, D) array
    y : (n,) labels encoded 0..C-1
    ks : sequence of int
    metrics : sequence of {"l1", "l2", "sqeuclidean"}
    n_folds : int
    weights : {"uniform", "distance"}

    Returns
    -------
    dict
        ``(metric, k) -> (n_folds,) accuracies``.
    """
    y = np.asarray(y)
    n_classes = int(y.max()) + 1
    out = {}
    for metric in metrics:
        for k in ks:
            accs = []
            for train_idx, val_idx in kfold_reference(X.shape[0], n_folds):
                D = pairwise_distances_reference(X[val_idx], X[train_idx], metric)
                order = np.argsort(D, axis=1, kind="stable")[:, :k]  # ties: lower index
                nbr = y[train_idx][order]
                if weights == "uniform":
                    pred = np.array([np.argmax(np.bincount(r, minlength=n_classes)) for r in nbr])
                else:
                    dist = np.take_along_axis(D, order, axis=1)
                    pred = np.argmax(knn_vote_reference(nbr, dist, n_classes, "distance"), axis=1)
                accs.append(np.mean(pred == y[val_idx]))
            out[(metric, k)] = np.array(accs)
    return out
