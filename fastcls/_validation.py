"""Input validation: the only place where fastcls judges user inputs.

Every public function validates once, here, and hands clean C-contiguous arrays to
the kernels. Messages name the argument and say what was expected.
"""

from __future__ import annotations

import math
import numbers
import sys
from typing import Any

import numpy as np

#: dtypes the kernels take as they are; everything else is converted explicitly
#: (and only when the conversion is exact) or refused.
KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.uint8))

#: canonical metric names and their accepted aliases.
METRIC_ALIASES = {
    "l1": "l1",
    "manhattan": "l1",
    "cityblock": "l1",
    "l2": "l2",
    "euclidean": "l2",
    "sqeuclidean": "sqeuclidean",
}
METRICS = ("l1", "l2", "sqeuclidean")


class NotFittedError(ValueError, AttributeError):
    """Raised when a model is used before ``fit`` (as in scikit-learn)."""


RANGE_RATIO = 32.0
"""How far (as a factor of the training span) query values must be off for a
:class:`DataRangeWarning`."""


class DataRangeWarning(UserWarning):
    """Queries lie on another scale than the data the model was fitted on.

    Warned by ``predict`` / ``predict_proba`` / ``kneighbors`` / ``decision_function``
    when the values of the query batch span at most 1/32 of the training data's span
    (uint8 pixels 0..255 at fit, floats in [0, 1] at predict), or lie outside the
    training interval by more than 32 times its span (the reverse mistake). The factor
    is :data:`RANGE_RATIO`: wide enough that standardised features with heavy tails
    (a near-constant feature divided by its tiny training spread) do not trigger it.
    Such queries are all nearest to the same few training rows, so every prediction is
    one class.
    Silence it with ``warnings.simplefilter("ignore", fastcls.DataRangeWarning)``.
    """


_SKLEARN_COMPATIBLE_ERROR: type | None = None


def _not_fitted_error_class() -> type:
    """:class:`NotFittedError`, also a scikit-learn ``NotFittedError`` once sklearn is loaded.

    scikit-learn is never imported here: only when the user already has it loaded do
    we raise an error that its tools (and ``except sklearn...NotFittedError``) accept.
    """
    global _SKLEARN_COMPATIBLE_ERROR
    sk = sys.modules.get("sklearn.exceptions")
    if sk is None:
        return NotFittedError
    if _SKLEARN_COMPATIBLE_ERROR is None:
        _SKLEARN_COMPATIBLE_ERROR = type(
            "NotFittedError", (NotFittedError, sk.NotFittedError), {"__module__": __name__}
        )
    return _SKLEARN_COMPATIBLE_ERROR


def _describe(x: Any) -> str:
    return type(x).__name__


def as_numeric_array(X: Any, name: str) -> np.ndarray:
    """Turn ``X`` into an ndarray with a numeric dtype, refusing anything else.

    Memmaps and ndarrays are returned without a copy.
    """
    if isinstance(X, np.ndarray):
        arr = X
    else:
        if X is None:
            raise TypeError(f"{name} must be an array, got None")
        if hasattr(X, "tocsr") or hasattr(X, "todense"):
            raise TypeError(
                f"{name} is a sparse matrix: sparse input is not supported; "
                "pass a dense array (X.toarray())"
            )
        try:
            arr = np.asarray(X)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{name} could not be converted to an array: {exc}") from exc
    if not arr.dtype.isnative and arr.dtype.kind in "biuf":
        # big-endian data (a file written elsewhere, '>f4'): the same values in the
        # native byte order, which is what every kernel reads (a copy)
        arr = arr.astype(arr.dtype.newbyteorder("="))
    kind = arr.dtype.kind
    if kind == "c":
        raise ValueError(f"Complex data not supported: {name} has dtype {arr.dtype}")
    if kind == "O":
        try:
            converted = arr.astype(np.float64)
        except (TypeError, ValueError, OverflowError) as exc:
            raise TypeError(f"{name} must hold numbers only: {exc}") from exc
        # the rule of every integer path: float64 holds integers exactly only below 2**53
        # (Python ints in an object array would otherwise be rounded silently)
        big = [
            int(v)
            for v in arr.flat
            if isinstance(v, numbers.Integral)
            and not isinstance(v, (bool, np.bool_))
            and abs(int(v)) >= 2**53
        ]
        if big:
            check_integers_exact_in_float64(np.array([max(big, key=abs)], dtype=object), name)
        arr, kind = converted, "f"
    if kind not in "biuf":
        raise TypeError(
            f"{name} must have a numeric (integer or real floating) dtype, got dtype {arr.dtype}"
        )
    return arr


