"""Image features: references (hand-computed cases, matplotlib, scikit-image), kernels
against references (hypothesis: random, constant, few-valued and extreme images,
grayscale, sizes not divisible by the cell), thread invariance, validation, pipeline."""

from __future__ import annotations

import functools
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastcls
from fastcls import NotFittedError
from fastcls.features import (
    FeatureScaler,
    check_images,
    color_histogram_hsv,
    extract_features,
    hog,
)
from fastcls.reference.features import (
    color_histogram_hsv_reference,
    gradients_reference,
    hog_reference,
    orientation_bins_reference,
    orientation_edges,
    rgb_to_gray_reference,
    rgb_to_hue_reference,
)

RTOL, ATOL = 1e-12, 1e-15


def hog_ref_batch(images, cell=8, bins=9):
    return np.stack([hog_reference(im, cell, bins) for im in np.asarray(images)])


def hist_ref_batch(images, nbin=10):
    return np.stack([color_histogram_hsv_reference(im, nbin) for im in np.asarray(images)])


# --------------------------------------------------------------------------- image strategies
KINDS = ("random", "constant", "two_values", "few_values", "extremes", "smooth")


def make_images(seed, n, h, w, channels, dtype, kind):
    """Deterministic test images of one of several adversarial kinds."""
    rng = np.random.default_rng(seed)
    shape = (n, h, w) if channels == 0 else (n, h, w, channels)
    top = 255 if dtype == np.uint8 else 1.0
    if kind == "random":
        x = rng.integers(0, 256, shape) if dtype == np.uint8 else rng.random(shape)
    elif kind == "constant":
        x = np.full(shape, rng.integers(0, 256) if dtype == np.uint8 else rng.random())
    elif kind == "two_values":  # many exact ties in gradients and hues
        x = rng.choice([0, top], size=shape)
    elif kind == "few_values":
        levels = [0, 51, 102, 255] if dtype == np.uint8 else [0.0, 0.2, 0.6, 1.0]
        x = rng.choice(levels, size=shape)
    elif kind == "extremes":
        x = np.where(rng.random(shape) < 0.5, 0, top)
        x[..., : max(1, w // 2)] = top
    else:  # smooth ramps: gradients on exact diagonals (45 / 135 degrees) and axes
        r = np.arange(h)[:, None]
        c = np.arange(w)[None, :]
        a, b = rng.integers(-2, 3, size=2)
        base = (a * r + b * c) % 16
        x = np.broadcast_to(base[None, ..., None] if channels else base[None], shape)
        x = x * (16 if dtype == np.uint8 else 1 / 16)
    x = np.ascontiguousarray(np.asarray(x).astype(dtype))
    if channels == 0 and w == 3:  # (N, H, 3) is refused as ambiguous: say it is grayscale
        x = x[..., None]
    return x


image_args = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**31 - 1),
        "n": st.integers(1, 4),
        "h": st.integers(1, 21),
        "w": st.integers(1, 21),
        "channels": st.sampled_from([0, 1, 3]),
        "dtype": st.sampled_from([np.uint8, np.float32, np.float64]),
        "kind": st.sampled_from(KINDS),
    }
)


# --------------------------------------------------------------------------- references
def test_reference_gray_and_gradients_by_hand():
    img = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)
    np.testing.assert_allclose(rgb_to_gray_reference(img), [[0.299, 0.587, 0.114]])
    gray = np.array([[0.0, 1.0, 4.0], [2.0, 3.0, 5.0], [6.0, 9.0, 7.0]])
    gx, gy = gradients_reference(gray)
    np.testing.assert_array_equal(gx, [[0, 4, 0], [0, 3, 0], [0, 1, 0]])
    np.testing.assert_array_equal(gy, [[0, 0, 0], [6, 8, 3], [0, 0, 0]])


