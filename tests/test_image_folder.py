"""Image folders decoded with Pillow: layout, colour, resizing, and every way a folder
can be wrong (unreadable files are named, Pillow missing names the extra)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from fastcls.datasets import load_image, load_image_folder

Image = pytest.importorskip("PIL.Image")


def write_image(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def make_folder(root: Path, classes=("cat", "dog"), n=3, size=(6, 5), seed=0):
    """PNG images (lossless) of random colours; returns {class: [arrays in name order]}."""
    rng = np.random.default_rng(seed)
    written: dict[str, list[np.ndarray]] = {}
    for c in classes:
        written[c] = []
        for i in range(n):
            img = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
            write_image(root / c / f"{i:03d}.png", img)
            written[c].append(img)
    return written


def test_rgb_images_labels_and_names(tmp_path):
    written = make_folder(tmp_path)
    ds = load_image_folder(tmp_path)
    assert ds.target_names == ("cat", "dog")
    assert ds.images.shape == (6, 6, 5, 3) and ds.images.dtype == np.uint8
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    np.testing.assert_array_equal(ds.images[:3], np.stack(written["cat"]))
    np.testing.assert_array_equal(ds.images[3:], np.stack(written["dog"]))
    assert "2 classes" in ds.description


def test_gray_is_pillows_luma_with_one_channel(tmp_path):
    written = make_folder(tmp_path, classes=("a",), n=1)
    ds = load_image_folder(tmp_path, color="gray")
    assert ds.images.shape == (1, 6, 5, 1)
    rgb = written["a"][0].astype(np.float64)
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    assert np.abs(ds.images[0, ..., 0] - luma).max() <= 1.0  # Pillow rounds in fixed point


def test_jpeg_grey_and_rgba_files_are_converted(tmp_path):
    rng = np.random.default_rng(2)
    write_image(tmp_path / "x" / "a.jpg", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    write_image(tmp_path / "x" / "b.PNG", rng.integers(0, 256, (8, 8), dtype=np.uint8))
    write_image(tmp_path / "y" / "c.png", rng.integers(0, 256, (8, 8, 4), dtype=np.uint8))
    ds = load_image_folder(tmp_path)
    assert ds.images.shape == (3, 8, 8, 3)
    grey = ds.images[1]
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()


def test_resize_to_a_common_size(tmp_path):
    rng = np.random.default_rng(3)
    write_image(tmp_path / "a" / "big.png", rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    write_image(tmp_path / "b" / "small.png", rng.integers(0, 256, (7, 9, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"differ in size.*small\.png.*size="):
        load_image_folder(tmp_path)
    assert load_image_folder(tmp_path, size=12).images.shape == (2, 12, 12, 3)
    assert load_image_folder(tmp_path, size=(10, 4)).images.shape == (2, 10, 4, 3)
    const = np.full((20, 30, 3), 77, dtype=np.uint8)
    write_image(tmp_path / "a" / "big.png", const)
    assert (load_image_folder(tmp_path, size=5).images[0] == 77).all()


def test_unreadable_files_are_named(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "dog" / "broken.png").write_bytes(b"not an image at all")
    (tmp_path / "cat" / "empty.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="2 image file") as exc:
        load_image_folder(tmp_path)
    assert "broken.png" in str(exc.value) and "empty.jpg" in str(exc.value)


def test_other_and_hidden_files_are_ignored(tmp_path):
    make_folder(tmp_path, n=2)
    (tmp_path / "cat" / "notes.txt").write_text("hello")
    (tmp_path / "cat" / ".DS_Store").write_bytes(b"\x00\x01")
    (tmp_path / ".thumbnails").mkdir()
    (tmp_path / "README.md").write_text("my pets")
    ds = load_image_folder(tmp_path)
    assert ds.images.shape[0] == 4 and ds.target_names == ("cat", "dog")


def test_classes_argument_maps_and_checks_folders(tmp_path):
    make_folder(tmp_path / "test", classes=("dog",), n=2)
    ds = load_image_folder(tmp_path / "test", classes=("cat", "dog"))
    assert ds.labels.tolist() == [1, 1] and ds.target_names == ("cat", "dog")
    with pytest.raises(ValueError, match=r"\['dog'\] that are not among"):
        load_image_folder(tmp_path / "test", classes=("cat",))


def test_empty_and_missing_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_image_folder(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no class sub-folders"):
        load_image_folder(tmp_path)
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="holds no images"):
        load_image_folder(tmp_path)


def test_bad_arguments(tmp_path):
    make_folder(tmp_path, n=1)
    with pytest.raises(ValueError, match="color"):
        load_image_folder(tmp_path, color="cmyk")
    with pytest.raises(ValueError, match="size"):
        load_image_folder(tmp_path, size=0)
    with pytest.raises(TypeError, match="size"):
        load_image_folder(tmp_path, size=(1, 2, 3))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="path"):
        load_image_folder(3)  # type: ignore[arg-type]


def test_without_pillow_the_error_names_the_extra(tmp_path, monkeypatch):
    make_folder(tmp_path, n=1)
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r"fastcls\[images\]"):
        load_image_folder(tmp_path)


def test_load_image(tmp_path):
    img = np.random.default_rng(4).integers(0, 256, (4, 7, 3), dtype=np.uint8)
    path = write_image(tmp_path / "one.png", img)
    np.testing.assert_array_equal(load_image(path), img)
    assert load_image(path, size=3, color="gray").shape == (3, 3, 1)
    (tmp_path / "bad.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.png"):
        load_image(tmp_path / "bad.png")
