"""What Python 2's cPickle wrote for a CIFAR-10 batch, for the loader tests.

A helper module (not a test file): ``test_datasets.py`` and ``test_safe_pickle.py``
both build Python-2 style batches with it.
"""

from __future__ import annotations

import io
import pickle
import struct


class Py2Pickler(pickle._Pickler):
    """Writes str/bytes as (SHORT_)BINSTRING, as Python 2's cPickle did."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj):
        b = obj if isinstance(obj, bytes) else obj.encode("ascii")
        if len(b) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(b)]) + b)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(b)) + b)
        self.memoize(obj)

    def _save_str(self, obj):
        if obj.isascii():
            return self._save_py2_str(obj)
        return pickle._Pickler.save_str(self, obj)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_str


def py2_dumps(obj) -> bytes:
    """``obj`` pickled as Python 2 did (protocol 2, the old ``numpy.core`` paths)."""
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