@pytest.mark.parametrize(
    ("gx", "gy", "bins", "expected"),
    [
        (1.0, 0.0, 9, 0),  # 0 degrees
        (-1.0, 0.0, 9, 0),  # exactly 180 degrees -> bin 0
        (-1.0, -0.0, 9, 0),  # -180 degrees -> bin 0
        (0.0, 1.0, 9, 4),  # 90 degrees, inside bin [80, 100)
        (0.0, -1.0, 9, 4),  # -90 -> 90
        (0.0, 1.0, 2, 1),  # 90 degrees on an edge: goes to the upper bin
        (1.0, 1.0, 4, 1),  # 45 degrees on an edge
        (-1.0, 1.0, 4, 3),  # 135 degrees on an edge
        (1.0, -1.0, 4, 3),  # -45 -> 135
        (1.0, 1.0, 9, 2),  # 45 inside [40, 60)
        (1.0, 1e-300, 9, 0),
        (-1.0, 1e-3, 9, 8),  # just below 180
    ],
)
def test_orientation_bins_edges(gx, gy, bins, expected):
    ref = orientation_bins_reference(np.array([gx]), np.array([gy]), bins)
    assert ref[0] == expected
    # the kernel bins the same gradient identically: a 3x3 image whose centre has it
    img = np.zeros((1, 3, 3, 1))
    img[0, 1, 2], img[0, 1, 0] = max(gx, 0), max(-gx, 0)
    img[0, 2, 1], img[0, 0, 1] = max(gy, 0), max(-gy, 0)
    out = hog(img, cell=3, bins=bins).reshape(bins)
    want = np.zeros(bins)
    want[expected] = np.hypot(gx, gy) / 9
    np.testing.assert_allclose(out, want, rtol=1e-12)


def test_within_rounding_of_an_edge_is_decided_exactly():
    """1e-300 radians below 180 degrees: arctan2 rounds it to exactly 180 (bin 0), but the
    gradient is in the last bin, and the reference and the kernel both say so."""
    gx, gy = np.array([-1.0]), np.array([1e-300])
    assert np.degrees(np.arctan2(gy, gx))[0] == 180.0
    assert orientation_bins_reference(gx, gy, 9)[0] == 8
    img = np.zeros((1, 3, 3, 1))
    img[0, 1, 0], img[0, 2, 1] = 1.0, 1e-300
    assert np.argmax(hog(img, cell=3).ravel()) == 8


@pytest.mark.parametrize("bins", [1, 2, 3, 4, 7, 9, 12, 36, 180])
def test_orientation_bins_are_floor_theta_away_from_edges(bins):
    """The exact edge test equals floor(theta * bins / 180) of the arctan2 angle."""
    rng = np.random.default_rng(bins)
    gx, gy = rng.standard_normal((2, 20000)) * rng.choice([1e-3, 1, 1e3], size=(2, 20000))
    theta = np.degrees(np.arctan2(gy, gx)) % 180.0
    pos = theta * bins / 180.0
    far = np.abs(pos - np.round(pos)) > 1e-9
    want = np.minimum(np.floor(pos), bins - 1).astype(np.int64)
    got = orientation_bins_reference(gx, gy, bins)
    np.testing.assert_array_equal(got[far], want[far])
    assert far.mean() > 0.99
    c, s = orientation_edges(bins)
    k = np.arange(1, bins)
    np.testing.assert_allclose(c, np.cos(np.pi * k / bins), atol=1e-15)
    np.testing.assert_allclose(s, np.sin(np.pi * k / bins), atol=1e-15)
    np.testing.assert_allclose(c**2 + s**2, 1.0, rtol=1e-15)


def test_reference_hog_known_edges():
    img = np.zeros((32, 32, 3), dtype=np.uint8)
    img[:, 16:] = 255  # vertical edge, gradient along +x (0 degrees)
    h = hog_reference(img).reshape(4, 4, 9)
    np.testing.assert_allclose(h[:, 1, 0], 8 / 64 * 0.9999999999999999)
    np.testing.assert_allclose(h[:, 2, 0], 8 / 64 * 0.9999999999999999)
    assert np.count_nonzero(h) == 8
    h = hog_reference(np.transpose(img, (1, 0, 2))).reshape(4, 4, 9)  # horizontal edge
    np.testing.assert_allclose(h[1, :, 4], 0.125)  # 90 degrees -> bin 4
    assert np.count_nonzero(h) == 8
    assert hog_reference(np.full((16, 16), 0.3)).sum() == 0.0  # constant: no gradient


