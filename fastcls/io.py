"""Save and load fitted estimators: ``.npz`` arrays + JSON metadata, never pickle.

Any fastcls estimator is saved through its public state pair
(``get_params()`` + :meth:`~fastcls.base.BaseEstimator.get_fitted_state`) and
rebuilt through ``type(model)(**params).set_fitted_state(state)``; this module never
reads an estimator's private attributes.

Format ``fastcls-model``, version :data:`FORMAT_VERSION`. One uncompressed (or, with
``compress=True``, deflated) ``.npz`` archive holding:

``metadata``
    a 0-d unicode array with a JSON object: ``format``, ``format_version``,
    ``class``, ``params`` (the constructor parameters), ``state`` (the fitted
    state's JSON metadata), ``backend`` (k-NN), ``fastcls_version`` and ``arrays`` (the names of the
    state's arrays stored beside it).
one entry per state array
    e.g. for :class:`~fastcls.KNearestNeighbor`: ``classes`` (labels, never
    objects), ``y`` (encoded labels), ``fit_X`` (training rows) and/or
    ``faiss_index`` (``faiss.serialize_index`` bytes).

:func:`load` opens the archive with ``allow_pickle=False``, so a file can never
execute code, refuses unknown formats and versions with a clear error, and reads
version-1 files (k-NN models written by fastcls 0.1.0).

Examples
--------
>>> import numpy as np, tempfile, os, fastcls
>>> X = np.array([[0, 0], [9, 9]], dtype=np.uint8)
>>> clf = fastcls.KNearestNeighbor(k=1).fit(X, ["a", "b"])
>>> path = os.path.join(tempfile.mkdtemp(), "knn.npz")
>>> clf.save(path)
>>> fastcls.load(path).predict(np.array([[8, 8]], dtype=np.uint8)).tolist()
['b']
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any

import numpy as np

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "MODEL_CLASSES", "save", "load", "read_metadata"]

#: the ``format`` field of every file this module writes
FORMAT_NAME = "fastcls-model"
#: bumped whenever the layout changes incompatibly; :func:`load` refuses other versions
FORMAT_VERSION = 2
_SUPPORTED_VERSIONS = (1, 2)

#: class name stored in a file -> module defining it (imported on load)
MODEL_CLASSES: dict[str, str] = {
    "KNearestNeighbor": "fastcls.neighbors",
    "LinearSVM": "fastcls.linear",
    "Softmax": "fastcls.linear",
    "FeatureScaler": "fastcls.features",
}


def _model_class(name: Any, path: Any = None) -> Any:
    import importlib

    module = MODEL_CLASSES.get(name) if isinstance(name, str) else None
    if module is None:
        where = f"{path!s}: " if path is not None else ""
        raise ValueError(
            f"{where}unknown model class {name!r}; fastcls saves {sorted(MODEL_CLASSES)}"
        )
    return getattr(importlib.import_module(module), name)


def _json_params(params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in params.items():
        if isinstance(value, np.generic):
            value = value.item()
        if not (value is None or isinstance(value, (bool, int, float, str))):
            raise TypeError(
                f"parameter {name}={value!r} cannot be saved: only None, bool, int, float "
                "and str parameters are stored (no pickle)"
            )
        out[name] = value
    return out


def save(
    model: Any, path: str | os.PathLike, *, include_data: bool | None = None, compress: bool = False
) -> None:
    """Save a fitted estimator to ``path`` (``.npz`` + JSON metadata, no pickle).

    Parameters
    ----------
    model : KNearestNeighbor, LinearSVM, Softmax or FeatureScaler
        A fitted estimator.
    path : str or path-like
        Written as given (numpy appends ``.npz`` to a name without it).
    include_data : bool, optional
        k-NN only: store the training rows. Default: yes, except for
        ``backend="faiss"``, whose index (stored as ``faiss.serialize_index`` bytes)
        holds what search needs. A memmap or lazy training set is read whole.
    compress : bool, default False
        Deflate the archive (smaller, slower to write and read).

    Examples
    --------
    >>> import numpy as np, tempfile, os, fastcls
    >>> clf = fastcls.KNearestNeighbor().fit(np.eye(3), [0, 1, 2])
    >>> fastcls.io.save(clf, os.path.join(tempfile.mkdtemp(), "m.npz"))
    """
    cls_name = type(model).__name__
    if cls_name not in MODEL_CLASSES or _model_class(cls_name) is not type(model):
        raise TypeError(f"save supports {sorted(MODEL_CLASSES)}, got {cls_name}")
    params = _json_params(model.get_params())
    if include_data is not None:
        state = model.get_fitted_state(include_data=include_data)
    else:
        state = model.get_fitted_state()
    arrays = dict(state.arrays)
    if "metadata" in arrays:
        raise ValueError("a fitted state may not name an array 'metadata'")
    for name, arr in arrays.items():
        if np.asarray(arr).dtype.kind == "O":
            raise TypeError(f"state array {name!r} holds Python objects; it cannot be saved")
    from fastcls import __version__

    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "class": cls_name,
        "params": params,
        "state": state.metadata,
        "backend": params.get("backend"),  # informative, as in version 1
        "fastcls_version": __version__,
        "arrays": sorted(arrays),
    }
    arrays["metadata"] = np.array(json.dumps(meta, sort_keys=True))
    writer = np.savez_compressed if compress else np.savez
    writer(path, **arrays)


def _read_meta(npz: Any, path: Any) -> dict[str, Any]:
    if "metadata" not in npz.files:
        raise ValueError(f"{path!s} is not a fastcls model file (no metadata entry)")
    raw = npz["metadata"]
    if raw.dtype.kind != "U" or raw.ndim != 0:
        raise ValueError(f"{path!s}: metadata must be a JSON string")
    try:
        meta = json.loads(str(raw[()]))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path!s}: metadata is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{path!s} is not a fastcls model file (format {meta.get('format')!r})")
    version = meta.get("format_version")
    if version not in _SUPPORTED_VERSIONS:
        raise ValueError(
            f"{path!s} has format_version {version!r}, which this fastcls "
            f"(reads versions {list(_SUPPORTED_VERSIONS)}) cannot read; upgrade fastcls or "
            "re-save the model with a matching version"
        )
    return meta


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata of a saved model (format, version, class, params ...)."""
    with np.load(path, allow_pickle=False) as npz:
        return _read_meta(npz, path)


