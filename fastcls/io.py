"""Save and load fitted estimators: ``.npz`` arrays + JSON metadata, never pickle.

Any fastcls estimator is saved through its public state pair
(``get_params()`` + :meth:`~fastcls.base.BaseEstimator.get_fitted_state`) and
rebuilt through ``type(model)().set_params(**params).set_fitted_state(state)``; this
module never reads an estimator's private attributes.

Format ``fastcls-model``, version :data:`FORMAT_VERSION` (see ``docs/saving.md``). A zip
archive in NumPy's ``.npz`` layout (members stored, or deflated with ``compress=True``):

``metadata.npy``
    a 0-d unicode array holding a JSON object: ``format``, ``format_version``,
    ``class``, ``params`` (the constructor parameters), ``state`` (the fitted
    state's JSON metadata), ``arrays`` (the names of the state's arrays stored beside
    it), ``backend`` (k-NN), ``fastcls_version`` and ``digest`` (SHA-256 of all the
    rest, see :func:`content_digest`).
``<name>.npy``, one per state array
    e.g. for :class:`~fastcls.KNearestNeighbor`: ``classes`` (labels, never
    objects), ``y`` (encoded labels), ``fit_X`` (training rows) and/or
    ``faiss_index`` (``faiss.serialize_index`` bytes).

Rules:

* ``save(model, path)`` writes exactly ``path`` (no suffix is added; ``.npz`` is the
  convention) and ``load(path)`` reads exactly ``path``. The write is atomic: a
  temporary file in the same folder, flushed and fsynced, then renamed over ``path``;
  a save that fails or is killed leaves the previous file as it was.
* :func:`load` trusts nothing in the file. It parses the archive itself (no pickle,
  no ``np.load``), caps the decompressed size, checks the digest, and every estimator's
  ``set_fitted_state`` checks every array against the metadata and the parameters
  before a model is built. Every defect raises :class:`ModelFileError`.

Versions 1 (k-NN models of fastcls 0.1.0) and 2 (no digest) are still read.

Examples
--------
>>> import numpy as np, tempfile, os, fastcls
>>> X = np.array([[0, 0], [9, 9]], dtype=np.uint8)
>>> clf = fastcls.KNearestNeighbor(k=1).fit(X, ["a", "b"])
>>> path = os.path.join(tempfile.mkdtemp(), "knn.npz")
>>> clf.save(path)
>>> fastcls.load(path).predict(np.array([[8, 8]], dtype=np.uint8)).tolist()
['b']
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import numbers
import os
import re
import stat
import struct
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import numpy as np

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MODEL_CLASSES",
    "DEFAULT_MAX_BYTES",
    "ModelFileError",
    "save",
    "load",
    "read_metadata",
    "content_digest",
]

#: the ``format`` field of every file this module writes
FORMAT_NAME = "fastcls-model"
#: bumped whenever the layout changes; :func:`load` refuses versions it does not know.
#: 3 added the content ``digest``; 2 (no digest) and 1 (k-NN only) are still read
FORMAT_VERSION = 3
_SUPPORTED_VERSIONS = (1, 2, 3)

#: class name stored in a file -> module defining it (imported on load)
MODEL_CLASSES: dict[str, str] = {
    "KNearestNeighbor": "fastcls.neighbors",
    "LinearSVM": "fastcls.linear",
    "Softmax": "fastcls.linear",
    "FeatureScaler": "fastcls.features",
}

#: decompressed bytes :func:`load` reads at least without ``max_bytes`` (see there)
DEFAULT_MAX_BYTES = 256 * 2**20
#: ... and at most this multiple of the file's size (a stored archive is ~1x)
_MAX_EXPANSION = 64
#: the JSON metadata is small; a larger member is refused before it is read
_MAX_METADATA_BYTES = 16 * 2**20
#: largest ``.npy`` header accepted (numpy writes < 200 bytes for our arrays)
_MAX_NPY_HEADER = 4096
_READ_CHUNK = 16 * 2**20
#: members of a model archive (metadata + a handful of arrays), checked from the end
#: record before zipfile reads the central directory
_MAX_MEMBERS = 64
_EOCD_SEARCH = 22 + 65535  # the end record and the longest zip comment
_MEMBER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\.npy")
_DIGEST_PREFIX = "sha256:"


class ModelFileError(ValueError):
    """A file :func:`fastcls.load` refuses: not a fastcls model, or a malformed,
    truncated, corrupted or inconsistent one.

    The only exception ``load`` raises for a bad file (a missing or unreadable file
    raises ``OSError`` as usual). The message names the file and the field at fault.

    Attributes
    ----------
    path : str
        The file.
    field : str or None
        The archive member, metadata field, array or parameter at fault (``None``
        when the file as a whole is wrong).
    """

    def __init__(self, path: Any, field: str | None, reason: str) -> None:
        self.path = str(path)
        self.field = field
        self.reason = reason
        where = f" (field {field!r})" if field is not None else ""
        super().__init__(f"{self.path}{where}: {reason}")


# --------------------------------------------------------------------------- save
def _model_class(name: Any) -> Any:
    import importlib

    module = MODEL_CLASSES.get(name) if isinstance(name, str) else None
    if module is None:
        raise KeyError(name)
    return getattr(importlib.import_module(module), name)


#: bit generators whose state is plain integers (stored as JSON, restored without pickle)
_GENERATORS = ("PCG64", "PCG64DXSM")


def _json_params(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in params.items():
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, np.random.Generator):
            state = value.bit_generator.state
            if state.get("bit_generator") not in _GENERATORS:
                raise TypeError(
                    f"parameter {name}: a Generator over {state.get('bit_generator')} cannot "
                    f"be saved; use an int seed or a {'/'.join(_GENERATORS)} generator"
                )
            out[name] = {"numpy_generator": state}
            continue
        if isinstance(value, float) and not np.isfinite(value):
            raise TypeError(f"parameter {name}={value!r} cannot be saved (not finite)")
        if not (value is None or isinstance(value, (bool, int, float, str))):
            raise TypeError(
                f"parameter {name}={value!r} cannot be saved: only None, bool, int, float "
                "and str parameters (and PCG64 Generators) are stored (no pickle)"
            )
        out[name] = value
    return out


def _param_from_json(name: str, value: Any) -> Any:
    """A stored parameter value; a stored Generator is rebuilt from its checked state."""
    if not isinstance(value, dict):
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise ValueError(f"parameter {name} has a value of type {type(value).__name__}")
    state = value.get("numpy_generator")
    if len(value) != 1 or not isinstance(state, dict):
        raise ValueError(f"parameter {name} is a malformed object")
    kind = state.get("bit_generator")
    inner = state.get("state")
    if (
        kind not in _GENERATORS
        or set(state) != {"bit_generator", "state", "has_uint32", "uinteger"}
        or not isinstance(inner, dict)
        or set(inner) != {"state", "inc"}
        or not all(_int_in(inner[k], 0, 2**128 - 1) for k in ("state", "inc"))
        or not _int_in(state["has_uint32"], 0, 1)
        or not _int_in(state["uinteger"], 0, 2**32 - 1)
    ):
        raise ValueError(f"parameter {name} holds a malformed Generator state")
    bit_generator = getattr(np.random, kind)()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def _int_in(value: Any, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def _canonical(arr: np.ndarray) -> np.ndarray:
    """``arr`` C-contiguous in little-endian byte order: the bytes the digest covers."""
    dt = arr.dtype
    if dt.byteorder == ">" or (dt.byteorder == "=" and sys.byteorder == "big"):
        dt = dt.newbyteorder("<")
    if dt == arr.dtype and arr.flags.c_contiguous:
        return arr
    return np.array(arr, dtype=dt, order="C")


def content_digest(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    """``"sha256:<hex>"`` over the metadata (less its ``digest``) and every array.

    The metadata enters as canonical JSON (sorted keys, no spaces), each array by
    name, dtype (little-endian form), shape and C-order little-endian bytes. It detects
    corrupted and hand-edited files; it is not a signature (anyone can recompute it).
    """
    h = hashlib.sha256(b"fastcls-model-digest\0")
    body = {k: v for k, v in meta.items() if k != "digest"}
    h.update(json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode())
    for name in sorted(arrays):
        arr = _canonical(np.asarray(arrays[name]))
        h.update(f"\0{name}\0{arr.dtype.str}\0{list(arr.shape)}\0".encode())
        h.update(arr.reshape(-1).view(np.uint8).data)
    return _DIGEST_PREFIX + h.hexdigest()


def save(
    model: Any, path: str | os.PathLike, *, include_data: bool | None = None, compress: bool = False
) -> None:
    """Save a fitted estimator to ``path`` (``.npz`` layout + JSON metadata, no pickle).

    Parameters
    ----------
    model : KNearestNeighbor, LinearSVM, Softmax or FeatureScaler
        A fitted estimator.
    path : str or path-like
        The file written, exactly as given: no suffix is appended (``.npz`` is the
        convention). :func:`load` reads the same path.
    include_data : bool, optional
        k-NN only: store the training rows. Default: yes, except for
        ``backend="faiss"``, whose index (stored as ``faiss.serialize_index`` bytes)
        holds what search needs. A memmap or lazy training set is read whole.
    compress : bool, default False
        Deflate the archive (smaller, slower to write and read).

    Notes
    -----
    Atomic: the archive is written to a temporary file in the same folder
    (``.<name>.<random>.tmp``), flushed and fsynced, then renamed over ``path``
    (``os.replace``) and the folder fsynced. If the save fails the temporary file is
    removed and ``path`` is untouched; a process killed mid-save leaves ``path``
    untouched (and possibly the temporary file). An existing file keeps its permission
    bits; a new one gets ``0o666`` less the umask. A symbolic link at ``path`` is
    followed: the file it names is replaced and the link kept.

    Examples
    --------
    >>> import numpy as np, tempfile, os, fastcls
    >>> clf = fastcls.KNearestNeighbor().fit(np.eye(3), [0, 1, 2])
    >>> fastcls.io.save(clf, os.path.join(tempfile.mkdtemp(), "m.npz"))
    """
    cls_name = type(model).__name__
    try:
        known = _model_class(cls_name) is type(model)
    except KeyError:
        known = False
    if not known:
        raise TypeError(f"save supports {sorted(MODEL_CLASSES)}, got {cls_name}")
    params = _json_params(model.get_params())
    if include_data is not None:
        state = model.get_fitted_state(include_data=include_data)
    else:
        state = model.get_fitted_state()
    arrays = {}
    for name, arr in state.arrays.items():
        arr = np.asarray(arr)
        if not _MEMBER_NAME.fullmatch(f"{name}.npy") or name == "metadata":
            raise ValueError(f"a fitted state array may not be named {name!r}")
        if arr.dtype.kind not in "biufU" or arr.dtype.fields is not None:
            raise TypeError(f"state array {name!r} of dtype {arr.dtype} cannot be saved")
        arrays[name] = _canonical(arr)
    from fastcls import __version__

    meta: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "class": cls_name,
        "params": params,
        "state": state.metadata,
        "backend": params.get("backend"),  # informative, as in version 1
        "fastcls_version": __version__,
        "arrays": sorted(arrays),
    }
    try:
        meta["digest"] = content_digest(meta, arrays)
    except ValueError as exc:  # a non-finite float in the metadata
        raise TypeError(f"the fitted state's metadata cannot be saved as JSON: {exc}") from exc
    members = {"metadata": np.array(json.dumps(meta, sort_keys=True, allow_nan=False)), **arrays}
    writer: Any = np.savez_compressed if compress else np.savez

    def write(f: BinaryIO) -> None:
        writer(f, **members)  # a file object: numpy adds no suffix

    _atomic_write(path, write)


def _default_mode(path: str) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        pass
    umask = 0o022
    with contextlib.suppress(OSError, ValueError):  # Linux: no process-wide umask dance
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    umask = int(line.split()[1], 8)
    return 0o666 & ~umask


def _atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` through ``write(file)`` atomically (temp file, fsync, rename)."""
    target = os.fspath(path)
    if isinstance(target, bytes):
        target = os.fsdecode(target)
    if os.path.islink(target):  # replace the file the link names, and keep the link
        target = os.path.realpath(target)
    folder = os.path.dirname(os.path.abspath(target))
    mode = _default_mode(target)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(target)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # the rename itself is durable only once the folder's entry is on disk
    with contextlib.suppress(OSError):
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