def test_reference_hue_matches_matplotlib():
    mcolors = pytest.importorskip("matplotlib.colors")
    rng = np.random.default_rng(0)
    x = rng.random((40, 30, 3))
    x[:5] = x[:5, :, :1]  # gray pixels (all channels equal)
    x[5:10, :, 1] = x[5:10, :, 0]  # red == green ties
    x[10:15, :, 2] = x[10:15, :, 1]  # green == blue ties
    x[15:20] = np.round(x[15:20] * 4) / 4  # few levels
    np.testing.assert_array_equal(rgb_to_hue_reference(x), mcolors.rgb_to_hsv(x)[..., 0])
    u8 = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    np.testing.assert_array_equal(rgb_to_hue_reference(u8), mcolors.rgb_to_hsv(u8 / 255.0)[..., 0])


def test_reference_histogram_by_hand():
    img = np.zeros((2, 3, 3), dtype=np.uint8)
    img[0, 0] = (255, 0, 0)  # red, hue 0
    img[0, 1] = (0, 255, 0)  # green, hue 1/3
    img[0, 2] = (0, 0, 255)  # blue, hue 2/3
    img[1, 0] = (255, 255, 0)  # yellow, hue 1/6
    img[1, 1] = (255, 0, 255)  # magenta, hue 5/6
    img[1, 2] = (7, 7, 7)  # gray, hue 0
    h = color_histogram_hsv_reference(img, nbin=6)
    np.testing.assert_array_equal(h * 6, [2, 1, 1, 0, 1, 1])
    np.testing.assert_array_equal(color_histogram_hsv(img[None], nbin=6)[0], h)
    np.testing.assert_array_equal(color_histogram_hsv_reference(img[..., 0]), np.eye(10)[0])


def test_reference_hog_matches_scikit_image():
    """An independent implementation: skimage's cells (1x1 blocks, L1) normalise ours."""
    skf = pytest.importorskip("skimage.feature")
    rng = np.random.default_rng(1)
    for shape, cell, bins in [((32, 32), 8, 9), ((37, 29), 6, 7), ((16, 24), 4, 12)]:
        img = rng.random(shape)
        ours = hog_reference(img, cell, bins).reshape(-1, bins)
        theirs = skf.hog(
            img,
            orientations=bins,
            pixels_per_cell=(cell, cell),
            cells_per_block=(1, 1),
            block_norm="L1",
            feature_vector=True,
        ).reshape(-1, bins)
        eps = 1e-5  # skimage's L1 block normalisation: v / (sum|v| + eps)
        np.testing.assert_allclose(ours / (ours.sum(1, keepdims=True) + eps), theirs, atol=1e-7)


