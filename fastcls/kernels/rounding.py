"""Floating-point rounding constants shared by the exactness certificates of L1 and L2.

The k-NN kernels rank in the input precision and certify (or recompute) the winners
in float64; their error bounds use Higham's ``gamma_n = n u / (1 - n u)`` with the
unit round-off ``u`` of the working precision.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["U32", "U64", "gamma", "unit_roundoff"]

#: unit round-off of float32 (round to nearest)
U32 = 2.0**-24
#: unit round-off of float64 (round to nearest)
U64 = 2.0**-53


def unit_roundoff(dtype: Any) -> float:
    """``u`` of a float dtype: :data:`U64` for float64, :data:`U32` for float32."""
    return U64 if np.dtype(dtype) == np.float64 else U32


def gamma(n: int, u: float) -> float:
    """Higham's ``gamma_n = n u / (1 - n u)`` (``inf`` when ``n u >= 1``)."""
    nu = n * u
    return nu / (1.0 - nu) if nu < 1.0 else float("inf")