def _exact_float_dtype(arr: np.ndarray, name: str) -> np.ndarray:
    """Convert a non-kernel numeric dtype to a kernel dtype without changing values."""
    if arr.dtype in KERNEL_DTYPES:
        return arr
    kind = arr.dtype.kind
    if kind == "b":
        return arr.astype(np.uint8)
    if kind == "f":
        if arr.dtype.itemsize < 4:  # float16 -> float32 is exact
            return arr.astype(np.float32)
        # longdouble etc.: float64 may round, refuse rather than change results
        raise TypeError(f"{name} has dtype {arr.dtype}; use float32 or float64")
    # integers: float64 represents every integer of magnitude < 2**53 exactly
    if arr.size and kind == "u" and int(arr.max()) <= 255:
        return arr.astype(np.uint8)
    check_integers_exact_in_float64(arr, name)
    return arr.astype(np.float64)


def declared_kernel_dtype(dtype: Any, name: str = "X") -> np.dtype:
    """Kernel dtype that a declared ``dtype`` maps to, without looking at values.

    uint8 / float32 / float64 stay; bool -> uint8; float16 -> float32; other integers
    -> float64 (exact below 2**53, checked as values are read). Used for lazy row
    sources whose values are not read at fit; arrays in memory go through
    :func:`check_array`, which also narrows unsigned integers that fit in 0..255 to
    uint8 (same values, so the same results).
    """
    dt = np.dtype(dtype)
    if not dt.isnative and dt.kind in "biuf":  # big-endian: converted tile by tile
        dt = dt.newbyteorder("=")
    if dt in KERNEL_DTYPES:
        return dt
    if dt.kind == "b":
        return np.dtype(np.uint8)
    if dt.kind == "f" and dt.itemsize < 4:
        return np.dtype(np.float32)
    if dt.kind in "iu" and dt.itemsize <= 4:
        return np.dtype(np.float64)
    if dt.kind in "iu":  # int64: exact only below 2**53, checked tile by tile
        return np.dtype(np.float64)
    raise TypeError(
        f"{name} must have a numeric (integer or real floating) dtype of at most 64 bits, "
        f"got dtype {dt}"
    )


