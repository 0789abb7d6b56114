"""The lectures' evaluation protocol as reusable steps, and the demo built from them.

Choose hyperparameters without the test set, fit the chosen model, score it on the
test set **once**:

* :func:`select_then_test` is that protocol for any search: run the search, take the
  fitted best model and its validation accuracy, score it on the test part once.
* :func:`evaluate_knn_cv` -- k-NN's ``k`` and metric by k-fold cross-validation on the
  training part (:func:`~fastcls.model_selection.cross_validate_knn`).
* :func:`evaluate_linear_search` -- a linear classifier's learning rate and
  regularisation by a search on the validation part
  (:func:`~fastcls.model_selection.search_linear`).
* :func:`load_demo_data`, :func:`fit_pixel_scaler`, :func:`demo_feature_functions`:
  the demo's data, its pixel standardisation and its feature functions.
* :func:`run_demo` runs the whole demo (k-NN, linear classifiers, the same on HOG
  features) from a :class:`DemoConfig` and returns a :class:`DemoReport`;
  :func:`save_demo_plots` draws its figures. ``fastcls demo`` is this function.

Nothing here prints: :func:`run_demo` reports its progress through a ``log`` callback
(``log=print`` shows what ``fastcls demo`` shows) and progress bars go to stderr only
when ``progress`` allows it.

Examples
--------
>>> from fastcls.pipeline import DemoConfig, run_demo
>>> report = run_demo(DemoConfig(quick=True, sections=("knn",), progress=False))
>>> [row.model for row in report.rows]
['k-NN (raw pixels)']
>>> report.rows[0].test_acc > 0.8
True
"""

from __future__ import annotations

import functools
import os
import tarfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from fastcls import DataRangeWarning, num_threads
from fastcls._progress import compile_seconds
from fastcls.datasets import (
    CIFAR10_CLASSES,
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
    cifar10_sizes,
    find_mnist_files,
    load_cifar10,
    load_default,
    load_image_folder,
    load_mnist,
)
from fastcls.features import FeatureScaler, color_histogram_hsv, extract_features, hog
from fastcls.linear import LinearSVM, Softmax
from fastcls.model_selection import (
    DEFAULT_LR_MULTIPLIERS,
    CVResult,
    SearchResult,
    cross_validate_knn,
    default_linear_grid,
    search_linear,
    train_val_test_split,
)
from fastcls.neighbors import KNearestNeighbor

__all__ = [
    "CIFAR_FULL",
    "CIFAR_QUICK",
    "CIFAR_SUBSAMPLE",
    "DATASETS",
    "DEMO_KS",
    "DEMO_LINEAR_MODELS",
    "DEMO_METRICS",
    "DEMO_SEARCH",
    "FASHION_MNIST_PATH",
    "MNIST_FULL",
    "MNIST_QUICK",
    "MNIST_SUBSAMPLE",
    "QUICK_KS",
    "QUICK_SEARCH",
    "SECTIONS",
    "DemoConfig",
    "DemoData",
    "DemoReport",
    "Evaluation",
    "ResultRow",
    "SearchSpace",
    "Splits",
    "TrainTest",
    "demo_feature_functions",
    "detect_format",
    "evaluate_knn_cv",
    "evaluate_linear_search",
    "fit_pixel_scaler",
    "load_demo_data",
    "load_train_test",
    "run_demo",
    "save_demo_plots",
    "select_then_test",
]

# --------------------------------------------------------------------------- settings
#: the lectures' k values for the demo's cross-validation, and the quick run's
DEMO_KS = (1, 3, 5, 8, 10, 12, 15, 20)
QUICK_KS = (1, 3, 5)
#: the metrics the demo cross-validates k-NN with
DEMO_METRICS = ("l1", "l2")
#: CIFAR-10 sizes (train, val, test) read in file order: the lectures' protocols
CIFAR_FULL = (49000, 1000, 10000)
CIFAR_SUBSAMPLE = (5000, 500, 500)
CIFAR_QUICK = (1000, 200, 200)
#: MNIST-format sizes (train, val, test) in file order: the last 10000 training images
#: validate, and the chosen models are refitted on all 60000 before the test
MNIST_FULL = (50000, 10000, 10000)
MNIST_SUBSAMPLE = (5000, 500, 500)
MNIST_QUICK = (1000, 200, 200)
#: images of the embedded digits kept by a quick run
QUICK_DIGITS = 600
#: the demo's sections, in the order they run
SECTIONS = ("knn", "linear", "features")
#: data set names the demo and the command line accept (``"default"`` is ``"digits"``)
DATASETS = ("digits", "cifar10", "mnist", "fashion-mnist", "images")
#: where Debian's ``dataset-fashion-mnist`` package installs the files
FASHION_MNIST_PATH = "/usr/share/datasets/fashion-mnist"
#: the table's name of the raw-pixel k-NN row (its CV is the report's ``knn_cv``)
_KNN_PIXELS = "k-NN (raw pixels)"
#: the linear classifiers the demo searches, in table order
DEMO_LINEAR_MODELS: Mapping[str, type] = {"LinearSVM": LinearSVM, "Softmax": Softmax}


@dataclass(frozen=True)
class SearchSpace:
    """What the demo searches: k-NN's ``k`` values and the linear classifiers' grid.

    Parameters
    ----------
    ks : tuple of int
        Neighbour counts cross-validated for every metric in :data:`DEMO_METRICS`.
    lr_multipliers : tuple of float
        Learning rates as multiples of ``1 / mean ||x||^2`` of the (standardised)
        training rows, see :func:`~fastcls.model_selection.default_linear_grid`.
    regs : tuple of float
        Regularisation strengths.
    n_iters, batch_size : int
        SGD steps and mini-batch size of every linear classifier.
    """

    ks: tuple[int, ...] = DEMO_KS
    lr_multipliers: tuple[float, ...] = DEFAULT_LR_MULTIPLIERS
    regs: tuple[float, ...] = (1e-4, 1e-2)
    n_iters: int = 1000
    batch_size: int = 200

    def linear_grid(self, X_train: np.ndarray) -> dict[str, list[float]]:
        """The ``{"learning_rate": [...], "reg": [...]}`` grid for rows ``X_train`` (n, D)."""
        return default_linear_grid(X_train, self.lr_multipliers, self.regs)