# --------------------------------------------------------------------------- kernels vs references
@given(args=image_args, cell=st.integers(1, 9), bins=st.integers(1, 13))
def test_hog_kernel_matches_reference(args, cell, bins):
    images = make_images(**args)
    cell = min(cell, args["h"], args["w"])
    out = hog(images, cell=cell, bins=bins)
    ref = hog_ref_batch(images, cell, bins)
    assert out.shape == (args["n"], (args["h"] // cell) * (args["w"] // cell) * bins)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, ref, rtol=RTOL, atol=ATOL)


@given(args=image_args, nbin=st.integers(1, 17))
def test_color_histogram_kernel_matches_reference(args, nbin):
    images = make_images(**args)
    out = color_histogram_hsv(images, nbin=nbin)
    assert out.shape == (args["n"], nbin)
    np.testing.assert_array_equal(out, hist_ref_batch(images, nbin))  # same counts exactly
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-12)


def test_hue_exactly_on_bin_edges():
    """Hues that are exact multiples of 1/nbin (0.1 = 0.6 / 6, 0.5, ...) follow the
    reference's float64 rounding (the uint8 fast path defers to it), for every nbin."""
    rng = np.random.default_rng(12)
    d = rng.integers(1, 256, 4000)
    lo = rng.integers(0, 256 - d)
    frac = rng.integers(0, d + 1)
    px = np.stack([lo + d, lo + frac, lo], axis=1)  # red max: hue = frac / d / 6
    px[::3] = px[::3][:, [2, 0, 1]]  # blue max
    px[1::3] = px[1::3][:, [1, 2, 0]]  # green max
    images = px.reshape(10, 20, 20, 3).astype(np.uint8)
    for nbin in (1, 2, 3, 6, 10, 12, 36, 255, 256, 257, 360):
        np.testing.assert_array_equal(
            color_histogram_hsv(images, nbin=nbin), hist_ref_batch(images, nbin)
        )


@pytest.mark.parametrize("bins", [2, 4, 8, 9, 12])
def test_hog_diagonal_and_axis_ties(bins):
    """Ramps give gradients exactly on 0, 45, 90 and 135 degrees: binned as the reference."""
    r, c = np.mgrid[0:16, 0:16]
    images = np.stack([r + c, r - c, 2 * r, 3 * c, -c, (r + c) % 5, np.maximum(r, c)]).astype(
        np.float64
    )
    images = (images - images.min()) / (images.max() - images.min())
    np.testing.assert_allclose(
        hog(images, cell=4, bins=bins), hog_ref_batch(images, 4, bins), rtol=RTOL, atol=ATOL
    )


def test_hog_large_random_batch_uint8_and_float():
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(hog(images), hog_ref_batch(images), rtol=RTOL, atol=ATOL)
    # uint8 is read as v / 255.0: the same as passing the float64 batch
    np.testing.assert_array_equal(hog(images), hog(images / 255.0))
    np.testing.assert_array_equal(color_histogram_hsv(images), color_histogram_hsv(images / 255.0))


def test_odd_sizes_ignore_the_remainder():
    """35x29 with 8x8 cells: 4x3 cells; the last rows / columns only serve as neighbours."""
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (3, 35, 29, 3), dtype=np.uint8)
    out = hog(images)
    assert out.shape == (3, 4 * 3 * 9)
    np.testing.assert_allclose(out, hog_ref_batch(images), rtol=RTOL, atol=ATOL)
    # pixels beyond the cells change nothing but the gradients at the cells' last row/column
    changed = images.copy()
    changed[:, 33:, :] = 0
    changed[:, :, 25:] = 0
    np.testing.assert_array_equal(hog(changed), out)


@pytest.mark.parametrize("shape", [(5, 8, 8), (5, 8, 8, 1)])
def test_grayscale_forms(shape):
    rng = np.random.default_rng(4)
    gray = rng.integers(0, 256, shape, dtype=np.uint8)
    np.testing.assert_allclose(hog(gray, cell=4), hog_ref_batch(gray.reshape(5, 8, 8), 4))
    np.testing.assert_array_equal(hog(gray.reshape(5, 8, 8), cell=4), hog(gray, cell=4))
    np.testing.assert_array_equal(color_histogram_hsv(gray), np.tile(np.eye(10)[0], (5, 1)))


