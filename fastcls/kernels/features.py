"""Image feature kernels: HOG and HSV hue histogram over a batch, parallel over images.

Pure Numba functions on clean C-contiguous arrays (no validation): the public API in
:mod:`fastcls.features` validates, converts and allocates. Each image is processed by
one thread from start to end (its output row is private), so results do not depend on
the thread count.

* ``hog_batch(images, cell, bins, edge_cos, edge_sin, lut, out)``
* ``orientation_edges(bins)`` (plain Python): the edge vectors ``hog_batch`` takes
* ``hue_histogram_batch(images, nbin, lut, out)`` (RGB only; grayscale needs no kernel)

``images`` is (N, H, W, C) with C = 3 (RGB) or C = 1 (grayscale, HOG only), of dtype
uint8, float32 or float64; every pixel is read as float64, uint8 through ``lut`` =
:data:`UNIT_LUT` (``v / 255.0``, bitwise as
:func:`fastcls.reference.features.to_float01`), floats unchanged.
All HOG arithmetic is float64 without fastmath, in the reference's order of operations,
so the grayscale values and gradients are bitwise those of the reference. Hue bins
equal the reference's bit for bit: float images take the reference's float64 formula
(:func:`_hue_bin_exact`); uint8 images a vectorised float32 estimate on the integer
channels that defers to that formula near the bin edges (:func:`_hue_bins_uint8`).

Orientation binning does not call ``atan2`` (as the reference,
:func:`fastcls.reference.features.orientation_bins_reference`): a folded gradient ``g``
(upper half-plane, angle in [0, 180)) lies at or beyond the bin edge ``theta_k`` exactly
when ``cos(theta_k) * gy - sin(theta_k) * gx >= 0``, so the bin is the number of edges
``k = 1 .. bins-1`` that pass this test, with the edge vectors of
:func:`orientation_edges` passed in by the caller (the same vectors as
:func:`fastcls.reference.features.orientation_edges`, which the reference defines on its
own; a test checks that they are bitwise equal). The products are rounded separately
(no fused multiply-add), as in NumPy.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange, types
from numba.extending import overload

from fastcls._config import jit

_LUMA_R = 0.299
_LUMA_G = 0.587
_LUMA_B = 0.114
#: images per parallel work item (scratch buffers are allocated once per item)
_CHUNK = 16


#: ``UNIT_LUT[v] == v / 255.0`` (bitwise: the division is done here, once per value)
UNIT_LUT = np.arange(256, dtype=np.float64) / 255.0


def orientation_edges(bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors ``(cos, sin)`` of the inner bin edges ``theta_k = k * 180 / bins``.

    ``k = 1 .. bins-1``; two float64 C-contiguous arrays of shape (bins - 1,). The
    edges at exactly 45, 90 and 135 degrees (decided in integers) get exact vectors
    (``(0, 1)`` and equal components), so that gradients with ``gx == 0`` or
    ``|gx| == |gy|`` fall exactly on them. Plain Python, not compiled: the caller
    computes it once per call of :func:`hog_batch`.
    """
    k = np.arange(1, bins, dtype=np.int64)
    theta = np.pi * k / bins
    c, s = np.cos(theta), np.sin(theta)
    h = np.sqrt(0.5)
    c[2 * k == bins], s[2 * k == bins] = 0.0, 1.0
    c[4 * k == bins], s[4 * k == bins] = h, h
    c[4 * k == 3 * bins], s[4 * k == 3 * bins] = -h, h
    return np.ascontiguousarray(c), np.ascontiguousarray(s)


def _unit(v, lut):  # pragma: no cover - replaced by the overload in compiled code
    """Pixel value as float64: ``lut[v]`` (= v / 255.0) for uint8, ``float64(v)`` otherwise."""
    raise NotImplementedError


@overload(_unit, inline="always")
def _unit_impl(v, lut):
    if isinstance(v, types.Integer):
        return lambda v, lut: lut[v]
    return lambda v, lut: np.float64(v)


@jit
def _gray_image(img, lut, gray):
    """Luma (or the single channel) of one (P, C) image into ``gray`` (P,) float64."""
    P, C = img.shape
    if C == 1:
        for p in range(P):
            gray[p] = _unit(img[p, 0], lut)
    else:
        for p in range(P):
            r = _unit(img[p, 0], lut)
            g = _unit(img[p, 1], lut)
            b = _unit(img[p, 2], lut)
            gray[p] = _LUMA_R * r + _LUMA_G * g + _LUMA_B * b


