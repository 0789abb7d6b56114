"""CIFAR-10 from the published files: both formats, extracted or archived, safely.

:func:`load_cifar10` reads the *binary* batches (records of 1 label byte + 3072 pixel
bytes) or the *python* batches (pickled dicts), from the batch folder, its parent, or
the downloaded ``.tar.gz`` archive. Archive members are read in memory, never extracted,
so archive paths cannot escape anywhere, and a member larger than
``settings.cifar_max_member_bytes`` (:mod:`fastcls._config`) is refused. The python
batches are read with
:class:`~fastcls.datasets.safe_pickle.RestrictedUnpickler`, so a crafted file cannot run
code. :func:`cifar10_class_names` reads the class names from the meta file.

Imports only NumPy and the standard library; compiles nothing.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import tarfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

from fastcls._config import settings
from fastcls._validation import check_choice, check_int
from fastcls.datasets.safe_pickle import RestrictedUnpickler, UnsafePickleError

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_URL",
    "FORMATS",
    "cifar10_class_names",
    "cifar10_sizes",
    "load_cifar10",
]

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
"""The ten CIFAR-10 class names, indexed by label (the order of ``batches.meta``)."""
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
"""Where the CIFAR-10 files are published (named in every file-not-found message)."""
FORMATS = ("auto", "binary", "python")
"""The values :func:`load_cifar10` accepts for ``format``."""

_IMAGE_BYTES = 32 * 32 * 3  # 3072: 1024 red, then 1024 green, then 1024 blue, row-major
_RECORD_BYTES = 1 + _IMAGE_BYTES  # binary format: one label byte, then the pixels
_N_CLASSES = 10
#: a member of a .tar.gz larger than this is refused (real batches are ~31 MB): reading
#: an archive must not be a way to exhaust memory with a decompression bomb

_FOLDERS = {"binary": "cifar-10-batches-bin", "python": "cifar-10-batches-py"}
_ARCHIVES = {"binary": "cifar-10-binary.tar.gz", "python": "cifar-10-python.tar.gz"}
_TRAIN_FILES = {
    "binary": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    "python": tuple(f"data_batch_{i}" for i in range(1, 6)),
}
_TEST_FILES = {"binary": ("test_batch.bin",), "python": ("test_batch",)}
_META_FILES = {"binary": "batches.meta.txt", "python": "batches.meta"}


# --------------------------------------------------------------------------- batches
def _restricted_load(f: BinaryIO, where: str) -> object:
    """Unpickle ``f`` with :class:`RestrictedUnpickler` (Python-2 strings as bytes).

    The decoded size is capped at ``settings.cifar_max_member_bytes``, like the file.
    """
    try:
        return RestrictedUnpickler(
            f, encoding="bytes", max_decoded_bytes=settings.cifar_max_member_bytes
        ).load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{where}: {exc}") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        AttributeError,
        struct.error,
    ) as exc:
        raise ValueError(
            f"{where} is not a valid CIFAR-10 python batch (truncated or corrupt pickle: "
            f"{type(exc).__name__}: {exc})"
        ) from None


def _get_key(d: dict, key: str, where: str) -> object:
    for k in (key.encode("ascii"), key):
        if k in d:
            return d[k]
    found = sorted(k.decode("latin1") if isinstance(k, bytes) else str(k) for k in d)
    raise ValueError(
        f"{where} is not a CIFAR-10 python batch: it has no {key!r} entry (keys: {found})"
    )


def _check_labels(labels: np.ndarray, where: str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= _N_CLASSES):
        bad = labels[(labels < 0) | (labels >= _N_CLASSES)][0]
        raise ValueError(
            f"{where} holds label {int(bad)}; CIFAR-10 labels must be in 0..{_N_CLASSES - 1}"
        )


def _parse_python_batch(obj: object, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Check an unpickled batch; return its ``(n, 3072)`` uint8 rows and int64 labels."""
    if not isinstance(obj, dict):
        raise ValueError(
            f"{where} is not a CIFAR-10 python batch: it holds a {type(obj).__name__}, "
            "expected a dict"
        )
    data = _get_key(obj, "data", where)
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != _IMAGE_BYTES:
        shape = getattr(data, "shape", None)
        raise ValueError(
            f"{where}: 'data' must be an array of shape (n, {_IMAGE_BYTES}), got "
            f"{type(data).__name__} of shape {shape}"
        )
    if data.dtype != np.uint8:
        if data.dtype.kind not in "iu" or (data.size and (data.min() < 0 or data.max() > 255)):
            raise ValueError(f"{where}: 'data' must hold uint8 pixels, got dtype {data.dtype}")
        data = data.astype(np.uint8)
    raw_labels = _get_key(obj, "labels", where)
    if not isinstance(raw_labels, (list, tuple, np.ndarray)):
        raise ValueError(
            f"{where}: 'labels' must be a list of integers, got {type(raw_labels).__name__}"
        )
    if len(raw_labels) != data.shape[0]:
        raise ValueError(
            f"{where} has {data.shape[0]} images but {len(raw_labels)} labels; they must match"
        )
    # element types first: np.asarray of nested lists would expand whatever they hold
    if not isinstance(raw_labels, np.ndarray):
        if any(isinstance(v, bool) for v in raw_labels):
            raise ValueError(f"{where}: 'labels' must be integers, got booleans")
        if not all(isinstance(v, (int, np.integer)) for v in raw_labels):
            raise ValueError(f"{where}: 'labels' must be a flat list of integers")
    labels = np.asarray(raw_labels)
    if labels.size == 0:
        labels = labels.astype(np.int64)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(
            f"{where}: 'labels' must be a flat list of integers, got dtype {labels.dtype} "
            f"and shape {labels.shape}"
        )
    if labels.shape[0] != data.shape[0]:
        raise ValueError(
            f"{where} has {data.shape[0]} images but {labels.shape[0]} labels; they must match"
        )
    if data.shape[0] == 0:
        raise ValueError(f"{where} holds no images")
    _check_labels(labels, where)
    return data, labels.astype(np.int64)


