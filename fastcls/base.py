"""Estimator conventions shared by every fastcls model (scikit-learn compatible).

Parameters are stored verbatim in ``__init__`` and validated in ``fit``; fitted
attributes end with an underscore. scikit-learn is not imported at runtime.
"""

from __future__ import annotations

import inspect
import numbers
from typing import Any, NamedTuple, TypeVar

import numpy as np

_Est = TypeVar("_Est", bound="BaseEstimator")


class FittedState(NamedTuple):
    """What a fitted estimator learned, in a form that can be stored without pickle.

    Together with ``get_params()`` this is everything :func:`fastcls.io.save` writes;
    ``type(model)(**params).set_fitted_state(state)`` rebuilds an identical model.

    Attributes
    ----------
    arrays : dict of str to ndarray
        Plain numeric, bool or fixed-width unicode arrays (never ``dtype=object``).
    metadata : dict
        JSON-serialisable values only (``None``, bool, int, float, str, lists and
        dicts of those).
    """

    arrays: dict[str, np.ndarray]
    metadata: dict[str, Any]


class BaseEstimator:
    """``get_params`` / ``set_params`` / ``repr`` from the ``__init__`` signature."""

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return sorted(
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        )

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Parameters of this estimator, as passed to ``__init__``."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> BaseEstimator:
        """Set parameters (validated at the next ``fit``); returns ``self``."""
        valid = set(self._param_names())
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for {type(self).__name__}; "
                    f"valid parameters are {sorted(valid)}"
                )
            setattr(self, name, value)
        return self

    def get_fitted_state(self) -> FittedState:
        """The fitted state: arrays plus JSON-able metadata (see :class:`FittedState`).

        Raises
        ------
        NotFittedError
            The estimator has not been fitted.
        """
        raise NotImplementedError(f"{type(self).__name__} has no fitted state to export")

    def set_fitted_state(self: _Est, state: FittedState) -> _Est:
        """Restore a state made by :meth:`get_fitted_state`; returns ``self``.

        The state is checked against itself and the parameters before anything is
        set: a malformed state raises ``ValueError`` and leaves the estimator as it was.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot restore a fitted state")

    def __repr__(self) -> str:
        defaults = {
            p.name: p.default
            for p in inspect.signature(type(self).__init__).parameters.values()
            if p.name != "self"
        }
        changed = []
        for name, value in self.get_params().items():
            default = defaults.get(name, inspect.Parameter.empty)
            same = default is not inspect.Parameter.empty and (
                default is value or (_scalar(default) and _scalar(value) and default == value)
            )
            if not same:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"


def _scalar(v: Any) -> bool:
    return isinstance(v, (int, float, str, bool, type(None)))


class ClassifierMixin:
    """``score`` as mean accuracy; estimator type tag for scikit-learn."""

    _estimator_type = "classifier"

    def score(self, X: Any, y: Any) -> float:
        """Mean accuracy of ``predict(X)`` against ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or images
        y : array-like of shape (n_samples,)

        Returns
        -------
        float
        """
        y_arr = np.asarray(y)
        pred = self.predict(X)  # type: ignore[attr-defined]
        if y_arr.shape != pred.shape:
            raise ValueError(f"y has shape {y_arr.shape} but X gives {pred.shape[0]} predictions")
        return float(np.mean(pred == y_arr))

    def __sklearn_tags__(self):  # pragma: no cover - only called by scikit-learn
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

        return Tags(
            estimator_type="classifier",
            target_tags=TargetTags(required=True),
            classifier_tags=ClassifierTags(),
            input_tags=InputTags(three_d_array=True),
        )


def classes_to_state(classes: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Encode sorted labels ``classes_`` as a pickle-free array plus metadata.

    Integer, bool, float and unicode labels are stored as they are; bytes labels as
    unicode code points of their latin-1 decoding (every byte value round-trips) and
    restored as bytes; object arrays of Python ints or strs as int64 / unicode, and
    restored so (equal labels, no Python objects).
    """
    classes = np.asarray(classes)
    kind = classes.dtype.kind
    if kind == "S":
        stored = np.array([c.decode("latin-1") for c in classes.tolist()], dtype=str)
        return stored, {"labels_kind": "bytes", "labels_dtype": classes.dtype.str}
    if kind in "biufU":
        return classes, {"labels_kind": "array", "labels_dtype": classes.dtype.str}
    if kind == "O":
        items = classes.tolist()
        if all(isinstance(c, str) for c in items):
            return np.array(items, dtype=str), {"labels_kind": "object-str", "labels_dtype": "|O"}
        if all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in items):
            return (
                np.array(items, dtype=np.int64),
                {"labels_kind": "object-int", "labels_dtype": "|O"},
            )
    raise TypeError(
        f"classes_ of dtype {classes.dtype} cannot be stored: labels must be integers, "
        "floats, bools, str or bytes"
    )


