"""Process-wide run-time resources shared by the kernels' Python drivers.

One place for what outlives a single call:

* :func:`cpu_features` -- the host CPU's feature flags, read once and cached; the
  micro-kernel choice of every module (:func:`best_simd`) derives from it.
* :func:`scratch` -- per-thread reusable buffers, so large tiles are not page-faulted
  and zeroed by the OS for every tile; :func:`scratch_bytes` counts them (every thread's),
  :func:`trim_scratch` bounds them and :func:`release_scratch` frees them.
* :func:`single_threaded_blas` -- BLAS limited to one thread while a fastcls pipeline
  that interleaves GEMMs with numba kernels runs (OpenBLAS threads spin after a call
  and steal the cores of the next numba parallel region).
* :func:`map_chunks` -- a small shared thread pool that runs a whole pipeline per
  contiguous chunk (numba kernels are nogil and NumPy's GEMM releases the GIL).
* :func:`check_fork_safe` -- after ``os.fork()`` (multiprocessing's ``"fork"``), a
  child whose parent had started numba's GNU OpenMP threading layer cannot run a
  parallel kernel (numba would terminate it): fastcls raises a clear error instead.
  A fork hook also gives the child a fresh thread pool and fresh locks.

Nothing here is compiled; importing it imports neither numba nor threadpoolctl.
"""

from __future__ import annotations

import contextlib
import functools
import mmap
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

__all__ = [
    "cpu_features",
    "cpu_name",
    "best_simd",
    "kernel_report",
    "KERNEL_CHOICES",
    "REPORTED_FEATURES",
    "SIMD_LEVELS",
    "scratch",
    "release_scratch",
    "scratch_bytes",
    "new_buffer",
    "trim_scratch",
    "blas_threads",
    "single_threaded_blas",
    "map_chunks",
    "check_fork_safe",
    "threading_layer_in_use",
]

# --------------------------------------------------------------------------- CPU
#: SIMD levels a micro-kernel can be written for, best first
SIMD_LEVELS = ("avx512", "avx2", "portable")


