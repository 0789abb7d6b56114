"""A restricted unpickler for the CIFAR-10 *python* batches: a security boundary.

The python version of CIFAR-10 is a set of pickles, and unpickling runs whatever a
pickle names: a crafted ``data_batch_1`` could call ``os.system``, ask NumPy for a
2.9 GiB uninitialised array in 240 bytes, or expand a few kilobytes of shared
references into gigabytes. fastcls never calls :func:`pickle.load` on such files; it
uses :class:`RestrictedUnpickler`, which reads the opcodes one by one (the pure-Python
unpickler of the standard library, driven through its dispatch table) and admits only
what a CIFAR-10 batch is made of.

What a batch is: a dict of ``b"data"`` (a uint8 array of shape ``(10000, 3072)``),
``b"labels"`` (a list of ints), ``b"filenames"`` (a list of strings) and
``b"batch_label"`` (a string); ``batches.meta`` is a dict of ints and a list of names.
Re-pickled copies (Python 3, any protocol, labels as an int array) look the same. So
the unpickler admits:

* builtin scalars and containers (dict, list, tuple, set, str, bytes, int, float,
  bool, None), built by opcodes that name no global;
* seven globals, each resolved from a fixed table to a *checked* stand-in (the module a
  pickle names is never imported, and no NumPy function is called on unchecked
  arguments):

  - ``numpy.ndarray``: a marker, never callable;
  - ``numpy.dtype``: ``("u1" | "i4" | "i8", False, True)`` only;
  - ``numpy[._]core.multiarray._reconstruct``: ``(ndarray, (0,), b"b")`` only;
  - ``numpy[._]core.multiarray.scalar``: an allowed dtype and exactly itemsize bytes;
  - ``numpy[._]core.numeric._frombuffer`` (protocol 5): bytes of exactly the shape;
  - ``_codecs.encode``: the latin-1 encoding of a ``str`` only (protocol 2 ``bytes``);
  - ``bytes`` (``builtins`` / ``__builtin__``): no argument only (protocol 2 ``b""``);

* ``BUILD`` only on an array or dtype that one of those stand-ins has just made, once,
  with its state checked first: a dtype state with no fields, sub-array or object flag;
  an array state whose shape (at most 4 dimensions), dtype (uint8, int32 or int64, any
  byte order) and raw data agree exactly (``len(data) == prod(shape) * itemsize``).
  int32 is there because NumPy 1 on Windows made int32 label arrays.

And it counts as it reads, refusing a pickle (fast, before any large allocation) that
goes past a cap:

* **decoded size** -- the bytes of every string, raw buffer and array it builds, a
  string fetched twice from the memo counted twice (default cap:
  ``settings.cifar_max_member_bytes``, the same as the largest file accepted);
* **shared containers** -- a list, dict, tuple, set or bytearray may not be fetched
  from the memo (``GET``) or duplicated (``DUP``): a batch is a tree, and shared or
  self-referencing containers are how a few kilobytes expand to gigabytes
  ("billion laughs") when the result is walked;
* **opcodes** (:attr:`RestrictedUnpickler.max_opcodes`, a real batch has 30,000
  to 90,000) and **nesting depth** (:attr:`RestrictedUnpickler.max_depth`, a batch has 2).

Every refusal raises :class:`UnsafePickleError`, a subclass of both
:class:`pickle.UnpicklingError` and :class:`ValueError`, naming what was refused.
Other opcodes that no batch contains (``INST``, ``OBJ``, ``NEWOBJ``, extension codes,
persistent ids, out-of-band buffers) are refused too.

Imports only NumPy and the standard library (and :mod:`fastcls._config` for the cap).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any, BinaryIO, ClassVar, TypeGuard

import numpy as np

__all__ = ["RestrictedUnpickler", "UnsafePickleError"]


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A pickle asked for something :class:`RestrictedUnpickler` refuses.

    A global or an opcode outside the CIFAR-10 format, a call with arguments the format
    never uses, a shared container, or more data, opcodes or nesting than the caps allow.
    A subclass of :class:`pickle.UnpicklingError` and of :class:`ValueError`, so code
    that handles malformed files with ``except ValueError`` handles these too.
    """


