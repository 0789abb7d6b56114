"""Griffe extension: render Sphinx cross-reference roles in docstrings as links.

The docstrings use ``:func:`name```, ``:class:`~pkg.Name```, ``:mod:`pkg.mod``` ...
(numpydoc's convention). mkdocstrings' Markdown does not know these roles, so they
would show literally. This extension rewrites each role, once every module is
loaded, into an *optional* autorefs cross-reference: a link when the target is
rendered somewhere in the site, plain code otherwise (never a build warning, so a
role naming an undocumented object does not break ``mkdocs build --strict``).

Relative targets are resolved the way Sphinx does: in the object's own scope, then
its parents' scopes; a leading ``~`` shows only the last component.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import griffe

_ROLE = re.compile(
    r":(?:py:)?(?P<role>mod|module|class|func|meth|attr|data|exc|obj|const)"
    r":`(?P<tilde>~?)(?P<target>[A-Za-z_][\w.]*)(?:\(\))?`"
)


def _lazy_names(pkg: griffe.Module) -> dict[str, str]:
    """``fastcls._LAZY_NAMES``: public name -> defining module (names griffe cannot see)."""
    attr = pkg.members.get("_LAZY_NAMES")
    try:
        return dict(ast.literal_eval(str(attr.value))) if attr is not None else {}
    except (ValueError, SyntaxError):
        return {}


def _resolve(obj: griffe.Object, target: str, lazy: dict[str, str]) -> str:
    """Full dotted path for ``target`` as seen from ``obj`` (best effort)."""
    top, _, rest = target.partition(".")
    if top == obj.package.name and rest:
        name, _, tail = rest.partition(".")
        # fastcls.KNearestNeighbor[.fit] -> fastcls.neighbors.KNearestNeighbor[.fit]
        if name in lazy:
            return ".".join(filter(None, (lazy[name], name, tail)))
    collection = obj.modules_collection
    scope: Any = obj
    while scope is not None:
        candidate = f"{scope.path}.{target}"
        try:
            collection.get_member(candidate)
        except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            scope = scope.parent
            continue
        return candidate
    return target


def _rewrite(obj: griffe.Object, lazy: dict[str, str]) -> None:
    docstring = obj.docstring
    if docstring is None or ":`" not in docstring.value:
        return

    def replace(match: re.Match[str]) -> str:
        target = match["target"]
        path = _resolve(obj, target, lazy)
        shown = target.rsplit(".", 1)[-1] if match["tilde"] else target
        if match["role"] in ("func", "meth"):
            shown += "()"
        return f'<autoref identifier="{path}" optional><code>{shown}</code></autoref>'

    docstring.value = _ROLE.sub(replace, docstring.value)


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles into optional autorefs after the whole package is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        seen: set[str] = set()
        lazy = _lazy_names(pkg)

        def walk(obj: griffe.Object) -> None:
            if obj.path in seen:
                return
            seen.add(obj.path)
            _rewrite(obj, lazy)
            for member in obj.members.values():
                if not member.is_alias:
                    walk(member)

        walk(pkg)
