"""Exact power-of-two rescaling of float64 data too small for squared distances.

Exact backends rank L2 on squared distances accumulated in float64. For data whose
values are all tiny (``|x| < 2^-256``, e.g. 1e-170) the squares underflow: every
distance reads 0 (or a subnormal with a few bits) and the ranking is arbitrary. Such
a search is run on the data multiplied by ``s = 2^-e``, chosen from the largest
magnitude of the queries and the training rows so that it lands in ``[0.5, 1)``.
Multiplying by a power of two is exact (no overflow: the result is below 1; no
underflow: ``s > 1``), distances scale by exactly ``s`` (``s^2`` for squared ones),
so the ranking is the ranking of the true values and the distances are divided back
exactly (a distance below float64's normal range is then correctly rounded).

Limits: one factor serves the whole search, so data mixing magnitudes near 1 with
differences below about ``2^-511`` times them (1e-154) keeps float64's resolution of
squared distances; data of ordinary magnitude never pays anything beyond a look at
the first rows (the scan stops at the first value of magnitude ``>= 2^-256``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "TINY_PEAK",
    "ScaledRows",
    "data_peak",
    "tiny_data_scale",
    "search_scale",
    "scaled_search",
]

#: largest magnitudes below this are rescaled: squares of values below ``2^-256`` are
#: below ``2^-512``, within 2^510 of float64's smallest normal number
TINY_PEAK = 2.0**-256


def data_peak(X: Any, limit: float = math.inf, max_rows: int = 65536) -> float:
    """Largest ``|value|`` of the rows of ``X``, scanned in row blocks.

    Stops early, returning a value ``>= limit``, as soon as a block reaches ``limit``.
    Blocks grow from one row (x16 each time, up to ``max_rows``), so ordinary data
    is decided by its first row or few.
    """
    peak = 0.0
    start, rows, n = 0, 1, int(X.shape[0])
    while start < n:
        block = np.asarray(X[start : start + rows])
        if block.size:
            peak = max(peak, float(block.max()), -float(block.min()))
        if peak >= limit:
            break
        start += rows
        rows = min(max_rows, rows * 16)
    return peak


def tiny_data_scale(*arrays: np.ndarray) -> float:
    """The power of two bringing float64 ``arrays`` (all tiny) to ``[0.5, 1)``, else 1.0.

    1.0 unless every array is float64 and the largest magnitude among them is
    non-zero and below :data:`TINY_PEAK` (each scan stops at the first block that
    reaches it).
    """
    if not arrays or any(a.dtype != np.float64 for a in arrays):
        return 1.0
    peak = max(data_peak(a, TINY_PEAK) for a in arrays)
    if peak >= TINY_PEAK or peak == 0.0:
        return 1.0
    return math.ldexp(1.0, -math.frexp(peak)[1])


def search_scale(backend: Any, Q: np.ndarray) -> float:
    """The factor a float64 search of ``Q`` among ``backend.X`` runs at (1.0: none).

    The training rows' peak is found once per backend (cached on it, scanning with
    an early stop); lazy row sources are not scanned (factor 1.0).
    """
    if Q.dtype != np.float64 or Q.size == 0:
        return 1.0
    q_peak = data_peak(Q, TINY_PEAK)
    if q_peak >= TINY_PEAK:
        return 1.0
    x_peak = getattr(backend, "tiny_scan_peak", None)
    if x_peak is None:
        X = backend.X
        x_peak = data_peak(X, TINY_PEAK) if isinstance(X, np.ndarray) else math.inf
        backend.tiny_scan_peak = x_peak
    peak = max(q_peak, x_peak)
    if peak >= TINY_PEAK or peak == 0.0:
        return 1.0
    return math.ldexp(1.0, -math.frexp(peak)[1])


class ScaledRows:
    """Training rows read multiplied by a power of two (tile by tile, float64)."""

    ndim = 2

    def __init__(self, X: Any, scale: float) -> None:
        self.X = X
        self.scale = scale
        self.shape = tuple(X.shape)
        self.dtype = np.dtype(np.float64)

    def __len__(self) -> int:
        return int(self.shape[0])

    def __getitem__(self, rows: slice) -> np.ndarray:
        return np.asarray(self.X[rows], dtype=np.float64) * self.scale


def scaled_search(
    search: Callable[[np.ndarray, Any], tuple[np.ndarray, np.ndarray]],
    Q: np.ndarray,
    X: Any,
    scale: float,
    metric: str,
) -> tuple[np.ndarray, np.ndarray]:
    """``search(Q * scale, X * scale)`` with the distances divided back by the scale."""
    dist, idx = search(Q * scale, ScaledRows(X, scale))
    dist /= scale
    if metric == "sqeuclidean":  # twice rather than by scale**2, which can overflow
        dist /= scale
    return dist, idx