@jit
def _hog_image(gray, H, W, dest, edge_cos, edge_sin, area, gx, gy, mag, bidx, hist):
    """HOG of one flattened grayscale image ``gray`` (H*W,) into ``hist``, zeroed here.

    ``dest[p]`` is the offset of pixel ``p``'s cell histogram in ``hist`` (-1 for pixels
    beyond the last whole cell); ``gx``, ``gy``, ``mag``, ``bidx`` are (H*W,) scratch.
    """
    P = H * W
    nedge = edge_cos.shape[0]
    # horizontal central differences over the flat image; border columns zeroed below
    gx[0] = 0.0
    gx[P - 1] = 0.0
    g2 = gray[2:]
    gxi = gx[1:]
    for p in range(P - 2):
        gxi[p] = g2[p] - gray[p]
    for y in range(H):
        gx[y * W] = 0.0
        gx[y * W + W - 1] = 0.0
    # vertical central differences, 0 on the first and last row
    for p in range(W):
        gy[p] = 0.0
        gy[P - W + p] = 0.0
    if H > 2:
        gW2 = gray[2 * W :]
        gyi = gy[W:]
        for p in range(P - 2 * W):
            gyi[p] = gW2[p] - gray[p]
    for p in range(P):
        a = gx[p]
        b = gy[p]
        mag[p] = math.sqrt(a * a + b * b)
        # fold into the upper half-plane: angle in [0, 180), 180 -> 0
        flip = b < 0.0 or (b == 0.0 and a < 0.0)
        gx[p] = -a if flip else a
        gy[p] = -b if flip else b
        bidx[p] = 0
    for k in range(nedge):
        ck = edge_cos[k]
        sk = edge_sin[k]
        for p in range(P):
            bidx[p] += np.int64(ck * gy[p] - sk * gx[p] >= 0.0)
    for j in range(hist.shape[0]):
        hist[j] = 0.0
    for p in range(P):
        d = dest[p]
        if d >= 0:
            hist[d + bidx[p]] += mag[p]
    for j in range(hist.shape[0]):
        hist[j] = hist[j] / area


