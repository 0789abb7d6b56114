"""Plain NumPy references: the lecture's algorithms written for clarity.

Nothing here is fast. Every kernel in :mod:`fastcls.kernels` is tested against the
function of the same purpose in this package.
"""

from fastcls.reference.features import (
    color_histogram_hsv_reference,
    gradients_reference,
    hog_reference,
    orientation_bins_reference,
    orientation_edges,
    rgb_to_gray_reference,
    rgb_to_hue_reference,
    to_float01,
)
from fastcls.reference.knn import (
    bf16_split_reference,
    bf16x3_scores_reference,
    exact_sq_distance_reference,
    group_sums_reference,
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
    pooled_distances_reference,
)
from fastcls.reference.losses import (
    linear_loss_reference,
    penalty_reference,
    softmax_loss_naive,
    softmax_loss_vectorized,
    svm_loss_naive,
    svm_loss_vectorized,
)
from fastcls.reference.model_selection import (
    cross_validate_knn_reference,
    kfold_reference,
    majority_vote_all_k_reference,
    weighted_vote_all_k_reference,
)
from fastcls.reference.validation import all_within_reference

__all__ = [
    "bf16_split_reference",
    "bf16x3_scores_reference",
    "exact_sq_distance_reference",
    "all_within_reference",
    "color_histogram_hsv_reference",
    "cross_validate_knn_reference",
    "gradients_reference",
    "group_sums_reference",
    "hog_reference",
    "kfold_reference",
    "kneighbors_reference",
    "knn_predict_reference",
    "knn_vote_reference",
    "l1_distances_no_loops",
    "l1_distances_one_loop",
    "l1_distances_two_loops",
    "l2_distances_no_loops",
    "l2_distances_one_loop",
    "l2_distances_two_loops",
    "linear_loss_reference",
    "majority_vote_all_k_reference",
    "orientation_bins_reference",
    "orientation_edges",
    "pairwise_distances_reference",
    "penalty_reference",
    "pooled_distances_reference",
    "rgb_to_gray_reference",
    "rgb_to_hue_reference",
    "softmax_loss_naive",
    "softmax_loss_vectorized",
    "svm_loss_naive",
    "svm_loss_vectorized",
    "to_float01",
    "weighted_vote_all_k_reference",
]
