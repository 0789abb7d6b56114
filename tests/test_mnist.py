"""MNIST-format (IDX) files: generated files in every variant, every malformation, and
the real Fashion-MNIST files when Debian's ``dataset-fashion-mnist`` package is there."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from fastcls.datasets import (
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
    find_mnist_files,
    load_mnist,
    read_idx,
)
from fastcls.datasets.mnist import MNIST_FILES

FASHION = Path("/usr/share/datasets/fashion-mnist")

_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array``, written independently of the parser."""
    code = _CODES[array.dtype.kind + str(array.dtype.itemsize)]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    data = idx_bytes(array)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def make_mnist(folder: Path, n_train=30, n_test=12, gz=False, seed=0, shape=(28, 28)):
    """A small MNIST-format folder; returns the arrays written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, size=(n_train, *shape), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, size=n_train).astype(np.uint8),
        "test_images": rng.integers(0, 256, size=(n_test, *shape), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, size=n_test).astype(np.uint8),
    }
    for key, arr in arrays.items():
        write_idx(folder / MNIST_FILES[key], arr, gz=gz)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_round_trip(tmp_path, gz):
    arrays = make_mnist(tmp_path, gz=gz)
    X, y, Xt, yt = load_mnist(tmp_path)
    np.testing.assert_array_equal(X, arrays["train_images"])
    np.testing.assert_array_equal(y, arrays["train_labels"])
    np.testing.assert_array_equal(Xt, arrays["test_images"])
    np.testing.assert_array_equal(yt, arrays["test_labels"])
    assert X.dtype == np.uint8 and y.dtype == np.int64 and X.shape == (30, 28, 28)
    assert X.flags.c_contiguous and X.flags.writeable


def test_load_mnist_limits_read_a_prefix(tmp_path):
    arrays = make_mnist(tmp_path, gz=True)
    X, y, Xt, yt = load_mnist(tmp_path, n_train=7, n_test=0)
    np.testing.assert_array_equal(X, arrays["train_images"][:7])
    np.testing.assert_array_equal(y, arrays["train_labels"][:7])
    assert Xt.shape == (0, 28, 28) and yt.shape == (0,)
    with pytest.raises(ValueError, match="fewer than the 31 asked"):
        load_mnist(tmp_path, n_train=31)
    with pytest.raises(ValueError, match="n_test"):
        load_mnist(tmp_path, n_test=-1)


def test_dotted_names_and_raw_subfolder(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, size=(5, 4, 6), dtype=np.uint8)
    labels = np.arange(5, dtype=np.uint8)
    for key, stem in MNIST_FILES.items():
        arr = imgs if "images" in key else labels
        write_idx(raw / stem.replace("-idx", ".idx"), arr)
    X, y, _, _ = load_mnist(tmp_path / "MNIST")
    assert X.shape == (5, 4, 6)  # rows x columns from the header
    np.testing.assert_array_equal(y, np.arange(5))
    assert set(find_mnist_files(tmp_path / "MNIST")) == set(MNIST_FILES)


def test_read_idx_types_are_big_endian(tmp_path):
    for dtype in (np.int16, np.int32, np.float32, np.float64, np.int8):
        arr = (np.arange(24).reshape(2, 3, 4) - 7).astype(dtype) * 3
        path = write_idx(tmp_path / f"a_{np.dtype(dtype).name}", arr)
        out = read_idx(path)
        np.testing.assert_array_equal(out, arr)
        assert out.dtype == np.dtype(dtype)  # native byte order


def _expect(tmp_path, name, match, **kw):
    with pytest.raises(ValueError, match=match) as exc:
        load_mnist(tmp_path, **kw)
    assert name in str(exc.value)  # the message names the file


def test_bad_magic_names_the_file(tmp_path):
    make_mnist(tmp_path)
    path = tmp_path / MNIST_FILES["train_images"]
    path.write_bytes(b"\x89PNG" + path.read_bytes()[4:])
    _expect(tmp_path, str(path), "not an IDX")


def test_swapped_files_are_caught_by_their_dimensions(tmp_path):
    arrays = make_mnist(tmp_path)
    write_idx(tmp_path / MNIST_FILES["test_labels"], arrays["test_images"])
    _expect(tmp_path, MNIST_FILES["test_labels"], "3-dimensional array; expected 1")


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_file(tmp_path, gz):
    make_mnist(tmp_path, gz=gz)
    name = MNIST_FILES["train_images"] + (".gz" if gz else "")
    path = tmp_path / name
    data = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    cut = data[: len(data) - 100]
    path.write_bytes(gzip.compress(cut) if gz else cut)
    _expect(tmp_path, name, "truncated")


def test_truncated_gzip_stream(tmp_path):
    make_mnist(tmp_path, gz=True)
    path = tmp_path / (MNIST_FILES["train_images"] + ".gz")
    path.write_bytes(path.read_bytes()[:-200])  # the compressed stream itself is cut
    _expect(tmp_path, path.name, "truncated|corrupt")


def test_trailing_bytes_are_an_error(tmp_path):
    make_mnist(tmp_path)
    path = tmp_path / MNIST_FILES["test_images"]
    path.write_bytes(path.read_bytes() + b"\x00")
    _expect(tmp_path, path.name, "longer than its header")


def test_label_out_of_range(tmp_path):
    arrays = make_mnist(tmp_path)
    labels = arrays["train_labels"].copy()
    labels[3] = 10
    write_idx(tmp_path / MNIST_FILES["train_labels"], labels)
    _expect(tmp_path, MNIST_FILES["train_labels"], "label 10")


def test_count_mismatch(tmp_path):
    arrays = make_mnist(tmp_path)
    write_idx(tmp_path / MNIST_FILES["test_labels"], arrays["test_labels"][:-1])
    _expect(tmp_path, MNIST_FILES["test_labels"], "12 images but")


def test_wrong_dtype(tmp_path):
    arrays = make_mnist(tmp_path)
    write_idx(tmp_path / MNIST_FILES["train_images"], arrays["train_images"].astype(np.float32))
    _expect(tmp_path, MNIST_FILES["train_images"], "float32 values")


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no MNIST-format files"):
        load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_mnist(tmp_path / "nowhere")
    make_mnist(tmp_path)
    (tmp_path / MNIST_FILES["test_labels"]).unlink()
    with pytest.raises(FileNotFoundError, match="missing t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path)
    with pytest.raises(TypeError, match="path"):
        load_mnist(42)  # type: ignore[arg-type]


def test_class_names():
    assert MNIST_CLASSES[7] == "7" and len(FASHION_MNIST_CLASSES) == 10
    assert FASHION_MNIST_CLASSES[9] == "Ankle boot"


@pytest.mark.skipif(not FASHION.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_matches_the_authors_reader():
    """The Debian files, read by load_mnist and by the dataset authors' own method
    (``utils/mnist_reader.py``: gunzip, frombuffer at offset 8 / 16)."""
    X, y, Xt, yt = load_mnist(FASHION)
    assert X.shape == (60000, 28, 28) and Xt.shape == (10000, 28, 28)
    for part, (images, labels) in {"train": (X, y), "t10k": (Xt, yt)}.items():
        with gzip.open(FASHION / f"{part}-labels-idx1-ubyte.gz") as f:
            ref_labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
        with gzip.open(FASHION / f"{part}-images-idx3-ubyte.gz") as f:
            ref_images = np.frombuffer(f.read(), dtype=np.uint8, offset=16)
        np.testing.assert_array_equal(labels, ref_labels)
        np.testing.assert_array_equal(images.reshape(-1), ref_images)
    # Fashion-MNIST is balanced: 6000 / 1000 images per class
    assert np.bincount(y).tolist() == [6000] * 10
    assert np.bincount(yt).tolist() == [1000] * 10
