"""Tests for fastcls.datasets: the embedded default dataset and CIFAR-10 loading."""

from __future__ import annotations

import gzip
import importlib.resources
import sys

import numpy as np

from fastcls import datasets


# --------------------------------------------------------------------------- load_default
def _digits_truth() -> tuple[np.ndarray, np.ndarray]:
    """Parse the embedded CSV independently of the loader (plain text split)."""
    path = importlib.resources.files("fastcls") / "data" / "digits.csv.gz"
    with path.open("rb") as raw:
        text = gzip.decompress(raw.read()).decode("ascii")
    rows = [[int(v) for v in line.split(",")] for line in text.splitlines() if line.strip()]
    table = np.array(rows)
    return table[:, :64].reshape(-1, 8, 8), table[:, 64]


def test_load_default_shapes_dtypes_and_values():
    ds = datasets.load_default()
    assert isinstance(ds, datasets.Dataset)
    assert ds.images.shape == (1797, 8, 8)
    assert ds.images.dtype == np.uint8
    assert ds.labels.shape == (1797,)
    assert ds.labels.dtype == np.int64
    assert ds.images.min() == 0 and ds.images.max() == 16  # the data's own range, kept
    assert ds.target_names == tuple("0123456789")
    assert set(np.unique(ds.labels)) == set(range(10))
    # every class is well represented (the UCI test set has 174..183 per class)
    counts = np.bincount(ds.labels, minlength=10)
    assert counts.min() >= 170 and counts.sum() == 1797
    assert "Alpaydin" in ds.description and "CC BY 4.0" in ds.description
    assert len(ds) == ds.n_samples == 1797
    assert ds.images.flags.c_contiguous and ds.labels.flags.c_contiguous


def test_load_default_matches_independent_parse():
    images, labels = _digits_truth()
    ds = datasets.load_default()
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)
    # the first image of the UCI test set is a zero
    assert ds.labels[0] == 0 and ds.labels[1] == 1


def test_load_default_flattened_views():
    ds = datasets.load_default()
    X, y = ds.as_arrays()
    assert X.shape == (1797, 64) and X.dtype == np.uint8
    assert y is ds.labels and ds.y is ds.labels
    np.testing.assert_array_equal(X[5], ds.images[5].ravel())
    np.testing.assert_array_equal(ds.X, X)
    assert np.shares_memory(X, ds.images)  # a view, no copy
    assert "1797" in repr(ds)


def test_load_default_returns_copies_that_cannot_corrupt_the_cache():
    a = datasets.load_default()
    a.images[:] = 255
    a.labels[:] = -1
    b = datasets.load_default()
    assert b.images.max() == 16 and b.labels.min() == 0
    assert not np.shares_memory(a.images, b.images)
    assert b.images.flags.writeable and b.labels.flags.writeable


def test_import_datasets_needs_no_sklearn_and_compiles_nothing():
    import subprocess

    code = (
        "import sys\n"
        "sys.modules['sklearn'] = None\n"  # any import of scikit-learn would fail
        "import fastcls.datasets as d\n"
        "ds = d.load_default()\n"
        "assert ds.images.shape == (1797, 8, 8)\n"
        "assert 'numba' not in sys.modules, 'datasets must not import numba'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
