"""numba's on-disk cache of fastcls kernels is validated against the whole package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fastcls import _cache

PROBE = """
import json, sys
from fastcls.kernels._probe_kernel import probe
value = probe()
print(json.dumps({"value": int(value), "hits": sum(probe.stats.cache_hits.values())}))
"""


def _run(package_parent: Path, cache_dir: Path) -> dict:
    import json

    env = {
        **os.environ,
        "PYTHONPATH": str(package_parent),
        "NUMBA_CACHE_DIR": str(cache_dir),
        "FASTCLS_NUMBA_CACHE": "1",
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, cwd=package_parent, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_package_stamp_follows_every_source_file(tmp_path):
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "a.py").write_text("A = 1\n")
    (root / "sub" / "b.py").write_text("B = 2\n")
    (root / "sub" / "__pycache__").mkdir()
    (root / "sub" / "__pycache__" / "b.cpython-311.py").write_text("ignored\n")
    first = _cache.package_stamp(root)
    assert _cache.package_stamp(root) == first  # deterministic
    (root / "sub" / "__pycache__" / "b.cpython-311.py").write_text("still ignored\n")
    (root / "notes.txt").write_text("not source\n")
    assert _cache.package_stamp(root) == first
    (root / "sub" / "b.py").write_text("B = 3\n")
    edited = _cache.package_stamp(root)
    assert edited != first
    (root / "sub" / "b.py").rename(root / "sub" / "c.py")
    assert _cache.package_stamp(root) not in (first, edited)
    (root / "d.py").write_text("")
    assert len({first, edited, _cache.package_stamp(root)}) == 3


def test_fastcls_kernels_use_the_package_stamp_and_others_do_not():
    import numba

    from fastcls._config import cache_enabled
    from fastcls.kernels import finite

    if not cache_enabled():
        pytest.skip("the on-disk cache is turned off (FASTCLS_NUMBA_CACHE=0)")
    assert _cache.install()
    locator = _cache.locator_of(finite.all_within)
    assert locator.get_source_stamp() == _cache.package_stamp()
    assert type(locator).__name__.startswith("Package")

    @numba.njit(cache=True)
    def outside():  # a function of this test file: numba's own locator
        return 1

    other = _cache.locator_of(outside)
    assert not type(other).__name__.startswith("Package")


def test_a_changed_dependency_invalidates_a_cached_kernel(tmp_path):
    """numba alone would keep the cached probe (its own file unchanged) and return 1."""
    parent = tmp_path / "site"
    package = parent / "fastcls"
    shutil.copytree(
        Path(_cache.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__")
    )
    kernels = package / "kernels"
    (kernels / "_probe_value.py").write_text("VALUE = 1\n")
    (kernels / "_probe_kernel.py").write_text(
        "from fastcls._config import jit\n"
        "from fastcls.kernels._probe_value import VALUE\n\n\n"
        "@jit\ndef probe():\n    return VALUE\n"
    )
    cache = tmp_path / "cache"
    assert _run(parent, cache) == {"value": 1, "hits": 0}
    assert _run(parent, cache) == {"value": 1, "hits": 1}  # cached: no second compile
    (kernels / "_probe_value.py").write_text("VALUE = 2\n")
    assert _run(parent, cache) == {"value": 2, "hits": 0}
    assert _run(parent, cache) == {"value": 2, "hits": 1}
