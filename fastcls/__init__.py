"""fastcls: fast classical image classification on the CPU.

k-nearest neighbours with exact L1 / L2 search (uint8 pixels or float features),
linear SVM / softmax classifiers, cross-validation, features and CIFAR-10 loading,
each backed by Numba kernels validated against a plain NumPy reference.

Importing fastcls compiles nothing: kernels are compiled on first use and kept in
numba's on-disk cache (``FASTCLS_NUMBA_CACHE=0`` turns the cache off).
Submodules and the names below are imported lazily on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

from fastcls._config import get_num_threads, num_threads, set_num_threads
from fastcls._validation import DataRangeWarning, NotFittedError

__version__ = "0.1.0"

#: public name -> module that defines it (imported on first access)
_LAZY_NAMES = {
    "KNearestNeighbor": "fastcls.neighbors",
    "kneighbors": "fastcls.neighbors",
    "pairwise_distances": "fastcls.neighbors",
    "LinearClassifier": "fastcls.linear",
    "LinearSVM": "fastcls.linear",
    "Softmax": "fastcls.linear",
    "svm_loss": "fastcls.losses",
    "softmax_loss": "fastcls.losses",
    "recall_at_k": "fastcls.backends.faiss",
    "load": "fastcls.io",
    "ModelFileError": "fastcls.io",
    "save": "fastcls.io",
    "load_default": "fastcls.datasets",
    "load_cifar10": "fastcls.datasets",
    "extract_features": "fastcls.features",
    "FeatureScaler": "fastcls.features",
    "cross_validate_knn": "fastcls.model_selection",
    "kfold_indices": "fastcls.model_selection",
    "search_linear": "fastcls.model_selection",
    "train_val_test_split": "fastcls.model_selection",
    "warmup": "fastcls.precompile",
}
_SUBMODULES = (
    "backends",
    "datasets",
    "distributed",
    "features",
    "gradcheck",
    "io",
    "kernels",
    "linear",
    "losses",
    "model_selection",
    "neighbors",
    "optim",
    "pipeline",
    "plots",
    "reference",
    "testing",
)

__all__ = [
    "DataRangeWarning",
    "NotFittedError",
    "get_num_threads",
    "num_threads",
    "set_num_threads",
    *sorted(_LAZY_NAMES),
    *_SUBMODULES,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        value = getattr(importlib.import_module(_LAZY_NAMES[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"fastcls.{name}")
    raise AttributeError(f"module 'fastcls' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