# --------------------------------------------------------------------------- archive
class _Archive:
    """A zip archive of ``.npy`` members, read without trusting any field in it."""

    def __init__(self, path: Any, f: BinaryIO, max_bytes: int | None) -> None:
        self.path = path
        size = os.fstat(f.fileno()).st_size
        self.max_bytes = (
            max(DEFAULT_MAX_BYTES, _MAX_EXPANSION * size) if max_bytes is None else max_bytes
        )
        head = f.read(4)
        if head not in (b"PK\x03\x04", b"PK\x05\x06"):
            raise self.not_model("not a zip (.npz) archive")
        # the member count from the end record, before zipfile builds an object per
        # entry of the central directory (a file of millions of empty entries)
        f.seek(max(0, size - _EOCD_SEARCH))
        tail = f.read()
        end = tail.rfind(b"PK\x05\x06")
        if end < 0 or len(tail) < end + 22:
            raise self.not_model("no zip end-of-archive record")
        (entries,) = struct.unpack("<H", tail[end + 10 : end + 12])
        if entries > _MAX_MEMBERS:
            raise self.error(None, f"{entries} archive members; a model has at most {_MAX_MEMBERS}")
        f.seek(0)
        try:
            self.zf = zipfile.ZipFile(f)
            infos = self.zf.infolist()
        except Exception as exc:  # zipfile raises many types on a damaged directory
            raise self.not_model(f"unreadable zip archive ({type(exc).__name__}: {exc})") from exc
        self.members: dict[str, zipfile.ZipInfo] = {}
        total = 0
        for info in infos:
            name = info.filename
            if not _MEMBER_NAME.fullmatch(name) or name[:-4] in self.members:
                raise self.error(None, f"unexpected or repeated archive member {name!r}")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise self.error(name[:-4], f"unsupported compression {info.compress_type}")
            if info.flag_bits & 0x1:
                raise self.error(name[:-4], "encrypted member")
            if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
                raise self.error(name[:-4], "stored member with inconsistent sizes")
            if info.compress_size > size:
                raise self.error(name[:-4], "member larger than the file")
            total += info.file_size
            self.members[name[:-4]] = info
        if total > self.max_bytes:
            raise self.error(
                None,
                f"the archive expands to {total} bytes, more than max_bytes={self.max_bytes} "
                f"(default: {_MAX_EXPANSION}x the file's size, at least {DEFAULT_MAX_BYTES}); "
                "pass a larger max_bytes to load a file you trust",
            )

    def error(self, field: str | None, reason: str) -> ModelFileError:
        return ModelFileError(self.path, field, reason)

    def not_model(self, why: str) -> ModelFileError:
        return ModelFileError(self.path, None, f"not a fastcls model file ({why})")

    def array(self, name: str, max_bytes: int | None = None) -> np.ndarray:
        """Member ``name`` as an array; every size checked against the member's size."""
        info = self.members.get(name)
        if info is None:
            raise self.error(name, "missing from the archive")
        if max_bytes is not None and info.file_size > max_bytes:
            raise self.error(name, f"{info.file_size} bytes, more than the {max_bytes} allowed")
        try:
            with self.zf.open(info) as m:
                return self.read_npy(name, info, m)
        except ModelFileError:
            raise
        except Exception as exc:  # zlib.error, BadZipFile (CRC), EOFError, struct.error ...
            raise self.error(name, f"corrupted member ({type(exc).__name__}: {exc})") from exc

    def read_npy(self, name: str, info: zipfile.ZipInfo, m: Any) -> np.ndarray:
        pre = _read_exact(m, 10)
        if len(pre) < 10 or pre[:6] != b"\x93NUMPY":
            raise self.error(name, "not a .npy member (bad magic)")
        major = pre[6]
        if major == 1:
            hlen, start = struct.unpack("<H", pre[8:10])[0], 10
        elif major == 2:  # numpy writes 2.0 only for headers over 64 KiB; 3.0 never for us
            pre += _read_exact(m, 2)
            hlen, start = struct.unpack("<I", pre[8:12])[0], 12
        else:
            raise self.error(name, f"unsupported .npy version {major}")
        if hlen > _MAX_NPY_HEADER:
            raise self.error(name, f".npy header of {hlen} bytes is too large")
        header = _read_exact(m, hlen)
        if len(header) != hlen:
            raise self.error(name, "truncated .npy header")
        reader = (
            np.lib.format.read_array_header_1_0
            if major == 1
            else np.lib.format.read_array_header_2_0
        )
        try:
            # numpy's own parser (ast.literal_eval: no code runs) on the bytes read above
            shape, fortran, dtype = reader(
                io.BytesIO(pre[8:start] + header), max_header_size=_MAX_NPY_HEADER
            )
        except Exception as exc:
            raise self.error(name, f"malformed .npy header ({exc})") from exc
        if (
            dtype.kind not in "biufU"
            or dtype.hasobject
            or dtype.fields is not None
            or dtype.subdtype is not None
            or dtype.itemsize == 0
        ):
            raise self.error(name, f"dtype {dtype} is not allowed")
        if (
            not isinstance(shape, tuple)
            or len(shape) > 8
            or not all(isinstance(s, int) and s >= 0 for s in shape)
        ):
            raise self.error(name, f"malformed shape {shape!r}")
        count = 1
        for s in shape:
            count *= s
        nbytes = count * dtype.itemsize
        if start + hlen + nbytes != info.file_size:
            raise self.error(
                name,
                f"shape {shape} of {dtype} needs {nbytes} data bytes; the member holds "
                f"{info.file_size - start - hlen}",
            )
        out = np.empty(count, dtype=dtype)
        view = out.view(np.uint8).reshape(-1).data
        pos = 0
        while pos < nbytes:
            chunk = m.read(min(_READ_CHUNK, nbytes - pos))
            if not chunk:
                raise self.error(name, f"truncated: {pos} of {nbytes} data bytes")
            view[pos : pos + len(chunk)] = chunk
            pos += len(chunk)
        if m.read(1):  # reaching the end also makes zipfile check the CRC-32
            raise self.error(name, "trailing bytes after the array data")
        arr = out.reshape(shape, order="F" if fortran else "C")
        if not dtype.isnative:
            arr = arr.astype(dtype.newbyteorder("="))
        if not arr.flags.c_contiguous:  # (np.ascontiguousarray would make 0-d arrays 1-d)
            arr = arr.copy(order="C")
        if dtype.kind == "U" and arr.size:
            codes = arr.reshape(-1).view(np.uint32)
            if ((codes >= 0x110000) | ((codes >= 0xD800) & (codes < 0xE000))).any():
                raise self.error(name, "holds invalid unicode code points")
        return arr


