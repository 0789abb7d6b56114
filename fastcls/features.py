"""Hand-made image features: HOG and HSV hue histogram, and a feature pipeline.

The lectures show that linear classifiers on raw pixels are limited and that
hand-made features help. This module computes them for a whole batch at once with
Numba kernels (parallel over images, see :mod:`fastcls.kernels.features`), equal to
the per-image NumPy references of :mod:`fastcls.reference.features`.

* :func:`hog` : histogram of oriented gradients, ``(N, (H//cell) * (W//cell) * bins)``
* :func:`color_histogram_hsv` : hue histogram, ``(N, nbin)``, rows sum to 1
* :func:`extract_features` : concatenate several feature functions, ``(N, F)`` float32,
  optionally standardised by a :class:`FeatureScaler`
* :func:`check_images` : the validation every function here applies to ``images``

Images
------
``images`` is a batch ``(N, H, W, 3)`` (RGB) or ``(N, H, W)`` / ``(N, H, W, 1)``
(grayscale). uint8 pixels are divided by 255; float pixels (float32 or float64) must
already lie in ``[0, 1]`` (a float batch in 0..255 is refused rather than silently
producing garbage). Other integer dtypes are accepted when every value is in 0..255
(they are then treated as uint8). NaN, infinity, empty batches, 4 or 2 channels and a
3-D array whose last axis is 3 (a single RGB image, or grayscale images of width 3:
ambiguous) raise errors naming ``images``.

Definitions (docs/features.md has the full text)
-----------------------------------------------
HOG: luma ``0.299 R + 0.587 G + 0.114 B``; central differences
``gx = I[r, c+1] - I[r, c-1]``, ``gy = I[r+1, c] - I[r-1, c]`` (rows grow downwards),
0 on the border columns (``gx``) / rows (``gy``); unsigned orientation
``theta = degrees(arctan2(gy, gx))`` folded into ``[0, 180)`` (180 -> 0); ``bins``
equal bins ``[b*180/bins, (b+1)*180/bins)``, decided exactly by comparing the gradient
with the edge directions (an edge belongs to the upper bin); each ``cell x cell`` cell
(row-major from the top-left, remainder rows / columns ignored) holds the *mean* over
its pixels of the gradient magnitude in each bin; no block normalisation.

Colour histogram: hue as ``matplotlib.colors.rgb_to_hsv`` (float64, achromatic pixels
have hue 0), ``nbin`` equal bins over ``[0, 1)`` (``floor(hue * nbin)``, a hue of 1.0
goes to the last bin), divided by the number of pixels. Grayscale images have hue 0
everywhere: their histogram is ``[1, 0, ..., 0]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fastcls import _validation as V
from fastcls._validation import check_images
from fastcls.base import BaseEstimator, FittedState, check_state_fields, state_int

__all__ = [
    "FeatureScaler",
    "check_images",
    "color_histogram_hsv",
    "extract_features",
    "hog",
]

#: a feature function: images (N, H, W[, C]) -> features (N, F)
FeatureFunction = Callable[[np.ndarray], np.ndarray]


# --------------------------------------------------------------------------- validation
# --------------------------------------------------------------------------- features
def hog(images: Any, cell: int = 8, bins: int = 9) -> np.ndarray:
    """Histogram of oriented gradients of every image (no block normalisation).

    Grayscale by luma ``0.299 R + 0.587 G + 0.114 B``; gradients by central differences
    ``gx[r, c] = I[r, c+1] - I[r, c-1]``, ``gy[r, c] = I[r+1, c] - I[r-1, c]`` (0 on the
    first / last column for ``gx`` and the first / last row for ``gy``); unsigned
    orientation ``degrees(arctan2(gy, gx))`` folded into ``[0, 180)`` (exactly 180
    degrees goes to bin 0); ``bins`` equal bins of width ``180 / bins``, bin ``b`` holding
    ``b * 180 / bins <= theta < (b + 1) * 180 / bins`` (decided exactly, without rounding
    ``theta``: a gradient on an edge goes to the upper bin, see
    :func:`fastcls.reference.features.orientation_bins_reference`); per
    ``cell x cell`` cell the *mean* over its pixels of the gradient magnitude falling in
    each bin (zero gradients contribute 0). Rows and columns beyond the last whole cell
    are ignored (like scikit-image); their pixels still serve as neighbours in the
    differences of the pixels inside.

    Parameters
    ----------
    images : array-like of shape (N, H, W, 3), (N, H, W, 1) or (N, H, W)
        uint8 (divided by 255) or float pixels in ``[0, 1]``; see :func:`check_images`.
    cell : int, default 8
        Cell side in pixels, ``1 <= cell <= min(H, W)``.
    bins : int, default 9
        Number of orientation bins over ``[0, 180)`` degrees, ``>= 1``.

    Returns
    -------
    numpy.ndarray of shape (N, (H // cell) * (W // cell) * bins), float64
        Row ``i`` is image ``i``'s ``(H // cell, W // cell, bins)`` histogram flattened
        row-major: 4 x 4 x 9 = 144 values for 32x32 images with the defaults.

    Raises
    ------
    ValueError
        Bad ``images`` (see :func:`check_images`), or ``cell`` larger than the image.

    See Also
    --------
    fastcls.reference.features.hog_reference : the per-image NumPy definition.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcls.features import hog
    >>> images = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    >>> images[:, :, 16:] = 255  # a vertical edge: gradient along +x, 0 degrees
    >>> F = hog(images)
    >>> F.shape
    (2, 144)
    >>> cells = F.reshape(2, 4, 4, 9)  # (cell row, cell column, bin)
    >>> cells[0, 0, :, 0].round(6)  # bin 0 of the four cells of the first cell row
    array([0.   , 0.125, 0.125, 0.   ])
    """
    arr = check_images(images)
    cell = V.check_int(cell, "cell", min_value=1)
    bins = V.check_int(bins, "bins", min_value=1)
    N, H, W, _ = arr.shape
    if cell > min(H, W):
        raise ValueError(
            f"cell={cell} is larger than the images ({H}x{W} pixels); use cell <= {min(H, W)}"
        )
    from fastcls._runtime import check_fork_safe
    from fastcls.kernels import features as K

    check_fork_safe()  # a parallel kernel: a clear error in an unsafe forked child
    edge_cos, edge_sin = K.orientation_edges(bins)
    out = np.empty((N, (H // cell) * (W // cell) * bins), dtype=np.float64)
    K.hog_batch(arr, cell, bins, edge_cos, edge_sin, K.UNIT_LUT, out)
    return out


def color_histogram_hsv(images: Any, nbin: int = 10) -> np.ndarray:
    """Histogram of the HSV hue of every image, normalised to sum 1.

    The hue is that of ``matplotlib.colors.rgb_to_hsv`` computed in float64 (in
    ``[0, 1]``; achromatic pixels, ``max == min``, have hue 0). Bin ``b`` holds the
    pixels with ``b / nbin <= hue < (b + 1) / nbin``, computed as ``floor(hue * nbin)``
    clipped to ``nbin - 1`` (a hue of exactly 1.0, produced only by rounding of hues just
    below 360 degrees, goes to the last bin). Every pixel counts; the counts are divided
    by ``H * W``. Grayscale images have hue 0 everywhere: their histogram is
    ``[1, 0, ..., 0]`` (documented behaviour, not an error).

    Parameters
    ----------
    images : array-like of shape (N, H, W, 3), (N, H, W, 1) or (N, H, W)
        uint8 (divided by 255) or float pixels in ``[0, 1]``; see :func:`check_images`.
    nbin : int, default 10
        Number of equal hue bins over ``[0, 1)``, ``>= 1``.

    Returns
    -------
    numpy.ndarray of shape (N, nbin), float64
        Fraction of each image's pixels in each hue bin (rows sum to 1).

    See Also
    --------
    fastcls.reference.features.color_histogram_hsv_reference : the per-image definition.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcls.features import color_histogram_hsv
    >>> images = np.zeros((1, 4, 4, 3), dtype=np.uint8)
    >>> images[0, :2, :, 0] = 255  # top half pure red (hue 0), bottom half black
    >>> images[0, 2:, :, 2] = 255  # bottom half pure blue (hue 2/3)
    >>> color_histogram_hsv(images, nbin=3)
    array([[0.5, 0. , 0.5]])
    """
    arr = check_images(images)
    nbin = V.check_int(nbin, "nbin", min_value=1)
    N = arr.shape[0]
    out = np.zeros((N, nbin), dtype=np.float64)
    if arr.shape[-1] == 1:  # grayscale: hue 0 everywhere
        out[:, 0] = 1.0
        return out
    from fastcls._runtime import check_fork_safe
    from fastcls.kernels import features as K

    check_fork_safe()  # a parallel kernel: a clear error in an unsafe forked child
    K.hue_histogram_batch(arr, nbin, K.UNIT_LUT, out)
    return out


# --------------------------------------------------------------------------- scaling
class FeatureScaler(BaseEstimator):
    """Standardise features with a mean and standard deviation fitted on training data.

    ``transform(X) = (X - mean_) / scale_`` as float32, with statistics computed in
    float64 at :meth:`fit` (population standard deviation, ``ddof=0``). Features with a
    zero standard deviation get ``scale_ = 1`` (they are only centred). Fit on the
    training features, then reuse the same scaler for validation and test features.

    Parameters
    ----------
    with_mean : bool, default True
        Subtract the mean.
    with_std : bool, default True
        Divide by the standard deviation.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,), float64
        Per-feature mean (zeros when ``with_mean=False``).
    scale_ : ndarray of shape (n_features,), float64
        Per-feature standard deviation, 1 where it is 0 (ones when ``with_std=False``).
    n_features_in_ : int
        Number of features seen at fit.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcls.features import FeatureScaler
    >>> scaler = FeatureScaler().fit(np.array([[0.0, 1.0], [2.0, 1.0]]))
    >>> scaler.mean_, scaler.scale_
    (array([1., 1.]), array([1., 1.]))
    >>> scaler.transform(np.array([[3.0, 1.0]]))
    array([[2., 0.]], dtype=float32)
    """

    def __init__(self, with_mean: bool = True, with_std: bool = True) -> None:
        self.with_mean = with_mean
        self.with_std = with_std

    def fit(self, X: Any, y: Any = None) -> FeatureScaler:
        """Compute the per-feature mean and standard deviation of ``X`` (n_samples, n_features).

        ``y`` is ignored (accepted for pipeline compatibility). Returns ``self``.
        """
        with_mean = V.check_bool(self.with_mean, "with_mean")
        with_std = V.check_bool(self.with_std, "with_std")
        Xa = V.check_array(X, "X", allow_images=False)
        d = Xa.shape[1]
        mean = Xa.mean(axis=0, dtype=np.float64) if with_mean else np.zeros(d)
        if with_std:
            scale = Xa.std(axis=0, dtype=np.float64)
            scale[scale == 0.0] = 1.0
        else:
            scale = np.ones(d)
        self.mean_ = np.asarray(mean, dtype=np.float64)
        self.scale_ = np.asarray(scale, dtype=np.float64)
        self.n_features_in_ = int(d)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Standardise ``X`` (n_samples, n_features) with the fitted statistics; float32."""
        V.check_is_fitted(self, ("mean_", "scale_", "n_features_in_"))
        Xa = V.check_array(X, "X", allow_images=False)
        V.check_n_features(Xa, self, "X")
        return ((Xa - self.mean_) / self.scale_).astype(np.float32)

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        """``fit(X).transform(X)``."""
        return self.fit(X).transform(X)

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Undo :meth:`transform`: ``X * scale_ + mean_`` as float64."""
        V.check_is_fitted(self, ("mean_", "scale_", "n_features_in_"))
        Xa = V.check_array(X, "X", allow_images=False)
        V.check_n_features(Xa, self, "X")
        return Xa.astype(np.float64) * self.scale_ + self.mean_

    def get_fitted_state(self) -> FittedState:
        """The fitted statistics: arrays ``mean`` and ``scale`` (n_features,) float64,
        metadata ``n_features_in``. The arrays are copies.

        Raises
        ------
        NotFittedError
            The scaler has not been fitted.
        """
        V.check_is_fitted(self, ("mean_", "scale_", "n_features_in_"))
        arrays = {
            "mean": np.array(self.mean_, dtype=np.float64, copy=True),
            "scale": np.array(self.scale_, dtype=np.float64, copy=True),
        }
        return FittedState(arrays, {"n_features_in": int(self.n_features_in_)})

    def set_fitted_state(self, state: FittedState) -> FeatureScaler:
        """Restore what :meth:`get_fitted_state` returned; returns ``self``.

        Checked before anything is assigned: ``mean`` and ``scale`` float64 of shape
        (n_features_in,), finite, ``scale > 0``; with ``with_mean=False`` the mean must
        be zero and with ``with_std=False`` the scale one (what :meth:`fit` produces).

        Raises
        ------
        TypeError
            ``state`` is not a ``(arrays, metadata)`` pair of dicts, or ``with_mean`` /
            ``with_std`` is not a bool.
        ValueError
            A field is missing or malformed (the message names it); the scaler is left
            as it was.
        """
        from fastcls.base import FittedStateError, state_array, state_param

        with_mean = state_param("with_mean", V.check_bool, self.with_mean, "with_mean")
        with_std = state_param("with_std", V.check_bool, self.with_std, "with_std")
        arrays, meta = check_state_fields(state, ("mean", "scale"), ("n_features_in",))
        d = state_int(meta, "n_features_in", 1)
        for name in ("mean", "scale"):
            arr = arrays[name]
            if arr.dtype != np.float64 or arr.shape != (d,):
                raise FittedStateError(
                    f"fitted state field {name!r} must be float64 of shape ({d},), "
                    f"got {arr.dtype} of shape {arr.shape}",
                    name,
                )
        checked = {
            name: state_array(arrays, name, (d,), (np.float64,)) for name in ("mean", "scale")
        }
        if not (checked["scale"] > 0).all():
            raise FittedStateError("fitted state field 'scale' must be > 0 everywhere", "scale")
        if not with_mean and checked["mean"].any():
            raise FittedStateError(
                "fitted state field 'mean' must be zero when with_mean=False", "mean"
            )
        if not with_std and not (checked["scale"] == 1.0).all():
            raise FittedStateError(
                "fitted state field 'scale' must be one when with_std=False", "scale"
            )
        self.mean_ = np.array(checked["mean"], copy=True)
        self.scale_ = np.array(checked["scale"], copy=True)
        self.n_features_in_ = int(d)
        return self

    def save(self, path: Any, *, compress: bool = False) -> None:
        """Save the fitted model to exactly ``path`` (``.npz`` layout + JSON, never pickle).

        Atomic; reload with :func:`fastcls.load`. See :func:`fastcls.io.save` and
        ``docs/saving.md``.
        """
        from fastcls.io import save

        save(self, path, compress=compress)


# --------------------------------------------------------------------------- pipeline
def _fn_name(fn: Any) -> str:
    inner = getattr(fn, "func", fn)  # functools.partial
    return getattr(inner, "__name__", repr(fn))


def extract_features(
    images: Any,
    feature_fns: Sequence[FeatureFunction] | None = None,
    normalize: bool | FeatureScaler = False,
) -> np.ndarray:
    """Compute several features of every image and concatenate them column-wise.

    Parameters
    ----------
    images : array-like of shape (N, H, W, 3), (N, H, W, 1) or (N, H, W)
        Validated once by :func:`check_images`, then passed to each function.
    feature_fns : sequence of callables, default ``(hog, color_histogram_hsv)``
        Each maps an image batch ``(N, H, W, C)`` to an ``(N, F_j)`` array;
        ``functools.partial(hog, cell=4)`` works too. Columns appear in this order.
    normalize : bool or FeatureScaler, default False
        ``False``: raw features. ``True``: standardise with the mean / std *of this
        batch* (fits a new :class:`FeatureScaler`; use it on training data only). A
        fitted :class:`FeatureScaler`: standardise with its statistics (the way to treat
        validation / test data like the training data).

    Returns
    -------
    numpy.ndarray of shape (N, sum F_j), float32

    Raises
    ------
    TypeError
        ``feature_fns`` is not a non-empty sequence of callables, or ``normalize`` is
        neither a bool nor a FeatureScaler.
    ValueError
        Bad ``images``, or a function returned something other than ``(N, F)`` finite
        numbers.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcls.features import FeatureScaler, extract_features, hog
    >>> rng = np.random.default_rng(0)
    >>> train = rng.integers(0, 256, size=(20, 32, 32, 3), dtype=np.uint8)
    >>> test = rng.integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    >>> F_train = extract_features(train)  # HOG (144) + hue histogram (10)
    >>> F_train.shape, F_train.dtype
    ((20, 154), dtype('float32'))
    >>> scaler = FeatureScaler().fit(F_train)
    >>> extract_features(test, normalize=scaler).shape
    (5, 154)
    """
    if feature_fns is None:
        feature_fns = (hog, color_histogram_hsv)
    if callable(feature_fns) or not isinstance(feature_fns, (list, tuple)):
        raise TypeError(
            "feature_fns must be a list or tuple of callables, e.g. [hog, color_histogram_hsv]"
            f", got {type(feature_fns).__name__}"
        )
    if len(feature_fns) == 0:
        raise ValueError("feature_fns must hold at least one feature function")
    for fn in feature_fns:
        if not callable(fn):
            raise TypeError(f"feature_fns must hold callables, got {fn!r}")
    if not isinstance(normalize, (bool, np.bool_, FeatureScaler)):
        raise TypeError(
            f"normalize must be a bool or a fitted FeatureScaler, got {type(normalize).__name__}"
        )
    arr = check_images(images)
    N = arr.shape[0]
    blocks = []
    for fn in feature_fns:
        F = np.asarray(fn(arr))
        if F.ndim != 2 or F.shape[0] != N or F.dtype.kind not in "biuf":
            raise ValueError(
                f"feature function {_fn_name(fn)} must return a numeric (N, F) array with "
                f"N={N}, got {F.dtype} of shape {F.shape}"
            )
        V.assert_all_finite(F, f"the output of {_fn_name(fn)}")
        blocks.append(F.astype(np.float32, copy=False))
    features = np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0].copy()
    if isinstance(normalize, FeatureScaler):
        return normalize.transform(features)
    if normalize:
        return FeatureScaler().fit_transform(features)
    return np.ascontiguousarray(features, dtype=np.float32)