#: the demo's search space: 8 k values, 3 learning rates x 2 regularisations, 1000 steps
DEMO_SEARCH = SearchSpace()
#: the quick run's (tests, smoke checks): 3 k values, 2 x 1 configurations, 200 steps
QUICK_SEARCH = SearchSpace(ks=QUICK_KS, lr_multipliers=(2.0, 8.0), regs=(1e-4,), n_iters=200)


def _positive_or_none(value: Any, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")


@dataclass(frozen=True)
class DemoConfig:
    """Settings of :func:`run_demo` (validated at construction).

    Parameters
    ----------
    data : {"digits", "cifar10", "mnist", "fashion-mnist", "images", "auto"}
        The embedded digits (``"default"`` is a synonym), or a data set read from
        ``path``: CIFAR-10, MNIST-format files (MNIST, Fashion-MNIST), or an image folder
        with ``train/`` and ``test/`` sub-folders of class folders; ``"auto"`` infers
        which from ``path`` (:func:`detect_format`).
    path : str, optional
        Where the data are; required except for the digits and for ``"fashion-mnist"``
        (default :data:`FASHION_MNIST_PATH`, where Debian's package installs it).
    subsample : bool
        A subset (:data:`CIFAR_SUBSAMPLE`, :data:`MNIST_SUBSAMPLE`, at most what the
        files hold) instead of the full data set (:data:`CIFAR_FULL`,
        :data:`MNIST_FULL`), which the files must then hold.
    quick : bool
        A reduced run: 600 digits or :data:`CIFAR_QUICK` / :data:`MNIST_QUICK` images,
        and :data:`QUICK_SEARCH` instead of :data:`DEMO_SEARCH` (unless ``search``).
    n_train, n_val, n_test : int, optional
        Replace one size of the split chosen above (file data sets only); training and
        validation images are read from the training files, in file order (an image
        folder's training images are shuffled with ``seed`` first).
    refit : bool, optional
        Refit each chosen model on training + validation images before its test.
        None: yes for MNIST-format data (the published 60000 / 10000 protocol), no
        otherwise (the lectures' CIFAR-10 protocol trains on 49000).
    image_size : int, optional
        Image folders: resize every image to ``image_size`` x ``image_size``.
    color : {"rgb", "gray"}
        Image folders: colour or grey images.
    folds : int
        Cross-validation folds, at least 2.
    seed : int
        Seed of the split and of the searches.
    n_jobs : int, optional
        Threads (None: the current :func:`fastcls.num_threads` setting, all cores
        by default; -1: all cores).
    sections : tuple of str
        Which of :data:`SECTIONS` to run (at least one); they run in that order.
    plot_dir : str, optional
        Folder for the figures (see :func:`save_demo_plots`); None draws none.
    progress : bool or None
        Progress bars on stderr (None: only when stderr is a terminal).
    search : SearchSpace, optional
        Overrides the search space chosen by ``quick``.
    """

    data: str = "default"
    path: str | None = None
    subsample: bool = False
    quick: bool = False
    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None
    refit: bool | None = None
    image_size: int | None = None
    color: str = "rgb"
    folds: int = 5
    seed: int = 0
    n_jobs: int | None = None
    sections: tuple[str, ...] = SECTIONS
    plot_dir: str | None = None
    progress: bool | None = None
    search: SearchSpace | None = None

    def __post_init__(self) -> None:
        if self.data not in ("default", "auto", *DATASETS):
            raise ValueError(f"data must be one of {('auto', *DATASETS)}, got {self.data!r}")
        if self.data in ("cifar10", "mnist", "images", "auto") and self.path is None:
            raise ValueError(f"path is required with data={self.data!r} (where the files are)")
        if self.data in ("default", "digits") and any(
            v is not None for v in (self.n_train, self.n_val, self.n_test)
        ):
            raise ValueError(
                "n_train, n_val and n_test apply to data read from files, not to the "
                "embedded digits (split 60/20/20)"
            )
        for name in ("n_train", "n_val", "n_test", "image_size"):
            _positive_or_none(getattr(self, name), name)
        if self.color not in ("rgb", "gray"):
            raise ValueError(f"color must be 'rgb' or 'gray', got {self.color!r}")
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or self.folds < 2:
            raise ValueError(f"folds must be an integer of at least 2, got {self.folds!r}")
        if self.n_jobs is not None and (
            isinstance(self.n_jobs, bool)
            or not isinstance(self.n_jobs, int)
            or (self.n_jobs < 1 and self.n_jobs != -1)
        ):
            raise ValueError(f"n_jobs must be a positive integer, -1 or None, got {self.n_jobs!r}")
        unknown = [s for s in self.sections if s not in SECTIONS]
        if unknown:
            raise ValueError(f"sections must be among {SECTIONS}, got {unknown}")
        if not self.sections:
            raise ValueError(f"every section is skipped: nothing to run (sections: {SECTIONS})")

    @property
    def search_space(self) -> SearchSpace:
        """``search``, or the space ``quick`` chooses."""
        if self.search is not None:
            return self.search
        return QUICK_SEARCH if self.quick else DEMO_SEARCH


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Splits:
    """Training, validation and test parts of one data set.

    ``X_*`` are images (n, H, W[, C]) or rows (n, D); ``y_*`` the labels (n,).
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray

    @property
    def sizes(self) -> dict[str, int]:
        """``{"train": n_train, "val": n_val, "test": n_test}``."""
        return {
            "train": int(self.X_train.shape[0]),
            "val": int(self.X_val.shape[0]),
            "test": int(self.X_test.shape[0]),
        }

    def with_inputs(self, X_train: np.ndarray, X_val: np.ndarray, X_test: np.ndarray) -> Splits:
        """The same labels with other inputs (e.g. features of the same images)."""
        return replace(self, X_train=X_train, X_val=X_val, X_test=X_test)

    def train_and_val(self) -> tuple[np.ndarray, np.ndarray]:
        """Training and validation parts together (for refitting a chosen model)."""
        return (
            np.concatenate([self.X_train, self.X_val]),
            np.concatenate([self.y_train, self.y_val]),
        )


@dataclass(frozen=True)
class DemoData:
    """The demo's images split three ways, and what describes them."""

    splits: Splits
    image_shape: tuple[int, ...]
    class_names: tuple[str, ...]
    description: str
    #: seconds :func:`load_demo_data` took (counted in the demo's total time)
    load_seconds: float = 0.0
    #: refit the chosen models on training + validation before testing
    refit: bool = False


@dataclass(frozen=True)
class TrainTest:
    """A data set's training and test parts, as the command line reads them.

    Attributes
    ----------
    X_train, X_test : ndarray
        Images (n, H, W[, C]) or rows (n, D), as stored (uint8 for image formats).
    y_train, y_test : ndarray
        Labels (int64 for image formats; as stored for ``.npz`` files).
    class_names : tuple of str or None
        Names indexed by label, when the format has them.
    description : str
        What was read, from where.
    format : str
        ``"digits"``, ``"cifar10"``, ``"mnist"``, ``"images"`` or ``"npz"``.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...] | None
    description: str
    format: str

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one input: (H, W[, C]) for images, (D,) for rows."""
        return tuple(int(s) for s in self.X_train.shape[1:])

    @property
    def sizes(self) -> dict[str, int]:
        """``{"train": n_train, "test": n_test}``."""
        return {"train": int(self.X_train.shape[0]), "test": int(self.X_test.shape[0])}


_CIFAR_NAMES = (
    "data_batch_1", "data_batch_1.bin", "test_batch", "test_batch.bin",
    "cifar-10-batches-bin", "cifar-10-batches-py",
    "cifar-10-binary.tar.gz", "cifar-10-python.tar.gz",
)  # fmt: skip


def detect_format(path: str | os.PathLike[str]) -> str:
    """The data set format at ``path``: ``"cifar10"``, ``"mnist"``, ``"images"`` or ``"npz"``.

    A ``.npz`` file is ``"npz"``; a tar archive or a folder holding CIFAR-10 batches (or
    their folder or archive) is ``"cifar10"``; a folder holding the four MNIST-format
    files is ``"mnist"``; a folder with ``train/`` and ``test/`` sub-folders is
    ``"images"``.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        None of these: the message lists what was looked for.
    """
    p = Path(os.fspath(path)).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist")
    if p.is_file():
        if p.suffix.lower() == ".npz":
            return "npz"
        if tarfile.is_tarfile(p):
            return "cifar10"
        raise ValueError(
            f"cannot tell the format of the file {p}: expected a .npz file (X and y) or a "
            "CIFAR-10 .tar.gz archive"
        )
    if find_mnist_files(p) is not None:
        return "mnist"
    if any((p / name).exists() for name in _CIFAR_NAMES):
        return "cifar10"
    if (p / "train").is_dir() and (p / "test").is_dir():
        return "images"
    raise ValueError(
        f"cannot tell the data format of the folder {p}: it holds no CIFAR-10 batches, no "
        "MNIST-format files (train-images-idx3-ubyte[.gz] ...) and no train/ and test/ "
        "image folders"
    )


def _resolve(data: str | None, path: str | os.PathLike[str] | None) -> tuple[str, str | None]:
    """``(format, path)`` of a data set name and / or a path."""
    if data in (None, "auto"):
        if path is None:
            raise ValueError("give a data set name or a path")
        return detect_format(path), os.fspath(path)
    if data == "default":
        data = "digits"
    if data == "fashion-mnist":
        if path is None and not os.path.isdir(FASHION_MNIST_PATH):
            raise FileNotFoundError(
                f"Fashion-MNIST is not in {FASHION_MNIST_PATH}: install Debian's package "
                "(apt-get install dataset-fashion-mnist) or give the folder of its four "
                "files as the path"
            )
        return "mnist", os.fspath(path) if path is not None else FASHION_MNIST_PATH
    if data in ("digits", "cifar10", "mnist", "images", "npz"):
        return data, None if path is None else os.fspath(path)
    raise ValueError(f"unknown data set {data!r}; expected one of {DATASETS}")


def _read_npz(path: str, part: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...] | None]:
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} ({part} data) is not a readable .npz file: {exc}") from None
    if not hasattr(npz, "files"):
        raise ValueError(f"{path} ({part} data) is a .npy array, not a .npz file with X and y")
    with npz:
        missing = [k for k in ("X", "y") if k not in npz.files]
        if missing:
            raise ValueError(
                f"{path} ({part} data) has no {' and no '.join(missing)} array (it holds "
                f"{sorted(npz.files)}); save it with numpy.savez(path, X=..., y=...)"
            )
        X, y = npz["X"], npz["y"]
        names = None
        if "class_names" in npz.files:
            names = tuple(str(v) for v in np.asarray(npz["class_names"]).ravel())
    if X.ndim < 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise ValueError(
            f"{path} ({part} data): X must be (n, D) or images (n, H, W[, C]) and y (n,), "
            f"got X {X.shape} and y {y.shape}"
        )
    return X, y, names