def _read_exact(m: Any, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = m.read(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _reject_constant(token: str) -> Any:
    raise ValueError(f"non-finite number {token} in JSON")


def _read_meta(archive: _Archive) -> dict[str, Any]:
    if "metadata" not in archive.members:
        raise archive.not_model("no metadata entry")
    raw = archive.array("metadata", max_bytes=_MAX_METADATA_BYTES)
    if raw.dtype.kind != "U" or raw.ndim != 0:
        raise archive.error("metadata", "must be a JSON string (0-d unicode array)")
    try:
        meta = json.loads(str(raw[()]), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise archive.error("metadata", f"not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        what = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise archive.not_model(f"format {what!r}")
    version = meta.get("format_version")
    if isinstance(version, bool) or version not in _SUPPORTED_VERSIONS:
        raise archive.error(
            "format_version",
            f"format_version {version!r} is not one this fastcls reads "
            f"({list(_SUPPORTED_VERSIONS)}); upgrade fastcls or re-save the model",
        )
    return meta


@contextlib.contextmanager
def _open(path: str | os.PathLike, max_bytes: int | None) -> Iterator[_Archive]:
    if max_bytes is not None and (
        isinstance(max_bytes, bool) or not isinstance(max_bytes, numbers.Integral) or max_bytes < 0
    ):
        raise ValueError(f"max_bytes must be a non-negative integer or None, got {max_bytes!r}")
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError as exc:
        hint = ""
        if os.path.exists(f"{os.fspath(path)!s}.npz"):
            hint = (
                f"; {os.fspath(path)!s}.npz exists (fastcls 0.1 appended .npz when saving): "
                "load that name"
            )
        raise FileNotFoundError(exc.errno, f"{exc.strerror}{hint}", str(path)) from None
    with f:
        archive = _Archive(path, f, None if max_bytes is None else int(max_bytes))
        with archive.zf:
            yield archive


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata of a saved model (format, version, class, params ...).

    Raises :class:`ModelFileError` if ``path`` is not a readable fastcls model file.
    """
    with _open(path, None) as archive:
        return _read_meta(archive)


def load(
    path: str | os.PathLike, *, max_bytes: int | None = None, trust_index: bool = False
) -> Any:
    """Load an estimator saved by :func:`save` / ``model.save(path)``.

    Nothing in the file is trusted, and nothing in it can run code: the archive is
    parsed here (never unpickled), its decompressed size is capped before anything is
    decompressed, the content digest is checked, and the estimator's
    ``set_fitted_state`` checks every array against the metadata, the parameters and
    each other before a model is built (see ``docs/saving.md`` for the list).

    Parameters
    ----------
    path : str or path-like
        Exactly the path given to :func:`save`.
    max_bytes : int, optional
        Refuse archives that expand to more bytes than this. Default: 64 times the
        file's size, and at least 256 MiB (an uncompressed save is about 1x; a
        deflated one of very repetitive data may need more).
    trust_index : bool, default False
        k-NN with ``backend="faiss"``: fastcls checks the bytes of ``Flat``,
        ``IVF<n>,Flat`` and ``HNSW<M>`` indexes completely before faiss reads them, and
        refuses other index families (PQ, SQ ...), whose layout it does not parse,
        unless this is True: then only their header is checked and faiss's own reader
        parses the rest. Pass True only for files from a source you trust.

    Returns
    -------
    KNearestNeighbor, LinearSVM, Softmax or FeatureScaler
        Fitted, with predictions identical to the saved model's.

    Raises
    ------
    ModelFileError
        The file is not a fastcls model file, or is malformed, truncated, corrupted or
        inconsistent: the message names the file and the field.
    OSError
        The file cannot be opened (e.g. ``FileNotFoundError``).

    Examples
    --------
    >>> import numpy as np, tempfile, os, fastcls
    >>> path = os.path.join(tempfile.mkdtemp(), "m.npz")
    >>> fastcls.KNearestNeighbor().fit(np.eye(2), [3, 4]).save(path)
    >>> fastcls.load(path).classes_.tolist()
    [3, 4]
    """
    from fastcls.base import FittedState, FittedStateError

    with _open(path, max_bytes) as archive:
        meta = _read_meta(archive)
        version = meta["format_version"]
        try:
            cls = _model_class(meta.get("class"))
        except KeyError:
            raise archive.error(
                "class",
                f"unknown model class {meta.get('class')!r}; fastcls saves {sorted(MODEL_CLASSES)}",
            ) from None
        if version == 1:
            meta = _upgrade_v1(meta, list(archive.members))
        params: dict[str, Any] = _json_object(archive, meta, "params")
        state_meta: dict[str, Any] = _json_object(archive, meta, "state")
        names = meta.get("arrays")
        if (
            not isinstance(names, list)
            or not all(isinstance(n, str) for n in names)
            or len(set(names)) != len(names)
            or "metadata" in names
        ):
            raise archive.error("arrays", f"must list distinct array names, got {names!r}")
        extra = sorted(set(archive.members) - set(names) - {"metadata"})
        if extra:
            raise archive.error(extra[0], f"archive members {extra} are not in 'arrays'")
        arrays = {name: archive.array(name) for name in names}
        if version >= 3:
            digest = meta.get("digest")
            try:
                actual = content_digest(meta, arrays)
            except (TypeError, ValueError) as exc:
                raise archive.error("metadata", f"cannot be digested ({exc})") from exc
            if not isinstance(digest, str) or digest != actual:
                raise archive.error(
                    "digest",
                    "the content does not match its SHA-256 digest (the file was corrupted "
                    "or edited)",
                )
    from fastcls.backends.base import TRUST_INDEX_BYTES

    token = TRUST_INDEX_BYTES.set(bool(trust_index))
    try:
        restored = {name: _param_from_json(name, value) for name, value in params.items()}
        model = cls().set_params(**restored)
        return model.set_fitted_state(FittedState(arrays, state_meta))
    except FittedStateError as exc:
        raise ModelFileError(path, exc.field, str(exc)) from exc
    except (ValueError, TypeError, OverflowError) as exc:
        raise ModelFileError(path, "params", str(exc)) from exc
    finally:
        TRUST_INDEX_BYTES.reset(token)


def _json_object(archive: _Archive, meta: dict[str, Any], field: str) -> dict[str, Any]:
    value = meta.get(field)
    if not isinstance(value, dict):
        raise archive.error(field, f"must be a JSON object, got {type(value).__name__}")
    return value


def _upgrade_v1(meta: dict[str, Any], files: list[str]) -> dict[str, Any]:
    """Version-1 metadata (k-NN only) in the version-2 layout."""
    arrays = [n for n in ("classes", "y", "fit_X", "faiss_index") if n in files]
    return {
        **meta,
        "state": {
            "n_features_in_": meta.get("n_features_in_"),
            "n_samples_fit_": meta.get("n_samples_fit_"),
            "backend_arrays": [n for n in arrays if n in ("fit_X", "faiss_index")],
            "labels_kind": "array",
        },
        "arrays": arrays,
    }
