"""Numba policy, in one place.

Every kernel in :mod:`fastcls.kernels` is compiled through :func:`jit` so that the
choices below apply uniformly:

* ``nogil=True`` everywhere, so Dask / thread pools can overlap kernels.
* fastmath is opt-in per kernel through the *named* flag sets below, never written
  literally in a kernel. ``REDUCE`` allows reassociation, which distance reductions
  need to vectorise; ``nnan``/``ninf`` are never used because inputs are validated
  but intermediate infinities (e.g. the top-k sentinels) must keep their meaning.
* numba's on-disk cache is opt-in through the environment variable
  ``FASTCLS_NUMBA_CACHE=1`` (CI switches it on; parallel caching has bitten
  others, so it stays off by default).
* the thread count is set through :func:`set_num_threads` only; importing fastcls
  never changes numba's global settings.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

#: fastmath flags for reductions (sums of |a-b| or (a-b)^2): reassociation lets
#: LLVM vectorise the loop; nsz is harmless for sums of non-negative terms.
REDUCE: frozenset[str] = frozenset({"reassoc", "nsz"})
#: REDUCE plus "contract" for dot products and rank updates: without it LLVM emits separate
#: vmulps + vaddps instead of fused multiply-adds.
FMA: frozenset[str] = REDUCE | {"contract"}
#: no fastmath at all (the default for everything that is not a reduction).
STRICT: bool = False

_TRUE = {"1", "true", "yes", "on"}


def cache_enabled() -> bool:
    """Whether numba's on-disk cache is switched on (``FASTCLS_NUMBA_CACHE=1``)."""
    return os.environ.get("FASTCLS_NUMBA_CACHE", "").strip().lower() in _TRUE


def jit(
    func: Callable | None = None,
    *,
    parallel: bool = False,
    fastmath: Any = STRICT,
    inline: str = "never",
) -> Any:
    """``numba.njit`` with the project's policy (nogil, cache opt-in).

    Compilation is lazy: decorating compiles nothing, so ``import fastcls`` stays cheap.
    """
    import numba

    def wrap(f: Callable) -> Any:
        fm = set(fastmath) if isinstance(fastmath, (set, frozenset)) else fastmath
        return numba.njit(
            nogil=True,
            cache=cache_enabled(),
            parallel=parallel,
            fastmath=fm,
            inline=inline,
            error_model="numpy",
        )(f)

    if func is not None:
        return wrap(func)
    return wrap


def get_num_threads() -> int:
    """Number of threads fastcls kernels use (numba's current setting)."""
    import numba

    return int(numba.get_num_threads())


def set_num_threads(n_jobs: int | None) -> int:
    """Set the number of threads for fastcls kernels (and FAISS, when it is loaded).

    Parameters
    ----------
    n_jobs : int or None
        ``None`` or ``-1`` means all available cores (``numba.config.NUMBA_NUM_THREADS``);
        a positive integer is clipped to that maximum.

    Returns
    -------
    int
        The previous thread count, so callers can restore it.
    """
    import sys

    import numba

    previous = int(numba.get_num_threads())
    n = resolve_n_jobs(n_jobs)
    numba.set_num_threads(n)
    faiss = sys.modules.get("faiss")
    if faiss is not None:  # one knob governs both OpenMP pools
        faiss.omp_set_num_threads(n)
    return previous


def resolve_n_jobs(n_jobs: int | None) -> int:
    """Map ``n_jobs`` (None, -1 or a positive int) to a concrete thread count."""
    import numba

    max_threads = int(numba.config.NUMBA_NUM_THREADS)
    if n_jobs is None or n_jobs == -1:
        return max_threads
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int,)) or n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"n_jobs must be None, -1 or a positive integer, got {n_jobs!r}")
    return min(int(n_jobs), max_threads)


class num_threads:
    """Context manager that runs fastcls kernels with ``n`` threads, then restores.

    Examples
    --------
    >>> import fastcls
    >>> with fastcls.num_threads(1):
    ...     pass
    """

    def __init__(self, n_jobs: int | None) -> None:
        self.n_jobs = n_jobs
        self._previous: int | None = None

    def __enter__(self) -> num_threads:
        self._previous = set_num_threads(self.n_jobs)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            set_num_threads(self._previous)