def check_integers_exact_in_float64(arr: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` if integer ``arr`` holds a magnitude float64 cannot represent."""
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if max(abs(lo), abs(hi)) >= 2**53:
            raise ValueError(
                f"{name} holds integers too large to convert to float64 exactly "
                f"(max magnitude {max(abs(lo), abs(hi))})"
            )


#: largest accepted magnitude of a float input: beyond it, squared distances over a few
#: thousand features (or linear scores) overflow float64 and rankings become meaningless.
MAX_ABS_VALUE = 1e150


#: arrays of at least this many values are scanned by the compiled kernel
#: (:mod:`fastcls.kernels.finite`: one pass on every thread instead of NumPy's two on one)
FINITE_KERNEL_MIN_VALUES = 1 << 22


def assert_all_finite(X: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` if ``X`` holds NaN, infinity, or values beyond ``MAX_ABS_VALUE``.

    Checked in row chunks, so a memmap is never loaded whole.
    """
    if X.dtype.kind != "f":
        return
    n = X.shape[0] if X.ndim else 1
    flat = X.reshape(n, -1) if X.ndim else X.reshape(1, 1)
    from fastcls._config import settings

    compiled = flat.size >= FINITE_KERNEL_MIN_VALUES and flat.dtype in (np.float32, np.float64)
    if compiled:  # imported here: `import fastcls` loads no numba
        from fastcls.kernels.finite import all_within
    rows = max(1, int(settings.finite_check_rows))
    for start in range(0, max(n, 1), rows):
        block = np.asarray(flat[start : start + rows])
        if block.size == 0:
            continue
        if compiled and block.flags.c_contiguous and all_within(block, MAX_ABS_VALUE):
            continue
        # max and min need no temporary (np.abs would copy the block); NaN fails the test
        peak = max(float(block.max()), -float(block.min()))
        if peak <= MAX_ABS_VALUE:
            continue
        if not np.isfinite(block).all():
            bad = np.argwhere(~np.isfinite(block))[0]
            what = "NaN" if np.isnan(block[tuple(bad)]) else "infinity"
            raise ValueError(
                f"{name} contains {what} (first at row {start + int(bad[0])}); "
                "remove or impute non-finite values first"
            )
        bad = np.argwhere(np.abs(block) > MAX_ABS_VALUE)[0]
        raise ValueError(
            f"{name} contains a value of magnitude {peak:.3g} (first at row "
            f"{start + int(bad[0])}); fastcls accepts |values| <= {MAX_ABS_VALUE:g}, since larger "
            "ones overflow float64 distances and scores: rescale the data"
        )


def check_array(
    X: Any,
    name: str = "X",
    *,
    allow_images: bool = True,
    min_samples: int = 1,
    min_features: int = 1,
    dtypes: tuple[np.dtype, ...] = KERNEL_DTYPES,
    copy: bool = False,
    check_finite: bool = True,
) -> np.ndarray:
    """Validate a data matrix and return it as a C-contiguous 2-D kernel-ready array.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features) or images (n_samples, H, W[, C])
        Images are flattened row-major to ``H*W*C`` features.
    name : str
        Argument name used in error messages.
    allow_images : bool
        Accept 3-D / 4-D image batches and flatten them.
    min_samples, min_features : int
        Smallest accepted sizes.
    dtypes : tuple of numpy dtypes
        Dtypes kept as they are. Other numeric dtypes are converted only where the
        conversion is exact (bool/uint8-range ints -> uint8, other ints -> float64,
        float16 -> float32).
    copy : bool
        Force a copy.
    check_finite : bool
        Scan for NaN / infinity / overflow-prone magnitudes. A caller may pass False only
        when a non-finite value in ``X`` provably makes its result non-finite and it then
        calls :func:`assert_all_finite` itself (the scan costs a pass over ``X``).

    Returns
    -------
    numpy.ndarray
        2-D, C-contiguous, finite, of one of ``dtypes``. A C-contiguous memmap is
        returned without a copy.
    """
    arr = as_numeric_array(X, name)
    if arr.ndim == 2:
        pass
    elif allow_images and arr.ndim in (3, 4):
        if arr.shape[0] < min_samples:  # named before flattening (reshape(0, -1) fails)
            raise ValueError(
                f"{name} is an image batch of shape {arr.shape} holding {arr.shape[0]} "
                f"image(s) while a minimum of {min_samples} is required"
            )
        arr = arr.reshape(arr.shape[0], math.prod(arr.shape[1:]))
    else:
        expected = "2-D (n_samples, n_features)"
        if allow_images:
            expected += " or an image batch (n_samples, H, W[, C])"
        hint = ""
        if arr.ndim == 1:
            hint = (
                "; Reshape your data with x.reshape(1, -1) if it is a single sample "
                "or x.reshape(-1, 1) if it has a single feature"
            )
        raise ValueError(f"{name} must be {expected}, got an array of shape {arr.shape}{hint}")
    if arr.shape[0] < min_samples:
        raise ValueError(
            f"{name} has {arr.shape[0]} sample(s) (shape={arr.shape}) while a minimum of "
            f"{min_samples} is required."
        )
    if arr.shape[1] < min_features:
        raise ValueError(
            f"{name} has {arr.shape[1]} feature(s) (shape={arr.shape}) while a minimum of "
            f"{min_features} is required."
        )
    if arr.dtype not in dtypes:
        arr = _exact_float_dtype(arr, name)
        if arr.dtype not in dtypes:
            arr = arr.astype(dtypes[-1] if np.dtype(np.float64) not in dtypes else np.float64)
    if check_finite:
        assert_all_finite(arr, name)
    if copy:
        arr = np.array(arr, order="C", copy=True)
    elif not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    return arr


def common_dtype(A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bring two validated arrays to one kernel dtype without changing values.

    uint8 with uint8 stays uint8; any float mix goes to the wider float (uint8 mixed
    with float32 goes to float32: every uint8 value is exact in float32).
    """
    if A.dtype == B.dtype:
        return A, B
    target = shared_kernel_dtype(A.dtype, B.dtype)
    return np.ascontiguousarray(A, dtype=target), np.ascontiguousarray(B, dtype=target)