# --------------------------------------------------------------------------- sources
class _DirSource:
    """Batch files in an extracted folder."""

    def __init__(self, folder: Path, fmt: str) -> None:
        self.folder = folder
        self.format = fmt

    def where(self, name: str) -> str:
        return str(self.folder / name)

    def has(self, name: str) -> bool:
        return (self.folder / name).is_file()

    def size(self, name: str) -> int:
        return (self.folder / name).stat().st_size

    def open(self, name: str) -> BinaryIO:
        return open(self.folder / name, "rb")

    def read_records(self, name: str, n: int) -> np.ndarray:
        with self.open(name) as f:
            return np.fromfile(f, dtype=np.uint8, count=n * _RECORD_BYTES)


class _TarSource:
    """Batch files read in memory from a ``.tar.gz`` archive, in one streaming pass.

    Nothing is extracted to disk, so member names (``../`` and the like) are never used
    as paths; only regular files named like a CIFAR-10 batch inside a ``cifar-10-batches-*``
    folder are read, each at most ``settings.cifar_max_member_bytes``.
    """

    def __init__(self, archive: Path, fmt: str, members: dict[str, bytes]) -> None:
        self.archive = archive
        self.format = fmt
        self.members = members

    @classmethod
    def scan(cls, archive: Path, fmt: str) -> _TarSource | None:
        wanted = {f: {*(_TRAIN_FILES[f]), *(_TEST_FILES[f]), _META_FILES[f]} for f in _FOLDERS}
        formats = ("binary", "python") if fmt == "auto" else (fmt,)
        found: dict[str, dict[str, bytes]] = {f: {} for f in formats}
        try:
            with tarfile.open(archive, mode="r|*") as tar:
                for member in tar:
                    parts = member.name.replace("\\", "/").split("/")
                    if len(parts) < 2 or not member.isfile():
                        continue
                    for f in formats:
                        if parts[-2] == _FOLDERS[f] and parts[-1] in wanted[f]:
                            if member.size > settings.cifar_max_member_bytes:
                                raise ValueError(
                                    f"{archive}: member {member.name} declares {member.size} "
                                    "bytes, far more than a CIFAR-10 batch; refused"
                                )
                            fobj = tar.extractfile(member)
                            if fobj is not None:
                                found[f][parts[-1]] = fobj.read()
        except tarfile.TarError as exc:
            raise ValueError(f"{archive} is not a readable tar archive: {exc}") from None
        for f in formats:
            if found[f]:
                return cls(archive, f, found[f])
        return None

    def where(self, name: str) -> str:
        return f"{self.archive}!{_FOLDERS[self.format]}/{name}"

    def has(self, name: str) -> bool:
        return name in self.members

    def size(self, name: str) -> int:
        return len(self.members[name])

    def open(self, name: str) -> BinaryIO:
        return io.BytesIO(self.members[name])

    def read_records(self, name: str, n: int) -> np.ndarray:
        return np.frombuffer(self.members[name], dtype=np.uint8, count=n * _RECORD_BYTES)


