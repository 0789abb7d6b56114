"""Your own images: one sub-folder per class of PNG / JPEG files, decoded with Pillow.

:func:`load_image_folder` reads the layout people keep their images in::

    pets/
        cat/   001.png  002.jpg ...
        dog/   a.jpeg   b.png   ...

into one uint8 array ``(N, H, W, C)`` plus labels and class names (a
:class:`~fastcls.datasets.Dataset`). Pillow is an optional dependency, the ``images``
extra (``pip install 'fastcls[images]'``); it is imported only when a folder is read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fastcls._validation import check_choice, check_int
from fastcls.datasets.digits import Dataset

__all__ = ["IMAGE_SUFFIXES", "load_image", "load_image_folder"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
"""File name endings read as images (any case); other files are ignored."""

#: how many unreadable files a message names before it says "and N more"
_NAMED = 5


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError(
            "load_image_folder needs Pillow to decode images: install the images extra "
            "with `pip install 'fastcls[images]'` (or `pip install pillow`)"
        ) from exc
    return Image


def _check_size(size: Any) -> tuple[int, int] | None:
    """``size`` as ``(height, width)``: None, an int (square) or a pair of ints."""
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        s = check_int(size, "size", min_value=1)
        return s, s
    if isinstance(size, (tuple, list)) and len(size) == 2:
        return check_int(size[0], "size[0]", min_value=1), check_int(
            size[1], "size[1]", min_value=1
        )
    raise TypeError(f"size must be None, an int or a (height, width) pair, got {size!r}")


def _decode(Image: Any, path: Path, hw: tuple[int, int] | None, mode: str) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert(mode)
        if hw is not None and im.size != (hw[1], hw[0]):
            im = im.resize((hw[1], hw[0]), Image.Resampling.BILINEAR)
        out = np.asarray(im, dtype=np.uint8)
    return out[..., None] if out.ndim == 2 else out


def load_image(
    path: str | os.PathLike[str], size: int | tuple[int, int] | None = None, color: str = "rgb"
) -> np.ndarray:
    """One image file as uint8 ``(H, W, 3)`` (``color="rgb"``) or ``(H, W, 1)`` (``"gray"``).

    ``size`` and ``color`` as for :func:`load_image_folder`.

    Raises
    ------
    ImportError
        Pillow is not installed (the ``images`` extra).
    ValueError
        The file cannot be decoded (the message names it).
    """
    hw = _check_size(size)
    mode = {"rgb": "RGB", "gray": "L"}[check_choice(color, "color", ("rgb", "gray"))]
    p = Path(os.fspath(path)).expanduser()
    Image = _pillow()
    try:
        return _decode(Image, p, hw, mode)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ValueError(
            f"{p} could not be read as an image ({type(exc).__name__}: {exc})"
        ) from None


def _class_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        raise FileNotFoundError(f"no image folder at {root}: not a folder")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ValueError(
            f"{root} has no class sub-folders; expected one folder per class of image files "
            "(e.g. cat/001.png, dog/002.jpg)"
        )
    return folders


def load_image_folder(
    path: str | os.PathLike[str],
    size: int | tuple[int, int] | None = None,
    color: str = "rgb",
    *,
    classes: Sequence[str] | None = None,
) -> Dataset:
    """Read a folder of class sub-folders of images into one labelled uint8 array.

    Parameters
    ----------
    path : str or os.PathLike
        A folder with one sub-folder per class (its name is the class name), each
        holding PNG / JPEG / BMP files (:data:`IMAGE_SUFFIXES`). Hidden files and
        folders and files with other endings are ignored; classes are sorted by name.
    size : int or (height, width), optional
        Resize every image to this size (bilinear). None: keep the sizes, which must
        then all be equal (the message names a file that differs).
    color : {"rgb", "gray"}, default "rgb"
        ``"rgb"``: three channels (grey images are repeated, alpha is dropped);
        ``"gray"``: one channel, luma ``0.299 R + 0.587 G + 0.114 B`` (Pillow's ``"L"``).
    classes : sequence of str, optional
        The class names, in label order, that sub-folders must be among (e.g. the
        training folder's classes when reading the test folder); a sub-folder not in it
        is an error. None: the sorted sub-folder names.

    Returns
    -------
    Dataset
        ``images`` uint8 of shape (N, H, W, 3) or (N, H, W, 1); ``labels`` int64 indexing
        ``target_names`` (the class names); images in class order, then file-name order.

    Raises
    ------
    ImportError
        Pillow is not installed (the message names the ``fastcls[images]`` extra).
    FileNotFoundError
        ``path`` is not a folder.
    ValueError
        No class sub-folders or no images; files that cannot be decoded (named in the
        message); images of different sizes without ``size``; a class not in
        ``classes``.

    Examples
    --------
    >>> from fastcls.datasets import load_image_folder
    >>> ds = load_image_folder("pets/train", size=32)  # doctest: +SKIP
    >>> ds.images.shape, ds.target_names  # doctest: +SKIP
    ((200, 32, 32, 3), ('cat', 'dog'))
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    hw = _check_size(size)
    mode = {"rgb": "RGB", "gray": "L"}[check_choice(color, "color", ("rgb", "gray"))]
    root = Path(os.fspath(path)).expanduser()
    folders = _class_folders(root)
    names = tuple(p.name for p in folders) if classes is None else tuple(str(c) for c in classes)
    unknown = [p.name for p in folders if p.name not in names]
    if unknown:
        raise ValueError(
            f"{root} has class folder(s) {unknown} that are not among the classes {list(names)}"
        )
    files: list[tuple[Path, int]] = []
    for folder in folders:
        label = names.index(folder.name)
        for f in sorted(folder.iterdir()):
            if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES:
                files.append((f, label))
    if not files:
        raise ValueError(
            f"{root} holds no images: expected {'/'.join(IMAGE_SUFFIXES)} files in its "
            "class sub-folders"
        )
    Image = _pillow()
    decoded: list[np.ndarray] = []
    bad: list[str] = []
    for f, _ in files:
        try:
            decoded.append(_decode(Image, f, hw, mode))
        except (OSError, ValueError, SyntaxError) as exc:  # Pillow's decoding errors
            bad.append(f"{f} ({type(exc).__name__}: {exc})")
    if bad:
        more = f" and {len(bad) - _NAMED} more" if len(bad) > _NAMED else ""
        raise ValueError(
            f"{len(bad)} image file(s) could not be read: {'; '.join(bad[:_NAMED])}{more}"
        )
    shape = decoded[0].shape
    for (f, _), img in zip(files, decoded, strict=True):
        if img.shape != shape:
            raise ValueError(
                f"images differ in size: {files[0][0]} is {shape[1]}x{shape[0]} but {f} is "
                f"{img.shape[1]}x{img.shape[0]} (width x height); pass size=(height, width) "
                "to resize them all"
            )
    images = np.stack(decoded)
    labels = np.array([label for _, label in files], dtype=np.int64)
    description = (
        f"image folder {root}: {len(files)} images of {len(names)} classes, "
        f"{images.shape[1]}x{images.shape[2]} {color}"
    )
    return Dataset(np.ascontiguousarray(images), labels, names, description)