def _first(n: int | None, X: np.ndarray, y: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    if n is None:
        return X, y
    if n > X.shape[0]:
        raise ValueError(f"n_{what}={n} but the {what} data hold only {X.shape[0]} images")
    return X[:n], y[:n]


def load_train_test(
    data: str | None = None,
    path: str | os.PathLike[str] | None = None,
    *,
    train: str | os.PathLike[str] | None = None,
    test: str | os.PathLike[str] | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    image_size: int | None = None,
    color: str = "rgb",
    seed: int = 0,
) -> TrainTest:
    """Read the training and test parts of a data set (the command line's data spec).

    Parameters
    ----------
    data : str, optional
        ``"digits"`` (the embedded digits, split 80 / 20 % at random with ``seed``), a
        name of :data:`DATASETS` read from ``path``, or ``"auto"`` / None: infer the
        format from ``path`` (:func:`detect_format`).
    path : str or os.PathLike, optional
        A CIFAR-10 folder or archive, an MNIST-format folder, an image folder with
        ``train/`` and ``test/`` sub-folders of class folders, or a ``.npz`` file.
    train, test : str or os.PathLike, optional
        Instead of ``data``: two ``.npz`` files, each holding ``X`` (rows or images) and
        ``y`` (and optionally ``class_names``).
    n_train, n_test : int, optional
        Keep the first ``n_train`` / ``n_test`` images of each part.
    image_size : int, optional
        Image folders: resize to ``image_size`` x ``image_size``.
    color : {"rgb", "gray"}
        Image folders: colour or grey.
    seed : int
        The digits' split.

    Returns
    -------
    TrainTest

    Raises
    ------
    FileNotFoundError, ValueError
        Missing or malformed files (the message names them), or an unknown format.
    ImportError
        Image folders without Pillow (the ``images`` extra).
    """
    if train is not None or test is not None:
        if data is not None or path is not None:
            raise ValueError("give either a data set or train and test files, not both")
        if train is None or test is None:
            raise ValueError("train and test files go together: give both")
        X_tr, y_tr, names = _read_npz(os.fspath(train), "training")
        X_te, y_te, _ = _read_npz(os.fspath(test), "test")
        if X_tr.shape[1:] != X_te.shape[1:]:
            raise ValueError(
                f"training inputs have shape {X_tr.shape[1:]} per sample but test inputs "
                f"{X_te.shape[1:]}; they must match"
            )
        X_tr, y_tr = _first(n_train, X_tr, y_tr, "train")
        X_te, y_te = _first(n_test, X_te, y_te, "test")
        return TrainTest(X_tr, y_tr, X_te, y_te, names, f"{train} / {test}", "npz")
    fmt, where = _resolve(data, path)
    if fmt == "digits":
        ds = load_default()
        order = np.random.default_rng(seed).permutation(ds.images.shape[0])
        n_te = ds.images.shape[0] // 5
        te, tr = order[:n_te], order[n_te:]
        X_tr, y_tr = _first(n_train, ds.images[tr], ds.labels[tr], "train")
        X_te, y_te = _first(n_test, ds.images[te], ds.labels[te], "test")
        desc = "embedded digits (UCI optdigits)"
        return TrainTest(X_tr, y_tr, X_te, y_te, tuple(ds.target_names), desc, "digits")
    assert where is not None
    if fmt == "npz":
        raise ValueError(
            f"{where} is one .npz file; give a training and a test file (--train, --test)"
        )
    if fmt == "cifar10":
        X_tr, y_tr, X_te, y_te = load_cifar10(where, n_train=n_train, n_test=n_test)
        return TrainTest(X_tr, y_tr, X_te, y_te, CIFAR10_CLASSES, f"CIFAR-10 ({where})", fmt)
    if fmt == "mnist":
        X_tr, y_tr, X_te, y_te = load_mnist(where, n_train=n_train, n_test=n_test)
        fashion = data == "fashion-mnist" or "fashion" in where.lower()
        names = FASHION_MNIST_CLASSES if fashion else MNIST_CLASSES
        desc = f"{'Fashion-MNIST' if fashion else 'MNIST-format data'} ({where})"
        return TrainTest(X_tr, y_tr, X_te, y_te, names, desc, fmt)
    root = Path(where).expanduser()
    tr_ds = load_image_folder(root / "train", image_size, color)
    te_ds = load_image_folder(root / "test", image_size, color, classes=tr_ds.target_names)
    if tr_ds.images.shape[1:] != te_ds.images.shape[1:]:
        raise ValueError(
            f"training images are {tr_ds.images.shape[1:]} but test images "
            f"{te_ds.images.shape[1:]}; pass an image size to resize both"
        )
    # class folders are read one after the other: shuffle once, so that taking the
    # first n (and the demo's validation images) takes every class
    rng = np.random.default_rng(seed)
    p_tr, p_te = rng.permutation(len(tr_ds.labels)), rng.permutation(len(te_ds.labels))
    X_tr, y_tr = _first(n_train, tr_ds.images[p_tr], tr_ds.labels[p_tr], "train")
    X_te, y_te = _first(n_test, te_ds.images[p_te], te_ds.labels[p_te], "test")
    return TrainTest(X_tr, y_tr, X_te, y_te, tr_ds.target_names, f"image folder {root}", fmt)


def _demo_sizes(config: DemoConfig, fmt: str, where: str) -> tuple[int, int, int] | None:
    """(train, val, test) sizes of a file data set, or None to split an image folder."""
    if fmt == "images" and not (config.quick or config.subsample):
        return None
    full, sub, quick = (
        (CIFAR_FULL, CIFAR_SUBSAMPLE, CIFAR_QUICK)
        if fmt == "cifar10"
        else (MNIST_FULL, MNIST_SUBSAMPLE, MNIST_QUICK)
    )
    sizes = list(quick if config.quick else sub if config.subsample else full)
    explicit = [config.n_train, config.n_val, config.n_test]
    if (config.quick or config.subsample) and fmt == "cifar10":
        # a subset: take what the files hold (a partial download will do)
        have = cifar10_sizes(where)
        if config.n_train is None and config.n_val is None and have["train"] < sum(sizes[:2]):
            sizes[1] = max(1, have["train"] // 10)
            sizes[0] = have["train"] - sizes[1]
        if config.n_test is None:
            sizes[2] = min(sizes[2], have["test"])
    return (
        explicit[0] or sizes[0],
        explicit[1] or sizes[1],
        explicit[2] or sizes[2],
    )


def load_demo_data(config: DemoConfig) -> DemoData:
    """Load the demo's data set and split it into training, validation and test parts.

    The embedded digits are split 60 / 20 / 20 %, stratified, with ``config.seed``
    (a quick run first keeps 600 random images). CIFAR-10 and MNIST-format files follow
    the published order: the first training images train, the next ones validate, the
    test files test. An image folder's shuffled training images give a tenth to
    validation.

    Parameters
    ----------
    config : DemoConfig

    Returns
    -------
    DemoData
        Images uint8 of shape (n, 8, 8) (digits), (n, 32, 32, 3) (CIFAR-10),
        (n, 28, 28) (MNIST) or (n, H, W, C) (image folders).

    Raises
    ------
    OSError, ValueError
        The data cannot be read from ``config.path``, or hold fewer images than asked.
    """
    t0 = time.perf_counter()
    fmt, where = _resolve(config.data, config.path)
    if fmt == "digits":
        ds = load_default()
        images, labels = ds.images, ds.labels
        if config.quick:
            keep = np.random.default_rng(config.seed).permutation(images.shape[0])[:QUICK_DIGITS]
            images, labels = images[keep], labels[keep]
        X_tr, X_va, X_te, y_tr, y_va, y_te = train_val_test_split(
            images, labels, 0.2, 0.2, seed=config.seed, stratify=True
        )
        return DemoData(
            Splits(X_tr, y_tr, X_va, y_va, X_te, y_te),
            tuple(ds.images.shape[1:]),
            tuple(ds.target_names),
            "embedded digits (UCI optdigits)",
            time.perf_counter() - t0,
            refit=bool(config.refit),
        )
    if fmt == "npz":
        raise ValueError(f"{where}: the demo reads data sets, not .npz files")
    assert where is not None
    name = config.data if config.data in DATASETS else fmt  # keeps "fashion-mnist"
    sizes = _demo_sizes(config, fmt, where)
    if sizes is None:  # a whole image folder: a tenth of the training images validates
        data = load_train_test(
            name, where, n_test=config.n_test, image_size=config.image_size,
            color=config.color, seed=config.seed,
        )  # fmt: skip
        n_all = data.X_train.shape[0]
        n_va = config.n_val or max(1, n_all // 10)
        n_tr = config.n_train or n_all - n_va
    else:
        n_tr, n_va, n_te = sizes
        data = load_train_test(
            name, where, n_train=n_tr + n_va, n_test=n_te, image_size=config.image_size,
            color=config.color, seed=config.seed,
        )  # fmt: skip
    if n_tr + n_va > data.X_train.shape[0]:
        raise ValueError(
            f"{n_tr} training + {n_va} validation images asked but the training data hold "
            f"only {data.X_train.shape[0]}"
        )
    X_all, y_all = data.X_train, data.y_train
    splits = Splits(
        X_all[:n_tr], y_all[:n_tr], X_all[n_tr : n_tr + n_va], y_all[n_tr : n_tr + n_va],
        data.X_test, data.y_test,
    )  # fmt: skip
    refit = config.refit if config.refit is not None else fmt == "mnist"
    names = data.class_names or tuple(str(c) for c in np.unique(y_all))
    return DemoData(
        splits,
        data.image_shape,
        names,
        data.description,
        time.perf_counter() - t0,
        refit=refit,
    )


def _rows(X: np.ndarray) -> np.ndarray:
    return X.reshape(X.shape[0], -1)


def _transform_rows(scaler: FeatureScaler, X: np.ndarray) -> np.ndarray:
    """``scaler.transform`` of ``X`` flattened to rows (n, D), float32, by row blocks.

    Blocks bound the transform's float64 temporary (a CIFAR-10 training set in one
    piece would need 1.2 GB).
    """
    Xr = _rows(X)
    out = np.empty(Xr.shape, dtype=np.float32)
    for start in range(0, Xr.shape[0], 4096):
        out[start : start + 4096] = scaler.transform(Xr[start : start + 4096])
    return out


def fit_pixel_scaler(X_train: np.ndarray) -> FeatureScaler:
    """A scaler that subtracts the training mean image and divides by one training std.

    The lectures subtract the mean image; dividing by one global scale as well (rather
    than one per pixel) lets a single learning-rate grid suit 0..16 digits and 0..255
    CIFAR pixels alike while keeping the pixels' relative contrast.

    Parameters
    ----------
    X_train : ndarray of shape (n, H, W[, C]) or (n, D)
        Training images or rows.

    Returns
    -------
    FeatureScaler
        Fitted on ``X_train`` flattened to (n, D); ``scale_`` holds the standard
        deviation of all centred training values in every entry (1 when it is 0).
        Apply it to rows (n, D): ``scaler.transform(X.reshape(len(X), -1))``, float32.

    Examples
    --------
    >>> import numpy as np
    >>> scaler = fit_pixel_scaler(np.array([[[0, 2]], [[2, 6]]], dtype=np.uint8))
    >>> scaler.transform(np.array([[1, 4]]))
    array([[0., 0.]], dtype=float32)
    >>> np.round(scaler.scale_, 4)
    array([1.5811, 1.5811])
    """
    Xtr = _rows(X_train)
    scaler = FeatureScaler(with_std=False).fit(Xtr)
    # WORKAROUND (FeatureScaler has one scale per feature, no single global scale): the
    # fitted statistics are replaced by a mean image and one scale for every pixel. They
    # are computed in float32, as the demo's former scaler did, so that the demo's results
    # stay the same: after this scaling mean ||x||^2 is D up to rounding, and for the
    # 8x8 digits the grid's 8 / 64 = 0.125 lies on default_linear_grid's 2-digit
    # rounding boundary, which float32 rounding decides. Remove with a FeatureScaler
    # option for a global scale (fastcls.features), keeping these statistics.
    centred = Xtr.astype(np.float32)
    mean = centred.mean(axis=0)
    centred -= mean
    scale = float(centred.std()) or 1.0
    scaler.mean_ = mean.astype(np.float64)
    scaler.scale_ = np.full(scaler.n_features_in_, scale)
    return scaler


def demo_feature_functions(
    image_shape: Sequence[int],
) -> list[Callable[[np.ndarray], np.ndarray]]:
    """The demo's feature functions for images of ``image_shape`` (H, W[, C]).

    HOG with cells of a quarter of the smaller side (2..8 pixels: 8x8 digits need small
    cells, CIFAR's 32x32 images get the lectures' 8x8), plus the hue histogram on
    colour images (grey images have a constant hue).
    """
    cell = max(2, min(8, min(image_shape[:2]) // 4))
    fns: list[Callable[[np.ndarray], np.ndarray]] = [functools.partial(hog, cell=cell)]
    if len(image_shape) == 3 and image_shape[2] == 3:
        fns.append(color_histogram_hsv)
    return fns


# --------------------------------------------------------------------------- protocol
class _HasBestParams(Protocol):
    @property
    def best_params_(self) -> dict[str, Any]: ...


S = TypeVar("S", bound=_HasBestParams)


@dataclass(frozen=True)
class Evaluation(Generic[S]):
    """A model chosen without the test set, then scored on it once.

    Attributes
    ----------
    estimator : estimator
        Fitted on the training part with ``best_params``.
    best_params : dict
        The chosen hyperparameters (``search.best_params_``).
    val_accuracy : float
        Accuracy that chose it: on the validation part.
    test_accuracy : float
        Accuracy on the test part, computed once.
    seconds : float
        Time of the search, the fit and the scoring, numba compilation included.
    search : CVResult or SearchResult
        The search itself (every configuration's scores).
    compile_seconds : float
        The part of ``seconds`` numba spent compiling kernels (0 when every kernel
        came from the on-disk cache).
    """

    estimator: Any
    best_params: dict[str, Any]
    val_accuracy: float
    test_accuracy: float
    seconds: float
    search: S
    compile_seconds: float = 0.0


def select_then_test(
    search: Callable[[], S],
    fit_best: Callable[[S], tuple[Any, float]],
    X_test: np.ndarray,
    y_test: np.ndarray,
    refit: Callable[[Any], Any] | None = None,
) -> Evaluation[S]:
    """Run a hyperparameter search, take its best model, score it on the test set once.

    Parameters
    ----------
    search : callable () -> result
        Chooses hyperparameters without the test set; its result has ``best_params_``.
    fit_best : callable (result) -> (estimator, val_accuracy)
        The fitted best model and its validation accuracy.
    X_test : ndarray of shape (n_test, D) or images (n_test, H, W[, C])
    y_test : ndarray of shape (n_test,)
    refit : callable (estimator) -> estimator, optional
        Refits the chosen model on more data (training + validation) before the test.

    Returns
    -------
    Evaluation
        With ``seconds`` covering the search, the fit(s) and both scores.
    """
    c0, t0 = compile_seconds(), time.perf_counter()
    result = search()
    estimator, val_accuracy = fit_best(result)
    if refit is not None:
        estimator = refit(estimator)
    test_accuracy = float(estimator.score(X_test, y_test))  # the test set, once
    return Evaluation(
        estimator=estimator,
        best_params=dict(result.best_params_),
        val_accuracy=float(val_accuracy),
        test_accuracy=test_accuracy,
        seconds=time.perf_counter() - t0,
        search=result,
        compile_seconds=compile_seconds() - c0,
    )


def evaluate_knn_cv(
    splits: Splits,
    ks: Sequence[int] = DEMO_KS,
    metrics: Sequence[str] = DEMO_METRICS,
    n_folds: int = 5,
    *,
    progress: bool | None = None,
    refit: bool = False,
) -> Evaluation[CVResult]:
    """k-NN: ``k`` and metric by k-fold CV on the training part, then val and test once.

    Parameters
    ----------
    splits : Splits
        Inputs (n, D) or images (n, H, W[, C]) of float32, float64 or uint8.
    ks : sequence of int
        Neighbour counts to cross-validate.
    metrics : sequence of str
        Metrics to cross-validate (``"l1"``, ``"l2"``, ``"sqeuclidean"``).
    n_folds : int
        Folds of :func:`~fastcls.model_selection.cross_validate_knn`.
    progress : bool or None
        Progress bar on stderr (None: only when stderr is a terminal).
    refit : bool
        Fit the chosen model on training + validation parts before the test.

    Returns
    -------
    Evaluation[CVResult]
        ``estimator`` is a :class:`~fastcls.KNearestNeighbor` fitted on the training
        part (and the validation part with ``refit``) with the best ``{"metric",
        "k"}``; ``val_accuracy`` the validation score of the one fitted on training.
    """

    def search() -> CVResult:
        return cross_validate_knn(
            splits.X_train, splits.y_train, ks, metrics=metrics, n_folds=n_folds,
            progress=progress,
        )  # fmt: skip

    def fit_best(cv: CVResult) -> tuple[Any, float]:
        best = cv.best_params_
        clf = KNearestNeighbor(k=best["k"], metric=best["metric"])
        clf.fit(splits.X_train, splits.y_train)
        return clf, clf.score(splits.X_val, splits.y_val)

    return select_then_test(
        search, fit_best, splits.X_test, splits.y_test, _refit_on(splits) if refit else None
    )


def evaluate_linear_search(
    model: Any,
    splits: Splits,
    grid: Mapping[str, Sequence[float]] | None = None,
    *,
    seed: int | None = None,
    progress: bool | None = None,
    refit: bool = False,
) -> Evaluation[SearchResult]:
    """A linear classifier: learning rate and reg by search on val, then test once.

    Parameters
    ----------
    model : estimator
        A configured :class:`~fastcls.linear.LinearSVM` or ``Softmax`` (not modified).
    splits : Splits
        Rows (n, D) (standardise them first, e.g. with :func:`fit_pixel_scaler`).
    grid : dict, optional
        ``{"learning_rate": [...], "reg": [...]}``; None: the default grid of
        :func:`~fastcls.model_selection.search_linear`.
    seed : int, optional
        Seed of the search (and of each model's SGD when its own seed is None).
    progress : bool or None
        Progress bar on stderr (None: only when stderr is a terminal).
    refit : bool
        Fit the best configuration again on training + validation parts (same seed)
        before the test.

    Returns
    -------
    Evaluation[SearchResult]
        ``estimator`` is the search's best model (fitted on the training part, or on
        training + validation with ``refit``).
    """

    def search() -> SearchResult:
        return search_linear(
            model, splits.X_train, splits.y_train, splits.X_val, splits.y_val,
            grid=None if grid is None else dict(grid), seed=seed, progress=progress,
        )  # fmt: skip

    def fit_best(res: SearchResult) -> tuple[Any, float]:
        return res.best_model_, res.best_val_accuracy_

    return select_then_test(
        search, fit_best, splits.X_test, splits.y_test, _refit_on(splits) if refit else None
    )


def _refit_on(splits: Splits) -> Callable[[Any], Any]:
    """A ``refit`` for :func:`select_then_test`: a fresh copy fitted on train + val."""

    def refit(estimator: Any) -> Any:
        X, y = splits.train_and_val()
        return type(estimator)(**estimator.get_params()).fit(X, y)

    return refit


# --------------------------------------------------------------------------- the demo
@dataclass(frozen=True)
class ResultRow:
    """One line of the demo's result table."""

    model: str
    params: str
    val_acc: float
    test_acc: float
    seconds: float
    selection: str = ""
    #: numba compilation paid by this row (excluded from ``seconds``)
    compile_seconds: float = 0.0


@dataclass
class DemoReport:
    """What :func:`run_demo` found.

    Attributes
    ----------
    config : DemoConfig
    dataset : str
        A short description of the data.
    sizes : dict
        ``{"train": n, "val": n, "test": n}``.
    image_shape : tuple of int
    class_names : tuple of str
    rows : list of ResultRow
        One per chosen model, in the order they ran.
    evaluations : dict
        ``rows[i].model`` -> its :class:`Evaluation` (fitted model, search results).
    notes : list of str
        What was left out and why (e.g. plots without matplotlib).
    plots : list of str
        Paths of the saved figures.
    total_seconds : float
        Loading, every section and the plots.
    refit : bool
        Whether the chosen models were refitted on training + validation before the test.
    """

    config: DemoConfig
    dataset: str
    sizes: dict[str, int]
    image_shape: tuple[int, ...]
    class_names: tuple[str, ...]
    rows: list[ResultRow] = field(default_factory=list)
    evaluations: dict[str, Evaluation[Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    total_seconds: float = 0.0
    refit: bool = False

    def details(self) -> dict[str, Any]:
        """Every configuration's scores: raw-pixel k-NN CV and each linear search."""
        out: dict[str, Any] = {}
        for name, ev in self.evaluations.items():
            if isinstance(ev.search, CVResult) and name == _KNN_PIXELS:
                cv = ev.search
                out["knn_cv"] = {
                    "ks": cv.ks.tolist(),
                    "metrics": list(cv.metrics),
                    "fold_accuracies": {
                        f"{m}:{k}": a.tolist() for (m, k), a in cv.fold_accuracies.items()
                    },
                    "best_params": cv.best_params_,
                    "best_score": cv.best_score_,
                }
            elif isinstance(ev.search, SearchResult):
                out[name] = {
                    "best_params": ev.search.best_params_,
                    "results": [
                        {"learning_rate": k[0], "reg": k[1], "train_acc": v[0], "val_acc": v[1],
                         "loss": v[2]}
                        for k, v in ev.search.results.items()
                    ],
                }  # fmt: skip
        return out

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (the ``results.json`` of ``fastcls demo``)."""
        return {
            "dataset": self.dataset,
            "sizes": dict(self.sizes),
            "refit": self.refit,
            "rows": [asdict(r) for r in self.rows],
            # results.json format: sections that could not run; every section can now
            "skipped": {},
            "notes": list(self.notes),
            "plots": list(self.plots),
            "details": self.details(),
            "total_seconds": self.total_seconds,
        }


def _knn_row(name: str, ev: Evaluation[CVResult], seconds: float, compile_s: float) -> ResultRow:
    cv = ev.search
    return ResultRow(
        model=name,
        params=f"metric={ev.best_params['metric']}, k={ev.best_params['k']}",
        val_acc=ev.val_accuracy,
        test_acc=ev.test_accuracy,
        seconds=seconds - compile_s,
        selection=f"{cv.n_folds}-fold CV {cv.best_score_:.4f}",
        compile_seconds=compile_s,
    )


def _linear_row(name: str, ev: Evaluation[SearchResult]) -> ResultRow:
    p = ev.best_params
    return ResultRow(
        model=name,
        params=f"lr={p['learning_rate']:g}, reg={p['reg']:g}",
        val_acc=ev.val_accuracy,
        test_acc=ev.test_accuracy,
        seconds=ev.seconds - ev.compile_seconds,
        selection=f"val search ({len(ev.search.results)} configs)",
        compile_seconds=ev.compile_seconds,
    )


def _add(report: DemoReport, row: ResultRow, ev: Evaluation[Any]) -> None:
    report.rows.append(row)
    report.evaluations[row.model] = ev


def _linear_models(
    report: DemoReport, splits: Splits, label: str, log: Callable[[str], None]
) -> None:
    """Search every linear classifier on ``splits`` (rows), test each once."""
    config, space = report.config, report.config.search_space
    grid = space.linear_grid(splits.X_train)
    for name, cls in DEMO_LINEAR_MODELS.items():
        model = cls(n_iters=space.n_iters, batch_size=space.batch_size, seed=config.seed)
        ev = evaluate_linear_search(
            model, splits, grid, seed=config.seed, progress=config.progress, refit=report.refit
        )
        log(f"-- {name} on {label}: {len(ev.search.results)} configurations")
        log(ev.search.table())
        _add(report, _linear_row(f"{name} ({label})", ev), ev)


def _section_knn(report: DemoReport, splits: Splits, log: Callable[[str], None]) -> None:
    config, ks = report.config, report.config.search_space.ks
    log(
        f"\n== k-NN: {config.folds}-fold cross-validation of k in {list(ks)} for L1 and L2 "
        f"({splits.X_train.shape[0]} training samples)"
    )
    ev = evaluate_knn_cv(
        splits, ks, DEMO_METRICS, config.folds, progress=config.progress, refit=report.refit
    )
    cv = ev.search
    log(cv.table())
    log(
        f"chosen: metric={ev.best_params['metric']} k={ev.best_params['k']} "
        f"(CV mean {cv.best_score_:.4f}); CV took {sum(cv.times_.values()):.2f}s for "
        f"{len(ks)} k x {len(DEMO_METRICS)} metrics x {config.folds} folds"
    )
    _add(report, _knn_row(_KNN_PIXELS, ev, ev.seconds, ev.compile_seconds), ev)


def _section_linear(report: DemoReport, splits: Splits, log: Callable[[str], None]) -> None:
    log(
        f"\n== Linear classifiers on raw pixels: grid search of learning rate x "
        f"regularisation on the validation set ({report.config.search_space.n_iters} SGD "
        f"iterations each)"
    )
    scaler = fit_pixel_scaler(splits.X_train)
    X_tr, X_va, X_te = (
        _transform_rows(scaler, X) for X in (splits.X_train, splits.X_val, splits.X_test)
    )
    _linear_models(report, splits.with_inputs(X_tr, X_va, X_te), "raw pixels", log)


def _section_features(report: DemoReport, splits: Splits, log: Callable[[str], None]) -> None:
    config = report.config
    fns = demo_feature_functions(report.image_shape)
    names = " + ".join(getattr(getattr(f, "func", f), "__name__", "f") for f in fns)
    c0, t0 = compile_seconds(), time.perf_counter()
    F_tr = extract_features(splits.X_train, fns)
    scaler = FeatureScaler().fit(F_tr)
    F_tr = scaler.transform(F_tr)
    F_va = extract_features(splits.X_val, fns, normalize=scaler)
    F_te = extract_features(splits.X_test, fns, normalize=scaler)
    t_feat = time.perf_counter() - t0
    c_feat = compile_seconds() - c0
    log(
        f"\n== Features: {names}, {F_tr.shape[1]} per image, standardised with the "
        f"training statistics ({t_feat:.2f}s)"
    )
    features = splits.with_inputs(F_tr, F_va, F_te)
    ks = config.search_space.ks
    log(
        f"-- k-NN on features: {config.folds}-fold cross-validation of k in {list(ks)} for "
        "L1 and L2"
    )
    ev = evaluate_knn_cv(
        features, ks, DEMO_METRICS, config.folds, progress=config.progress, refit=report.refit
    )
    row = _knn_row("k-NN (features)", ev, ev.seconds + t_feat, ev.compile_seconds + c_feat)
    _add(report, row, ev)
    log(ev.search.table())
    log(
        f"chosen: metric={ev.best_params['metric']} k={ev.best_params['k']} "
        f"(CV mean {ev.search.best_score_:.4f})"
    )
    _linear_models(report, features, "features", log)


_SECTION_FUNCTIONS: dict[str, Callable[[DemoReport, Splits, Callable[[str], None]], None]] = {
    "knn": _section_knn,
    "linear": _section_linear,
    "features": _section_features,
}


def _no_log(message: str) -> None:
    """The default ``log``: say nothing."""


def run_demo(
    config: DemoConfig | None = None,
    *,
    data: DemoData | None = None,
    log: Callable[[str], None] | None = None,
) -> DemoReport:
    """Run the demo: choose every model without the test set, test each once, plot.

    Sections, in order (those in ``config.sections``):

    1. ``"knn"``: k-NN's ``k`` and metric (L1, L2) by ``config.folds``-fold
       cross-validation on the training images (:func:`evaluate_knn_cv`).
    2. ``"linear"``: LinearSVM and Softmax on standardised pixels
       (:func:`fit_pixel_scaler`), learning rate and regularisation by grid search on
       the validation part (:func:`evaluate_linear_search`).
    3. ``"features"``: the same for k-NN and both linear classifiers on
       :func:`demo_feature_functions` features standardised with the training
       statistics (:class:`~fastcls.features.FeatureScaler`).

    Parameters
    ----------
    config : DemoConfig, optional
        Default: ``DemoConfig()`` (the embedded digits, every section, no plots).
    data : DemoData, optional
        Already loaded data (default: :func:`load_demo_data` of ``config``).
    log : callable (str) -> None, optional
        Receives the demo's narration (section headers, search tables) as it runs;
        ``log=print`` shows what ``fastcls demo`` shows. Default: nothing.

    Returns
    -------
    DemoReport
        Rows of the result table, each model's :class:`Evaluation`, plots and notes.
    """
    config = DemoConfig() if config is None else config
    say = _no_log if log is None else log
    if data is None:
        data = load_demo_data(config)
    t_start = time.perf_counter()
    splits = data.splits
    report = DemoReport(
        config=config,
        dataset=data.description,
        sizes=splits.sizes,
        image_shape=data.image_shape,
        class_names=data.class_names,
        refit=data.refit,
    )
    sizes = splits.sizes
    say(
        f"fastcls demo on {data.description}: {sizes['train']} train / {sizes['val']} val / "
        f"{sizes['test']} test images of shape {data.image_shape}, "
        f"{len(data.class_names)} classes"
    )
    if data.refit:
        say(
            f"(each chosen model is refitted on the {sizes['train'] + sizes['val']} training "
            "+ validation images before its test)"
        )
    with num_threads(config.n_jobs), warnings.catch_warnings():
        # Every part is scaled by statistics of the training part here, so the queries
        # cannot be on another scale: a warning could only be a false alarm (the first
        # heuristic raised them on heavy-tailed standardised HOG features).
        warnings.simplefilter("ignore", DataRangeWarning)
        for name in SECTIONS:
            if name in config.sections:
                _SECTION_FUNCTIONS[name](report, splits, say)
    if config.plot_dir is not None:
        save_demo_plots(report, config.plot_dir)
    report.total_seconds = data.load_seconds + time.perf_counter() - t_start
    return report


# --------------------------------------------------------------------------- plots
def save_demo_plots(report: DemoReport, folder: str) -> list[str]:
    """Save the demo's figures as PNG files in ``folder`` (created if needed).

    ``knn_cv.png`` (raw-pixel k-NN: accuracy vs k, one point per fold, mean line, std
    bars) and, for each linear classifier on raw pixels, ``<name>_loss.png`` (loss
    curve) and ``<name>_templates.png`` (weight templates). The paths are appended to
    ``report.plots``. Without matplotlib (the ``plots`` extra) nothing is drawn and
    ``report.notes`` says so.

    Returns
    -------
    list of str
        Paths of the files written by this call.
    """
    raw_linear = [
        (name, report.evaluations.get(f"{name} (raw pixels)")) for name in DEMO_LINEAR_MODELS
    ]
    knn = report.evaluations.get(_KNN_PIXELS)
    if knn is None and all(ev is None for _, ev in raw_linear):
        return []
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        report.notes.append(
            "plots skipped: matplotlib is not installed (pip install 'fastcls[plots]')"
        )
        return []
    from fastcls import plots

    os.makedirs(folder, exist_ok=True)
    saved: list[str] = []

    def save(fig: Any, filename: str) -> None:
        path = os.path.join(folder, filename)
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        saved.append(path)

    if knn is not None:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        knn.search.plot(ax=ax)
        ax.set_xticks(knn.search.ks)  # the k values tried, not matplotlib's 2.5 steps
        save(fig, "knn_cv.png")
    for name, ev in raw_linear:
        if ev is None:
            continue
        model, slug = ev.estimator, name.lower()
        hist = np.asarray(getattr(model, "loss_history_", []), dtype=float)
        if hist.size:
            ax = plots.plot_loss_curve(
                hist, smooth=max(1, hist.size // 50), title=f"{name} training loss"
            )
            save(ax.figure, f"{slug}_loss.png")
        if getattr(model, "W_", None) is not None:
            fig = plots.plot_weight_templates(
                model.W_,
                report.image_shape,
                class_names=report.class_names,
                title=f"{name} weight templates",
            )
            save(fig, f"{slug}_templates.png")
    report.plots.extend(saved)
    return saved
