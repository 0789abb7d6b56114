"""Image feature references: HOG and HSV hue histogram, one image at a time.

Plain NumPy, written for clarity; :mod:`fastcls.kernels.features` is tested against
these functions. The definitions (shared with :mod:`fastcls.features`, which
documents them in full) are:

Pixel values
    uint8 images are divided by 255 (``image.astype(float64) / 255.0``); float images
    are used as they are (float64 arithmetic) and are expected in ``[0, 1]``. These
    references do not validate; the public API does.

HOG (:func:`hog_reference`)
    1. Grayscale: ``0.299 * R + 0.587 * G + 0.114 * B`` (ITU-R BT.601 luma, evaluated
       in this order); a 2-D image is already grayscale.
    2. Gradients by central differences (the ``[-1, 0, 1]`` filter, not halved):
       ``gx[r, c] = I[r, c + 1] - I[r, c - 1]`` and ``gy[r, c] = I[r + 1, c] - I[r - 1, c]``
       for interior pixels; ``gx = 0`` on the first and last column, ``gy = 0`` on the
       first and last row (as in scikit-image). Rows grow downwards.
    3. Magnitude ``sqrt(gx**2 + gy**2)``; unsigned orientation
       ``theta = degrees(arctan2(gy, gx))`` folded into ``[0, 180)``: negative angles get
       ``+180`` and an angle of exactly 180 degrees becomes 0 (bin 0).
    4. ``bins`` equal bins of width ``180 / bins``: bin ``b`` holds
       ``b * 180 / bins <= theta < (b + 1) * 180 / bins``. The bin is decided without
       rounding ``theta``, by comparing the gradient with the edge directions
       (:func:`orientation_bins_reference`): a gradient exactly on an edge (0, 45, 90,
       135 degrees) goes to the upper bin, 180 degrees to bin 0.
    5. Cells of ``cell x cell`` pixels from the top-left corner; rows and columns beyond
       the last whole cell are ignored (their pixels still serve as neighbours for the
       gradients of the pixels inside). Each cell's histogram is the *mean* over its
       ``cell * cell`` pixels of the magnitude falling in each bin (zero-magnitude pixels
       contribute 0). No block normalisation.
    6. Output ``(H // cell, W // cell, bins)`` flattened row-major: 144 values for a
       32x32 image with 8x8 cells and 9 bins.

Colour histogram (:func:`color_histogram_hsv_reference`)
    Hue as matplotlib's ``rgb_to_hsv`` (in ``[0, 1]``, achromatic pixels
    ``max == min`` get hue 0), ``nbin`` equal bins over ``[0, 1)``: bin
    ``floor(hue * nbin)`` clipped to ``nbin - 1`` (so a hue of exactly 1.0, which only
    rounding of a hue just below 360 degrees produces, goes to the last bin). The
    histogram counts every pixel and is divided by ``H * W`` (it sums to 1). A
    grayscale image has hue 0 everywhere: all its mass is in bin 0.
"""

from __future__ import annotations

import numpy as np

#: ITU-R BT.601 luma weights for R, G, B.
LUMA = (0.299, 0.587, 0.114)


