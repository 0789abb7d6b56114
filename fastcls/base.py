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


class FittedStateError(ValueError):
    """A fitted state that :meth:`BaseEstimator.set_fitted_state` refuses.

    A ``ValueError``; :attr:`field` names the array, metadata field or parameter at
    fault (``None`` when the state as a whole is wrong). :func:`fastcls.load` turns it
    into a :class:`fastcls.ModelFileError` that also names the file.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


#: widest bytes label a fitted state may declare (``labels_dtype``)
MAX_LABEL_BYTES = 2**16

#: where each labels kind is restored from (see :func:`classes_to_state`)
LABELS_KINDS = ("array", "bytes", "object-str", "object-int")


def classes_to_state(classes: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Encode sorted labels ``classes_`` as a pickle-free array plus metadata.

    Integer, bool, float and unicode labels are stored as they are; bytes labels as
    unicode code points of their latin-1 decoding (every byte value round-trips) and
    restored as bytes of the same width; object arrays of Python ints or strs as int64 /
    unicode, and restored as object arrays of Python ints / strs (the same labels, the
    same type).
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
            if all(-(2**63) <= int(c) < 2**63 for c in items):
                return (
                    np.array(items, dtype=np.int64),
                    {"labels_kind": "object-int", "labels_dtype": "|O"},
                )
    raise TypeError(
        f"classes_ of dtype {classes.dtype} cannot be stored: labels must be integers "
        "(within int64 when held as Python objects), floats, bools, str or bytes"
    )


def _labels_dtype(metadata: dict[str, Any]) -> np.dtype | None:
    raw = metadata.get("labels_dtype")
    if raw is None:
        return None
    try:
        # only plain dtype strings: never a structured, sub-array or object dtype
        dt = np.dtype(raw) if isinstance(raw, str) and len(raw) <= 16 else None
    except (TypeError, ValueError, SyntaxError):
        dt = None
    if dt is None or dt.fields is not None or dt.subdtype is not None:
        raise FittedStateError(
            f"fitted state field 'labels_dtype' is malformed: {raw!r}", "labels_dtype"
        )
    return dt


def classes_from_state(stored: np.ndarray, metadata: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`classes_to_state`; raises :class:`FittedStateError` on a mismatch.

    The restored labels are checked: 1-D, non-empty, finite (floats), distinct and
    sorted (what ``fit`` produces), of the kind and dtype the metadata names.
    """
    kind = metadata.get("labels_kind", "array")
    if not isinstance(stored, np.ndarray):
        raise FittedStateError("fitted state field 'classes' must be an ndarray", "classes")
    if stored.ndim != 1 or stored.shape[0] < 1:
        raise FittedStateError(
            f"fitted state field 'classes' must be a non-empty 1-D array, got shape {stored.shape}",
            "classes",
        )
    expected = _labels_dtype(metadata)
    out: np.ndarray
    if kind == "bytes":
        if stored.dtype.kind != "U":
            raise FittedStateError(
                "fitted state field 'classes': bytes labels must be stored as unicode", "classes"
            )
        width = expected if expected is not None else np.dtype("S")
        if width.itemsize > MAX_LABEL_BYTES:  # the width alone would size the allocation
            raise FittedStateError(
                f"fitted state field 'labels_dtype' ({width}) is wider than "
                f"{MAX_LABEL_BYTES} bytes per label",
                "labels_dtype",
            )
        texts = stored.tolist()
        # numpy drops trailing NULs of bytes: such a label would merge with another
        if width.kind != "S" or any(
            len(t) > width.itemsize or t.endswith("\0") or any(ord(ch) > 255 for ch in t)
            for t in texts
        ):
            raise FittedStateError(
                f"fitted state field 'labels_dtype' ({width}) cannot hold the stored bytes labels",
                "labels_dtype",
            )
        out = np.array([t.encode("latin-1") for t in texts], dtype=width)
    elif kind in ("object-str", "object-int"):
        want = "U" if kind == "object-str" else "iu"
        if stored.dtype.kind not in want:
            raise FittedStateError(
                f"fitted state field 'classes': labels of kind {kind!r} cannot be stored as "
                f"{stored.dtype}",
                "classes",
            )
        out = np.empty(stored.shape[0], dtype=object)
        out[:] = stored.tolist()  # Python str / int objects, as fit saw them
    elif kind == "array":
        if stored.dtype.kind not in "biufU":
            raise FittedStateError(
                f"fitted state field 'classes': labels of dtype {stored.dtype} are not allowed",
                "classes",
            )
        if expected is not None and expected != stored.dtype:
            raise FittedStateError(
                f"fitted state field 'classes' has dtype {stored.dtype}, metadata says {expected}",
                "classes",
            )
        out = stored
    else:
        raise FittedStateError(
            f"fitted state field 'classes': unknown labels_kind {kind!r}", "labels_kind"
        )
    if stored.dtype.kind == "f" and not np.isfinite(stored).all():
        raise FittedStateError("fitted state field 'classes' holds NaN or infinity", "classes")
    try:
        # fit's classes_ come from np.unique: sorted and distinct
        ok = stored.shape[0] == 1 or bool(np.all(stored[1:] > stored[:-1]))
    except TypeError:
        ok = False
    if not ok:
        raise FittedStateError(
            "fitted state field 'classes' must hold sorted, distinct labels", "classes"
        )
    return out


