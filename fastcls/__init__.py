"""fastcls: fast classical image classification on the CPU.

k-nearest neighbours with exact L1 / L2 search (uint8 pixels or float features),
linear SVM / softmax classifiers, cross-validation, features and CIFAR-10 loading,
each backed by Numba kernels validated against a plain NumPy reference.

Importing fastcls compiles nothing: kernels are compiled on first use (set
``FASTCLS_NUMBA_CACHE=1`` to keep compiled kernels on disk between runs).
"""

from fastcls._config import get_num_threads, num_threads, set_num_threads
from fastcls._validation import NotFittedError
from fastcls.neighbors import KNearestNeighbor, kneighbors, pairwise_distances

__version__ = "0.1.0"

__all__ = [
    "KNearestNeighbor",
    "NotFittedError",
    "get_num_threads",
    "kneighbors",
    "num_threads",
    "pairwise_distances",
    "set_num_threads",
]
