"""Training rows as every search backend reads them: validated, streamed tile by tile.

Training rows can be an ndarray, a ``np.memmap`` or any row-sliceable array-like
(:class:`LazyRows`: h5py, zarr, dask ...). :func:`iter_row_tiles` yields them one
tile at a time, converted to the kernel dtype, and releases the pages of a
read-only memory-mapped tile once it has been searched, so the resident memory of a
search stays at the inputs held in RAM plus O(tile), however large the file on disk
(copy-on-write and writable maps are never released: see :func:`release_pages`).
"""

from __future__ import annotations

import mmap
import numbers
from collections.abc import Iterator
from typing import Any

import numpy as np

from fastcls import _validation as V
from fastcls._validation import declared_kernel_dtype as kernel_dtype

__all__ = [
    "LazyRows",
    "is_row_source",
    "iter_row_tiles",
    "release_pages",
    "kernel_dtype",
    "check_train_rows",
    "promote_query",
    "default_train_tile",
]


def check_train_rows(X: Any, name: str = "X") -> Any:
    """Validate training rows: an ndarray (memmaps kept on disk) or a :class:`LazyRows`.

    Any non-ndarray 2-D row-sliceable array-like (h5py, zarr, dask ...) is wrapped in
    :class:`LazyRows`: its shape and dtype are checked now, its values tile by tile.
    """
    if is_row_source(X):
        return LazyRows(X, name)
    return V.check_array(X, name)


def promote_query(Q: np.ndarray, train_dtype: Any) -> np.ndarray:
    """Bring validated queries to the kernel dtype they share with the training rows.

    The rule is :func:`fastcls._validation.shared_kernel_dtype`; the training rows are
    converted tile by tile as they are read, never as a whole (a memmap stays on disk).
    """
    dt = V.shared_kernel_dtype(Q.dtype, np.dtype(train_dtype))
    if Q.dtype == dt:
        return Q
    return np.ascontiguousarray(Q, dtype=dt)


def default_train_tile(X: Any) -> int:
    """Training rows per streamed tile: about ``settings.knn_train_tile_bytes`` of rows."""
    from fastcls._config import settings

    row_bytes = max(1, int(X.shape[1]) * np.dtype(X.dtype).itemsize)
    return max(1024, int(settings.knn_train_tile_bytes) // row_bytes)


def is_row_source(X: Any) -> bool:
    """True for a non-ndarray 2-D array-like sliceable by rows (h5py, zarr, dask ...)."""
    if isinstance(X, (np.ndarray, list, tuple)) or X is None:
        return False
    if hasattr(X, "tocsr") or type(X).__module__.startswith("scipy.sparse"):
        return False  # sparse matrices are refused by check_array with a clear message
    shape = getattr(X, "shape", None)
    return (
        hasattr(X, "__getitem__")
        and hasattr(X, "dtype")
        and isinstance(shape, tuple)
        and len(shape) == 2
        and all(isinstance(s, numbers.Integral) for s in shape)
    )


class LazyRows:
    """A validated, lazily read 2-D training set (rows are read tile by tile).

    Wraps any object with ``shape`` (2-D), ``dtype`` and ``__getitem__`` on row slices
    (an h5py dataset, a zarr or dask array ...). Shape and dtype are checked at
    construction; values are converted to :func:`kernel_dtype` and checked for NaN /
    infinity tile by tile, as they are read.

    Parameters
    ----------
    source : array-like of shape (n_samples, n_features)
    name : str
        Argument name for error messages.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcls.backends.rows import LazyRows
    >>> class Rows:  # any row-sliceable object
    ...     def __init__(self, a): self.a, self.shape, self.dtype = a, a.shape, a.dtype
    ...     def __getitem__(self, s): return self.a[s]
    >>> rows = LazyRows(Rows(np.arange(6, dtype=np.int16).reshape(3, 2)))
    >>> rows.shape, rows.dtype, rows[1:3].tolist()
    ((3, 2), dtype('float64'), [[2.0, 3.0], [4.0, 5.0]])
    """

    ndim = 2

    def __init__(self, source: Any, name: str = "X") -> None:
        if isinstance(source, LazyRows):
            source = source.wrapped
        if not is_row_source(source):
            raise TypeError(
                f"{name} must be an array or a 2-D array-like with shape, dtype and row "
                f"slicing, got {type(source).__name__}"
            )
        n, d = (int(s) for s in source.shape)
        if n < 1 or d < 1:
            raise ValueError(
                f"{name} must have at least 1 sample and 1 feature, got shape {(n, d)}"
            )
        self.source: Any = source
        self.name = name
        self.shape = (n, d)
        self.dtype = kernel_dtype(getattr(source.dtype, "numpy_dtype", source.dtype), name)

    @property
    def wrapped(self) -> Any:
        """The row source this object reads from."""
        return self.source

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice) -> np.ndarray:
        if not isinstance(rows, slice):
            raise TypeError("LazyRows supports row slices only")
        start, stop, step = rows.indices(self.shape[0])
        block = self.source[start:stop:step]
        if hasattr(block, "compute"):  # dask
            block = block.compute()
        block = np.asarray(block)
        if block.ndim != 2 or block.shape[1] != self.shape[1]:
            raise ValueError(
                f"{self.name}[{start}:{stop}] returned shape {block.shape}; "
                f"expected (rows, {self.shape[1]})"
            )
        if block.dtype.kind in "iu" and block.dtype.itemsize == 8:
            V.check_integers_exact_in_float64(block, self.name)
        block = np.ascontiguousarray(block, dtype=self.dtype)
        V.assert_all_finite(block, self.name)
        return block

    def __repr__(self) -> str:
        return f"LazyRows({type(self.source).__name__}, shape={self.shape}, dtype={self.dtype})"


