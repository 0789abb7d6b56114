"""Numba kernels: pure functions on C-contiguous arrays, no validation.

The public API (:mod:`fastcls.neighbors`, :mod:`fastcls.losses`, ...) validates inputs
once and dispatches here. Kernels never import the API.
"""
