"""A restricted unpickler for the CIFAR-10 *python* batches: a security boundary.

The python version of CIFAR-10 is a set of pickles, and unpickling runs whatever a
pickle names: a crafted ``data_batch_1`` could call ``os.system``. fastcls never calls
:func:`pickle.load` on such files; it uses :class:`RestrictedUnpickler`, which resolves
globals from a fixed table and refuses everything else *before* importing or calling
anything.

What it admits, and why (nothing else):

* builtin containers and scalars (dict, list, tuple, str, bytes, int, float, bool,
  None): they need no global, so the pickle machinery builds them without a lookup;
* ``numpy.ndarray`` and ``numpy.dtype``: every array pickle names them;
* ``numpy.core.multiarray._reconstruct`` and ``numpy.core.multiarray.scalar`` (also
  under ``numpy._core``, NumPy 2's name): array and NumPy-scalar pickles of protocols
  0-4, the Python 2 ones of the original release included;
* ``numpy.core.numeric._frombuffer`` (also under ``numpy._core``): protocol-5 array
  pickles;
* ``_codecs.encode`` restricted to the latin-1 encoding of a ``str``, and ``bytes``
  called with no argument: how protocol-2 pickles written by Python 3 spell ``bytes``
  (an array's raw data) and ``b""``.

Every other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``, even the
harmless ``collections.OrderedDict``) and every persistent id raises
:class:`UnsafePickleError`, a subclass of both :class:`pickle.UnpicklingError` and
:class:`ValueError`. The module a pickle names is never imported: NumPy's functions are
looked up once, from NumPy's own modules, when the table is first built.

What it does not do: make a malicious file *small*. A crafted pickle can still ask NumPy
for a large array (a ``MemoryError``, like any oversized file).

Imports only NumPy and the standard library.
"""

from __future__ import annotations

import functools
import importlib
import pickle

import numpy as np

__all__ = ["RestrictedUnpickler", "UnsafePickleError"]


def _numpy_attr(modules: tuple[str, ...], name: str) -> object | None:
    """``name`` from the first of NumPy's own ``modules`` that has it (NumPy 1 / 2)."""
    for mod in modules:
        try:
            return getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
    return None


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A pickle asked for a global (or a call) that :class:`RestrictedUnpickler` refuses.

    A subclass of :class:`pickle.UnpicklingError` and of :class:`ValueError`, so code
    that handles malformed files with ``except ValueError`` handles these too.
    """


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` restricted to latin-1: how protocol-2 pickles written by
    Python 3 spell a ``bytes`` object (the array's raw data)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "iso-8859-1"):
        raise UnsafePickleError(
            f"refused _codecs.encode({type(text).__name__}, {encoding!r}): only the latin-1 "
            "encoding of a string, which pickles of bytes use, is allowed"
        )
    return text.encode("latin1")


def _empty_bytes(*args: object) -> bytes:
    """``bytes()`` with no argument: how protocol-2 pickles written by Python 3 spell
    ``b""`` (any argument, which could allocate, is refused)."""
    if args:
        raise UnsafePickleError("refused bytes(...) with arguments: only bytes() is allowed")
    return b""


@functools.lru_cache(maxsize=1)
def _allowed_globals() -> dict[tuple[str, str], object]:
    core = ("numpy._core.multiarray", "numpy.core.multiarray")
    numeric = ("numpy._core.numeric", "numpy.core.numeric")
    reconstruct = _numpy_attr(core, "_reconstruct")
    scalar = _numpy_attr(core, "scalar")
    frombuffer = _numpy_attr(numeric, "_frombuffer")
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
        ("__builtin__", "bytes"): _empty_bytes,
        ("builtins", "bytes"): _empty_bytes,
    }
    for mod in core:
        if reconstruct is not None:
            allowed[(mod, "_reconstruct")] = reconstruct
        if scalar is not None:
            allowed[(mod, "scalar")] = scalar
    for mod in numeric:
        if frombuffer is not None:
            allowed[(mod, "_frombuffer")] = frombuffer
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that admits only what NumPy array pickles need.

    Builtin containers and scalars (dict, list, tuple, str, bytes, int, float, bool,
    None) need no global and load as usual. The only globals resolved are:

    * ``numpy.ndarray`` and ``numpy.dtype``;
    * ``numpy[._]core.multiarray._reconstruct`` and ``.scalar`` (array and scalar
      pickles of every protocol up to 4, Python 2 ones included);
    * ``numpy[._]core.numeric._frombuffer`` (protocol-5 array pickles);
    * ``_codecs.encode`` restricted to latin-1, and ``bytes`` called with no argument
      (how protocol-2 pickles written by Python 3 store ``bytes`` and ``b""``).

    Every other global (``os.system``, ``builtins.eval``, ``collections.OrderedDict``,
    ...) raises :class:`UnsafePickleError` (a :class:`pickle.UnpicklingError` and a
    :class:`ValueError`) naming it, *before* anything is
    imported or called, so a crafted pickle cannot run code. The names are resolved
    from a fixed table, never by importing the module the pickle names.

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

    def find_class(self, module: str, name: str) -> object:
        obj = _allowed_globals().get((module, name))
        if obj is None:
            raise UnsafePickleError(
                f"refused to load global '{module}.{name}': only NumPy array pickles "
                "(numpy.ndarray, numpy.dtype, numpy.core.multiarray._reconstruct) are "
                "allowed in a CIFAR-10 batch; this file is not a genuine batch or was "
                "tampered with"
            )
        return obj

    def persistent_load(self, pid: object) -> object:
        raise UnsafePickleError("refused a persistent id: not allowed in a CIFAR-10 batch")