def _is_batch_folder(folder: Path, fmt: str) -> bool:
    names = (*_TRAIN_FILES[fmt], *_TEST_FILES[fmt])
    return any((folder / name).is_file() for name in names)


def _not_found(root: Path, fmt: str) -> FileNotFoundError:
    looked = []
    for f in ("binary", "python") if fmt == "auto" else (fmt,):
        looked.append(
            f"the {f} batches ({_TRAIN_FILES[f][0]} .. {_TRAIN_FILES[f][-1]}, "
            f"{_TEST_FILES[f][0]}) in {root} or in {root / _FOLDERS[f]}, or the archive "
            f"{_ARCHIVES[f]}"
        )
    return FileNotFoundError(
        f"no CIFAR-10 data found at {root}: looked for "
        + "; and for ".join(looked)
        + f". Download 'CIFAR-10 binary version' or 'CIFAR-10 python version' from "
        f"{CIFAR10_URL} and pass the folder that holds it (the .tar.gz archive, or the "
        "folder it extracts to)"
    )


def _open_source(root: object, fmt: str) -> _DirSource | _TarSource:
    """Find the CIFAR-10 batches under ``root``: a batch folder, its parent, or an archive.

    Preference when ``fmt == "auto"``: extracted folders before archives (faster),
    binary before python (no unpickling at all).
    """
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path (str or os.PathLike), got {type(root).__name__}")
    path = Path(os.fspath(root)).expanduser()
    formats = ("binary", "python") if fmt == "auto" else (fmt,)
    if path.is_file():
        if not tarfile.is_tarfile(path):
            raise ValueError(
                f"root={str(path)!r} is a file but not a tar archive; pass the folder of "
                f"the CIFAR-10 batches or the archive {' or '.join(_ARCHIVES.values())}"
            )
        source = _TarSource.scan(path, fmt)
        if source is None:
            raise _not_found(path, fmt)
        return source
    if path.is_dir():
        for f in formats:  # the batch folder itself
            if _is_batch_folder(path, f):
                return _DirSource(path, f)
        for f in formats:  # its parent
            sub = path / _FOLDERS[f]
            if sub.is_dir() and _is_batch_folder(sub, f):
                return _DirSource(sub, f)
        for f in formats:  # the downloaded archive
            archive = path / _ARCHIVES[f]
            if archive.is_file():
                source = _TarSource.scan(archive, f)
                if source is not None:
                    return source
    raise _not_found(path, fmt)


# --------------------------------------------------------------------------- readers
def _check_member_size(source: _DirSource | _TarSource, name: str) -> None:
    """Refuse a python batch or meta file larger than ``settings.cifar_max_member_bytes``
    (archive members are checked as they are scanned; this covers extracted folders)."""
    size = source.size(name)
    if size > settings.cifar_max_member_bytes:
        raise ValueError(
            f"{source.where(name)} has {size} bytes, far more than a CIFAR-10 batch "
            "(~31 MB); refused (settings.cifar_max_member_bytes)"
        )


