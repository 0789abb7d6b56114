"""Numba policy, in one place.

Every kernel in :mod:`fastcls.kernels` is compiled through :func:`jit` so that the
choices below apply uniformly:

* ``nogil=True`` everywhere, so Dask / thread pools can overlap kernels.
* fastmath is opt-in per kernel through the *named* flag sets below, never written
  literally in a kernel. ``REDUCE`` allows reassociation, which distance reductions
  need to vectorise; ``nnan``/``ninf`` are never used because inputs are validated
  but intermediate infinities (e.g. the top-k sentinels) must keep their meaning.
* numba's on-disk cache is **on by default**: a kernel is compiled once per machine
  and loaded from disk afterwards. ``FASTCLS_NUMBA_CACHE=0`` turns it off.
  ``NUMBA_CACHE_DIR`` moves it; otherwise numba writes next to the installed package
  (``__pycache__``) or, when that folder is not writable, to a per-user cache folder
  (``~/.cache/numba`` or the platform's equivalent). numba keys every entry on the
  source file's timestamp and on the CPU name and features, so an edited source or
  another CPU recompiles instead of loading stale or foreign machine code.
* the thread count is set through :func:`set_num_threads` only; importing fastcls
  never changes numba's global settings. ``n_jobs=None`` everywhere means "inherit the
  current setting", so ``with num_threads(1):`` governs every call inside it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Literal

#: fastmath flags for reductions (sums of |a-b| or (a-b)^2): reassociation lets
#: LLVM vectorise the loop; nsz is harmless for sums of non-negative terms.
REDUCE: frozenset[str] = frozenset({"reassoc", "nsz"})
#: no fastmath at all (the default for everything that is not a reduction).
STRICT: bool = False

_FALSE = {"0", "false", "no", "off"}


def cache_enabled() -> bool:
    """Whether numba's on-disk cache is used: yes unless ``FASTCLS_NUMBA_CACHE=0``.

    Read when a kernel module is first imported (kernels are decorated then).
    """
    return os.environ.get("FASTCLS_NUMBA_CACHE", "").strip().lower() not in _FALSE


def jit(
    func: Callable | None = None,
    *,
    parallel: bool = False,
    fastmath: Any = STRICT,
    inline: Literal["never", "always"] = "never",
) -> Any:
    """``numba.njit`` with the project's policy (nogil, on-disk cache unless opted out).

    Compilation is lazy: decorating compiles nothing, so ``import fastcls`` stays cheap.
    The cache of fastcls's kernels is validated against the whole package's source
    (:mod:`fastcls._cache`), not only the file that defines the kernel.
    """
    import numba

    from fastcls import _cache

    def wrap(f: Callable) -> Any:
        if cache_enabled():
            _cache.install()
        fm: bool | set[str] = (
            set(fastmath) if isinstance(fastmath, (set, frozenset)) else bool(fastmath)
        )
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


#: numba's C-level reader of this thread's count, once numba's threads are running (its
#: public ``get_num_threads`` takes two locks and costs 6 us when the caches are cold,
#: as they are right after a kernel: a loss call reads the count every call)
_thread_count_reader: Callable[[], int] | None = None


def get_num_threads() -> int:
    """Number of threads fastcls kernels use (numba's current setting, this thread)."""
    global _thread_count_reader
    if _thread_count_reader is not None:
        return int(_thread_count_reader())
    import numba

    count = int(numba.get_num_threads())  # starts numba's threads if they are not yet
    from numba.np.ufunc import parallel

    reader = getattr(parallel, "_get_num_threads", None)
    if callable(reader) and reader() == count:  # a private name: else the public path
        _thread_count_reader = reader
    return count


def set_num_threads(n_jobs: int | None) -> int:
    """Set the number of threads for fastcls kernels (and FAISS, when it is loaded).

    Parameters
    ----------
    n_jobs : int or None
        A positive integer (clipped to ``numba.config.NUMBA_NUM_THREADS``, the cores
        numba started with); ``-1`` for all of them; ``None`` leaves the setting as it
        is (the rule of every ``n_jobs=None`` in fastcls: inherit).

    Returns
    -------
    int
        The previous thread count, so callers can restore it.

    Notes
    -----
    numba's count is per Python thread: a thread started later (a Dask worker thread, a
    ``concurrent.futures`` pool) starts at numba's default, all cores, not at this value.
    """
    import sys

    import numba

    previous = int(numba.get_num_threads())
    if n_jobs is None:
        resolve_n_jobs(n_jobs)
        return previous
    n = resolve_n_jobs(n_jobs)
    numba.set_num_threads(n)
    faiss = sys.modules.get("faiss")
    if faiss is not None:  # one knob governs both OpenMP pools
        faiss.omp_set_num_threads(n)
    return previous


def resolve_n_jobs(n_jobs: int | None) -> int:
    """Map ``n_jobs`` to a concrete thread count.

    ``None``: the current setting (``numba.get_num_threads()``: whatever
    :func:`set_num_threads` or :class:`num_threads` chose, all cores by default);
    ``-1``: all cores numba started with (``numba.config.NUMBA_NUM_THREADS``); a
    positive integer: itself, clipped to that maximum. Anything else raises
    ``ValueError``.
    """
    import numba

    if n_jobs is None:
        return int(numba.get_num_threads())
    max_threads = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    if n_jobs == -1 and not isinstance(n_jobs, bool):
        return max_threads
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int,)) or n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"n_jobs must be None, -1 or a positive integer, got {n_jobs!r}")
    return min(int(n_jobs), max_threads)


