"""Every k-NN search backend, behind one interface, registered by name.

- ``"numba"`` (default): fused distance + top-k kernels, :mod:`fastcls.backends.numba`;
- ``"numpy"``: the plain NumPy reference per query tile, :mod:`fastcls.backends.numpy`;
- ``"faiss"``: FAISS indexes (extra ``fastcls[faiss]``), :mod:`fastcls.backends.faiss`;
- ``"dask"``: rows sharded over Dask workers (extra ``fastcls[dask]``),
  :mod:`fastcls.backends.dask`.

A backend is a :class:`~fastcls.backends.base.SearchBackend` subclass, built once on
validated training rows (``build_backend(name, X, metric, **options)``) and then
searched (``backend.search(Q, k) -> (distances, indices)``) as often as needed.
:class:`fastcls.KNearestNeighbor` builds one at ``fit``; :func:`fastcls.kneighbors`
builds one per call. Neither knows anything of a particular backend.

Add a backend by subclassing ``SearchBackend`` and calling :func:`register_backend`.
Backend modules are imported on first use, so ``import fastcls`` loads none of them.
:mod:`fastcls.backends.rows` holds what streaming backends share (tiles, memmaps,
lazy row sources).
"""

from __future__ import annotations

import importlib
from typing import Any

from fastcls.backends.rows import (
    LazyRows,
    check_train_rows,
    default_train_tile,
    is_row_source,
    iter_row_tiles,
    kernel_dtype,
    promote_query,
    release_pages,
)
from fastcls.backends.scaling import tiny_data_scale

__all__ = [
    "BACKENDS",
    "register_backend",
    "get_backend",
    "check_backend",
    "build_backend",
    "LazyRows",
    "check_train_rows",
    "default_train_tile",
    "is_row_source",
    "iter_row_tiles",
    "kernel_dtype",
    "promote_query",
    "release_pages",
    "tiny_data_scale",
]

#: backend name -> ``"module:Class"`` (imported on first use) or the class itself
BACKENDS: dict[str, Any] = {
    "numba": "fastcls.backends.numba:NumbaBackend",
    "numpy": "fastcls.backends.numpy:NumpyBackend",
    "faiss": "fastcls.backends.faiss:FaissBackend",
    "dask": "fastcls.backends.dask:DaskBackend",
}


def register_backend(name: str, backend: Any) -> None:
    """Register a :class:`~fastcls.backends.base.SearchBackend` subclass under ``name``.

    Parameters
    ----------
    name : str
        The value users pass as ``backend=``.
    backend : type or str
        The class, or ``"module:Class"`` to import it on first use.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"backend name must be a non-empty string, got {name!r}")
    BACKENDS[name] = backend


def check_backend(backend: Any) -> str:
    """Return ``backend`` if it names a registered backend, else raise ``ValueError``."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend must be one of {tuple(BACKENDS)}, got {backend!r}")
    return backend


def get_backend(name: str) -> Any:
    """The backend class registered under ``name`` (imported on first use)."""
    entry = BACKENDS[check_backend(name)]
    if isinstance(entry, str):
        module, _, cls_name = entry.partition(":")
        entry = getattr(importlib.import_module(module), cls_name)
        BACKENDS[name] = entry
    return entry


def build_backend(name: str, X: Any, metric: str, **options: Any) -> Any:
    """Build backend ``name`` on validated training rows ``X`` for ``metric``.

    ``options`` are the backend's build options (plus ``train_tile``); unknown ones
    raise ``TypeError`` naming the backend's options.
    """
    cls = get_backend(name)
    train_tile = options.pop("train_tile", None)
    cls.check_options(options, "build")
    return cls(X, metric, train_tile=train_tile, **options)