def _batch_files(
    files: tuple[str, ...], source: _DirSource | _TarSource, limit: int | None
) -> list[str]:
    """The files to read, in order. All must exist when everything is read; with a
    ``limit`` the readers stop early and complain only about a file they need."""
    missing = [name for name in files if not source.has(name)]
    if missing and limit is None:
        raise FileNotFoundError(
            f"CIFAR-10 batch file(s) missing: {', '.join(source.where(m) for m in missing)}"
            f" (expected {', '.join(files)}); re-download from {CIFAR10_URL}"
        )
    return list(files)


def _require_batch(source: _DirSource | _TarSource, name: str, limit: int | None, arg: str) -> None:
    """Raise ``FileNotFoundError`` naming the missing batch file and where to get it."""
    if not source.has(name):
        raise FileNotFoundError(
            f"CIFAR-10 batch file missing: {source.where(name)} (needed for {arg}="
            f"{limit}); re-download from {CIFAR10_URL}"
        )


def _binary_counts(
    source: _DirSource | _TarSource, files: list[str], limit: int | None, arg: str
) -> list[tuple[str, int]]:
    """Validate file sizes; return ``(file, images to read)`` pairs up to ``limit``."""
    plan: list[tuple[str, int]] = []
    total = 0
    for name in files:
        if limit is not None and total >= limit:
            break
        _require_batch(source, name, limit, arg)
        size = source.size(name)
        if size == 0 or size % _RECORD_BYTES:
            raise ValueError(
                f"{source.where(name)} has {size} bytes, which is not a positive multiple of "
                f"{_RECORD_BYTES} (1 label byte + {_IMAGE_BYTES} pixel bytes per image): the "
                "file is truncated or is not a CIFAR-10 binary batch"
            )
        n = size // _RECORD_BYTES
        if limit is not None:
            n = min(n, limit - total)
        plan.append((name, n))
        total += n
    _check_enough(total, limit, arg)
    return plan


def _check_enough(total: int, limit: int | None, arg: str) -> None:
    if limit is not None and total < limit:
        raise ValueError(f"{arg}={limit} but the batches hold only {total} images")


def _to_hwc(rows: np.ndarray, out: np.ndarray, chunk: int = 256) -> None:
    """Write channels-first rows (n, 3072) into ``out`` (n, 32, 32, 3), one copy.

    One strided copy per channel and per chunk of images (each chunk stays in cache):
    about 3x faster than assigning the 4-D transposed view, whose innermost loop is
    the 3 channels.
    """
    dst = out.reshape(-1, 1024, 3)
    for start in range(0, rows.shape[0], chunk):
        src = rows[start : start + chunk]
        part = dst[start : start + chunk]
        for c in range(3):
            part[:, :, c] = src[:, c * 1024 : (c + 1) * 1024]


def _read_binary(
    source: _DirSource | _TarSource, files: list[str], limit: int | None, arg: str
) -> tuple[np.ndarray, np.ndarray]:
    plan = _binary_counts(source, files, limit, arg)
    total = sum(n for _, n in plan)
    images = np.empty((total, 32, 32, 3), dtype=np.uint8)
    labels = np.empty(total, dtype=np.int64)
    start = 0
    for name, n in plan:
        records = source.read_records(name, n)
        if records.size != n * _RECORD_BYTES:  # the file shrank while we read it
            raise ValueError(f"{source.where(name)} is truncated")
        records = records.reshape(n, _RECORD_BYTES)
        batch_labels = records[:, 0]
        _check_labels(batch_labels, source.where(name))
        labels[start : start + n] = batch_labels
        _to_hwc(records[:, 1:], images[start : start + n])
        start += n
    return images, labels


