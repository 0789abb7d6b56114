"""The default search backend: fused distance + top-k numba kernels.

Queries are searched against the training rows one streamed tile at a time
(:func:`fastcls.backends.rows.iter_row_tiles`), each tile merged into running
sorted top-k buffers, so memory stays at the inputs plus O(tile) and an
``n_queries x n_train`` matrix is never built. Distances are exact float64.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from fastcls.backends.base import SearchBackend
from fastcls.backends.rows import default_train_tile, iter_row_tiles

__all__ = ["NumbaBackend", "search_rows"]

#: with progress shown, a search takes about this many steps (tiles x query blocks)
PROGRESS_STEPS = 20
#: ... but never query blocks smaller than this (a GEMM tile stays efficient)
PROGRESS_MIN_QUERIES = 1024
#: at most this many bytes of evenly spaced rows decide whether float rows are pixels
PIXEL_SAMPLE_BYTES = 1 << 20


def search_rows(
    Q: np.ndarray,
    X: Any,
    k: int,
    metric: str,
    *,
    offset: int = 0,
    train_tile: int | None = None,
    progress: bool | None = False,
    centred: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of each query among the rows of ``X`` with the fused kernels.

    Parameters
    ----------
    Q : ndarray (n_queries, D)
        Queries in the kernel dtype the rows are converted to.
    X : ndarray, np.memmap or LazyRows (n_rows, D)
    k : int
        Slots per query; rows of the result that ``X`` cannot fill hold ``(inf, -1)``.
    metric : {"l1", "l2", "sqeuclidean"}
        ``"l2"`` returns square roots of the ranked squared distances.
    offset : int
        Global index of the first row of ``X`` (shards of a larger set).
    train_tile : int, optional
        Rows per streamed tile (default :func:`~fastcls.backends.rows.default_train_tile`).
    progress : bool or None
        A progress bar over tiles on stderr (``None``: when stderr is a terminal).
    centred : fastcls.kernels.l2.CentredRows, optional
        ``X`` (in memory) centred for the float L2 kernel by
        :func:`~fastcls.kernels.l2.centre_rows`: searched as one tile without centring
        it again.

    Returns
    -------
    distances : ndarray (n_queries, k), float64
    indices : ndarray (n_queries, k), int64
    """
    from fastcls._config import settings
    from fastcls._progress import Progress
    from fastcls._runtime import trim_scratch
    from fastcls.kernels.knn import topk_kernel
    from fastcls.kernels.topk import new_topk, use_block_selection

    kernel = topk_kernel(metric, Q.dtype)
    rows = train_tile or default_train_tile(X)
    if use_block_selection(k, X.shape[0]):
        kernel = functools.partial(_select_by_blocks, kernel)
    elif centred is not None and metric != "l1" and Q.dtype.kind == "f":
        kernel = functools.partial(kernel, centred=centred)
        rows = X.shape[0]
    best_d, best_i = new_topk(Q.shape[0], k)
    n_tiles = -(-X.shape[0] // rows)
    # with progress shown, long searches also step over query blocks (each query's
    # top-k is independent, so results are identical) to report often enough
    q_block = Q.shape[0]
    if progress and n_tiles < PROGRESS_STEPS:
        q_block = max(PROGRESS_MIN_QUERIES, -(-Q.shape[0] * n_tiles // PROGRESS_STEPS))
    q_starts = range(0, Q.shape[0], q_block)
    try:
        with Progress(n_tiles * len(q_starts), f"k-NN search ({metric})", enabled=progress) as bar:
            for start, tile in iter_row_tiles(X, rows, Q.dtype):
                for qs in q_starts:
                    qe = min(Q.shape[0], qs + q_block)
                    kernel(Q[qs:qe], tile, offset + start, best_d[qs:qe], best_i[qs:qe])
                    bar.update()
    finally:
        # the kernels' scratch (every thread's) is reused across tiles, not across calls
        trim_scratch(int(settings.knn_scratch_keep_bytes))
    if metric == "l2":
        np.sqrt(best_d, out=best_d)
    return best_d, best_i


def _select_by_blocks(
    kernel: Any,
    Q: np.ndarray,
    tile: np.ndarray,
    offset: int,
    best_d: np.ndarray,
    best_i: np.ndarray,
) -> None:
    """``kernel(Q, tile, offset, best_d, best_i)`` for large k, in linear-time merges.

    The tile is cut into blocks of about ``sqrt(k)`` rows; the kernel finds each
    block's sorted list (all its rows, so short insertions) and
    :func:`~fastcls.kernels.topk.merge_sorted_topk` merges it into the running top-k
    by ``(distance, index)``. Distances come from the same kernel, so results are
    identical to a single call; the cost no longer grows as ``k x rows``.
    """
    from fastcls.kernels.topk import merge_sorted_topk, new_topk, selection_block_rows

    k = best_d.shape[1]
    rows = selection_block_rows(k)
    for s in range(0, tile.shape[0], rows):
        block = tile[s : s + rows]
        bd, bi = new_topk(Q.shape[0], min(k, block.shape[0]))
        kernel(Q, block, offset + s, bd, bi)
        merge_sorted_topk(best_d, best_i, bd, bi)


class NumbaBackend(SearchBackend):
    """Exact search with fastcls's fused kernels (``backend="numba"``, the default).

    Keeps the training rows by reference (a memmap stays on disk and is streamed).
    """

    name = "numba"
    search_options = ("progress",)

    def __init__(self, X: Any, metric: str, **options: Any) -> None:
        super().__init__(X, metric, **options)
        self.X_pixels = self._whole_pixels(X, metric)
        self.centred: Any = None
        self.prepared = False

    @staticmethod
    def _whole_pixels(X: Any, metric: str) -> np.ndarray | None:
        """A uint8 copy of in-memory float rows that hold only whole numbers 0..255.

        Pixels stored as floats (CIFAR-10 loaded as float64, ``astype(np.float32)``)
        are then searched by the exact integer kernels, and the check and copy are done
        once here instead of per training tile and search. The copy is a quarter (or
        an eighth) of the rows, kept with the model: it is made only when it is at
        most ``settings.knn_pixel_copy_max_bytes``, so a search stays within the inputs
        plus a bounded amount; larger sets, memmaps and lazy sources are left as they
        are (the kernels detect pixels and convert them tile by tile, same results).
        """
        from fastcls._config import settings
        from fastcls.kernels.l1 import as_exact_uint8

        on = settings.l1_uint8_shortcut if metric == "l1" else settings.l2_uint8_shortcut
        if not on or not isinstance(X, np.ndarray) or isinstance(X, np.memmap):
            return None
        if X.size > settings.knn_pixel_copy_max_bytes:
            return None
        if X.dtype.kind != "f" or not X.flags.c_contiguous:
            return None
        return as_exact_uint8(X)

    def prepare(self) -> None:
        """Prepare in-memory float training rows once for the L2 kernel, for a fitted model.

        Every float L2 search otherwise prepares each training tile again: the centring
        vector, the centred norms (a pass over the rows) and, for rows the GEMM cannot
        take as stored (float64 rows, rows far from their mean), a centred copy. What
        :func:`fastcls.kernels.l2.centre_rows` makes is kept when it needs no copy, or a
        copy of at most ``settings.l2_keep_centred_bytes``; searches then take the rows
        as one tile. Pixels (whole numbers, the integer kernels) and memmaps are left
        alone. Results are identical either way.
        """
        from fastcls._config import settings

        self.centred = self._centred_rows(int(settings.l2_keep_centred_bytes))
        self.prepared = True

    def _centred_rows(self, copy_max_bytes: int) -> Any:
        """:func:`fastcls.kernels.l2.centre_rows` of in-memory float rows searched with L2
        (None for other rows, or when a centred copy would exceed ``copy_max_bytes``)."""
        from fastcls._config import settings
        from fastcls.kernels import l2

        X = self.X
        if (
            self.metric == "l1"
            or self.X_pixels is not None
            or not isinstance(X, np.ndarray)
            or isinstance(X, np.memmap)
            or X.dtype.kind != "f"
            or not X.flags.c_contiguous
            or X.shape[0] == 0
        ):
            return None
        if settings.l2_uint8_shortcut:
            from fastcls.kernels.l1 import as_exact_uint8

            # pixels too many to copy at once: the integer kernel, tile by tile (a
            # sample decides; rows that are not pixels after all are still exact)
            n_sample = max(1, min(64, PIXEL_SAMPLE_BYTES // X[0].nbytes))
            sample = np.ascontiguousarray(X[:: max(1, X.shape[0] // n_sample)])
            if as_exact_uint8(sample) is not None:
                return None
        return l2.centre_rows(X, keep=True, copy_max_bytes=copy_max_bytes)

    def search_promoted(
        self, Q: np.ndarray, k: int, **options: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Search with the fused kernels, streaming the training rows tile by tile.

        float64 data too small for squared distances (all ``|x| < 2^-256``) is
        searched exactly rescaled by a power of two (:mod:`fastcls.backends.scaling`).
        Float rows and queries holding only whole numbers 0..255 are searched as uint8
        by the exact integer kernels (same distances, found several times faster).
        """
        from fastcls._config import settings
        from fastcls.backends.scaling import scaled_search, search_scale

        def run(Qs: np.ndarray, Xs: Any) -> tuple[np.ndarray, np.ndarray]:
            tile = self.train_tile
            centred = None
            if Xs is self.X and tile is None and Qs.dtype.kind == "f":
                # a one-shot search: rows the GEMM takes as stored are searched as one
                # tile (no copy, so no tile bound needed); others tile by tile. A search
                # small enough for the direct path needs neither.
                if self.prepared:
                    centred = self.centred
                elif Qs.shape[0] * Xs.shape[0] * Xs.shape[1] > settings.l2_direct_max_work:
                    centred = self._centred_rows(0)
            return search_rows(
                Qs, Xs, k, self.metric, train_tile=tile, progress=options.get("progress"),
                centred=centred,
            )  # fmt: skip

        if self.X_pixels is not None and Q.dtype.kind == "f":
            from fastcls.kernels.l1 import as_exact_uint8

            Qu = as_exact_uint8(Q)
            if Qu is not None:
                return run(Qu, self.X_pixels)
        scale = search_scale(self, Q)
        if scale != 1.0:
            return scaled_search(run, Q, self.X, scale, self.metric)
        return run(Q, self.X)