def shared_kernel_dtype(a: np.dtype, b: np.dtype) -> np.dtype:
    """The one kernel dtype two kernel dtypes are brought to (see :func:`common_dtype`)."""
    if a == b:
        return np.dtype(a)
    target = np.result_type(a, b)
    return target if target in (np.float32, np.float64) else np.dtype(np.float64)


def check_same_n_features(A: np.ndarray, B: np.ndarray, names: tuple[str, str]) -> None:
    if A.shape[1] != B.shape[1]:
        raise ValueError(
            f"{names[0]} has {A.shape[1]} features but {names[1]} has {B.shape[1]}; they must match"
        )


def check_metric(metric: Any) -> str:
    """Return the canonical metric name (``"l1"``, ``"l2"`` or ``"sqeuclidean"``)."""
    if not isinstance(metric, str):
        raise TypeError(f"metric must be a string, one of {METRICS}, got {_describe(metric)}")
    key = metric.lower()
    if key not in METRIC_ALIASES:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return METRIC_ALIASES[key]


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """Check that ``value`` is one of the string ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_int(
    value: Any, name: str, *, min_value: int | None = None, max_value: int | None = None
) -> int:
    """Check an integer argument (bools refused) within optional bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({_describe(value)})")
    v = int(value)
    if min_value is not None and v < min_value:
        raise ValueError(f"{name} must be >= {min_value}, got {v}")
    if max_value is not None and v > max_value:
        raise ValueError(f"{name} must be <= {max_value}, got {v}")
    return v


