"""L1 (Manhattan) kernels: pairwise blocks and fused distance + top-k.

Public kernel names (the dispatch table in :mod:`fastcls.kernels.knn` uses them):

* ``l1_topk_float(Q, X, offset, best_d, best_i)`` : float32 / float64 inputs
* ``l1_topk_uint8(Q, X, offset, best_d, best_i)`` : uint8 inputs, exact integers
* ``l1_pairwise_float(X, Y, out)``, ``l1_pairwise_uint8(X, Y, out)``

Contract of the top-k kernels: ``best_d`` (n_queries, k) float64 and ``best_i``
(n_queries, k) int64 hold each query's running top-k sorted by (distance, index);
the kernel merges the rows of ``X`` (global index ``offset + j``) into them with
*exact* float64 distances, equal distances keeping the lower index.
"""

from __future__ import annotations

from fastcls.kernels.scalar import l1_pairwise_scalar, l1_topk_scalar

# Baseline bindings; replaced by the register-tiled kernels.
l1_topk_float = l1_topk_scalar
l1_topk_uint8 = l1_topk_scalar
l1_pairwise_float = l1_pairwise_scalar
l1_pairwise_uint8 = l1_pairwise_scalar
