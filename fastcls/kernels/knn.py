"""Dispatch tables from (surrogate metric, dtype family) to k-NN kernels.

The ranking surrogate of ``"l2"`` is ``"sqeuclidean"``: kernels rank on squared
distances and the API takes the square root of the k winners only. The dtype
family is ``"uint8"`` for uint8 rows (exact integer kernels) and ``"float"`` for
float32 / float64 rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fastcls.kernels import l1, l2

__all__ = [
    "TOPK_KERNELS",
    "PAIRWISE_KERNELS",
    "surrogate_metric",
    "dtype_family",
    "topk_kernel",
    "pairwise_kernel",
]

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


def surrogate_metric(metric: str) -> str:
    """The metric kernels rank on: ``"sqeuclidean"`` for ``"l2"``, else ``metric``."""
    return "sqeuclidean" if metric == "l2" else metric


def dtype_family(dtype: Any) -> str:
    """``"uint8"`` for uint8 rows, ``"float"`` for float32 / float64 rows."""
    return "uint8" if np.dtype(dtype) == np.uint8 else "float"


def topk_kernel(metric: str, dtype: Any) -> Any:
    """The fused top-k kernel ``kernel(Q, X, offset, best_d, best_i)`` for a metric."""
    return TOPK_KERNELS[(surrogate_metric(metric), dtype_family(dtype))]


def pairwise_kernel(metric: str, dtype: Any) -> Any:
    """The distance-matrix kernel ``kernel(X, Y, out)`` (surrogate values) for a metric."""
    return PAIRWISE_KERNELS[(surrogate_metric(metric), dtype_family(dtype))]
