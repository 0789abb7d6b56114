"""MNIST-format (IDX) files: MNIST, Fashion-MNIST and anything else stored the same way.

:func:`load_mnist` reads the four standard files of a folder (``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each
plain or gzipped); :func:`read_idx` reads any one IDX file. The IDX format is a 4-byte
magic number (two zero bytes, a type code, the number of dimensions), one big-endian
uint32 per dimension, then the values in C order, big-endian. Every header is checked
against the file's size, so a truncated download or a file of the wrong kind fails with
a message naming it; the values are parsed with :func:`numpy.frombuffer`.

Imports only NumPy and the standard library; compiles nothing.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from fastcls._validation import check_int

__all__ = [
    "FASHION_MNIST_CLASSES",
    "MNIST_CLASSES",
    "MNIST_FILES",
    "find_mnist_files",
    "load_mnist",
    "read_idx",
]

MNIST_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
"""MNIST's class names: the digits ``"0"`` .. ``"9"``."""
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
"""Fashion-MNIST's class names, indexed by label (from the dataset's README)."""

MNIST_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
"""The standard file names (without ``.gz``) of the four MNIST-format files."""

#: IDX type code -> NumPy dtype (big-endian, as stored)
_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
#: bytes of the largest header (magic + up to 255 dimensions)
_MAX_HEADER = 4 + 4 * 255


def _variants(stem: str) -> list[str]:
    # "train-images-idx3-ubyte" as published; "train-images.idx3-ubyte" as some
    # mirrors (and Kaggle) rename it
    dotted = stem.replace("-idx", ".idx")
    return [stem, stem + ".gz", dotted, dotted + ".gz"]


def find_mnist_files(path: str | os.PathLike[str]) -> dict[str, Path] | None:
    """The four MNIST-format files in ``path`` (or its ``raw/`` sub-folder), or None.

    Returns a dict with the keys of :data:`MNIST_FILES` when all four are there, each
    plain or gzipped (a plain file wins over a gzipped one); None when none of them is.

    Raises
    ------
    FileNotFoundError
        Some of the four files are there but not all (the message lists the missing).
    """
    root = Path(os.fspath(path)).expanduser()
    for folder in (root, root / "raw"):
        if not folder.is_dir():
            continue
        found: dict[str, Path] = {}
        for key, stem in MNIST_FILES.items():
            for name in _variants(stem):
                if (folder / name).is_file():
                    found[key] = folder / name
                    break
        if len(found) == len(MNIST_FILES):
            return found
        if found:
            missing = [MNIST_FILES[k] for k in MNIST_FILES if k not in found]
            raise FileNotFoundError(
                f"{folder} holds only some of the MNIST-format files: missing "
                f"{', '.join(f'{m}[.gz]' for m in missing)}"
            )
    return None


def _open(path: Path) -> BinaryIO:
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"  # gzip's magic, whatever the file is called
    return gzip.open(path, "rb") if gzipped else open(path, "rb")  # type: ignore[return-value]


def _read_exact(f: BinaryIO, n: int, where: str) -> bytes:
    try:
        data = f.read(n)
    except (OSError, EOFError, zlib.error) as exc:  # a corrupt or truncated .gz
        raise ValueError(f"{where} cannot be read: {exc} (corrupt or truncated file)") from None
    if len(data) != n:
        raise ValueError(
            f"{where} is truncated: expected {n} more bytes, found {len(data)} "
            "(re-download the file)"
        )
    return data


def read_idx(
    path: str | os.PathLike[str], *, max_items: int | None = None, ndim: int | None = None
) -> np.ndarray:
    """Read one IDX file (plain or gzipped) into a native-endian NumPy array.

    Parameters
    ----------
    path : str or os.PathLike
    max_items : int, optional
        Read only the first ``max_items`` entries along the first axis (the rest of
        the file is not read). None reads the whole file, and then a file longer or
        shorter than its header says is an error.
    ndim : int, optional
        The number of dimensions the file must have (3 for images, 1 for labels).

    Returns
    -------
    ndarray
        Of the shape and type of the header (uint8 for MNIST), C-contiguous.

    Raises
    ------
    ValueError
        Not an IDX file (bad magic number or type code), unexpected ``ndim``, or a
        truncated or oversized file; the message names the file.
    """
    p = Path(os.fspath(path)).expanduser()
    where = str(p)
    if max_items is not None:
        max_items = check_int(max_items, "max_items", min_value=0)
    with _open(p) as f:
        magic = _read_exact(f, 4, where)
        if magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_TYPES or magic[3] == 0:
            raise ValueError(
                f"{where} is not an IDX (MNIST-format) file: magic number "
                f"0x{magic.hex()} (expected 0x0000TTNN, TT a type code, NN dimensions)"
            )
        dtype, n_dims = _IDX_TYPES[magic[2]], magic[3]
        if ndim is not None and n_dims != ndim:
            raise ValueError(
                f"{where} holds a {n_dims}-dimensional array; expected {ndim} dimensions "
                f"({'images' if ndim == 3 else 'labels' if ndim == 1 else 'data'}); "
                "are the image and label files swapped?"
            )
        shape = [int(s) for s in np.frombuffer(_read_exact(f, 4 * n_dims, where), dtype=">u4")]
        n = shape[0] if max_items is None else min(shape[0], max_items)
        if max_items is not None and max_items > shape[0]:
            raise ValueError(f"{where} holds {shape[0]} items, fewer than the {max_items} asked")
        item = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        body = _read_exact(f, n * item, where)
        if max_items is None:
            extra = _read_exact_tail(f, where)
            if extra:
                raise ValueError(
                    f"{where} is longer than its header says ({shape} of {dtype.name}): "
                    "not an IDX file, or a corrupt one"
                )
    out = np.frombuffer(body, dtype=dtype).reshape([n, *shape[1:]])
    return out.astype(dtype.newbyteorder("="))  # native order, writable, one copy