@functools.lru_cache(maxsize=1)
def cpu_features() -> frozenset[str]:
    """Feature flags of the CPU numba compiles for, as LLVM names them (``"avx2"`` ...).

    Exactly the feature string numba hands LLVM, so no micro-kernel uses an
    instruction the compiled code may not contain and none is left out: numba's
    ``NUMBA_CPU_FEATURES`` when set (``NUMBA_CPU_NAME=generic`` alone implies an empty
    one: a cache portable across machines gets the portable kernels), else the host
    CPU's flags, read from llvmlite. ``NUMBA_CPU_NAME`` alone (``haswell``, say) does
    not remove features: numba still passes the host's, and LLVM emits them.
    """
    from numba.core import config

    spec = getattr(config, "CPU_FEATURES", None)
    if spec is not None:
        return frozenset(f[1:] for f in spec.split(",") if f.startswith("+"))
    import llvmlite.binding as ll

    flags = ll.get_host_cpu_features()
    return frozenset(name for name, on in flags.items() if on)


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU numba compiles for, as LLVM names it (``"znver4"``, ``"sapphirerapids"`` ...).

    ``NUMBA_CPU_NAME`` when set (``"generic"`` for a portable cache), else the host CPU
    as llvmlite reads it. Micro-kernels choose by features first (:func:`best_simd`);
    the name only breaks ties the features cannot, e.g. a CPU that has AVX-512 but runs
    512-bit vectors as two 256-bit halves (AMD Zen 4).
    """
    from numba.core import config

    name = getattr(config, "CPU_NAME", None)
    if name and name != "host":
        return str(name)
    import llvmlite.binding as ll

    return str(ll.get_host_cpu_name())


def best_simd(required: dict[str, tuple[str, ...]] | None = None) -> tuple[str, ...]:
    """SIMD levels this CPU can run, best first, always ending with ``"portable"``.

    Parameters
    ----------
    required : dict, optional
        The CPU flags each level needs; default: ``avx512`` needs ``avx512f`` and
        ``avx512bw``, ``avx2`` needs ``avx2``.
    """
    required = required or {"avx512": ("avx512f", "avx512bw"), "avx2": ("avx2",)}
    have = cpu_features()
    levels = [lvl for lvl in SIMD_LEVELS[:-1] if all(f in have for f in required.get(lvl, ()))]
    return (*levels, "portable")


#: kernel choices :func:`kernel_report` lists: label -> ``"module:function"``, a function
#: of no arguments returning the implementation name used (e.g. ``"avx512"``). A kernel
#: module with a run-time choice adds its line here.
KERNEL_CHOICES: dict[str, str] = {
    "k-NN L1 uint8": "fastcls.kernels.l1:uint8_description",
    "k-NN L1 float": "fastcls.kernels.l1:float_impl",
    "k-NN L2 uint8": "fastcls.kernels.l2int:int_impl",
    "k-NN L2 float": "fastcls.kernels.l2:float_impl",
    "linear loss": "fastcls.kernels.losses:loss_impl",
}
#: the CPU flags that decide a kernel choice somewhere (reported by :func:`kernel_report`)
REPORTED_FEATURES = (
    "sse4.2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512vnni",
    "avxvnni", "avx512bf16", "amx-bf16", "amx-int8",
)  # fmt: skip


def kernel_report() -> dict[str, Any]:
    """What the kernels run on here: target CPU, its SIMD flags, each kernel choice.

    Returns
    -------
    dict
        ``cpu_target`` (numba's target CPU name: ``"host"`` unless ``NUMBA_CPU_NAME``
        says otherwise), ``cpu_name`` (:func:`cpu_name`: the LLVM name of the CPU
        compiled for, ``"znver4"`` say), ``features`` (the flags of :data:`REPORTED_FEATURES` the
        target has), ``simd_levels`` (:func:`best_simd`) and ``kernels``: for each line
        of :data:`KERNEL_CHOICES` the implementation chosen (a module that is not there
        is left out; a choice that fails says why). Importing the kernel modules
        compiles nothing.
    """
    import importlib

    from numba.core import config

    have = cpu_features()
    kernels: dict[str, str] = {}
    for label, target in KERNEL_CHOICES.items():
        module, _, name = target.partition(":")
        try:
            choose = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        try:
            kernels[label] = str(choose())
        except Exception as exc:  # a forced choice this CPU lacks, say
            kernels[label] = f"unavailable ({type(exc).__name__}: {exc})"
    return {
        "cpu_target": getattr(config, "CPU_NAME", None) or "host",
        "cpu_name": cpu_name(),
        "features": [f for f in REPORTED_FEATURES if f in have],
        "simd_levels": list(best_simd()),
        "kernels": kernels,
    }


# --------------------------------------------------------------------------- scratch
# One registry for every thread, keyed by (thread id, name), so the buffers of the pool
# threads (map_chunks) can be counted and released from the thread that runs the call.
# Plain dict operations are atomic under the GIL: no lock (which a fork could leave held).
_SCRATCH: dict[tuple[int, str], np.ndarray] = {}


def scratch(name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A per-thread reusable buffer of ``shape`` and ``dtype`` (uninitialised).

    Holds at most one buffer per ``name`` per thread; a request for more elements
    or another dtype replaces it. Callers must not keep the array past their call.
    The buffers stay registered for the next call until :func:`release_scratch` or
    :func:`trim_scratch` (the k-NN search trims them when it returns).
    """
    n = int(np.prod(shape))
    dt = np.dtype(dtype)
    key = (threading.get_ident(), name)
    buf = _SCRATCH.get(key)
    if buf is None or buf.dtype != dt or buf.size < n:
        _SCRATCH.pop(key, None)  # the old buffer is freed before the new one is made
        buf = new_buffer(n, dt)
        _SCRATCH[key] = buf
    return buf[:n].reshape(shape)


#: scratch buffers of at least this many bytes are mapped directly (see new_buffer)
SCRATCH_MMAP_BYTES = 1 << 17


