"""Datasets: image loaders that need nothing beyond NumPy and the standard library.

One module per source, each with its loader; every public name is re-exported here, so
``from fastcls.datasets import load_cifar10`` is the import to use:

* :mod:`fastcls.datasets.digits` -- :func:`load_default`, the 1797 8x8 handwritten
  digits shipped inside the package (works offline), returned as a :class:`Dataset`.
* :mod:`fastcls.datasets.cifar10` -- :func:`load_cifar10` and
  :func:`cifar10_class_names`, CIFAR-10 from the published binary or python batches,
  extracted or straight from the ``.tar.gz`` archive.
* :mod:`fastcls.datasets.mnist` -- :func:`load_mnist` and :func:`read_idx`, MNIST and
  Fashion-MNIST (any MNIST-format IDX files, plain or gzipped).
* :mod:`fastcls.datasets.images` -- :func:`load_image_folder`, your own images (one
  sub-folder per class), decoded with Pillow (the ``images`` extra).
* :mod:`fastcls.datasets.safe_pickle` -- :class:`RestrictedUnpickler`, the restricted
  unpickler the python batches are read with (a security boundary: it admits only the
  NumPy array machinery, so a crafted file raises :class:`UnsafePickleError` instead of
  running code).

A new loader is a new module beside these whose public names are re-exported below.
Nothing here compiles or imports numba.
"""

from __future__ import annotations

from fastcls.datasets.cifar10 import (
    CIFAR10_CLASSES,
    cifar10_class_names,
    cifar10_sizes,
    load_cifar10,
)
from fastcls.datasets.cifar10 import CIFAR10_URL as CIFAR10_URL
from fastcls.datasets.cifar10 import FORMATS as FORMATS
from fastcls.datasets.digits import Dataset, load_default
from fastcls.datasets.images import IMAGE_SUFFIXES, load_image, load_image_folder
from fastcls.datasets.mnist import (
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
    find_mnist_files,
    load_mnist,
    read_idx,
)
from fastcls.datasets.safe_pickle import RestrictedUnpickler, UnsafePickleError

__all__ = [
    "CIFAR10_CLASSES",
    "Dataset",
    "FASHION_MNIST_CLASSES",
    "IMAGE_SUFFIXES",
    "MNIST_CLASSES",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "cifar10_class_names",
    "cifar10_sizes",
    "load_cifar10",
    "find_mnist_files",
    "load_default",
    "load_image",
    "load_image_folder",
    "load_mnist",
    "read_idx",
]