def _mmap_of(arr: np.ndarray) -> mmap.mmap | None:
    """The ``mmap.mmap`` at the end of ``arr``'s base chain, or ``None``.

    Follows ``.base`` through views, ``np.memmap`` objects (``_mmap``) and memoryviews
    (``.obj``), so a plain ndarray view of a mapping (``np.ascontiguousarray`` of a
    memmap, ``np.frombuffer(mm)``) is traced to the mapping it really reads.
    """
    base: Any = arr
    for _ in range(64):  # base chains are short; the bound only guards against cycles
        if base is None:
            return None
        if isinstance(base, mmap.mmap):
            return base
        mm = getattr(base, "_mmap", None)
        if isinstance(mm, mmap.mmap):
            return mm
        base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
    return None  # pragma: no cover - a pathological chain: do not release


def _is_read_only_mapping(mm: mmap.mmap) -> bool:
    """Whether ``mm`` cannot be written through: its buffer is read-only.

    ``mmap.ACCESS_READ`` (``np.memmap`` mode ``"r"``, ``np.load(mmap_mode="r")``) and
    ``prot=PROT_READ`` maps export a read-only buffer; ``ACCESS_COPY`` (mode ``"c"``),
    ``ACCESS_WRITE`` (``"r+"``, ``"w+"``) and default maps a writable one. The mmap
    object does not expose its access mode, and the buffer flag is the property that
    matters: a mapping nobody can write holds nothing but the file's bytes.
    """
    try:
        with memoryview(mm) as view:
            return bool(view.readonly)
    except (TypeError, ValueError):  # closed map
        return False


def release_pages(arr: np.ndarray) -> bool:
    """Drop the pages of a read-only memory-mapped array from this process's resident set.

    ``madvise(MADV_DONTNEED)`` on the page-aligned range that ``arr`` spans inside its
    mapping. The file and the OS page cache keep the data; a later read faults the
    pages back in. Only pages that cannot hold anything but the file's bytes are
    released: the mapping at the end of ``arr``'s base chain (a plain ndarray view of
    a memmap included) must be read-only (``np.memmap`` mode ``"r"``,
    ``np.load(..., mmap_mode="r")``, ``mmap.ACCESS_READ``).

    Left alone, and why:

    * copy-on-write maps (mode ``"c"``, ``mmap.ACCESS_COPY``): ``MADV_DONTNEED`` throws
      the private copies of edited pages away, so the caller's edits would silently
      revert to the file's bytes (the same query would answer differently the second
      time);
    * writable shared maps (``"r+"``, ``"w+"``, ``mmap.ACCESS_WRITE``): on Linux the
      dirty pages are carried to the page cache and reach the file, so no data would be
      lost, but that is Linux's behaviour, not a promise of ``madvise`` everywhere, and
      a mapping the caller is writing to is not the large read-only data set this
      release exists for; so the rule stays "read-only, or not at all";
    * in-memory arrays, closed maps, empty views.

    Returns
    -------
    bool
        Whether pages were released.
    """
    if not isinstance(arr, np.ndarray) or arr.size == 0 or not hasattr(mmap, "MADV_DONTNEED"):
        return False
    mm = _mmap_of(arr)
    if mm is None or mm.closed or not _is_read_only_mapping(mm):
        return False
    try:
        base_addr = np.frombuffer(mm, dtype=np.uint8).ctypes.data
    except (TypeError, ValueError):  # pragma: no cover - closed or exotic maps
        return False
    lo = arr.ctypes.data - base_addr
    # extent touched by the view (all strides are non-negative for row slices)
    extent = (
        sum((s - 1) * abs(st) for s, st in zip(arr.shape, arr.strides, strict=True)) + arr.itemsize
    )
    hi = lo + extent
    if lo < 0 or hi > len(mm):  # pragma: no cover - not a view inside this mapping
        return False
    page = mmap.PAGESIZE
    lo = (lo // page) * page
    hi = min(len(mm), -(-hi // page) * page)
    if hi <= lo:
        return False
    mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
    return True


def iter_row_tiles(X: Any, rows: int, dtype: Any | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, tile)`` over the rows of ``X``, ``rows`` at a time.

    ``tile`` is C-contiguous, of ``dtype`` (default: ``X.dtype``). For a ``np.memmap``
    the tile is a view on the mapping (no copy when the dtype matches), and its pages
    are released (:func:`release_pages`, read-only mappings only) when the consumer asks
    for the next tile, so at most one tile of the file is resident at a time.

    Parameters
    ----------
    X : ndarray, np.memmap or :class:`LazyRows` of shape (n, D)
    rows : int
        Rows per tile (>= 1).
    dtype : numpy dtype, optional
    """
    n = X.shape[0]
    rows = max(1, int(rows))
    for start in range(0, n, rows):
        raw = X[start : start + rows]
        tile = np.ascontiguousarray(raw, dtype=dtype)
        yield start, tile
        if isinstance(X, np.ndarray):
            release_pages(raw)
