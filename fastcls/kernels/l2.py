"""Squared-L2 kernels: pairwise blocks and fused distance + top-k.

Public kernel names (the dispatch table in :mod:`fastcls.kernels.knn` uses them):

* ``sqeuclidean_topk_float(Q, X, offset, best_d, best_i)`` : float32 / float64
* ``sqeuclidean_topk_uint8(Q, X, offset, best_d, best_i)`` : uint8, exact integers
* ``sqeuclidean_pairwise_float(X, Y, out)``, ``sqeuclidean_pairwise_uint8(X, Y, out)``

Same top-k contract as :mod:`fastcls.kernels.l1`: exact float64 squared distances,
ties to the lower global index.
"""

from __future__ import annotations

from fastcls.kernels.scalar import sqeuclidean_pairwise_scalar, sqeuclidean_topk_scalar

# Baseline bindings; replaced by the GEMM + exact-rerank kernels.
sqeuclidean_topk_float = sqeuclidean_topk_scalar
sqeuclidean_topk_uint8 = sqeuclidean_topk_scalar
sqeuclidean_pairwise_float = sqeuclidean_pairwise_scalar
sqeuclidean_pairwise_uint8 = sqeuclidean_pairwise_scalar
