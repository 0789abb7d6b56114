"""The package's structure, checked: no import cycles, no private names across modules,
every search backend under fastcls/backends/, io.py reads no private attribute, and
production code never reaches into the reference implementations."""

from __future__ import annotations

import ast
import pathlib

import pytest

PKG = pathlib.Path(__file__).resolve().parents[1] / "fastcls"


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not MODULES[module].name == "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import, nested ones too."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((alias.name, None, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            src = _resolve(module, node)
            for alias in node.names:
                sub = f"{src}.{alias.name}"
                if sub in MODULES:  # `from fastcls import neighbors`: a module
                    out.append((sub, None, node.lineno))
                else:
                    out.append((src, alias.name, node.lineno))
    return out


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        for target, _, _ in _imports(module):
            if target in MODULES and target != module:
                graph[module].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None (iterative DFS, three colours)."""
    colour = dict.fromkeys(graph, 0)
    for root in sorted(graph):
        if colour[root]:
            continue
        stack = [(root, iter(sorted(graph[root])))]
        path = [root]
        colour[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour[child] == 1:
                return path[path.index(child) :] + [child]
            elif colour[child] == 0:
                colour[child] = 1
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycle_in_fastcls():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_private_name_imported_from_another_module():
    offenders = []
    for module in MODULES:
        for target, name, line in _imports(module):
            if (
                target.startswith("fastcls")
                and name is not None
                and name.startswith("_")
                and not name.startswith("__")
                and target != module
            ):
                offenders.append(f"{module}:{line} imports {name} from {target}")
    assert not offenders, "\n".join(offenders)


def test_production_code_does_not_use_the_reference():
    """fastcls.reference is for tests and the backend="numpy" path only."""
    allowed = {"fastcls.backends.numpy", "fastcls.testing"}
    offenders = [
        f"{module}:{line}"
        for module in MODULES
        if not module.startswith("fastcls.reference") and module not in allowed
        for target, _, line in _imports(module)
        if target.startswith("fastcls.reference")
    ]
    assert not offenders, offenders


def test_every_search_backend_lives_under_backends():
    from fastcls.backends import BACKENDS, get_backend
    from fastcls.backends.base import SearchBackend

    assert set(BACKENDS) >= {"numba", "numpy", "faiss", "dask"}
    for name in ("numba", "numpy", "faiss", "dask"):
        cls = get_backend(name)
        assert issubclass(cls, SearchBackend) and cls.name == name
        assert cls.__module__ == f"fastcls.backends.{name}"
    # nothing outside fastcls/backends defines a SearchBackend
    for module, path in MODULES.items():
        if module.startswith("fastcls.backends"):
            continue
        assert "SearchBackend)" not in path.read_text(encoding="utf-8"), module


def test_io_reads_no_private_attribute():
    tree = ast.parse((PKG / "io.py").read_text(encoding="utf-8"))
    private = [
        f"line {node.lineno}: .{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
    ]
    assert not private, private


@pytest.mark.parametrize(
    "module", ["fastcls.neighbors", "fastcls.model_selection", "fastcls.linear", "fastcls.cli"]
)
def test_api_modules_know_no_particular_backend(module):
    """Estimators and functions choose a backend by name: no FAISS or Dask imports."""
    targets = {t for t, _, _ in _imports(module)}
    assert not {t for t in targets if t.split(".")[0] in ("faiss", "dask", "distributed")}
    assert not {t for t in targets if t.startswith("fastcls.backends.")}, targets
