"""numba's on-disk cache, keyed on the whole fastcls package rather than one file.

numba validates a cached function against the source of the file that defines it, and
nothing else: a kernel compiled from ``kernels/losses.py`` that inlines an intrinsic of
``kernels/linear_tiles.py`` or reads a constant of ``_config.py`` keeps its cached
machine code after either file changes (numba issues #1833 and #9483). An upgrade of
fastcls then leaves the old kernels in ``__pycache__`` (pip removes the files it
installed, not numba's), and a kernel whose own file did not change would run the
old code of its callees with the new Python around it.

:func:`install` puts, ahead of numba's own, cache locators that claim the functions of
fastcls's own files only: the same directories as numba's (``NUMBA_CACHE_DIR``, the
package's ``__pycache__``, the user-wide cache), but the freshness stamp is a hash of
every ``.py`` file of the package (:func:`package_stamp`), so any change anywhere in
fastcls invalidates every cached kernel, and nothing else does. Functions of other
packages keep numba's locators. If numba's caching internals are not what this module
expects (another numba version), nothing is installed and numba's per-file stamps
apply.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

#: the root of the fastcls package (the directory of this file)
PACKAGE_DIR = Path(__file__).resolve().parent


def package_stamp(root: Path = PACKAGE_DIR) -> bytes:
    """SHA-256 over the relative path and content of every ``.py`` file under ``root``.

    Files are taken in sorted order; a file added, removed, renamed or edited changes
    the stamp.
    """
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.digest()


@functools.lru_cache(maxsize=1)
def _installed_package_stamp() -> bytes:
    """:func:`package_stamp` of the installed package, computed once per process (a few ms)."""
    return package_stamp()


def _in_package(py_file: str) -> bool:
    try:
        return Path(py_file).resolve().is_relative_to(PACKAGE_DIR)
    except (OSError, ValueError):
        return False


class _PackageStampMixin:
    """A locator for fastcls's own functions whose stamp is the whole package's."""

    def get_source_stamp(self) -> bytes:
        return _installed_package_stamp()

    @classmethod
    def from_function(cls, py_func: Any, py_file: str) -> Any:
        if not _in_package(py_file):
            return None
        return super().from_function(py_func, py_file)  # type: ignore[misc]


def _locator_bases() -> tuple[Any, ...] | None:
    """numba's file-backed locator classes, in numba's order, or None if not found."""
    try:
        from numba.core import caching
    except ImportError:  # pragma: no cover - numba is a dependency
        return None
    names = ("UserProvidedCacheLocator", "InTreeCacheLocator", "UserWideCacheLocator")
    bases = tuple(getattr(caching, name, None) for name in names)
    impl = getattr(caching, "CacheImpl", None)
    if impl is None or any(b is None for b in bases):
        return None
    if not isinstance(getattr(impl, "_locator_classes", None), list):
        return None
    return bases


def _make_locators() -> list[type] | None:
    bases = _locator_bases()
    if bases is None:
        return None
    user_dir, in_tree, user_wide = bases

    class PackageUserProvidedLocator(_PackageStampMixin, user_dir):  # type: ignore[misc, valid-type]
        """``NUMBA_CACHE_DIR``, stamped with the package."""

    class PackageInTreeLocator(_PackageStampMixin, in_tree):  # type: ignore[misc, valid-type]
        """The package's ``__pycache__``, stamped with the package."""

    class PackageUserWideLocator(_PackageStampMixin, user_wide):  # type: ignore[misc, valid-type]
        """The user-wide numba cache, stamped with the package."""

    return [PackageUserProvidedLocator, PackageInTreeLocator, PackageUserWideLocator]


_LOCATORS: list[type] | None = None


def install() -> bool:
    """Put the package-stamped locators ahead of numba's (once); whether they are in place.

    Called before the first kernel is decorated (:func:`fastcls._config.jit`): numba
    chooses a function's locator when caching is enabled on it.
    """
    global _LOCATORS
    if _LOCATORS is None:
        _LOCATORS = _make_locators() or []
    if not _LOCATORS:
        return False
    from numba.core import caching

    classes: list[Any] = caching.CacheImpl._locator_classes
    if classes[: len(_LOCATORS)] != _LOCATORS:
        for cls in _LOCATORS:
            if cls in classes:
                classes.remove(cls)
        classes[:0] = _LOCATORS
    return True


def locator_of(dispatcher: Any) -> Any:
    """The cache locator numba uses for a jitted function (None without a cache)."""
    cache = getattr(dispatcher, "_cache", None)
    impl = getattr(cache, "_impl", None)
    return getattr(impl, "locator", None)