def check_float(
    value: Any,
    name: str,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    strict_min: bool = False,
) -> float:
    """Check a finite real scalar argument within optional bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({_describe(value)})")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if min_value is not None and (v <= min_value if strict_min else v < min_value):
        op = ">" if strict_min else ">="
        raise ValueError(f"{name} must be {op} {min_value}, got {v}")
    if max_value is not None and v > max_value:
        raise ValueError(f"{name} must be <= {max_value}, got {v}")
    return v


def check_k(k: Any, n_train: int, name: str = "k") -> int:
    """Check a neighbour count: an integer with ``1 <= k <= n_train``."""
    k = check_int(k, name, min_value=1)
    if k > n_train:
        raise ValueError(
            f"{name}={k} is larger than the number of training samples ({n_train}); "
            f"use {name} <= {n_train}"
        )
    return k


def check_labels(y: Any, n_samples: int, name: str = "y") -> tuple[np.ndarray, np.ndarray]:
    """Validate class labels and encode them.

    Returns
    -------
    classes : ndarray of shape (n_classes,)
        Sorted unique labels (ints or strings).
    y_encoded : ndarray of shape (n_samples,), int64
        Labels mapped to ``0..n_classes-1``.
    """
    if y is None:
        raise ValueError(
            f"{name} is None: this estimator requires y to be passed, but the target y is None"
        )
    arr = np.asarray(y)
    if not arr.dtype.isnative and arr.dtype.kind in "biuf":  # big-endian labels
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.ndim == 2 and arr.shape[1] == 1:
        raise ValueError(
            f"{name} must be 1-D of shape ({n_samples},), got shape {arr.shape}; use y.ravel()"
        )
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D of shape ({n_samples},), got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(
            f"{name} has {arr.shape[0]} labels but X has {n_samples} samples; they must match"
        )
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinity")
        if not np.all(arr == np.round(arr)):
            raise ValueError(
                f"Unknown label type: {name} holds non-integer floats (a continuous target); "
                "classification needs discrete labels"
            )
    elif arr.dtype.kind not in "biuUSO":
        raise TypeError(f"{name} must hold integer or string labels, got dtype {arr.dtype}")
    if arr.dtype.kind == "O":
        kinds = {type(v) for v in arr.tolist()}
        if (
            not all(issubclass(t, (str, numbers.Integral)) for t in kinds)
            or len({issubclass(t, str) for t in kinds}) > 1
        ):
            raise TypeError(f"{name} must hold only integers or only strings")
    classes, y_encoded = np.unique(arr, return_inverse=True)
    return classes, y_encoded.astype(np.int64).reshape(-1)


def check_is_fitted(estimator: Any, attributes: tuple[str, ...]) -> None:
    """Raise :class:`NotFittedError` if ``estimator`` lacks the fitted ``attributes``."""
    if not all(hasattr(estimator, a) for a in attributes):
        raise _not_fitted_error_class()(
            f"This {type(estimator).__name__} instance is not fitted yet; "
            "call fit(X, y) before using it"
        )


def check_n_features(X: np.ndarray, estimator: Any, name: str = "X") -> None:
    """Raise if ``X`` does not have the number of features ``estimator`` saw at fit."""
    n_features_in = estimator.n_features_in_
    if X.shape[1] != n_features_in:
        raise ValueError(
            f"{name} has {X.shape[1]} features, but {type(estimator).__name__} is expecting "
            f"{n_features_in} features as input (the number it was fitted with)"
        )


# --------------------------------------------------------------------------- queries
#: :func:`value_range` reads at most about this many bytes of rows
VALUE_RANGE_BYTES = 32 << 20


def value_range(X: Any) -> tuple[float, float] | None:
    """``(min, max)`` of a validated 2-D array, for :class:`DataRangeWarning`.

    Exact for arrays up to :data:`VALUE_RANGE_BYTES`; beyond, taken over evenly
    spaced rows of about that size (a scale check needs no more, and a large memmap
    is then not read whole at ``fit``). ``None`` for an empty array or a lazy row
    source (values unknown until read).
    """
    if not isinstance(X, np.ndarray) or X.size == 0:
        return None
    from fastcls._config import settings

    step = max(1, -(-X.nbytes // VALUE_RANGE_BYTES))
    rows = max(1, int(settings.finite_check_rows)) * step
    lo, hi = math.inf, -math.inf
    for start in range(0, X.shape[0], rows):
        block = X[start : start + rows : step]
        lo = min(lo, float(block.min()))
        hi = max(hi, float(block.max()))
    return lo, hi


def image_shape(X: Any) -> tuple[int, int, int] | None:
    """``(H, W, C)`` of an image batch ``X`` (N, H, W[, C]); ``None`` for anything else.

    Grayscale ``(N, H, W)`` reads as ``C = 1``. Only the ``shape`` attribute is read.
    """
    shape = getattr(X, "shape", None)
    if not isinstance(shape, tuple) or len(shape) not in (3, 4):
        return None
    h, w, c = (int(v) for v in (*shape[1:], 1)[:3])
    return h, w, c


class FitProfile:
    """What query checks remember of the data a model was fitted on.

    Parameters
    ----------
    owner : object
        The fitted object the profile belongs to (an estimator's search index or
        weights): a state restored later replaces it, and the profile then no longer
        applies (:meth:`for_owner`).
    value_range : (float, float) or None
        Training data ``(min, max)``; ``None`` when unknown (lazy rows).
    image_shape : (H, W, C) or None
        Image shape of an image batch fitted on, else ``None``.
    """

    __slots__ = ("owner", "value_range", "image_shape")

    def __init__(
        self,
        owner: Any,
        value_range: tuple[float, float] | None,
        image_shape: tuple[int, int, int] | None,
    ) -> None:
        self.owner = owner
        self.value_range = value_range
        self.image_shape = image_shape

    def for_owner(self, owner: Any) -> FitProfile | None:
        """``self`` if it was recorded for ``owner``, else ``None``."""
        return self if self.owner is owner else None


def _user_stacklevel() -> int:
    """``stacklevel`` of the first frame outside fastcls (warnings point at user code)."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("fastcls"):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def check_query(
    X: Any, estimator: Any, name: str = "X", profile: FitProfile | None = None
) -> np.ndarray:
    """Validate the queries of a fitted estimator and return them as a 2-D batch.

    On top of :func:`check_array` and :func:`check_n_features`:

    * one sample given where a batch is expected (a single image ``(H, W, C)`` or a
      1-D row with ``n_features_in_`` values) is refused with a message that says
      to pass ``X[None]`` (one rule for every estimator: a batch in, a batch out);
    * images of another shape than the images fitted on (same number of values,
      e.g. channels first) are refused;
    * a :class:`DataRangeWarning` is issued when the queries' values lie on another
      scale than the training data (see its docstring for the rule).

    ``profile`` is what fit recorded (:class:`FitProfile`); without it only the
    feature count is checked.
    """
    arr = as_numeric_array(X, name)
    n_in = int(estimator.n_features_in_)
    fit_shape = profile.image_shape if profile is not None else None
    batch_width = math.prod(arr.shape[1:]) if arr.ndim >= 2 else None
    one_image = fit_shape is not None and image_shape(arr[None]) == fit_shape
    # a 2-D array is a batch with the wrong width unless it is one fitted-shape image
    looks_single = arr.ndim == 1 or arr.ndim >= 3 or one_image
    if looks_single and arr.size == n_in and batch_width != n_in:
        what = "one image of the shape this model was fitted on" if one_image else "one sample"
        hint = " (Reshape your data with x.reshape(1, -1))" if arr.ndim == 1 else ""
        raise ValueError(
            f"{name} has shape {arr.shape}: {what} ({n_in} values), but "
            f"{type(estimator).__name__} takes a batch; pass {name}[None] (shape "
            f"{(1, *arr.shape)}) for one {'image' if one_image else 'sample'}{hint}"
        )
    Xa = check_array(arr, name)
    check_n_features(Xa, estimator, name)
    got_shape = image_shape(arr)
    if fit_shape is not None and got_shape is not None and got_shape != fit_shape:
        raise ValueError(
            f"{name} holds images of shape {got_shape} (H, W, C) but "
            f"{type(estimator).__name__} was fitted on images of shape {fit_shape}: the "
            "same number of values in another layout (channels first?) would be compared "
            "pixel for pixel with the wrong pixels; transpose the images to the fitted layout"
        )
    fit_range = profile.value_range if profile is not None else None
    if fit_range is not None:
        warning = query_range_warning(value_range(Xa), fit_range, name)
        if warning:
            import warnings

            warnings.warn(warning, DataRangeWarning, stacklevel=_user_stacklevel())
    return Xa


