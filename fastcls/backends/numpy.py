"""The reference search backend: plain NumPy, one query tile at a time.

``backend="numpy"`` runs :func:`fastcls.reference.knn.kneighbors_reference` (the
lecture's vectorised distances and a stable sort) on tiles of
``settings.knn_numpy_query_tile_rows`` queries, so its distance matrix stays bounded.
It is the truth the other backends are tested against, and slow.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fastcls.backends.base import SearchBackend

__all__ = ["NumpyBackend"]


class NumpyBackend(SearchBackend):
    """Exact search with the NumPy reference (``backend="numpy"``)."""

    name = "numpy"

    def search_promoted(
        self, Q: np.ndarray, k: int, **options: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Search with the NumPy reference, one query tile at a time."""
        from fastcls.backends.scaling import scaled_search, search_scale

        scale = search_scale(self, Q)  # float64 data too small for squares: rescaled
        if scale != 1.0:
            return scaled_search(
                lambda Qs, Xs: self._search(Qs, Xs[0 : self.n_samples], k),
                Q,
                self.X,
                scale,
                self.metric,
            )
        X = self.X if isinstance(self.X, np.ndarray) else self.X[0 : self.n_samples]
        return self._search(Q, X, k)

    def _search(self, Q: np.ndarray, X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        from fastcls._config import settings
        from fastcls.reference.knn import kneighbors_reference

        tile = max(1, int(settings.knn_numpy_query_tile_rows))
        dist = np.empty((Q.shape[0], k))
        idx = np.empty((Q.shape[0], k), dtype=np.int64)
        for s in range(0, Q.shape[0], tile):
            dist[s : s + tile], idx[s : s + tile] = kneighbors_reference(
                Q[s : s + tile], X, k, self.metric
            )
        return dist, idx