class num_threads:
    """Context manager that runs fastcls kernels with ``n_jobs`` threads, then restores.

    Every fastcls function and estimator left at ``n_jobs=None`` inherits the setting,
    so one ``with fastcls.num_threads(1):`` governs everything called inside it;
    ``num_threads(None)`` changes nothing. The setting is numba's, per Python thread
    (see :func:`set_num_threads`).

    Examples
    --------
    >>> import fastcls
    >>> with fastcls.num_threads(1):
    ...     fastcls.get_num_threads()
    1
    """

    def __init__(self, n_jobs: int | None) -> None:
        self.n_jobs = n_jobs
        self._previous: int | None = None

    def __enter__(self) -> num_threads:
        from fastcls._runtime import check_fork_safe

        check_fork_safe()  # fastcls enters this before running parallel kernels
        if self.n_jobs is not None:  # None inherits: nothing to set or restore
            self._previous = set_num_threads(self.n_jobs)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            set_num_threads(self._previous)
            self._previous = None


# --------------------------------------------------------------------------- tunables
class Tunables:
    """Every run-time tunable of fastcls, in one object (:data:`settings`).

    These are read by the Python dispatch code at each call (never frozen into a
    compiled kernel), so changing one takes effect at the next call. Results never
    depend on them: they trade memory against speed, or force a code path (tests use
    :func:`override` to force small tiles and every CPU path).

    Naming scheme: ``<area>_<what>_<unit>``, where the unit is ``rows`` (a count of
    array rows), ``bytes`` (a memory budget from which a row count is derived) or
    ``work`` (a count of multiply-adds); ``0`` in a ``rows`` setting means "derive it
    from the matching ``bytes`` budget".
    """

    #: k-NN: bytes of training rows streamed per tile by every search backend
    knn_train_tile_bytes: int = 64 * 2**20
    #: k-NN: scratch bytes (all threads) kept for the next search when one returns;
    #: the rest is freed (0: free all; buffers are reused across tiles within a search)
    knn_scratch_keep_bytes: int = 0
    #: k-NN, numba backend: float training rows holding whole numbers 0..255 get a
    #: uint8 copy at fit when it is at most this many bytes; larger sets are checked
    #: and converted tile by tile at each search (memory: inputs + O(tile))
    knn_pixel_copy_max_bytes: int = 64 * 2**20
    #: k-NN, ``backend="numpy"``: queries per tile (bounds the reference's matrix)
    knn_numpy_query_tile_rows: int = 256
    #: k-NN top-k selection: "auto" (by k and the row count), "insert" (sorted
    #: insertion) or "blocks" (per-block lists merged in linear time, for large k)
    knn_selection: str = "auto"
    #: k-NN searches of fewer pair-features (queries x rows x D) run on the calling
    #: thread: no parallel region to start and, on a first call, none to compile (each
    #: costs about 1 s of numba time; the README tour's searches are 28M pair-features)
    knn_parallel_min_work: int = 1 << 25
    #: exact integer k-NN (uint8 L1 and L2): partial-distance pruning, "auto" (where a
    #: sample of the call says it pays: fastcls.kernels.prune), "always" or "never"; the
    #: results never depend on it
    knn_prune: str = "auto"
    #: "auto" pruning considers calls of at least this many pair-features (queries x rows
    #: x D) and queries (its sample searches 16 queries over a quarter of the rows)
    knn_prune_min_work: int = 1 << 35
    knn_prune_min_queries: int = 1024
    #: "auto" prunes where the sample's tiles do at most this fraction of their work
    knn_prune_max_work: float = 0.85
    #: pruning reorders the features of copies of the queries and rows, up to this many
    #: bytes of both together (above: the features in their order)
    knn_prune_copy_max_bytes: int = 64 * 2**20
    #: k-NN cross-validation on pixel data: each distance between two folds computed
    #: once and used in both directions (exact integer kernels)
    cv_symmetric_pairs: bool = True

    #: L1: training rows per cache block (0: about ``l1_block_bytes`` of rows)
    l1_block_rows: int = 0
    #: L1: queries per parallel chunk (0: about ``l1_query_chunk_bytes`` of rows,
    #: the chunk count a multiple of the thread count)
    l1_query_chunk_rows: int = 0
    l1_block_bytes: int = 192 * 1024
    l1_query_chunk_bytes: int = 1024 * 1024
    #: L1 float: extra candidates kept beyond k before the exact rerank
    l1_extra_candidates: int = 8
    #: L1 float pre-filter: "auto", "relative" (sums of |q - x|, a relative error bound)
    #: or "absolute" (sums of max(q, x), two vector operations per term instead of three,
    #: with an absolute error bound from the rows' sums); results never depend on it
    l1_float_bound: str = "auto"
    #: L1 float tiles: "auto", "add" or "fma" (one operation per term on the FMA unit,
    #: faster on AMD Zen); results never depend on it
    l1_float_accumulate: str = "auto"
    #: L1 uint8 micro-kernel: None = best for this CPU, or "avx512" / "avx2" / "portable"
    l1_uint8_impl: str | None = None
    #: L1 uint8 SIMD tiles: training rows per register tile, 2 or 4 (0: per CPU,
    #: fastcls.kernels.l1.uint8_tile_cols); results never depend on it
    l1_uint8_tile_cols: int = 0
    #: L1 float AVX-512 tile: training rows per register tile, 2 or 4 (0: per CPU,
    #: fastcls.kernels.l1.float_tile_cols; the AVX2 and portable tiles take 2)
    l1_float_tile_cols: int = 0
    #: L1 float on whole numbers 0..255: take the exact uint8 kernel
    l1_uint8_shortcut: bool = True
    #: L1 uint8 top-k: query chunks of at least this many rows are searched on rows
    #: zero-padded to a multiple of the vector width (0: never; same results)
    l1_pad_min_queries: int = 32

    #: L2: queries per GEMM tile
    l2_query_tile_rows: int = 1024
    #: L2: bound on the query-side scratch of all threads together (each holds a
    #: centred query tile and a GEMM block); fewer queries per tile beyond it
    l2_query_scratch_bytes: int = 48 * 2**20
    #: L2: training rows per GEMM block (at most; a thread's share of the rows in equal
    #: blocks). One block per share where it fits: 500 q x 10000 x 3072 float32, the
    #: rows split between 2 threads, gained 2.5-4.5% over 2048 (3 blocks a thread) on the
    #: Xeon, native and AVX2 builds, in-process A/B (docs/performance.md)
    l2_train_block_rows: int = 8192
    #: L2: candidates kept beyond k for the certified rerank
    l2_extra_candidates: int = 16
    #: L2: problems of at most this many multiply-adds take the direct (no GEMM) path
    l2_direct_max_work: int = 4_000_000
    #: L2: training rows averaged for the centring vector
    l2_centre_rows: int = 1024
    #: L2 float: how the threads share a search: "queries", "rows" (each thread takes a
    #: share of the training rows for every query, then the lists are merged) or "auto"
    #: (rows when the queries make fewer GEMM tiles than there are threads)
    l2_thread_split: str = "auto"
    #: L2 float: the GEMM reads the training rows as stored (no centred copy) when they
    #: are in the working dtype and their norms are at most this many times their
    #: centred norms (0: always centre); see fastcls.kernels.l2, "Uncentred rows"
    l2_uncentred_max_ratio: float = 3.0
    #: L2 float: a fitted model whose rows need a centred copy (float64 rows, or rows far
    #: from their mean) keeps it when it takes at most this many bytes (0: never)
    l2_keep_centred_bytes: int = 64 * 2**20
    #: L2 uint8 integer micro-kernel: None = best for this CPU, or "vnni" / "avxvnni" /
    #: "avx512bw" / "avx2" / "portable" (fastcls.kernels.l2int)
    l2_uint8_impl: str | None = None
    #: L2 float on whole numbers 0..255: take the exact integer kernel
    l2_uint8_shortcut: bool = True
    #: L2 float64: rank candidates with a float32 GEMM (the rerank stays exact float64)
    l2_float64_sgemm: bool = True
    #: L2 float32 GEMM: "auto" (AMX bf16x3 where the CPU and OS allow it, else BLAS),
    #: "blas" or "amx" (a ValueError where it cannot run)
    l2_float_gemm: str = "auto"
    #: L2 float32 on AMX: training rows split and packed at a time (kept in L2)
    l2_amx_block_rows: int = 64
    #: L2 uint8 on AMX (when not forced by l2_uint8_impl): calls of fewer multiply-adds
    #: (queries x rows x features) take the next integer kernel. A few milliseconds of
    #: work gain little from the tiles, and compiling their kernel added 0.6 s to a cold
    #: README tour (whose one uint8 L2 call is 500 x 1500 x 64)
    l2_amx_min_work: int = 1 << 28
    #: L2 integer kernel: training rows per cache block (0: about ``l2_int_block_bytes``)
    l2_int_block_rows: int = 0
    l2_int_block_bytes: int = 24 * 1024
    #: the same for the int16 tiles ("avx2", "avx512bw"), whose blocks stream from L2
    l2_int_wide_block_bytes: int = 192 * 1024
    #: L2 integer kernel: queries per parallel chunk (0: about ``l2_int_query_chunk_bytes``,
    #: the chunk count a multiple of the thread count)
    l2_int_query_chunk_rows: int = 0
    l2_int_query_chunk_bytes: int = 1024 * 1024
    #: L2 integer top-k: query chunks of at least this many rows are searched on rows
    #: zero-padded to a multiple of the vector width (0: never; same results)
    l2_int_pad_min_queries: int = 32

    #: validation: rows scanned per chunk by the NaN / infinity check
    finite_check_rows: int = 4096

    #: CIFAR-10 reader: largest archive member or batch file accepted, in bytes
    cifar_max_member_bytes: int = 256 * 2**20

    #: FAISS backend: training rows converted to float32 and added per chunk
    faiss_add_chunk_rows: int = 16384

    #: linear losses: micro-kernel, None = best for this CPU, or "avx512" / "avx2" / "portable"
    linear_kernel_impl: str | None = None
    #: SGD loop: prefetch the next batch's rows (into L2) during each step's gradient pass
    #: (True / False; the same results either way). None: per CPU
    #: (``fastcls.kernels.losses.prefetch_next_batch``): on where measured faster (AMD
    #: Zen 4: 1500 steps of 200 rows of 49000 x 3073 13% faster on 2 threads, 20% on 1),
    #: off elsewhere (the Sapphire-Rapids-class Xeon of docs/performance.md: 5.6% slower
    #: on 2 threads, 9% on 1, 4% with the AVX2 kernels)
    linear_prefetch_next_batch: bool | None = None
    #: linear losses (one call, not the SGD loop): when the rows used take at least this
    #: many bytes, each block's tiles prefetch the rows its task packs next, a segment per
    #: tile call in address order (0: always; same results either way). None: the
    #: micro-kernel's own threshold (``fastcls.kernels.losses.prefetch_min_bytes``: 0 for
    #: "avx512", 32 MiB for the others, 8 MiB for "avx2" on Zen 4, where rows read from
    #: L3 gained from about 8 MiB). On the Xeon of docs/performance.md: svm_loss
    #: N=10000 (123 MB) 8.7-8.9 -> 7.6-7.7 ms on 2 threads, 3-7% faster on 1; N=256
    #: (3 MB, read from L3) 4-7% faster; N <= 128 neutral; the AVX2 build neutral from 64
    #: to 1000 rows (its slower arithmetic leaves the memory time to the hardware)
    linear_prefetch_min_bytes: int | None = None
    #: linear losses: rows per cache block (a positive multiple of 4). None: by loss and
    #: micro-kernel (``fastcls.kernels.losses.row_block``): 32 for the multiclass SVM where
    #: its update is sparse (AVX2 build: 6-9% faster on 2 threads, within 2% on 1), 16
    #: otherwise (the prefetch above paid only with 16, 32 neutral; SGD training of 1500 x
    #: 200 rows 2% faster, 0.477 vs 0.487 s; softmax on the AVX2 build 4% faster than 32)
    linear_row_block_rows: int | None = None
    #: linear losses: calls of fewer multiply-adds (rows x D x C) run on the calling thread
    #: (measured crossover: 96 rows x 3073 x 10 ran faster in parallel, 64 rows are one task)
    linear_parallel_min_work: int = 1 << 21
    #: linear losses (one call): after a parallel call whose tasks ran no faster than one
    #: thread would have, or two in a row slower than the serial twin (other threads held
    #: the cores: OpenBLAS's spin after a NumPy product), run the calls of the next 2 ms
    #: (doubling up to 128 ms while it lasts) on the calling thread (the same results
    #: either way; see fastcls.losses._TwinChoice)
    linear_adaptive_twin: bool = True

    def names(self) -> list[str]:
        """Names of every tunable."""
        return sorted(n for n in vars(Tunables) if not n.startswith("_") and n != "names")

    def __repr__(self) -> str:
        body = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.names())
        return f"Tunables({body})"


#: the process-wide tunables (see :class:`Tunables`)
settings = Tunables()


class override:
    """Context manager that sets tunables of :data:`settings` and restores them.

    Unknown names raise ``TypeError`` (a typo must not silently test the default).

    Examples
    --------
    >>> from fastcls._config import override, settings
    >>> with override(l2_query_tile_rows=8):
    ...     settings.l2_query_tile_rows
    8
    >>> settings.l2_query_tile_rows
    1024
    """

    def __init__(self, **values: Any) -> None:
        unknown = sorted(set(values) - set(settings.names()))
        if unknown:
            raise TypeError(f"unknown tunable(s) {unknown}; known: {settings.names()}")
        self.values = values
        self._saved: dict[str, Any] = {}

    def __enter__(self) -> Tunables:
        self._saved = {n: getattr(settings, n) for n in self.values}
        for n, v in self.values.items():
            setattr(settings, n, v)
        return settings

    def __exit__(self, *exc: object) -> None:
        for n, v in self._saved.items():
            setattr(settings, n, v)