def load(path: str | os.PathLike) -> Any:
    """Load an estimator saved by :func:`save` / ``model.save(path)``.

    The archive is read with ``allow_pickle=False``: loading never unpickles.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    KNearestNeighbor, LinearSVM, Softmax or FeatureScaler
        Fitted, with identical predictions to the saved model.

    Raises
    ------
    ValueError
        Not a fastcls model file, or a ``format_version`` this version cannot read.

    Examples
    --------
    >>> import numpy as np, tempfile, os, fastcls
    >>> path = os.path.join(tempfile.mkdtemp(), "m.npz")
    >>> fastcls.KNearestNeighbor().fit(np.eye(2), [3, 4]).save(path)
    >>> fastcls.load(path).classes_.tolist()
    [3, 4]
    """
    from fastcls.base import FittedState

    try:
        npz = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path!s} is not a fastcls model file: {exc}") from exc
    if not hasattr(npz, "files"):  # a bare .npy
        raise ValueError(f"{path!s} is not a fastcls model file (not an .npz archive)")
    with npz:
        meta = _read_meta(npz, path)
        cls = _model_class(meta.get("class"), path)
        if meta["format_version"] == 1:
            meta = _upgrade_v1(meta, npz.files)
        params = meta.get("params")
        state_meta = meta.get("state")
        names = meta.get("arrays")
        if not isinstance(params, dict) or not isinstance(state_meta, dict):
            raise ValueError(f"{path!s}: metadata lacks params or state")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{path!s}: metadata 'arrays' must list array names")
        missing = sorted(set(names) - set(npz.files))
        if missing:
            raise ValueError(f"{path!s}: missing arrays {missing}")
        arrays = {name: npz[name] for name in names}
    try:
        model = cls().set_params(**params)
        return model.set_fitted_state(FittedState(arrays, state_meta))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path!s}: {exc}") from exc


def _upgrade_v1(meta: dict[str, Any], files: list[str]) -> dict[str, Any]:
    """Version-1 metadata (k-NN only) in the version-2 layout."""
    arrays = [n for n in ("classes", "y", "fit_X", "faiss_index") if n in files]
    return {
        **meta,
        "state": {
            "n_features_in_": meta.get("n_features_in_"),
            "n_samples_fit_": meta.get("n_samples_fit_"),
            "backend_arrays": [n for n in arrays if n in ("fit_X", "faiss_index")],
            "labels_kind": "array",
        },
        "arrays": arrays,
    }
