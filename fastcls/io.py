"""Save and load fitted models: ``.npz`` arrays + JSON metadata, never pickle.

Format ``fastcls-model``, version :data:`FORMAT_VERSION`. One uncompressed (or, with
``compress=True``, deflated) ``.npz`` archive holding:

``metadata``
    a 0-d unicode array with a JSON object: ``format``, ``format_version``,
    ``class``, ``params`` (the constructor parameters), ``n_features_in_``,
    ``n_samples_fit_``, ``backend``, ``classes_dtype``, ``fastcls_version`` and
    ``arrays`` (the names of the arrays below that the file holds).
``classes``
    the sorted labels, as an integer, float, bool or fixed-width unicode array
    (object arrays of strings are stored as unicode; never as objects).
``y``
    the encoded training labels (int64, ``0..n_classes-1``).
``fit_X``
    the training rows (kernel dtype), unless the model searches a FAISS index and
    ``include_data`` is left at its default.
``faiss_index``
    ``faiss.serialize_index`` bytes as a uint8 array (``backend="faiss"``).

:func:`load` opens the archive with ``allow_pickle=False``, so a file can never
execute code, and refuses unknown formats and versions with a clear error.

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

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "save", "load", "read_metadata"]

#: the ``format`` field of every file this module writes
FORMAT_NAME = "fastcls-model"
#: bumped whenever the layout changes incompatibly; :func:`load` refuses other versions
FORMAT_VERSION = 1
_SUPPORTED_VERSIONS = (1,)


def _model_classes() -> dict[str, type]:
    from fastcls.neighbors import KNearestNeighbor

    return {"KNearestNeighbor": KNearestNeighbor}


def _plain_classes(classes: np.ndarray) -> np.ndarray:
    """Labels as a non-object array (so it loads without pickle)."""
    classes = np.asarray(classes)
    if classes.dtype.kind != "O":
        if classes.dtype.kind == "S":
            return classes.astype(str)
        return classes
    items = classes.tolist()
    if all(isinstance(c, str) for c in items):
        return np.array(items, dtype=str)
    if all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in items):
        return np.array(items, dtype=np.int64)
    raise TypeError("classes_ must hold only integers or only strings to be saved")


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
    """Save a fitted k-NN model to ``path`` (``.npz`` + JSON metadata, no pickle).

    Parameters
    ----------
    model : KNearestNeighbor
        A fitted model.
    path : str or path-like
        Written as given (numpy appends ``.npz`` to a name without it).
    include_data : bool, optional
        Store the training rows. Default: yes, except for ``backend="faiss"``, whose
        index (stored as ``faiss.serialize_index`` bytes) holds what search needs.
        A memmap or lazy training set is read into the archive tile by tile.
    compress : bool, default False
        Deflate the archive (smaller, slower to write and read).

    Examples
    --------
    >>> import numpy as np, tempfile, os, fastcls
    >>> clf = fastcls.KNearestNeighbor().fit(np.eye(3), [0, 1, 2])
    >>> fastcls.io.save(clf, os.path.join(tempfile.mkdtemp(), "m.npz"))
    """
    from fastcls._validation import check_is_fitted

    registry = _model_classes()
    cls_name = type(model).__name__
    if registry.get(cls_name) is not type(model):
        raise TypeError(f"save supports {sorted(registry)}, got {cls_name}")
    check_is_fitted(model, ("classes_",))
    params = _json_params(model.get_params())
    backend = params.get("backend")
    arrays: dict[str, np.ndarray] = {
        "classes": _plain_classes(model.classes_),
        "y": np.asarray(model._y, dtype=np.int64),
    }
    has_index = getattr(model, "_faiss_index", None) is not None and backend == "faiss"
    if include_data is None:
        include_data = not has_index
    if include_data:
        X = model._fit_X
        arrays["fit_X"] = X if isinstance(X, np.ndarray) else X[0 : X.shape[0]]
    if has_index:
        from fastcls.backends.faiss import serialize_index

        arrays["faiss_index"] = serialize_index(model._faiss_index)
    from fastcls import __version__

    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "class": cls_name,
        "params": params,
        "n_features_in_": int(model.n_features_in_),
        "n_samples_fit_": int(model.n_samples_fit_),
        "backend": backend,
        "classes_dtype": arrays["classes"].dtype.str,
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
    """Load a model saved by :func:`save` / ``model.save(path)``.

    The archive is read with ``allow_pickle=False``: loading never unpickles.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    KNearestNeighbor
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
    from fastcls import _validation as V

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
        registry = _model_classes()
        cls = registry.get(meta.get("class"))
        if cls is None:
            raise ValueError(f"{path!s}: unknown model class {meta.get('class')!r}")
        model = cls().set_params(**meta["params"])
        missing = {"classes", "y"} - set(npz.files)
        if missing:
            raise ValueError(f"{path!s}: missing arrays {sorted(missing)}")
        model._metric = V.check_metric(model.metric)
        model.classes_ = npz["classes"]
        model._y = npz["y"].astype(np.int64, copy=False)
        model.n_features_in_ = int(meta["n_features_in_"])
        model.n_samples_fit_ = int(meta["n_samples_fit_"])
        if "fit_X" in npz.files:
            model._fit_X = np.ascontiguousarray(npz["fit_X"])
        if "faiss_index" in npz.files:
            from fastcls.backends.faiss import deserialize_index

            model._faiss_index = deserialize_index(npz["faiss_index"])
        if not hasattr(model, "_fit_X") and not hasattr(model, "_faiss_index"):
            raise ValueError(f"{path!s}: holds neither training rows nor a FAISS index")
        if model._y.shape != (model.n_samples_fit_,):
            raise ValueError(
                f"{path!s}: {model._y.shape[0]} labels for {model.n_samples_fit_} rows"
            )
    return model
