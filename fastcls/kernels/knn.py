"""Dispatch tables from (surrogate metric, dtype family) to k-NN kernels.

The ranking surrogate of ``"l2"`` is ``"sqeuclidean"``: kernels rank on squared
distances and the API takes the square root of the k winners only.
"""

from __future__ import annotations

from fastcls.kernels import l1, l2

#: (surrogate, "float" | "uint8") -> kernel(Q, X, offset, best_d, best_i)
TOPK_KERNELS = {
    ("l1", "float"): l1.l1_topk_float,
    ("l1", "uint8"): l1.l1_topk_uint8,
    ("sqeuclidean", "float"): l2.sqeuclidean_topk_float,
    ("sqeuclidean", "uint8"): l2.sqeuclidean_topk_uint8,
}

#: (surrogate, "float" | "uint8") -> kernel(X, Y, out)
PAIRWISE_KERNELS = {
    ("l1", "float"): l1.l1_pairwise_float,
    ("l1", "uint8"): l1.l1_pairwise_uint8,
    ("sqeuclidean", "float"): l2.sqeuclidean_pairwise_float,
    ("sqeuclidean", "uint8"): l2.sqeuclidean_pairwise_uint8,
}