def test_gray_rgb_image_equals_its_grayscale_version():
    rng = np.random.default_rng(5)
    g = rng.random((4, 16, 16))
    rgb = np.repeat(g[..., None], 3, axis=-1)
    np.testing.assert_allclose(hog(rgb, cell=4), hog(g, cell=4), rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(color_histogram_hsv(rgb), color_histogram_hsv(g))


def test_other_dtypes_and_layouts():
    rng = np.random.default_rng(6)
    u8 = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    for f in (hog, color_histogram_hsv):
        np.testing.assert_array_equal(f(u8.astype(np.int64)), f(u8))
        np.testing.assert_array_equal(f(u8.tolist()), f(u8))
        nc = np.asfortranarray(u8)
        np.testing.assert_array_equal(f(nc), f(u8))
        np.testing.assert_array_equal(f(u8[::2]), f(np.ascontiguousarray(u8[::2])))
        h16 = (u8 / 255.0).astype(np.float16)
        np.testing.assert_array_equal(f(h16), f(h16.astype(np.float32)))


def test_memmap_input(tmp_path):
    rng = np.random.default_rng(13)
    m = np.memmap(tmp_path / "images.u8", dtype=np.uint8, mode="w+", shape=(5, 16, 16, 3))
    m[:] = rng.integers(0, 256, m.shape)
    plain = np.array(m)
    np.testing.assert_array_equal(hog(m, cell=4), hog(plain, cell=4))
    np.testing.assert_array_equal(color_histogram_hsv(m), color_histogram_hsv(plain))


def test_thread_count_does_not_change_results():
    rng = np.random.default_rng(8)
    images = rng.integers(0, 256, (50, 32, 32, 3), dtype=np.uint8)
    with fastcls.num_threads(1):
        h1, c1 = hog(images), color_histogram_hsv(images)
    with fastcls.num_threads(-1):
        h2, c2 = hog(images), color_histogram_hsv(images)
    np.testing.assert_array_equal(h1, h2)
    np.testing.assert_array_equal(c1, c2)
    # and a batch gives each image what it gets alone
    np.testing.assert_array_equal(hog(images[17:18]), h1[17:18])


def test_import_compiles_nothing():
    code = (
        "import sys, fastcls, fastcls.features; "
        "assert 'fastcls.kernels.features' not in sys.modules; "
        "assert 'numba' not in sys.modules, 'numba imported at import time'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize("func", [hog, color_histogram_hsv, extract_features])
@pytest.mark.parametrize(
    ("images", "error", "match"),
    [
        (np.zeros((8, 8)), ValueError, r"images must be a batch.*images\[None\]"),
        (np.zeros((1, 2, 8, 8, 3)), ValueError, "images must be a batch"),
        (np.zeros((2, 8, 8, 4)), ValueError, "alpha channel"),
        (np.zeros((2, 8, 8, 2)), ValueError, "3 \\(RGB\\) or 1 \\(grayscale\\) channels"),
        (np.zeros((8, 8, 3)), ValueError, "ambiguous"),
        (np.zeros((0, 8, 8, 3)), ValueError, "at least one image"),
        (np.full((2, 8, 8, 3), np.nan), ValueError, "images contains NaN"),
        (np.full((2, 8, 8), np.inf), ValueError, "images contains infinity"),
        (np.full((2, 8, 8, 3), 2.0), ValueError, r"outside \[0, 1\].*divide"),
        (np.full((2, 8, 8, 3), -0.5), ValueError, r"outside \[0, 1\]"),
        (np.full((2, 8, 8, 3), 256), ValueError, "outside 0..255"),
        (np.full((2, 8, 8, 3), -1), ValueError, "outside 0..255"),
        (np.zeros((2, 8, 8, 3), dtype=bool), TypeError, "images must hold uint8 or float"),
        (np.full((2, 8, 8, 3), "a"), TypeError, "images must have a numeric"),
        (None, TypeError, "images must be an array"),
    ],
)
def test_bad_images(func, images, error, match):
    with pytest.raises(error, match=match):
        func(images)


def test_nan_position_is_reported():
    images = np.zeros((3, 8, 8, 3))
    images[2, 1, 1, 1] = np.nan
    with pytest.raises(ValueError, match="first at row 2"):
        hog(images)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"cell": 0}, ValueError, "cell must be >= 1"),
        ({"cell": 9}, ValueError, r"cell=9 is larger than the images \(8x12"),
        ({"cell": 2.0}, TypeError, "cell must be an integer"),
        ({"bins": 0}, ValueError, "bins must be >= 1"),
        ({"bins": True}, TypeError, "bins must be an integer"),
    ],
)
def test_bad_hog_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        hog(np.zeros((1, 8, 12, 3)), **kwargs)


@pytest.mark.parametrize("nbin", [0, -3, 2.5, None])
def test_bad_nbin(nbin):
    with pytest.raises((TypeError, ValueError), match="nbin must be"):
        color_histogram_hsv(np.zeros((1, 8, 8, 3)), nbin=nbin)


def test_check_images_returns_clean_4d():
    out = check_images(np.zeros((2, 5, 6), dtype=np.uint16))
    assert out.shape == (2, 5, 6, 1) and out.dtype == np.uint8 and out.flags.c_contiguous
    x = np.zeros((2, 5, 6, 3), dtype=np.float32)
    assert check_images(x) is x  # no copy when nothing needs changing


# --------------------------------------------------------------------------- pipeline
def test_extract_features_concatenates_in_order():
    rng = np.random.default_rng(9)
    images = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    hog4 = functools.partial(hog, cell=4, bins=6)
    F = extract_features(images, [hog4, color_histogram_hsv])
    assert F.shape == (10, 8 * 8 * 6 + 10) and F.dtype == np.float32 and F.flags.c_contiguous
    np.testing.assert_array_equal(F[:, :384], hog4(images).astype(np.float32))
    np.testing.assert_array_equal(F[:, 384:], color_histogram_hsv(images).astype(np.float32))
    default = extract_features(images)
    assert default.shape == (10, 154)
    np.testing.assert_array_equal(default, extract_features(images, (hog, color_histogram_hsv)))
    one = extract_features(images, [lambda x: x.reshape(len(x), -1)])
    np.testing.assert_array_equal(one, images.reshape(10, -1).astype(np.float32))