@jit(parallel=True)
def hog_batch(images, cell, bins, edge_cos, edge_sin, lut, out):
    """HOG of every image of ``images`` (N, H, W, C) into ``out`` (N, ncy*ncx*bins) float64.

    ``edge_cos`` / ``edge_sin`` (bins - 1,) come from :func:`orientation_edges`;
    ``lut`` is :data:`UNIT_LUT`.
    """
    N, H, W, C = images.shape
    P = H * W
    flat = images.reshape(N, P, C)
    # offset of each pixel's cell histogram in the output row (-1: beyond the last cell)
    ncy = H // cell
    ncx = W // cell
    dest = np.empty(P, dtype=np.int64)
    for y in range(H):
        for x in range(W):
            if y < ncy * cell and x < ncx * cell:
                dest[y * W + x] = ((y // cell) * ncx + x // cell) * bins
            else:
                dest[y * W + x] = -1
    area = np.float64(cell * cell)
    nchunks = (N + _CHUNK - 1) // _CHUNK
    for t in prange(nchunks):
        lo = t * _CHUNK
        hi = min(N, lo + _CHUNK)
        gray = np.empty(P, dtype=np.float64)
        gx = np.empty(P, dtype=np.float64)
        gy = np.empty(P, dtype=np.float64)
        mag = np.empty(P, dtype=np.float64)
        bidx = np.empty(P, dtype=np.int64)
        for i in range(lo, hi):
            _gray_image(flat[i], lut, gray)
            _hog_image(gray, H, W, dest, edge_cos, edge_sin, area, gx, gy, mag, bidx, out[i])


@jit
def _hue_bin_exact(r, g, b, nbin):
    """Hue bin of one pixel (float64 channels in [0, 1]), with the reference's operations."""
    vmax = max(r, max(g, b))
    delta = vmax - min(r, min(g, b))
    # matplotlib's order: blue wins over green wins over red on equal maxima
    isb = b == vmax
    isg = g == vmax
    num = (r - g) if isb else ((b - r) if isg else (g - b))
    base = 4.0 if isb else (2.0 if isg else 0.0)
    den = delta if delta > 0.0 else 1.0
    h = (base + num / den) if delta > 0.0 else 0.0
    h = h / 6.0
    h = h + 1.0 if h < 0.0 else h
    k = np.int64(h * nbin)
    return k if k < nbin else nbin - 1


@jit
def _hue_bins_exact(img, nbin, lut, bidx):
    """Hue bin of every pixel of one (P, 3) image into ``bidx`` (P,), reference operations."""
    for p in range(img.shape[0]):
        bidx[p] = _hue_bin_exact(
            _unit(img[p, 0], lut), _unit(img[p, 1], lut), _unit(img[p, 2], lut), nbin
        )


#: the fast uint8 hue path defers to the exact one where ``hue * nbin`` lies within this
#: distance of an integer. A non-integer ``hue * nbin`` of uint8 pixels is at least
#: ``1 / (6 * 255)`` from the nearest integer and the float32 estimate is within
#: ``2e-7 * nbin`` of it, so the estimate's floor is exact elsewhere while nbin <= 256.
_NEAR_EDGE = np.float32(1e-4)
#: largest nbin for which the fast uint8 path is used (see _NEAR_EDGE)
FAST_HUE_MAX_NBIN = 256


@jit
def _hue_bins_uint8(row, nbin, lut, bidx):
    """Hue bins of one uint8 image given as its flat bytes ``row`` (3P,) = r, g, b, r, ...

    On the integers, ``6 * hue = t / d`` exactly, with ``d = max - min`` and ``t`` in
    ``[0, 6d)`` chosen by which channel is the maximum (decided as on the float64 values
    ``v / 255``, since ``v -> v / 255`` is strictly increasing). ``floor(t * nbin / (6 d))``
    is estimated in float32 (vectorised, int32 channel arithmetic); where the estimate
    lies within :data:`_NEAR_EDGE` of an integer (an exact tie such as ``hue = 0.1``) the
    bin is recomputed with the reference's float64 operations (:func:`_hue_bin_exact`), so
    every bin equals the reference's. Requires ``nbin <= FAST_HUE_MAX_NBIN``.
    """
    P = row.shape[0] // 3
    scale = np.float32(nbin / 6.0)
    n_near = 0
    for p in range(P):
        r = np.int32(row[3 * p])
        g = np.int32(row[3 * p + 1])
        b = np.int32(row[3 * p + 2])
        vmax = max(r, max(g, b))
        d = vmax - min(r, min(g, b))
        isb = b == vmax
        isg = g == vmax
        num = (r - g) if isb else ((b - r) if isg else (g - b))
        base = 4 * d if isb else (2 * d if isg else 0)
        t = base + num
        t = t + 6 * d if t < 0 else t
        dd = d if d > 0 else 1
        pos = np.float32(t) / np.float32(dd) * scale
        k = np.int32(pos)
        frac = pos - np.float32(k)
        # t == 0 (achromatic, or red maximum with g == b) is exactly hue 0: bin 0
        near = ((frac < _NEAR_EDGE) | (frac > np.float32(1.0) - _NEAR_EDGE)) & (t > 0)
        k = k if k < nbin else nbin - 1
        bidx[p] = -1 if near else k
        n_near += np.int32(near)
    if n_near > 0:
        for p in range(P):
            if bidx[p] < 0:
                bidx[p] = _hue_bin_exact(
                    lut[row[3 * p]], lut[row[3 * p + 1]], lut[row[3 * p + 2]], nbin
                )


def _hue_bins(img, row, nbin, lut, bidx):  # pragma: no cover - replaced by the overload
    raise NotImplementedError


@overload(_hue_bins)
def _hue_bins_impl(img, row, nbin, lut, bidx):
    """uint8 (and nbin <= FAST_HUE_MAX_NBIN): the fast path on the flat bytes ``row``;
    otherwise the reference's float64 formula on the (P, 3) pixels ``img``."""
    if isinstance(img.dtype, types.Integer):

        def impl(img, row, nbin, lut, bidx):
            if nbin <= FAST_HUE_MAX_NBIN:
                _hue_bins_uint8(row, nbin, lut, bidx)
            else:
                _hue_bins_exact(img, nbin, lut, bidx)

        return impl
    return lambda img, row, nbin, lut, bidx: _hue_bins_exact(img, nbin, lut, bidx)


#: up to this many bins, counting compares every pixel with every bin (vectorised);
#: beyond, it scatters into 4 interleaved counters
_COMPARE_COUNT_MAX_NBIN = 24


@jit
def _count_bins(bidx, nbin, counts):
    """``counts[k]`` = number of ``k`` in ``bidx`` (values in 0 .. nbin-1)."""
    P = bidx.shape[0]
    if nbin <= _COMPARE_COUNT_MAX_NBIN:
        for k in range(nbin):
            c = np.int32(0)
            kk = np.int32(k)
            for p in range(P):
                c = np.int32(c + np.int32(bidx[p] == kk))
            counts[k] = c
        return
    four = np.zeros((4, nbin), dtype=np.int64)
    P4 = P - P % 4
    for p in range(0, P4, 4):
        four[0, bidx[p]] += 1
        four[1, bidx[p + 1]] += 1
        four[2, bidx[p + 2]] += 1
        four[3, bidx[p + 3]] += 1
    for p in range(P4, P):
        four[0, bidx[p]] += 1
    for k in range(nbin):
        counts[k] = four[0, k] + four[1, k] + four[2, k] + four[3, k]


@jit(parallel=True)
def hue_histogram_batch(images, nbin, lut, out):
    """Hue histograms (sum 1) of ``images`` (N, H, W, 3) into ``out`` (N, nbin) float64."""
    N, H, W, C = images.shape
    P = H * W
    flat = images.reshape(N, P, C)
    flat3 = images.reshape(N, P * C)
    npix = np.float64(P)
    nchunks = (N + _CHUNK - 1) // _CHUNK
    for t in prange(nchunks):
        lo = t * _CHUNK
        hi = min(N, lo + _CHUNK)
        bidx = np.empty(P, dtype=np.int32)
        counts = np.empty(nbin, dtype=np.int64)
        for i in range(lo, hi):
            _hue_bins(flat[i], flat3[i], nbin, lut, bidx)
            _count_bins(bidx, nbin, counts)
            for k in range(nbin):
                out[i, k] = counts[k] / npix
