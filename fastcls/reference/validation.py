"""NumPy references of the validation kernels."""

from __future__ import annotations

import numpy as np


def all_within_reference(A: np.ndarray, limit: float) -> bool:
    """True iff every value of ``A`` is finite and ``|v| <= limit`` (NaN fails)."""
    with np.errstate(invalid="ignore"):
        return bool(np.all(np.abs(np.asarray(A, dtype=np.float64)) <= limit))
