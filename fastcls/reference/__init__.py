"""Plain NumPy references: the lecture's algorithms written for clarity.

Nothing here is fast. Every kernel in :mod:`fastcls.kernels` is tested against the
function of the same purpose in this package.
"""

from fastcls.reference.knn import (
    kneighbors_reference,
    knn_predict_reference,
    knn_vote_reference,
    l1_distances_no_loops,
    l1_distances_one_loop,
    l1_distances_two_loops,
    l2_distances_no_loops,
    l2_distances_one_loop,
    l2_distances_two_loops,
    pairwise_distances_reference,
)

__all__ = [
    "kneighbors_reference",
    "knn_predict_reference",
    "knn_vote_reference",
    "l1_distances_no_loops",
    "l1_distances_one_loop",
    "l1_distances_two_loops",
    "l2_distances_no_loops",
    "l2_distances_one_loop",
    "l2_distances_two_loops",
    "pairwise_distances_reference",
]