def new_buffer(n: int, dtype: Any) -> np.ndarray:
    """``n`` uninitialised elements of ``dtype``: large ones in their own anonymous mapping.

    glibc serves a freed size again from its heaps (its mmap threshold rises to 32 MiB
    after the first large free), and the pool threads' heaps keep freed memory
    resident; a mapping of its own is unmapped, so returned to the OS, as soon as the
    last view of the buffer is gone. Page-aligned; transparent huge pages where the
    system allows them.
    """
    dt = np.dtype(dtype)
    nbytes = n * dt.itemsize
    if nbytes < SCRATCH_MMAP_BYTES or not hasattr(mmap, "MAP_PRIVATE"):
        return np.empty(n, dtype=dt)
    # private: counted as the process's anonymous memory (a shared map is "shmem")
    mm = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE)
    if nbytes >= 4 << 20 and hasattr(mmap, "MADV_HUGEPAGE"):
        # as NumPy does for its large allocations: a fresh 64 MiB buffer then faults in
        # at 11 ms instead of 26 (9 ms to rewrite a resident one), so freeing scratch
        # after each search costs next to nothing
        with contextlib.suppress(OSError):
            mm.madvise(mmap.MADV_HUGEPAGE)
    return np.frombuffer(mm, dtype=dt, count=n)


def scratch_bytes() -> int:
    """Bytes held by the scratch buffers of every thread."""
    return sum(b.nbytes for b in list(_SCRATCH.values()))


def release_scratch() -> None:
    """Free the scratch buffers of every thread (they are otherwise kept for reuse).

    A buffer still in use by a running call stays alive through the caller's own
    reference until that call returns; the next request allocates a fresh one.
    """
    _SCRATCH.clear()


def trim_scratch(keep_bytes: int) -> None:
    """Free scratch buffers, largest first, until at most ``keep_bytes`` remain."""
    total = scratch_bytes()
    if total <= keep_bytes:
        return
    for key, buf in sorted(list(_SCRATCH.items()), key=lambda kv: -kv[1].nbytes):
        if total <= keep_bytes:
            break
        if _SCRATCH.pop(key, None) is not None:
            total -= buf.nbytes


# --------------------------------------------------------------------------- BLAS
_CONTROLLER: Any = None


def blas_threads(n: int | None = None) -> contextlib.AbstractContextManager[Any]:
    """Context limiting BLAS to ``n`` threads (default: numba's count)."""
    global _CONTROLLER
    try:
        if _CONTROLLER is None:
            from threadpoolctl import ThreadpoolController

            _CONTROLLER = ThreadpoolController()
        if n is None:
            import numba

            n = int(numba.get_num_threads())
        return _CONTROLLER.limit(limits=n, user_api="blas")
    except Exception:  # pragma: no cover - threadpoolctl missing or broken
        return contextlib.nullcontext()


_BLAS_LOCK = threading.Lock()
_BLAS_USERS = 0
_BLAS_LIMITER: Any = None


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """BLAS limited to one thread while any caller is inside this context.

    Reference-counted, so overlapping calls restore the original setting once, when
    the last one leaves. Only calls from the main thread change it: OpenBLAS 0.3.31
    (pthreads) does not honour ``openblas_set_num_threads`` from other threads
    symmetrically (a worker could lower it and never raise it back), so calls from
    worker threads (Dask) leave the process-wide setting alone.
    """
    global _BLAS_USERS, _BLAS_LIMITER
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with _BLAS_LOCK:
        if _BLAS_USERS == 0:
            _BLAS_LIMITER = blas_threads(1)
            _BLAS_LIMITER.__enter__()
        _BLAS_USERS += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_USERS -= 1
            if _BLAS_USERS == 0:
                _BLAS_LIMITER.__exit__(None, None, None)
                _BLAS_LIMITER = None


# --------------------------------------------------------------------------- thread pool
#: one single-thread executor per chunk position: chunk ``i`` of every call runs on the same
#: thread, so each thread's scratch buffers (keyed by thread) are reused call after call.
#: A shared pool let a chunk land on whichever worker was idle, sometimes one that had never
#: held that chunk's buffers, and the kept scratch grew between identical calls.
_EXECUTORS: list[Any] = []
_EXECUTOR_LOCK = threading.Lock()


