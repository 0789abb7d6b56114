"""The embedded default dataset: 1797 handwritten digits of 8x8 pixels.

:func:`load_default` returns a small real image dataset shipped inside the package
(the UCI optdigits test set, ``fastcls/data/digits.csv.gz``), so demos and docs work
offline with nothing else installed. :class:`Dataset` is the in-memory container it
returns: images, labels, class names and a description with the citation.

Imports only NumPy and the standard library; compiles nothing.
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
from dataclasses import dataclass

import numpy as np

__all__ = ["Dataset", "load_default"]

#: the embedded default dataset (inside the ``fastcls/data`` folder of the package)
_DEFAULT_FILE = "digits.csv.gz"

_DEFAULT_DESCRIPTION = """\
Optical recognition of handwritten digits (UCI optdigits, test set).

1797 grayscale images of 8x8 pixels, integer values 0..16 (the number of "on"
pixels in each 4x4 block of a 32x32 bitmap), labels 0..9, about 180 images per
class, written by 13 people.

Source: E. Alpaydin, C. Kaynak, "Optical Recognition of Handwritten Digits",
UCI Machine Learning Repository, 1998, https://doi.org/10.24432/C50P49
(CC BY 4.0). File packaged by scikit-learn (BSD-3-Clause); see
fastcls/data/LICENSE-digits.txt."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A small labelled image dataset held in memory.

    Attributes
    ----------
    images : ndarray of shape (n_samples, height, width) or (n_samples, height, width, channels)
        The images, dtype uint8.
    labels : ndarray of shape (n_samples,), int64
        Class index of each image, ``0 .. len(target_names) - 1``.
    target_names : tuple of str
        Name of each class, indexed by label.
    description : str
        What the data are, where they come from and how to cite them.

    Examples
    --------
    >>> from fastcls.datasets import load_default
    >>> ds = load_default()
    >>> X, y = ds.as_arrays()
    >>> X.shape, y.shape
    ((1797, 64), (1797,))
    """

    images: np.ndarray
    labels: np.ndarray
    target_names: tuple[str, ...]
    description: str

    @property
    def X(self) -> np.ndarray:
        """Images flattened to rows: ndarray of shape (n_samples, n_features), uint8.

        A view of :attr:`images` (no copy): writing to it writes to the images.
        """
        return self.images.reshape(self.images.shape[0], -1)

    @property
    def y(self) -> np.ndarray:
        """Alias of :attr:`labels`, shape (n_samples,), int64."""
        return self.labels

    @property
    def n_samples(self) -> int:
        """Number of images."""
        return int(self.images.shape[0])

    def as_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(X, y)``: flattened images (n_samples, n_features) uint8 and labels.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features), uint8
            Row ``i`` is ``images[i]`` flattened in row-major order (a view).
        y : ndarray of shape (n_samples,), int64
            The labels.
        """
        return self.X, self.labels

    def __len__(self) -> int:
        return self.n_samples

    def __repr__(self) -> str:
        return (
            f"Dataset(images={self.images.shape} {self.images.dtype}, "
            f"labels={self.labels.shape} {self.labels.dtype}, "
            f"classes={len(self.target_names)})"
        )


@functools.lru_cache(maxsize=1)
def _parse_default() -> tuple[np.ndarray, np.ndarray]:
    """Parse the embedded CSV once; the cached arrays are read-only."""
    resource = importlib.resources.files("fastcls") / "data" / _DEFAULT_FILE
    with resource.open("rb") as raw, gzip.open(raw, "rb") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape != (1797, 65):  # a damaged install must not pass silently
        raise RuntimeError(
            f"the embedded dataset {_DEFAULT_FILE} is damaged: expected 1797 rows of 65 "
            f"values, got shape {table.shape}; reinstall fastcls"
        )
    pixels, labels = table[:, :64], table[:, 64]
    if pixels.min() < 0 or pixels.max() > 16 or labels.min() < 0 or labels.max() > 9:
        raise RuntimeError(
            f"the embedded dataset {_DEFAULT_FILE} is damaged: values out of range; "
            "reinstall fastcls"
        )
    images = np.ascontiguousarray(pixels.astype(np.uint8).reshape(-1, 8, 8))
    labels = np.ascontiguousarray(labels)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def load_default() -> Dataset:
    """Load the embedded default dataset: 1797 handwritten digits, 8x8 pixels.

    The UCI optdigits test set (E. Alpaydin, C. Kaynak, 1998, CC BY 4.0) ships inside
    the package, so this works offline with nothing else installed. Pixel values are
    kept as the data define them: integers **0..16** (counts of "on" pixels per 4x4
    block), not rescaled to 0..255. The file is parsed once per process (a few
    milliseconds); every call returns fresh, writable copies, so callers may modify
    them freely.

    Returns
    -------
    Dataset
        ``images`` of shape (1797, 8, 8) uint8 with values 0..16, ``labels`` of shape
        (1797,) int64 with values 0..9, ``target_names`` ``("0", ..., "9")`` and a
        ``description`` with the citation. ``Dataset.X`` / ``Dataset.as_arrays()``
        give the images flattened to shape (1797, 64).

    Examples
    --------
    >>> from fastcls.datasets import load_default
    >>> digits = load_default()
    >>> digits.images.shape, digits.images.dtype.name, int(digits.images.max())
    ((1797, 8, 8), 'uint8', 16)
    >>> X, y = digits.as_arrays()
    >>> X.shape, y.dtype.name, digits.target_names[y[0]]
    ((1797, 64), 'int64', '0')
    """
    images, labels = _parse_default()
    return Dataset(
        images=images.copy(),
        labels=labels.copy(),
        target_names=tuple(str(d) for d in range(10)),
        description=_DEFAULT_DESCRIPTION,
    )