def test_extract_features_normalize_fits_on_training_and_reuses():
    rng = np.random.default_rng(10)
    train = rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
    test = rng.integers(0, 128, (7, 16, 16, 3), dtype=np.uint8)  # a different distribution
    fns = [functools.partial(hog, cell=4), color_histogram_hsv]
    raw_train = extract_features(train, fns)
    Z = extract_features(train, fns, normalize=True)
    varying = raw_train.std(axis=0) > 0
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(Z.std(axis=0)[varying], 1, rtol=1e-4)
    scaler = FeatureScaler().fit(raw_train)
    np.testing.assert_allclose(Z, scaler.transform(raw_train), rtol=1e-6, atol=1e-6)
    Zt = extract_features(test, fns, normalize=scaler)
    expected = (extract_features(test, fns).astype(np.float64) - scaler.mean_) / scaler.scale_
    np.testing.assert_allclose(Zt, expected, rtol=1e-6, atol=1e-6)
    assert abs(Zt.mean()) > 0.1  # the test batch is standardised with the training statistics


@pytest.mark.parametrize(
    ("fns", "kwargs", "error", "match"),
    [
        (hog, {}, TypeError, "feature_fns must be a list or tuple"),
        ([], {}, ValueError, "at least one feature function"),
        ([hog, 3], {}, TypeError, "feature_fns must hold callables"),
        ([lambda x: np.zeros(len(x))], {}, ValueError, r"must return a numeric \(N, F\)"),
        ([lambda x: np.zeros((1, 3))], {}, ValueError, "N=2"),
        ([lambda x: np.full((len(x), 2), np.nan)], {}, ValueError, "output of <lambda>"),
        ([hog], {"normalize": "yes"}, TypeError, "normalize must be a bool or a fitted"),
        ([hog], {"normalize": FeatureScaler()}, NotFittedError, "not fitted"),
    ],
)
def test_extract_features_bad_arguments(fns, kwargs, error, match):
    with pytest.raises(error, match=match):
        extract_features(np.zeros((2, 8, 8, 3), dtype=np.uint8), fns, **kwargs)