def to_float01(image):
    """Return ``image`` as float64: uint8 divided by 255, floats unchanged."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    return image.astype(np.float64)


def rgb_to_gray_reference(image):
    """Luma ``0.299 R + 0.587 G + 0.114 B`` of an (H, W, 3) image; grayscale is returned as is.

    Grayscale is (H, W) or (H, W, 1).
    """
    x = to_float01(image)
    if x.ndim == 2:
        return x
    if x.shape[-1] == 1:
        return x[..., 0]
    return LUMA[0] * x[..., 0] + LUMA[1] * x[..., 1] + LUMA[2] * x[..., 2]


def gradients_reference(gray):
    """Central differences ``(gx, gy)`` of a 2-D image, zero on the border columns / rows."""
    gx = np.zeros_like(gray)
    gy = np.zeros_like(gray)
    gx[:, 1:-1] = gray[:, 2:] - gray[:, :-2]
    gy[1:-1, :] = gray[2:, :] - gray[:-2, :]
    return gx, gy


def orientation_edges(bins):
    """Unit vectors ``(cos, sin)`` of the inner edges ``theta_k = k * 180 / bins``, k = 1..bins-1.

    The edges at exactly 45, 90 and 135 degrees (decided in integers) get exact vectors
    (``(0, 1)`` and equal components), so that gradients with ``gx == 0`` or
    ``|gx| == |gy|`` fall exactly on them.

    Defined here on its own, like every reference: the production code uses its own
    copy, :func:`fastcls.kernels.features.orientation_edges`, and a test checks that
    the two are bitwise equal.
    """
    k = np.arange(1, bins, dtype=np.int64)
    theta = np.pi * k / bins
    c, s = np.cos(theta), np.sin(theta)
    h = np.sqrt(0.5)
    c[2 * k == bins], s[2 * k == bins] = 0.0, 1.0
    c[4 * k == bins], s[4 * k == bins] = h, h
    c[4 * k == 3 * bins], s[4 * k == 3 * bins] = -h, h
    return np.ascontiguousarray(c), np.ascontiguousarray(s)


def orientation_bins_reference(gx, gy, bins=9):
    """Unsigned orientation bin of each gradient, ``floor(theta * bins / 180)``, decided exactly.

    ``theta = degrees(arctan2(gy, gx))`` folded into [0, 180). Rather than rounding
    ``theta`` (numpy's SIMD ``arctan2`` and libm's differ in the last bit, which moves
    gradients lying on an edge), the bin counts the edges the gradient reaches:

    1. fold into the upper half-plane: ``(gx, gy) -> (-gx, -gy)`` where ``gy < 0``, or
       ``gy == 0`` and ``gx < 0`` (so 180 degrees becomes 0);
    2. ``theta >= theta_k`` exactly when ``cos(theta_k) * gy - sin(theta_k) * gx >= 0``;
    3. bin = number of inner edges reached (0 .. bins-1).

    This is ``floor(theta * bins / 180)`` except for gradients within rounding (about
    1e-14 degrees) of an edge, where step 2 decides in float64 and is the same on
    every machine.
    """
    gx = np.asarray(gx, dtype=np.float64)
    gy = np.asarray(gy, dtype=np.float64)
    flip = (gy < 0) | ((gy == 0) & (gx < 0))
    gx = np.where(flip, -gx, gx)
    gy = np.where(flip, -gy, gy)
    edge_cos, edge_sin = orientation_edges(bins)
    b = np.zeros(gx.shape, dtype=np.int64)
    for ck, sk in zip(edge_cos, edge_sin, strict=True):
        b += (ck * gy - sk * gx) >= 0.0
    return b


def hog_reference(image, cell=8, bins=9):
    """Histogram of oriented gradients of one image (the lecture algorithm, no blocks).

    Parameters
    ----------
    image : ndarray of shape (H, W, 3), (H, W, 1) or (H, W)
        uint8 (divided by 255) or float in [0, 1].
    cell : int
        Cell side in pixels.
    bins : int
        Orientation bins over [0, 180) degrees.

    Returns
    -------
    ndarray of shape ((H // cell) * (W // cell) * bins,), float64
        Per cell (row-major), the mean gradient magnitude in each orientation bin.
    """
    gray = rgb_to_gray_reference(image)
    gx, gy = gradients_reference(gray)
    mag = np.sqrt(gx**2 + gy**2)
    b = orientation_bins_reference(gx, gy, bins)
    ncy, ncx = gray.shape[0] // cell, gray.shape[1] // cell
    hist = np.zeros((ncy, ncx, bins))
    for cy in range(ncy):
        for cx in range(ncx):
            rows = slice(cy * cell, (cy + 1) * cell)
            cols = slice(cx * cell, (cx + 1) * cell)
            m, o = mag[rows, cols], b[rows, cols]
            for k in range(bins):
                hist[cy, cx, k] = m[o == k].sum() / (cell * cell)
    return hist.ravel()


def rgb_to_hue_reference(image):
    """Hue in [0, 1] of an (H, W, 3) image, as ``matplotlib.colors.rgb_to_hsv(x)[..., 0]``.

    The image is converted with :func:`to_float01` first (float64 arithmetic).
    """
    x = to_float01(image)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    vmax = x.max(axis=-1)
    delta = vmax - x.min(axis=-1)
    hue = np.zeros_like(vmax)
    pos = delta > 0
    # the later assignments win where two channels share the maximum (matplotlib's order)
    idx = (r == vmax) & pos
    hue[idx] = (g[idx] - b[idx]) / delta[idx]
    idx = (g == vmax) & pos
    hue[idx] = 2.0 + (b[idx] - r[idx]) / delta[idx]
    idx = (b == vmax) & pos
    hue[idx] = 4.0 + (r[idx] - g[idx]) / delta[idx]
    return (hue / 6.0) % 1.0


def color_histogram_hsv_reference(image, nbin=10):
    """Hue histogram of one image, normalised to sum 1.

    Parameters
    ----------
    image : ndarray of shape (H, W, 3), (H, W, 1) or (H, W)
        uint8 (divided by 255) or float in [0, 1]. A grayscale image has hue 0
        everywhere.
    nbin : int
        Number of equal hue bins over [0, 1).

    Returns
    -------
    ndarray of shape (nbin,), float64
        Fraction of the pixels in each hue bin.
    """
    image = np.asarray(image)
    if image.ndim == 2 or image.shape[-1] == 1:  # grayscale
        hue = np.zeros(image.shape[:2])
    else:
        hue = rgb_to_hue_reference(image)
    b = np.minimum(np.floor(hue * nbin).astype(np.int64), nbin - 1)
    return np.bincount(b.ravel(), minlength=nbin) / b.size
