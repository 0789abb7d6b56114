"""Choose a micro-kernel at compile time by the *type* of an argument.

A driver called with ``impl_token(code)`` (a tuple of ``code + 1`` zeros) is compiled
once per implementation: numba types the tuple by its length, so the overloads inside it
pick their tile at compile time (:func:`token_code`) and only that tile is compiled.

Why not the alternatives: an integer literal does the same through ``numba.literally``,
but every call from Python then redoes numba's literal dispatch (about 0.1 s a call); the
usual fix, one jitted entry point per implementation calling the driver with a constant,
is one more compiled level, and numba re-optimises and re-emits the machine code of a
function's whole call tree at every level (about 0.3 s per kernel on a cold first call).
"""

from __future__ import annotations

from typing import Any


def impl_token(code: int) -> tuple[int, ...]:
    """The argument that selects implementation ``code`` (0, 1, 2, ...) of a driver."""
    return (0,) * (code + 1)


def token_code(token_type: Any) -> int | None:
    """The implementation code of a token's numba type, or None if it is not a token."""
    from numba.core import types

    if isinstance(token_type, types.UniTuple) and token_type.count > 0:
        return int(token_type.count) - 1
    return None
