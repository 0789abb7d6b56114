"""Image features: fastcls kernels vs the per-image NumPy reference vs the peers.

Workload (issue 6): 10000 random uint8 images of 32x32x3 (CIFAR-sized). Set
``FASTCLS_BENCH_SMALL=1`` for a smoke-sized run (200 images).

Run::

    pytest bench/bench_features.py --benchmark-enable -p no:cacheprovider

Groups ``features-hog`` (HOG, 8x8 cells, 9 bins: 144 values per image) and
``features-hist`` (hue histogram, 10 bins); implementations are parameters, so one run
times them side by side:

* ``fastcls`` / ``fastcls-1thread``: :func:`fastcls.features.hog` /
  :func:`fastcls.features.color_histogram_hsv` on the whole batch, all cores / 1 thread
  (JIT-warmed before timing).
* ``reference``: the per-image loop over :mod:`fastcls.reference.features`.
* ``skimage``: ``skimage.feature.hog`` per image (``cells_per_block=(1, 1)``, which
  also L1-normalises each cell; ``channel_axis=-1`` takes the strongest channel's
  gradient rather than luma) -- comparable work, not identical output.
* ``cs231n``: the CS231n assignment's ``color_histogram_hsv``
  (``matplotlib.colors.rgb_to_hsv`` + ``np.histogram``) per image.

The slow per-image loops run on a slice of the batch: their parameter id says so
(``[n500]``) and ``extra_info["scale"]`` is the factor that converts their time to the
full batch (per-image time x N).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import fastcls
from fastcls.features import color_histogram_hsv, hog
from fastcls.reference.features import color_histogram_hsv_reference, hog_reference

SMALL = os.environ.get("FASTCLS_BENCH_SMALL", "").strip().lower() in {"1", "true", "yes", "on"}
N = 200 if SMALL else 10000
#: images given to the per-image loops (their time is scaled to N)
SLICE = 50 if SMALL else 500
ROUNDS = {"fastcls": 7, "fastcls-1thread": 5, "reference": 3, "skimage": 3, "cs231n": 3}


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (N, 32, 32, 3), dtype=np.uint8)


def _fastcls(func, threads):
    def make(images):
        func(images[:4])  # JIT warm-up, untimed

        def run():
            with fastcls.num_threads(threads):
                return func(images)

        return run

    return make


def _hog_reference(images):
    part = images[:SLICE]
    return lambda: [hog_reference(im) for im in part]


def _hog_skimage(images):
    feature = pytest.importorskip("skimage.feature")
    part = images[:SLICE]
    kw = {"orientations": 9, "pixels_per_cell": (8, 8), "cells_per_block": (1, 1)}
    return lambda: [feature.hog(im, channel_axis=-1, **kw) for im in part]


def _hist_reference(images):
    part = images[:SLICE]
    return lambda: [color_histogram_hsv_reference(im) for im in part]


def _hist_cs231n(images):
    colors = pytest.importorskip("matplotlib.colors")
    part = images[:SLICE]
    edges = np.linspace(0, 255, 11)

    def one(im):  # the assignment's color_histogram_hsv(im, nbin=10), normalised
        hsv = colors.rgb_to_hsv(im / 255.0) * 255
        hist, bin_edges = np.histogram(hsv[:, :, 0], bins=edges, density=True)
        return hist * np.diff(bin_edges)

    return lambda: [one(im) for im in part]


GROUPS = {
    "features-hog": {
        "fastcls": _fastcls(hog, None),
        "fastcls-1thread": _fastcls(hog, 1),
        "reference": _hog_reference,
        "skimage": _hog_skimage,
    },
    "features-hist": {
        "fastcls": _fastcls(color_histogram_hsv, None),
        "fastcls-1thread": _fastcls(color_histogram_hsv, 1),
        "reference": _hist_reference,
        "cs231n": _hist_cs231n,
    },
}
SLICED = {"reference", "skimage", "cs231n"}
CASES = [(g, impl) for g, impls in GROUPS.items() for impl in impls]


def _id(case):
    group, impl = case
    return f"{group}-{impl}" + (f"[n{SLICE}]" if impl in SLICED else "")


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_features(benchmark, images, case):
    group, impl = case
    fn = GROUPS[group][impl](images)
    n = SLICE if impl in SLICED else N
    benchmark.group = group
    benchmark.extra_info.update(
        {
            "shape": f"{N}x32x32x3 uint8",
            "images_timed": n,
            "scale": N / n,
            "threads": 1 if impl == "fastcls-1thread" else fastcls.get_num_threads(),
        }
    )
    result = benchmark.pedantic(fn, rounds=ROUNDS[impl], iterations=1, warmup_rounds=0)
    if impl.startswith("fastcls"):  # the timed result equals the reference
        ref = hog_reference if group == "features-hog" else color_histogram_hsv_reference
        want = [ref(im) for im in images[-3:]]
        np.testing.assert_allclose(result[-3:], want, rtol=1e-12, atol=1e-15)
