"""Image features: fastcls kernels vs the per-image NumPy reference vs the peers.

Workload (issue 6): 10000 random uint8 images of 32x32x3 (CIFAR-sized,
:func:`fastcls.testing.images`). Set ``FASTCLS_BENCH_SMALL=1`` for a smoke-sized run
(200 images).

Run::

    pytest bench/bench_features.py --benchmark-enable -p no:cacheprovider

Groups ``hog|<shape>`` (HOG, 8x8 cells, 9 bins: 144 values per image) and
``color_histogram_hsv|<shape>`` (hue histogram, 10 bins); the implementations are those
of :data:`fastcls.testing.IMPLEMENTATIONS` (checked by ``tests/test_implementations.py``)
plus fastcls on one thread, as parameters, so one run times them side by side:

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

import numpy as np
import pytest

import fastcls
from fastcls.testing import IMPLEMENTATIONS, bench_small, images

SMALL = bench_small()
N = 200 if SMALL else 10000
#: images given to the per-image loops (their time is scaled to N)
SLICE = 50 if SMALL else 500
ROUNDS = {"fastcls": 7, "fastcls-1thread": 5, "reference": 3, "skimage": 3, "cs231n": 3}
#: benchmark group -> function of the shared table
GROUPS = {"features-hog": "hog", "features-hist": "color_histogram_hsv"}
#: every implementation of the table, plus fastcls on one thread
CASES = [
    (group, lib)
    for group, func in GROUPS.items()
    for lib in [*IMPLEMENTATIONS[func], "fastcls-1thread"]
]
SLICED = {"reference", "skimage", "cs231n"}


@pytest.fixture(scope="module")
def batch():
    return images(N, seed=0)


def _setup(func, library, ims):
    if library == "fastcls-1thread":
        return IMPLEMENTATIONS[func]["fastcls"](ims, n_jobs=1)
    impl = IMPLEMENTATIONS[func][library]
    if not impl.available():
        pytest.skip(f"{library} needs {impl.requires}")
    if library == "fastcls":
        return impl(ims, n_jobs=None)
    return impl(ims[:SLICE] if library in SLICED else ims)


def _id(case):
    group, impl = case
    return f"{group}-{impl}" + (f"[n{SLICE}]" if impl in SLICED else "")


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_features(benchmark, batch, case):
    group, impl = case
    func = GROUPS[group]
    fn = _setup(func, impl, batch)
    n = SLICE if impl in SLICED else N
    benchmark.group = f"{func}|{N}x32x32x3"
    benchmark.extra_info.update(
        {
            "shape": f"{N}x32x32x3 uint8",
            "images_timed": n,
            "scale": N / n,
            "threads": 1 if impl == "fastcls-1thread" else fastcls.get_num_threads(),
        }
    )
    result = benchmark.pedantic(fn, rounds=ROUNDS.get(impl, 1), iterations=1, warmup_rounds=0)
    if impl.startswith("fastcls"):  # the timed result equals the reference
        want = IMPLEMENTATIONS[func]["reference"](batch[-3:])()
        np.testing.assert_allclose(result[-3:], want, rtol=1e-12, atol=1e-15)