def query_range_warning(
    query_range: tuple[float, float] | None, fit_range: tuple[float, float], name: str = "X"
) -> str | None:
    """The :class:`DataRangeWarning` message for queries on another scale, or ``None``.

    With training interval ``[a, b]`` (span ``s = b - a > 0``), query interval
    ``[lo, hi]`` and ``r =`` :data:`RANGE_RATIO`: warn when ``0 < hi - lo <= s / r``
    (queries squeezed into a small part of the training scale) or when the queries
    reach beyond the training interval by more than ``r * s`` (``hi > b + r * s`` or
    ``lo < a - r * s``). A constant query
    batch (``hi == lo``, e.g. one blank image) inside the range is not warned about.
    """
    if query_range is None:
        return None
    a, b = fit_range
    lo, hi = query_range
    span = b - a
    if not span > 0:
        return None
    narrow = 0 < hi - lo <= span / RANGE_RATIO
    beyond = hi - b > RANGE_RATIO * span or a - lo > RANGE_RATIO * span
    if not (narrow or beyond):
        return None
    return (
        f"{name} holds values in [{lo:.4g}, {hi:.4g}] but the model was fitted on values in "
        f"[{a:.4g}, {b:.4g}]: the queries are on another scale (e.g. pixels in [0, 1] "
        "against 0..255), which typically makes every prediction the same class; scale "
        "the queries as the training data was scaled"
    )