def _read_python(
    source: _DirSource | _TarSource, files: list[str], limit: int | None, arg: str
) -> tuple[np.ndarray, np.ndarray]:
    batches: list[tuple[np.ndarray, np.ndarray]] = []
    total = 0
    for name in files:
        if limit is not None and total >= limit:
            break
        _require_batch(source, name, limit, arg)
        _check_member_size(source, name)
        with source.open(name) as f:
            obj = _restricted_load(f, source.where(name))
        data, labels = _parse_python_batch(obj, source.where(name))
        del obj
        if limit is not None and total + data.shape[0] > limit:
            keep = limit - total
            data, labels = data[:keep], labels[:keep]
        batches.append((data, labels))
        total += data.shape[0]
    _check_enough(total, limit, arg)
    images = np.empty((total, 32, 32, 3), dtype=np.uint8)
    all_labels = np.empty(total, dtype=np.int64)
    start = 0
    batches.reverse()
    while batches:  # free each batch as soon as it is copied: peak ~ output + batches left
        data, labels = batches.pop()
        n = data.shape[0]
        _to_hwc(data, images[start : start + n])
        all_labels[start : start + n] = labels
        start += n
        del data, labels
    return images, all_labels


_READERS = {"binary": _read_binary, "python": _read_python}


def load_cifar10(
    root: str | os.PathLike[str],
    format: str = "auto",
    *,
    n_train: int | None = None,
    n_test: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load CIFAR-10 from the published files, safely.

    Reads the *binary version* (``cifar-10-batches-bin/data_batch_{1..5}.bin``,
    ``test_batch.bin``: records of 1 label byte + 3072 pixel bytes) or the *python
    version* (``cifar-10-batches-py/data_batch_{1..5}``, ``test_batch``: pickled dicts).
    The pickles are read with :class:`RestrictedUnpickler`, which refuses every global
    except the NumPy array machinery, so a crafted file raises
    :class:`UnsafePickleError` instead of running code.

    Parameters
    ----------
    root : str or os.PathLike
        Any of: the batch folder itself (``cifar-10-batches-bin`` or
        ``cifar-10-batches-py``); the folder containing it; the downloaded archive
        (``cifar-10-binary.tar.gz`` or ``cifar-10-python.tar.gz``), or the folder
        containing that archive. Archives are read in memory in one pass, never
        extracted.
    format : {"auto", "binary", "python"}, default "auto"
        Which files to read. ``"auto"`` takes what it finds, preferring extracted
        folders to archives and the binary version to the python one (no unpickling,
        and faster). Both versions hold the same images and labels.
    n_train, n_test : int or None, default None
        Read only the first ``n_train`` training / ``n_test`` test images, in file order
        (``data_batch_1`` first): a deterministic subset for quick experiments; only the
        batches needed are read. ``None`` reads all (50000 and 10000).

    Returns
    -------
    X_train : ndarray of shape (n_train, 32, 32, 3), uint8
        Training images, height x width x RGB, values 0..255.
    y_train : ndarray of shape (n_train,), int64
        Training labels, 0..9; :data:`CIFAR10_CLASSES` names them.
    X_test : ndarray of shape (n_test, 32, 32, 3), uint8
        Test images.
    y_test : ndarray of shape (n_test,), int64
        Test labels.

    Raises
    ------
    FileNotFoundError
        No CIFAR-10 files at ``root`` (the message lists what was looked for and where
        to download them), or a batch file is missing.
    ValueError
        A file is truncated or malformed (the message names the file), a label is
        outside 0..9, or ``n_train`` / ``n_test`` exceed the images available.
    UnsafePickleError
        A python batch refers to a global other than the NumPy array machinery (a
        subclass of both :class:`pickle.UnpicklingError` and :class:`ValueError`).

    Notes
    -----
    Memory: the full training set is 50000 x 3072 bytes = 150 MB. Binary batches are
    copied once, straight into the preallocated result; python batches are unpickled
    first (one batch array each), then copied once into the result. Flatten with
    ``X_train.reshape(len(X_train), -1)`` (a view) for :class:`~fastcls.KNearestNeighbor`.

    Examples
    --------
    >>> from fastcls.datasets import load_cifar10, CIFAR10_CLASSES
    >>> X_train, y_train, X_test, y_test = load_cifar10("~/data")  # doctest: +SKIP
    >>> X_train.shape, X_train.dtype, y_train.dtype  # doctest: +SKIP
    ((50000, 32, 32, 3), dtype('uint8'), dtype('int64'))
    >>> CIFAR10_CLASSES[y_train[0]]  # doctest: +SKIP
    'frog'
    """
    fmt = check_choice(format, "format", FORMATS)
    if n_train is not None:
        n_train = check_int(n_train, "n_train", min_value=0)
    if n_test is not None:
        n_test = check_int(n_test, "n_test", min_value=0)
    source = _open_source(root, fmt)
    read = _READERS[source.format]
    train_files = _batch_files(_TRAIN_FILES[source.format], source, n_train)
    test_files = _batch_files(_TEST_FILES[source.format], source, n_test)
    X_train, y_train = read(source, train_files, n_train, "n_train")
    X_test, y_test = read(source, test_files, n_test, "n_test")
    return X_train, y_train, X_test, y_test


def cifar10_class_names(
    root: str | os.PathLike[str] | None = None, format: str = "auto"
) -> tuple[str, ...]:
    """Names of the ten CIFAR-10 classes, indexed by label.

    Parameters
    ----------
    root : str or os.PathLike or None, default None
        Where the CIFAR-10 files are (as for :func:`load_cifar10`). When given, the
        names are read from ``batches.meta`` (python version, with the restricted
        unpickler) or ``batches.meta.txt`` (binary version); if that file is absent the
        fixed list is returned. ``None`` returns :data:`CIFAR10_CLASSES`.
    format : {"auto", "binary", "python"}, default "auto"
        As for :func:`load_cifar10`.

    Returns
    -------
    tuple of str
        ``("airplane", "automobile", ..., "truck")``.

    Examples
    --------
    >>> from fastcls.datasets import cifar10_class_names
    >>> cifar10_class_names()[:3]
    ('airplane', 'automobile', 'bird')
    """
    fmt = check_choice(format, "format", FORMATS)
    if root is None:
        return CIFAR10_CLASSES
    source = _open_source(root, fmt)
    meta = _META_FILES[source.format]
    if not source.has(meta):
        return CIFAR10_CLASSES
    where = source.where(meta)
    _check_member_size(source, meta)
    with source.open(meta) as f:
        if source.format == "python":
            obj = _restricted_load(f, where)
            if not isinstance(obj, dict):
                raise ValueError(f"{where} is not a CIFAR-10 meta file: expected a dict")
            raw = _get_key(obj, "label_names", where)
        else:
            raw = f.read().splitlines()
    if not isinstance(raw, (list, tuple)):
        raise ValueError(f"{where}: 'label_names' must be a list of names")
    names = tuple(
        (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)).strip() for v in raw
    )
    names = tuple(n for n in names if n)
    if len(names) != _N_CLASSES:
        raise ValueError(f"{where} lists {len(names)} class names; CIFAR-10 has {_N_CLASSES}")
    return names


def cifar10_sizes(root: str | os.PathLike[str], format: str = "auto") -> dict[str, int]:
    """How many training and test images the CIFAR-10 files at ``root`` hold.

    Counts the batch files that are there (a partial download counts too), so a caller
    can take a subset of what exists; :func:`load_cifar10` then reads it.

    Parameters
    ----------
    root : str or os.PathLike
        As for :func:`load_cifar10`.
    format : {"auto", "binary", "python"}, default "auto"

    Returns
    -------
    dict
        ``{"train": n_train, "test": n_test}``; the full data set has 50000 and 10000.

    Raises
    ------
    FileNotFoundError
        No CIFAR-10 files at ``root``.
    ValueError
        A binary batch whose size is not a whole number of records, or a malformed
        python batch (python batches are unpickled, restricted, to be counted).
    """
    fmt = check_choice(format, "format", FORMATS)
    source = _open_source(root, fmt)
    counts = {}
    for part, files in (("train", _TRAIN_FILES), ("test", _TEST_FILES)):
        total = 0
        for name in files[source.format]:
            if not source.has(name):
                continue
            if source.format == "binary":
                total += _binary_counts(source, [name], None, part)[0][1]
            else:
                with source.open(name) as f:
                    obj = _restricted_load(f, source.where(name))
                total += _parse_python_batch(obj, source.where(name))[0].shape[0]
        counts[part] = total
    return counts