def classes_from_state(stored: np.ndarray, metadata: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`classes_to_state`; raises ``ValueError`` on a mismatch."""
    kind = metadata.get("labels_kind", "array")
    stored = np.asarray(stored)
    if stored.ndim != 1 or stored.shape[0] < 1:
        raise ValueError(f"classes must be a non-empty 1-D array, got shape {stored.shape}")
    if kind == "bytes":
        if stored.dtype.kind != "U":
            raise ValueError("bytes labels must be stored as unicode")
        width = np.dtype(metadata.get("labels_dtype", "S"))
        if width.kind != "S":
            raise ValueError(f"bytes labels need a bytes labels_dtype, got {width}")
        return np.array([c.encode("latin-1") for c in stored.tolist()], dtype=width)
    if kind == "object-str":  # restored as a unicode array (same labels, no objects)
        if stored.dtype.kind != "U":
            raise ValueError("string labels must be stored as unicode")
        return stored
    if kind == "object-int":
        if stored.dtype.kind not in "iu":
            raise ValueError("integer labels must be stored as integers")
        return stored
    if kind != "array":
        raise ValueError(f"unknown labels_kind {kind!r}")
    if stored.dtype.kind not in "biufU":
        raise ValueError(f"labels of dtype {stored.dtype} are not allowed")
    expected = metadata.get("labels_dtype")
    if expected is not None and np.dtype(expected) != stored.dtype:
        raise ValueError(f"labels have dtype {stored.dtype}, metadata says {expected}")
    return stored


def check_state_fields(
    state: Any, array_fields: tuple[str, ...], meta_fields: tuple[str, ...]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The ``(arrays, metadata)`` of ``state``, every required field present, no unknown
    array, and the arrays plain (numeric, bool or unicode: never object).

    Raises ``TypeError`` when ``state`` is not a pair of dicts and ``ValueError``
    naming the field otherwise. Every estimator's ``set_fitted_state`` starts here.
    """
    try:
        arrays, meta = state
    except (TypeError, ValueError):
        raise TypeError(
            f"state must be a FittedState (arrays, metadata), got {type(state).__name__}"
        ) from None
    if not isinstance(arrays, dict) or not isinstance(meta, dict):
        raise TypeError("state must be a FittedState whose arrays and metadata are dicts")
    for name in array_fields:
        if name not in arrays:
            raise ValueError(f"fitted state lacks the array {name!r}")
        arr = arrays[name]
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biufU":
            what = arr.dtype if isinstance(arr, np.ndarray) else type(arr).__name__
            raise ValueError(
                f"fitted state field {name!r} must be a numeric or unicode ndarray, got {what}"
            )
    unknown = sorted(set(arrays) - set(array_fields))
    if unknown:
        raise ValueError(f"fitted state holds unknown arrays {unknown}; expected {array_fields}")
    for name in meta_fields:
        if name not in meta:
            raise ValueError(f"fitted state lacks the metadata field {name!r}")
    return arrays, meta



def state_int(meta: dict[str, Any], name: str, min_value: int) -> int:
    """Metadata field ``name`` as an int ``>= min_value`` (``ValueError`` naming it)."""
    value = meta[name]
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < min_value:
        raise ValueError(
            f"fitted state field {name!r} must be an integer >= {min_value}, got {value!r}"
        )
    return int(value)
