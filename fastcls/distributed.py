"""Exact k-NN beyond one process: training rows sharded over Dask workers.

The user-facing names of the ``"dask"`` search backend, which lives in
:mod:`fastcls.backends.dask` (read its docstring for how sharded search works).
Optional extra: ``pip install fastcls[dask]``.

Examples
--------
>>> import numpy as np
>>> from fastcls.distributed import kneighbors
>>> X = np.arange(12.0).reshape(6, 2)
>>> d, i = kneighbors(X[:1] + 0.1, X, k=2, metric="l1")   # no client: in-process shards
>>> i
array([[0, 1]])
"""

from __future__ import annotations

from fastcls.backends.dask import (
    DaskBackend,
    ShardLostError,
    Shards,
    kneighbors,
    merge_pair,
    scatter_shards,
    search_shards,
    shard_topk,
)

__all__ = [
    "DaskBackend",
    "ShardLostError",
    "Shards",
    "scatter_shards",
    "kneighbors",
    "search_shards",
    "shard_topk",
    "merge_pair",
]