def check_state_classes(classes: np.ndarray, name: str, min_classes: int) -> None:
    """Labels from :func:`classes_from_state`, at least ``min_classes`` of them."""
    if classes.ndim != 1 or classes.shape[0] < min_classes:
        raise FittedStateError(
            f"fitted state field {name!r} must be 1-D with at least {min_classes} labels, "
            f"got shape {classes.shape}",
            name,
        )


def check_state_fields(
    state: Any, array_fields: tuple[str, ...], meta_fields: tuple[str, ...]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The ``(arrays, metadata)`` of ``state``, every required field present, no unknown
    array, and the arrays plain (numeric, bool or unicode: never object).

    Raises ``TypeError`` when ``state`` is not a pair of dicts and
    :class:`FittedStateError` naming the field otherwise. Every estimator's
    ``set_fitted_state`` starts here.
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
            raise FittedStateError(f"fitted state lacks the array {name!r}", name)
        arr = arrays[name]
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biufU":
            what = arr.dtype if isinstance(arr, np.ndarray) else type(arr).__name__
            raise FittedStateError(
                f"fitted state field {name!r} must be a numeric or unicode ndarray, got {what}",
                name,
            )
    unknown = sorted(set(arrays) - set(array_fields))
    if unknown:
        raise FittedStateError(
            f"fitted state holds unknown arrays {unknown}; expected {array_fields}", unknown[0]
        )
    for name in meta_fields:
        if name not in meta:
            raise FittedStateError(f"fitted state lacks the metadata field {name!r}", name)
    return arrays, meta


def state_int(meta: dict[str, Any], name: str, min_value: int, max_value: int | None = None) -> int:
    """Metadata field ``name`` as an int in ``[min_value, max_value]``
    (:class:`FittedStateError` naming it)."""
    value = meta[name]
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or int(value) < min_value
        or (max_value is not None and int(value) > max_value)
    ):
        bound = f">= {min_value}" if max_value is None else f"in {min_value}..{max_value}"
        raise FittedStateError(
            f"fitted state field {name!r} must be an integer {bound}, got {value!r}", name
        )
    return int(value)


def state_array(
    arrays: dict[str, np.ndarray],
    name: str,
    shape: tuple[int, ...],
    dtypes: tuple[Any, ...],
    *,
    finite: bool = True,
) -> np.ndarray:
    """Array field ``name``, checked: one of ``dtypes``, exactly ``shape``, finite
    (floats, when ``finite``). Raises :class:`FittedStateError` naming it."""
    arr = arrays[name]
    if not isinstance(arr, np.ndarray) or arr.dtype not in [np.dtype(d) for d in dtypes]:
        what = arr.dtype if isinstance(arr, np.ndarray) else type(arr).__name__
        allowed = " or ".join(str(np.dtype(d)) for d in dtypes)
        raise FittedStateError(f"fitted state field {name!r} must be {allowed}, got {what}", name)
    if arr.shape != shape:
        raise FittedStateError(
            f"fitted state field {name!r} must have shape {shape}, got {arr.shape}", name
        )
    if finite and arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise FittedStateError(f"fitted state field {name!r} holds NaN or infinity", name)
    return arr


def state_param(name: str, check: Any, *args: Any, **kwargs: Any) -> Any:
    """``check(*args, **kwargs)``, its ``ValueError`` / ``TypeError`` re-raised as a
    :class:`FittedStateError` naming parameter ``name``: parameters restored with a state
    are checked as ``fit`` checks them."""
    try:
        return check(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, FittedStateError):
            raise
        raise FittedStateError(f"parameter {name}: {exc}", f"params.{name}") from exc


def profile_to_state(profile: Any, owner: Any) -> dict[str, Any]:
    """Metadata fields for what the query checks remember of the training data.

    ``profile`` is the estimator's ``FitProfile`` (or ``None``); it is stored only
    while it still belongs to ``owner`` (the fitted index or weights), so a restored
    model keeps warning about queries on another scale and refusing images in another
    layout, as the model that was saved did.
    """
    current = profile.for_owner(owner) if profile is not None else None
    value_range = getattr(current, "value_range", None)
    shape = getattr(current, "image_shape", None)
    return {
        "fit_value_range": None if value_range is None else [float(v) for v in value_range],
        "fit_image_shape": None if shape is None else [int(v) for v in shape],
    }


def profile_from_state(meta: dict[str, Any], owner: Any, n_features: int) -> Any:
    """The ``FitProfile`` stored by :func:`profile_to_state`, checked (``None`` when the
    state has none: files written before it was stored)."""
    from fastcls._validation import FitProfile

    value_range = meta.get("fit_value_range")
    shape = meta.get("fit_image_shape")
    if value_range is not None:
        if (
            not isinstance(value_range, list)
            or len(value_range) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value_range)
            or not all(np.isfinite(value_range))
            or value_range[0] > value_range[1]
        ):
            raise FittedStateError(
                f"fitted state field 'fit_value_range' must be [min, max] of finite numbers, "
                f"got {value_range!r}",
                "fit_value_range",
            )
        value_range = (float(value_range[0]), float(value_range[1]))
    if shape is not None:
        if (
            not isinstance(shape, list)
            or len(shape) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape)
            or shape[0] * shape[1] * shape[2] != n_features
        ):
            raise FittedStateError(
                f"fitted state field 'fit_image_shape' must be [H, W, C] with H*W*C = "
                f"{n_features}, got {shape!r}",
                "fit_image_shape",
            )
        shape = (shape[0], shape[1], shape[2])
    if value_range is None and shape is None:
        return None
    return FitProfile(owner, value_range, shape)