def map_chunks(fn: Callable[[int, int], Any], n_items: int, n_threads: int) -> list[Any]:
    """Run ``fn(start, stop)`` over ``n_threads`` contiguous chunks of ``range(n_items)``.

    Python threads each run a whole pipeline on their chunk with single-threaded
    BLAS and serial numba code: no OpenMP / OpenBLAS pools that spin against each
    other between short steps. Results come back in chunk order; chunk ``i`` always runs
    on the same thread.
    """
    bounds = np.linspace(0, n_items, min(n_threads, n_items) + 1).astype(int)
    chunks = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    if len(chunks) <= 1:
        return [fn(a, b) for a, b in chunks]
    with _EXECUTOR_LOCK:
        while len(_EXECUTORS) < len(chunks):
            from concurrent.futures import ThreadPoolExecutor

            _EXECUTORS.append(
                ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"fastcls-{len(_EXECUTORS)}")
            )
        executors = _EXECUTORS[: len(chunks)]
    futures = [ex.submit(fn, a, b) for ex, (a, b) in zip(executors, chunks, strict=True)]
    return [f.result() for f in futures]


# --------------------------------------------------------------------------- fork
class _ForkState:
    """What a forked child inherited: the numba threading layer its parent had started."""

    layer_at_fork: str | None = None  # set in the parent just before each fork
    inherited_layer: str | None = None  # set in the child: the parent's started layer
    parent_pid: int | None = None


def threading_layer_in_use() -> str | None:
    """The numba threading layer this process has started (``"omp"``, ``"tbb"``,
    ``"workqueue"``), or ``None`` when numba has run no parallel kernel yet.

    Never imports numba and never starts a layer (``numba.threading_layer()`` raises
    ``ValueError`` until the first parallel kernel runs).
    """
    numba = sys.modules.get("numba")
    if numba is None:
        return None
    try:
        return str(numba.threading_layer())
    except (ValueError, AttributeError):
        return None


def _before_fork() -> None:
    _ForkState.layer_at_fork = threading_layer_in_use()


def _after_fork_in_child() -> None:
    """Run in the child of ``os.fork()``: forget what did not survive the fork."""
    global _EXECUTORS, _EXECUTOR_LOCK, _BLAS_LOCK
    # the pool's threads do not exist in the child: a submit would wait forever
    _EXECUTORS = []
    # a lock held by another thread at fork time would stay held forever
    _EXECUTOR_LOCK = threading.Lock()
    _BLAS_LOCK = threading.Lock()
    _ForkState.inherited_layer = _ForkState.layer_at_fork
    _ForkState.parent_pid = os.getppid()


def _unsafe_after_fork(layer: str | None) -> bool:
    """GNU OpenMP (numba's ``omp`` layer on Linux) cannot run in a forked child once the
    parent started it; ``tbb`` and ``workqueue`` can (numba documents ``tbb`` as fork
    safe; ``workqueue`` starts its threads again in the child, tested)."""
    return layer == "omp" and sys.platform.startswith("linux")


FORK_ADVICE = (
    "use multiprocessing.get_context('spawn') or get_context('forkserver') (or "
    "ProcessPoolExecutor(mp_context=...)) instead of 'fork', or start the parent with "
    "NUMBA_THREADING_LAYER=workqueue (or tbb, if installed), or make the first fastcls "
    "call in the children only"
)


def check_fork_safe() -> None:
    """Raise ``RuntimeError`` in a forked child that cannot run numba's parallel kernels.

    Called by fastcls before it runs parallel kernels: on entering
    :class:`fastcls.num_threads` (every estimator and search function does), and in the
    feature and loss drivers (:func:`map_chunks` runs serial kernels and needs none).
    A no-op in every process that was not forked from a parent running GNU OpenMP;
    numba's own settings are never changed.

    Raises
    ------
    RuntimeError
        The message says what happened and what to do instead.
    """
    if _ForkState.inherited_layer is not None and _unsafe_after_fork(_ForkState.inherited_layer):
        raise RuntimeError(
            f"fastcls cannot run its parallel kernels in this process (pid {os.getpid()}): "
            f"it was forked from process {_ForkState.parent_pid} after numba had started "
            "its GNU OpenMP threading layer ('omp'), which does not survive fork() (numba "
            f"would terminate this process). To fix it, {FORK_ADVICE}. See the 'Processes "
            "and threads' page of the fastcls documentation."
        )


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