def check_random_state(seed: Any) -> np.random.Generator:
    """Turn ``seed`` (None, int, or Generator) into a ``numpy.random.Generator``."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)):
        return np.random.default_rng(None if seed is None else int(seed))
    raise TypeError(f"seed must be None, an int or a numpy Generator, got {_describe(seed)}")


# --- added for linear/features
def check_bool(value: Any, name: str) -> bool:
    """Check a boolean flag (``bool`` or ``numpy.bool_``; ints and strings refused)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


# --------------------------------------------------------------------------- model selection


def check_split_size(value: Any, name: str, n: int) -> int:
    """A split size as a count (int >= 1) or a fraction (float in (0, 1)) of ``n``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be an int (a count) or a float in (0, 1) (a fraction), "
            f"got {value!r} ({type(value).__name__})"
        )
    if isinstance(value, numbers.Integral):
        count = check_int(value, name, min_value=1, max_value=n)
    else:
        frac = check_float(value, name, min_value=0.0, max_value=1.0, strict_min=True)
        if frac >= 1.0:
            raise ValueError(f"{name} as a fraction must be < 1, got {frac}")
        count = int(math.ceil(frac * n))
    return count


def check_n_folds(n_folds: Any, n: int) -> int:
    """``n_folds`` as an int in ``2..n`` (one fold validates, the others train)."""
    n_folds = check_int(n_folds, "n_folds")
    if n_folds < 2:
        raise ValueError(
            f"n_folds must be at least 2 (one fold to validate, one to train), got {n_folds}"
        )
    if n_folds > n:
        raise ValueError(
            f"n_folds={n_folds} is larger than the number of samples ({n}); use n_folds <= {n}"
        )
    return n_folds


def check_ks(ks: Any, max_k: int) -> np.ndarray:
    """``ks`` (an int or a sequence of them) as a sorted unique int64 array in 1..max_k."""
    if isinstance(ks, numbers.Integral) and not isinstance(ks, bool):
        ks = [ks]
    try:
        values = list(ks)
    except TypeError:
        raise TypeError(f"ks must be a sequence of positive integers, got {ks!r}") from None
    if not values:
        raise ValueError("ks must hold at least one k, got an empty sequence")
    checked = sorted({check_int(k, "ks", min_value=1) for k in values})
    if checked[-1] > max_k:
        raise ValueError(
            f"ks holds k={checked[-1]}, larger than the smallest training part of a fold "
            f"({max_k} samples); use k <= {max_k} or fewer folds"
        )
    return np.asarray(checked, dtype=np.int64)


def check_metrics(metrics: Any) -> tuple[str, ...]:
    """``metrics`` (a name or a sequence of names) as unique canonical metric names."""
    if isinstance(metrics, str):
        metrics = (metrics,)
    try:
        values = list(metrics)
    except TypeError:
        raise TypeError(
            f"metrics must be a metric name or a sequence of them, got {metrics!r}"
        ) from None
    if not values:
        raise ValueError("metrics must hold at least one metric, got an empty sequence")
    out: list[str] = []
    for m in values:
        c = check_metric(m)
        if c not in out:
            out.append(c)
    return tuple(out)


# --------------------------------------------------------------------------- images
def check_images(images: Any, name: str = "images") -> np.ndarray:
    """Validate an image batch and return it as a C-contiguous (N, H, W, C) array.

    Parameters
    ----------
    images : array-like of shape (N, H, W, 3), (N, H, W, 1) or (N, H, W)
        uint8 pixels, float pixels in ``[0, 1]``, or integers in 0..255.
    name : str
        Argument name used in error messages.

    Returns
    -------
    numpy.ndarray of shape (N, H, W, C), C in {1, 3}
        dtype uint8, float32 or float64, finite, C-contiguous (no copy when the input
        already is).

    Raises
    ------
    TypeError
        Non-numeric or boolean dtype, or a float dtype wider than float64.
    ValueError
        Wrong number of dimensions or channels, empty batch, NaN / infinity, float
        values outside ``[0, 1]``, integers outside 0..255.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcls.features import check_images
    >>> check_images(np.zeros((2, 8, 8), dtype=np.uint8)).shape
    (2, 8, 8, 1)
    """
    arr = as_numeric_array(images, name)
    if arr.dtype.kind == "b":
        raise TypeError(f"{name} must hold uint8 or float pixels, got dtype bool")
    if arr.ndim == 3:
        if arr.shape[-1] == 3:
            raise ValueError(
                f"{name} has shape {arr.shape}, which is ambiguous: pass one RGB image as "
                f"{name}[None] (shape (1, H, W, 3)), or grayscale images of width 3 as "
                f"{name}[..., None] (shape (N, H, 3, 1))"
            )
        arr = arr[..., None]
    elif arr.ndim == 4:
        if arr.shape[-1] not in (1, 3):
            hint = "; drop the alpha channel with images[..., :3]" if arr.shape[-1] == 4 else ""
            raise ValueError(
                f"{name} must have 3 (RGB) or 1 (grayscale) channels in its last axis, "
                f"got shape {arr.shape}{hint}"
            )
    else:
        hint = "; pass a single image as images[None]" if arr.ndim == 2 else ""
        raise ValueError(
            f"{name} must be a batch of shape (N, H, W, 3), (N, H, W, 1) or (N, H, W), "
            f"got an array of shape {arr.shape}{hint}"
        )
    if min(arr.shape[:3]) < 1:
        raise ValueError(
            f"{name} must hold at least one image of at least 1x1 pixels, got shape {arr.shape}"
        )
    kind = arr.dtype.kind
    if kind == "f":
        if arr.dtype not in (np.float32, np.float64):
            if arr.dtype.itemsize < 4:
                arr = arr.astype(np.float32)
            else:
                raise TypeError(f"{name} has dtype {arr.dtype}; use uint8, float32 or float64")
        lo, hi = float(np.min(arr)), float(np.max(arr))
        if not (np.isfinite(lo) and np.isfinite(hi)):
            assert_all_finite(arr, name)
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"{name} holds float pixels outside [0, 1] (min {lo:g}, max {hi:g}); scale "
                "float images to [0, 1] (e.g. divide 0..255 data by 255) or pass uint8"
            )
    elif arr.dtype != np.uint8:  # other integers: exact when every value is in 0..255
        lo, hi = int(np.min(arr)), int(np.max(arr))
        if lo < 0 or hi > 255:
            raise ValueError(
                f"{name} holds integer pixels outside 0..255 (min {lo}, max {hi}); "
                "pass uint8 pixels or floats in [0, 1]"
            )
        arr = arr.astype(np.uint8)
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    return arr