class _NdarrayMarker:
    """Stands for ``numpy.ndarray`` as the first argument of ``_reconstruct``.

    Not callable and not a class: ``numpy.ndarray((2**40,))`` cannot be called through
    it, and ``NEWOBJ`` cannot instantiate it.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "numpy.ndarray"


_NDARRAY = _NdarrayMarker()

#: (module, name) -> stand-in name; both NumPy 1 (numpy.core) and 2 (numpy._core)
_GLOBALS: dict[tuple[str, str], str] = {
    ("numpy", "ndarray"): "ndarray",
    ("numpy", "dtype"): "dtype",
    ("numpy.core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy._core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy.core.multiarray", "scalar"): "scalar",
    ("numpy._core.multiarray", "scalar"): "scalar",
    ("numpy.core.numeric", "_frombuffer"): "frombuffer",
    ("numpy._core.numeric", "_frombuffer"): "frombuffer",
    ("_codecs", "encode"): "encode",
    ("builtins", "bytes"): "bytes",
    ("__builtin__", "bytes"): "bytes",
}

#: dtypes an array or scalar may have: the format's uint8 pixels and integer labels
_DTYPE_CODES = frozenset({"u1", "i4", "i8"})
_BYTEORDERS = frozenset({"|", "<", ">", "="})
_MAX_NDIM = 4
#: containers that must not be shared: fetching one twice is how a small pickle expands
_CONTAINERS = (list, dict, tuple, set, frozenset, bytearray, np.ndarray)
_LATIN1 = ("latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1")


def _op(name: str) -> int:
    return getattr(pickle, name)[0]


def _text(value: object) -> str | None:
    """A short str argument, or the latin-1 reading of a Python-2 ``bytes`` one."""
    if isinstance(value, bytes):
        return value.decode("latin1")
    return value if isinstance(value, str) else None


def _allowed_dtype(dt: object) -> TypeGuard[np.dtype]:
    return (
        isinstance(dt, np.dtype)
        and dt.fields is None
        and dt.subdtype is None
        and not dt.hasobject
        and f"{dt.kind}{dt.itemsize}" in _DTYPE_CODES
    )


def _raw_bytes(data: object, nbytes: int, what: str) -> bytes | bytearray:
    """The raw buffer of an array or scalar, checked to hold exactly ``nbytes``."""
    if isinstance(data, str):  # a Python-2 string read with encoding="latin1"
        if len(data) != nbytes:
            raise UnsafePickleError(f"refused {what}: {len(data)} data bytes, expected {nbytes}")
        try:
            return data.encode("latin1")
        except UnicodeEncodeError:
            raise UnsafePickleError(f"refused {what}: its data is not a byte string") from None
    if not isinstance(data, (bytes, bytearray)):
        raise UnsafePickleError(f"refused {what}: its data is a {type(data).__name__}, not bytes")
    if len(data) != nbytes:
        raise UnsafePickleError(f"refused {what}: {len(data)} data bytes, expected {nbytes}")
    return data


def _check_shape(shape: object, what: str) -> tuple[int, ...]:
    if (
        not isinstance(shape, tuple)
        or len(shape) > _MAX_NDIM
        or not all(type(s) is int and s >= 0 for s in shape)
    ):
        raise UnsafePickleError(
            f"refused {what} of shape {shape!r}: expected a tuple of at most {_MAX_NDIM} "
            "non-negative ints"
        )
    return shape


class RestrictedUnpickler(pickle._Unpickler):
    """An unpickler that admits only what a CIFAR-10 python batch is made of.

    See the module docstring for exactly what is admitted and why. Everything else
    raises :class:`UnsafePickleError` (a :class:`pickle.UnpicklingError` and a
    :class:`ValueError`) naming it, before anything is imported or allocated.

    Parameters
    ----------
    file : binary file object
    encoding : str, default "ASCII"
        How Python-2 strings are decoded; CIFAR-10's batches need ``"bytes"``.
    max_decoded_bytes : int, optional
        Cap on the bytes of strings, buffers and arrays built (a string fetched from the
        memo again counts again). Default: ``settings.cifar_max_member_bytes``.
    max_opcodes, max_depth : int, optional
        Caps on the opcodes read and on the nesting of containers; default the class
        attributes :attr:`max_opcodes` and :attr:`max_depth`.

    Examples
    --------
    >>> import io, pickle
    >>> import numpy as np
    >>> blob = pickle.dumps({b"data": np.zeros((2, 3), np.uint8), b"labels": [1, 2]}, 2)
    >>> RestrictedUnpickler(io.BytesIO(blob), encoding="bytes").load()[b"labels"]
    [1, 2]
    >>> evil = b"cos\\nsystem\\n(S'echo pwned'\\ntR."
    >>> try:
    ...     RestrictedUnpickler(io.BytesIO(evil)).load()
    ... except pickle.UnpicklingError as exc:
    ...     print(exc)  # doctest: +ELLIPSIS
    refused to load global 'os.system': ...
    """

    #: opcodes read before the pickle is refused (a real batch has 30,000 to 90,000)
    max_opcodes: int = 2_000_000
    #: deepest nesting of containers accepted (a batch nests 2: a dict of lists of str)
    max_depth: int = 16

    dispatch: ClassVar[dict[int, Callable[..., None]]]
    # set by pickle._Unpickler.load (the stack of the current mark, and those below it)
    stack: list[Any]
    metastack: list[list[Any]]

    def __init__(
        self,
        file: BinaryIO,
        *,
        encoding: str = "ASCII",
        errors: str = "strict",
        max_decoded_bytes: int | None = None,
        max_opcodes: int | None = None,
        max_depth: int | None = None,
    ) -> None:
        super().__init__(file, encoding=encoding, errors=errors)
        if max_decoded_bytes is None:
            from fastcls._config import settings

            max_decoded_bytes = int(settings.cifar_max_member_bytes)
        self.max_decoded_bytes = int(max_decoded_bytes)
        if max_opcodes is not None:
            self.max_opcodes = int(max_opcodes)
        if max_depth is not None:
            self.max_depth = int(max_depth)
        self._decoded = 0
        self._opcodes = 0
        self._depth: dict[int, int] = {}  # id(container) -> nesting depth
        self._pending: dict[int, object] = {}  # id -> array / dtype awaiting its BUILD
        self._stand_ins: dict[str, Any] = {
            "ndarray": _NDARRAY,
            "dtype": self._dtype,
            "reconstruct": self._reconstruct,
            "scalar": self._scalar,
            "frombuffer": self._frombuffer,
            "encode": self._encode,
            "bytes": self._empty_bytes,
        }
        self._callables = {id(f): f for f in self._stand_ins.values() if f is not _NDARRAY}

    # ------------------------------------------------------------------ globals
    def find_class(self, module: str, name: str) -> object:
        key = _GLOBALS.get((module, name))
        if key is None:
            raise UnsafePickleError(
                f"refused to load global '{module}.{name}': only the NumPy array machinery "
                "(numpy.ndarray, numpy.dtype, numpy.core.multiarray._reconstruct) is allowed "
                "in a CIFAR-10 batch; this file is not a genuine batch or was tampered with"
            )
        return self._stand_ins[key]

    def persistent_load(self, pid: object) -> object:
        raise UnsafePickleError("refused a persistent id: not allowed in a CIFAR-10 batch")

    # ------------------------------------------------------------------ budget
    def _charge(self, nbytes: int, what: str) -> None:
        self._decoded += int(nbytes)
        if self._decoded > self.max_decoded_bytes:
            raise UnsafePickleError(
                f"refused: the pickle decodes to more than {self.max_decoded_bytes} bytes "
                f"(at {what}); a CIFAR-10 batch decodes to about 31 MB. If the file is "
                "genuine, raise fastcls._config.settings.cifar_max_member_bytes"
            )

    def _container_depth(self, obj: object) -> int:
        return self._depth.get(id(obj), 1) if isinstance(obj, _CONTAINERS) else 0

    def _set_depth(self, container: object, depth: int) -> None:
        if depth > self.max_depth:
            raise UnsafePickleError(
                f"refused: containers nested more than {self.max_depth} deep; a CIFAR-10 "
                "batch nests 2 deep"
            )
        self._depth[id(container)] = depth

    # ------------------------------------------------------------------ stand-ins
    def _dtype(self, code: object, align: object = False, copy: object = True) -> np.dtype:
        text = _text(code)
        if text not in _DTYPE_CODES or align not in (0, False) or copy not in (1, True):
            raise UnsafePickleError(
                f"refused numpy.dtype({code!r}, {align!r}, {copy!r}): only "
                f"{sorted(_DTYPE_CODES)} (uint8 pixels, integer labels) are allowed"
            )
        # copy=True: a fresh object, so its BUILD cannot alter NumPy's shared uint8 dtype
        dt = np.dtype(text, align=False, copy=True)
        self._pending[id(dt)] = dt
        return dt

    def _reconstruct(self, subtype: object, shape: object, typecode: object) -> np.ndarray:
        if subtype is not _NDARRAY or shape != (0,) or _text(typecode) != "b":
            raise UnsafePickleError(
                f"refused _reconstruct({subtype!r}, {shape!r}, {typecode!r}): only "
                "_reconstruct(numpy.ndarray, (0,), b'b'), as array pickles write it, is allowed"
            )
        arr = np.empty(0, dtype=np.int8)  # what that call makes; BUILD fills it in
        self._pending[id(arr)] = arr
        return arr

    def _scalar(self, dtype: object, data: object) -> np.generic:
        if not _allowed_dtype(dtype):
            raise UnsafePickleError(f"refused a NumPy scalar of dtype {dtype!r}")
        raw = _raw_bytes(data, dtype.itemsize, "a NumPy scalar")
        return np.frombuffer(raw, dtype=dtype)[0]

    def _frombuffer(
        self, buf: object, dtype: object, shape: object, order: object = "C"
    ) -> np.ndarray:
        if not _allowed_dtype(dtype):
            raise UnsafePickleError(f"refused an array of dtype {dtype!r}")
        shape = _check_shape(shape, "an array")
        order = _text(order)
        if order not in ("C", "F"):
            raise UnsafePickleError(f"refused an array of order {order!r}")
        nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
        raw = _raw_bytes(buf, nbytes, "an array")
        return np.frombuffer(raw, dtype=dtype).reshape(shape, order=order)  # type: ignore[call-overload]

    def _encode(self, text: object, encoding: object = "latin1") -> bytes:
        """``_codecs.encode`` restricted to latin-1: how protocol-2 pickles written by
        Python 3 spell a ``bytes`` object (the array's raw data)."""
        if not isinstance(text, str) or encoding not in _LATIN1:
            raise UnsafePickleError(
                f"refused _codecs.encode({type(text).__name__}, {encoding!r}): only the "
                "latin-1 encoding of a string, which pickles of bytes use, is allowed"
            )
        self._charge(len(text), "_codecs.encode")
        try:
            return text.encode("latin1")
        except UnicodeEncodeError:
            raise UnsafePickleError(
                "refused _codecs.encode of a string with characters beyond latin-1"
            ) from None

    def _empty_bytes(self, *args: object) -> bytes:
        """``bytes()`` with no argument: how protocol-2 pickles written by Python 3 spell
        ``b""`` (any argument, which could allocate, is refused)."""
        if args:
            raise UnsafePickleError("refused bytes(...) with arguments: only bytes() is allowed")
        return b""

    # ------------------------------------------------------------------ BUILD
    def _build_dtype(self, dt: Any, state: Any) -> None:
        ok = isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)
        if ok:
            order = _text(state[1])
            ok = (
                order in _BYTEORDERS
                and state[2:5] == (None, None, None)  # no sub-array, names or fields
                and state[5:7] == (-1, -1)  # element size and alignment of a plain dtype
                and state[7] == 0  # no flags (no object references)
                and (len(state) == 8 or state[8] is None)  # no metadata
            )
        if not ok:
            raise UnsafePickleError(
                f"refused the dtype state {state!r}: only plain integer dtypes are allowed"
            )
        dt.__setstate__((3, order, None, None, None, -1, -1, 0))
        if not _allowed_dtype(dt):  # pragma: no cover - defence in depth
            raise UnsafePickleError(f"refused dtype {dt!r}")

    def _build_array(self, arr: Any, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 4:  # the pre-version layout
            state = (1, *state)
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
            raise UnsafePickleError(f"refused an array state of type {type(state).__name__}")
        _, shape, dtype, fortran, data = state
        shape = _check_shape(shape, "an array")
        if not _allowed_dtype(dtype) or fortran not in (0, 1):
            raise UnsafePickleError(f"refused an array of dtype {dtype!r} (fortran={fortran!r})")
        nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
        raw = _raw_bytes(data, nbytes, f"an array of shape {shape}")
        self._charge(nbytes, f"an array of shape {shape}")
        arr.__setstate__((1, shape, dtype, bool(fortran), bytes(raw)))

    def _load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        target = self._pending.pop(id(inst), None)
        if target is not inst:
            raise UnsafePickleError(
                f"refused BUILD on a {type(inst).__name__}: only an array or dtype just made "
                "by numpy's pickle machinery is built, once"
            )
        if isinstance(inst, np.dtype):
            self._build_dtype(inst, state)
        else:
            self._build_array(inst, state)

    # ------------------------------------------------------------------ calls
    def _load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        call = self._callables.get(id(func))
        if call is None or call is not func or type(args) is not tuple:
            raise UnsafePickleError(
                f"refused a call of {func!r}: only the allowed NumPy stand-ins are callable"
            )
        try:
            self.stack[-1] = call(*args)
        except TypeError:  # a wrong number of arguments
            raise UnsafePickleError(
                f"refused a call of {call.__name__.lstrip('_')} with {len(args)} arguments"
            ) from None


def _refuse(name: str) -> Callable[[RestrictedUnpickler], None]:
    def op(self: RestrictedUnpickler) -> None:
        raise UnsafePickleError(
            f"refused the pickle opcode {name}: a CIFAR-10 batch never contains it"
        )

    return op


def _counted(fn: Callable[[Any], None]) -> Callable[[RestrictedUnpickler], None]:
    def op(self: RestrictedUnpickler) -> None:
        self._opcodes += 1
        if self._opcodes > self.max_opcodes:
            raise UnsafePickleError(
                f"refused: more than {self.max_opcodes} pickle opcodes; a CIFAR-10 batch "
                "has 30,000 to 90,000"
            )
        fn(self)

    return op


def _sized(fn: Callable[[Any], None]) -> Callable[[RestrictedUnpickler], None]:
    """A string / bytes push: charge its length."""

    def op(self: RestrictedUnpickler) -> None:
        fn(self)
        self._charge(len(self.stack[-1]), "a string")

    return op


def _memo_get(fn: Callable[[Any], None]) -> Callable[[RestrictedUnpickler], None]:
    """A memo fetch: atoms only (strings counted again), never a container."""

    def op(self: RestrictedUnpickler) -> None:
        fn(self)
        obj = self.stack[-1]
        if isinstance(obj, _CONTAINERS) and not (type(obj) is tuple and not obj):
            raise UnsafePickleError(
                f"refused a second reference to a {type(obj).__name__} (a shared or "
                "self-referencing container): a CIFAR-10 batch is a tree, and shared "
                "containers are how a small pickle expands to gigabytes"
            )
        if isinstance(obj, (str, bytes)):
            self._charge(len(obj), "a string fetched again from the memo")

    return op


def _new_container(fn: Callable[[Any], None], n_items: int | None = None) -> Any:
    """A container made from the ``n_items`` on top of the stack (or the mark's items)."""

    def op(self: RestrictedUnpickler) -> None:
        items = self.stack if n_items is None else self.stack[len(self.stack) - n_items :]
        depth = 1 + max((self._container_depth(v) for v in items), default=0)
        fn(self)
        self._set_depth(self.stack[-1], depth)

    return op


def _fill(fn: Callable[[Any], None], kind: type, n_items: int | None = None) -> Any:
    """Items added to an existing ``kind`` (APPEND(S), SETITEM(S), ADDITEMS)."""

    def op(self: RestrictedUnpickler) -> None:
        if n_items is None:  # the items since the mark; the target below the mark
            items = self.stack
            target = self.metastack[-1][-1] if self.metastack and self.metastack[-1] else None
        else:
            items = self.stack[len(self.stack) - n_items :]
            target = self.stack[-n_items - 1] if len(self.stack) > n_items else None
        if type(target) is not kind:
            raise UnsafePickleError(
                f"refused adding items to a {type(target).__name__}: only to a {kind.__name__}"
            )
        deepest = max(map(self._container_depth, items), default=0)
        depth = max(self._depth.get(id(target), 1), 1 + deepest)
        fn(self)
        self._set_depth(target, depth)

    return op


def _dispatch() -> dict[int, Callable[..., None]]:
    base = pickle._Unpickler.dispatch
    table: dict[int, Callable[..., None]] = dict(base)
    for name in ("BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8", "BINUNICODE"):
        table[_op(name)] = _sized(base[_op(name)])
    for name in ("SHORT_BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING"):
        table[_op(name)] = _sized(base[_op(name)])
    table[_op("SHORT_BINSTRING")] = _sized(base[_op("SHORT_BINSTRING")])
    for name in ("GET", "BINGET", "LONG_BINGET"):
        table[_op(name)] = _memo_get(base[_op(name)])
    for name in ("EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET", "EMPTY_TUPLE"):
        table[_op(name)] = _new_container(base[_op(name)], 0)
    for name in ("LIST", "TUPLE", "DICT", "FROZENSET"):
        table[_op(name)] = _new_container(base[_op(name)])
    for name, n in (("TUPLE1", 1), ("TUPLE2", 2), ("TUPLE3", 3)):
        table[_op(name)] = _new_container(base[_op(name)], n)
    table[_op("APPEND")] = _fill(base[_op("APPEND")], list, 1)
    table[_op("APPENDS")] = _fill(base[_op("APPENDS")], list)
    table[_op("SETITEM")] = _fill(base[_op("SETITEM")], dict, 2)
    table[_op("SETITEMS")] = _fill(base[_op("SETITEMS")], dict)
    table[_op("ADDITEMS")] = _fill(base[_op("ADDITEMS")], set)
    table[_op("BUILD")] = RestrictedUnpickler._load_build
    table[_op("REDUCE")] = RestrictedUnpickler._load_reduce
    refused = ("DUP", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4")
    for name in (*refused, "NEXT_BUFFER", "READONLY_BUFFER"):  # persistent ids: persistent_load
        table[_op(name)] = _refuse(name)
    return {key: _counted(fn) for key, fn in table.items()}


RestrictedUnpickler.dispatch = _dispatch()