def _read_exact_tail(f: BinaryIO, where: str) -> bool:
    """Whether ``f`` has bytes left (reading one byte at most)."""
    try:
        return bool(f.read(1))
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{where} cannot be read: {exc} (corrupt or truncated file)") from None


def _check_pair(images: np.ndarray, labels: np.ndarray, where: tuple[Path, Path]) -> None:
    if images.dtype != np.uint8:
        raise ValueError(f"{where[0]} holds {images.dtype} values; MNIST images are uint8")
    if labels.dtype != np.uint8:
        raise ValueError(f"{where[1]} holds {labels.dtype} values; MNIST labels are uint8")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{where[0]} holds {images.shape[0]} images but {where[1]} holds "
            f"{labels.shape[0]} labels; they must match"
        )
    if labels.size and labels.max() > 9:
        bad = int(labels[labels > 9][0])
        raise ValueError(f"{where[1]} holds label {bad}; MNIST-format labels must be in 0..9")


def load_mnist(
    path: str | os.PathLike[str],
    *,
    n_train: int | None = None,
    n_test: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load MNIST or Fashion-MNIST (any MNIST-format data set) from a folder.

    Parameters
    ----------
    path : str or os.PathLike
        A folder holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each plain or
        gzipped (``.gz``; ``train-images.idx3-ubyte`` spellings too), or holding them in
        a ``raw/`` sub-folder. Debian's ``dataset-fashion-mnist`` package installs them
        in ``/usr/share/datasets/fashion-mnist``.
    n_train, n_test : int, optional
        Read only the first ``n_train`` training / ``n_test`` test images (file order);
        None reads all (60000 and 10000 for MNIST and Fashion-MNIST).

    Returns
    -------
    X_train : ndarray of shape (n_train, 28, 28), uint8
    y_train : ndarray of shape (n_train,), int64, values 0..9
    X_test : ndarray of shape (n_test, 28, 28), uint8
    y_test : ndarray of shape (n_test,), int64

    Raises
    ------
    FileNotFoundError
        The folder, or one of the four files, is missing (the message lists them).
    ValueError
        A file is not an IDX file of the expected kind (magic number, type, number of
        dimensions), is truncated, or holds a label outside 0..9, or image and label
        counts differ; the message names the file.

    Examples
    --------
    >>> from fastcls.datasets import load_mnist, FASHION_MNIST_CLASSES
    >>> X, y, Xt, yt = load_mnist("/usr/share/datasets/fashion-mnist")  # doctest: +SKIP
    >>> X.shape, X.dtype, Xt.shape, FASHION_MNIST_CLASSES[y[0]]  # doctest: +SKIP
    ((60000, 28, 28), dtype('uint8'), (10000, 28, 28), 'Ankle boot')
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    root = Path(os.fspath(path)).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"no MNIST-format data at {root}: not a folder")
    files = find_mnist_files(root)
    if files is None:
        raise FileNotFoundError(
            f"no MNIST-format files in {root}: expected "
            + ", ".join(f"{n}[.gz]" for n in MNIST_FILES.values())
        )
    out: list[np.ndarray] = []
    for part, limit in (("train", n_train), ("test", n_test)):
        if limit is not None:
            limit = check_int(limit, f"n_{part}", min_value=0)
        img_path, lab_path = files[f"{part}_images"], files[f"{part}_labels"]
        images = read_idx(img_path, max_items=limit, ndim=3)
        labels = read_idx(lab_path, max_items=limit, ndim=1)
        _check_pair(images, labels, (img_path, lab_path))
        out += [images, labels.astype(np.int64)]
    return out[0], out[1], out[2], out[3]