def test_feature_scaler():
    rng = np.random.default_rng(11)
    X = rng.normal(3.0, 2.0, (30, 5))
    X[:, 2] = 7.0  # constant feature: centred, not scaled
    s = FeatureScaler().fit(X)
    np.testing.assert_allclose(s.mean_, X.mean(axis=0))
    np.testing.assert_allclose(s.scale_[[0, 1, 3, 4]], X[:, [0, 1, 3, 4]].std(axis=0))
    assert s.scale_[2] == 1.0 and s.n_features_in_ == 5
    Z = s.transform(X)
    assert Z.dtype == np.float32
    np.testing.assert_allclose(Z, (X - X.mean(0)) / s.scale_, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(Z[:, 2], 0.0)
    np.testing.assert_allclose(s.inverse_transform(Z), X, rtol=1e-5)
    np.testing.assert_array_equal(FeatureScaler().fit_transform(X), Z)
    plain = FeatureScaler(with_mean=False, with_std=False).fit(X)
    np.testing.assert_array_equal(plain.transform(X), X.astype(np.float32))
    assert FeatureScaler(with_std=False).get_params() == {"with_mean": True, "with_std": False}
    with pytest.raises(NotFittedError, match="not fitted"):
        FeatureScaler().transform(X)
    with pytest.raises(ValueError, match="X has 4 features"):
        s.transform(X[:, :4])
    with pytest.raises(ValueError, match="X contains NaN"):
        FeatureScaler().fit(np.array([[np.nan, 1.0]]))
    with pytest.raises(TypeError, match="with_mean must be a bool"):
        FeatureScaler(with_mean="yes").fit(X)


# --------------------------------------------------------------------------- architecture
@pytest.mark.parametrize("bins", [1, 2, 3, 4, 5, 8, 9, 12, 16, 36, 180])
def test_kernel_orientation_edges_equal_the_reference_bitwise(bins):
    from fastcls.kernels.features import orientation_edges as kernel_edges

    for got, want in zip(kernel_edges(bins), orientation_edges(bins), strict=True):
        assert got.dtype == want.dtype and got.flags.c_contiguous
        np.testing.assert_array_equal(got, want)


def test_production_modules_do_not_import_the_reference():
    import ast
    import pathlib

    root = pathlib.Path(fastcls.__file__).parent
    for name in ("features.py", "linear.py", "losses.py", "optim.py", "gradcheck.py"):
        tree = ast.parse((root / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            else:
                continue
            assert not any(m.startswith("fastcls.reference") for m in mods), (name, mods)


# --------------------------------------------------------------------------- scaler state
@pytest.mark.parametrize("with_mean", [True, False])
@pytest.mark.parametrize("with_std", [True, False])
def test_feature_scaler_fitted_state_round_trip(with_mean, with_std):
    import json

    rng = np.random.default_rng(3)
    X = rng.normal(2.0, 3.0, (25, 6)).astype(np.float32)
    X[:, 1] = 4.0
    s = FeatureScaler(with_mean=with_mean, with_std=with_std).fit(X)
    state = s.get_fitted_state()
    json.dumps(state.metadata)
    assert all(a.dtype == np.float64 for a in state.arrays.values())
    new = FeatureScaler(**s.get_params()).set_fitted_state(state)
    state.arrays["mean"][:] = 99.0  # the scaler owns copies
    np.testing.assert_array_equal(new.transform(X), s.transform(X))
    np.testing.assert_array_equal(new.inverse_transform(X), s.inverse_transform(X))
    images = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    first6 = [lambda x: x.reshape(len(x), -1)[:, :6]]  # six columns, as the scaler expects
    np.testing.assert_array_equal(
        extract_features(images, first6, normalize=new),
        extract_features(images, first6, normalize=s),
    )
    assert new.n_features_in_ == 6 and type(new.n_features_in_) is int


@pytest.mark.parametrize(
    ("change", "params", "match"),
    [
        ({"mean": None}, {}, "lacks the array 'mean'"),
        ({"n_features_in": None}, {}, "lacks the metadata field 'n_features_in'"),
        ({"n_features_in": 0}, {}, "'n_features_in' must be an integer >= 1"),
        ({"n_features_in": 5}, {}, r"'mean' must be float64 of shape \(5,\)"),
        ({"mean": np.zeros(4, np.float32)}, {}, "'mean' must be float64"),
        ({"scale": np.ones((4, 1))}, {}, "'scale' must be float64 of shape"),
        ({"scale": np.array([1.0, np.nan, 1.0, 1.0])}, {}, "'scale' holds NaN"),
        ({"scale": np.array([1.0, 0.0, 1.0, 1.0])}, {}, "'scale' must be > 0"),
        ({"extra": np.ones(4)}, {}, "unknown arrays"),
        ({}, {"with_mean": False}, "'mean' must be zero when with_mean=False"),
        ({}, {"with_std": False}, "'scale' must be one when with_std=False"),
    ],
)
def test_feature_scaler_malformed_state_raises_and_changes_nothing(change, params, match):
    from fastcls.base import FittedState

    X = np.arange(20.0).reshape(5, 4) ** 1.5
    state = FeatureScaler().fit(X).get_fitted_state()
    arrays, meta = dict(state.arrays), dict(state.metadata)
    for key, value in change.items():
        target = meta if key == "n_features_in" else arrays
        if value is None:
            del target[key]
        else:
            target[key] = value
    victim = FeatureScaler(**params).fit(X[:, ::-1].copy())
    mean, out = victim.mean_.copy(), victim.transform(X)
    with pytest.raises(ValueError, match=match):
        victim.set_fitted_state(FittedState(arrays, meta))
    np.testing.assert_array_equal(victim.mean_, mean)
    np.testing.assert_array_equal(victim.transform(X), out)
    fresh = FeatureScaler(**params)
    with pytest.raises(ValueError, match=match):
        fresh.set_fitted_state(FittedState(arrays, meta))
    assert not hasattr(fresh, "mean_")
    with pytest.raises(TypeError, match="FittedState"):
        fresh.set_fitted_state(42)
    with pytest.raises(NotFittedError):
        fresh.get_fitted_state()
