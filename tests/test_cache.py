"""numba's on-disk cache, as a user meets it: on by default, loaded by the next process,
somewhere writable when the package folder is not, off with FASTCLS_NUMBA_CACHE=0.

Each check runs fresh interpreters (a process compiles a kernel at most once, so only a
new process shows whether the cache was used). Compilation is observed through numba's
``numba:compile`` events (fastcls._progress.compile_seconds) and each dispatcher's
cache statistics.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: a child process: run some kernels, then report what was compiled and what was loaded
CHILD = r"""
import json, sys
import numpy as np
import fastcls
from fastcls._progress import compile_seconds
compile_seconds()  # start counting before any kernel runs
{setup}
{work}
from numba.core import types
from numba.core.registry import CPUDispatcher
import fastcls.kernels as K, pkgutil, importlib
hits = misses = 0
literal = set()
for info in pkgutil.iter_modules(K.__path__):
    mod = importlib.import_module("fastcls.kernels." + info.name)
    for name, obj in vars(mod).items():
        if isinstance(obj, CPUDispatcher) and obj.signatures:
            hits += sum(obj.stats.cache_hits.values())
            misses += sum(obj.stats.cache_misses.values())
            if any(isinstance(a, types.Literal) for sig in obj.signatures for a in sig):
                literal.add(info.name + "." + name)
print(json.dumps({{"compile_s": compile_seconds(), "hits": hits, "misses": misses,
                  "literal": sorted(literal)}}))
"""

#: the vote kernels: small, so the cold compile stays cheap in the default test run
VOTE = 'fastcls.warmup(["vote"], progress=False)'

#: the README tour (k-NN L1 and L2 on the digits, one LinearSVM)
TOUR = """
from fastcls.datasets import load_default
data = load_default()
X, y = data.images, data.labels
for metric in ("l1", "l2"):
    fastcls.KNearestNeighbor(k=3, metric=metric).fit(X[:1500], y[:1500]).score(X[1500:], y[1500:])
fastcls.LinearSVM(n_iters=50, seed=0).fit(X[:1500], y[:1500])
"""

#: numba's in-tree locator refused, as for a package folder the user cannot write
READ_ONLY_PACKAGE = """
from numba.core import caching
locator = getattr(caching, "InTreeCacheLocator", None) or caching._InTreeCacheLocator
locator.from_function = classmethod(lambda cls, f, s: None)
"""


def run_child(work: str, env: dict[str, str], setup: str = "") -> dict[str, float]:
    code = CHILD.format(setup=setup, work=work)
    cwd = Path(env["HOME"])  # not the repository root: PYTHONPATH decides what is imported
    cwd.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture
def clean_env(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("FASTCLS_NUMBA_CACHE", "NUMBA_CACHE_DIR", "NUMBA_DISABLE_JIT")
    }
    env["HOME"] = str(tmp_path / "home")
    # the child imports the same fastcls as the tests (a source tree or an installed copy)
    import fastcls

    env["PYTHONPATH"] = str(Path(fastcls.__file__).parent.parent)
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg-cache")
    return env


def cache_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.suffix in (".nbi", ".nbc")]


def test_cache_is_on_by_default_and_the_next_process_loads_it(tmp_path, clean_env):
    env = dict(clean_env, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    first = run_child(VOTE, env)
    assert first["compile_s"] > 0 and first["misses"] > 0
    assert cache_files(tmp_path / "cache"), "no cache written"
    second = run_child(VOTE, env)
    assert second["compile_s"] == 0.0, second  # nothing compiled
    assert second["misses"] == 0 and second["hits"] > 0, second  # everything loaded


def test_fastcls_numba_cache_0_turns_it_off(tmp_path, clean_env):
    env = dict(clean_env, NUMBA_CACHE_DIR=str(tmp_path / "cache"), FASTCLS_NUMBA_CACHE="0")
    first = run_child(VOTE, env)
    second = run_child(VOTE, env)
    assert first["compile_s"] > 0 and second["compile_s"] > 0
    assert second["hits"] == 0
    assert not cache_files(tmp_path / "cache")


def test_unwritable_package_folder_caches_in_the_user_cache(tmp_path, clean_env):
    first = run_child(VOTE, clean_env, setup=READ_ONLY_PACKAGE)
    user_cache = Path(clean_env["XDG_CACHE_HOME"])
    assert first["compile_s"] > 0
    assert cache_files(user_cache), "numba did not fall back to the per-user cache folder"
    second = run_child(VOTE, clean_env, setup=READ_ONLY_PACKAGE)
    assert second["compile_s"] == 0.0 and second["hits"] > 0, second


@pytest.mark.slow
def test_an_edited_source_is_recompiled(tmp_path, clean_env):
    """numba keys the cache on a hash of the source file: an edit recompiles."""
    import shutil

    import fastcls

    copy = tmp_path / "src" / "fastcls"
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(Path(fastcls.__file__).parent, copy, ignore=skip)
    env = dict(
        clean_env,
        NUMBA_CACHE_DIR=str(tmp_path / "cache"),
        PYTHONPATH=str(tmp_path / "src"),
    )
    where = f"assert fastcls.__file__.startswith({str(copy)!r}), fastcls.__file__"
    run_child(VOTE, env, setup=where)
    assert run_child(VOTE, env, setup=where)["compile_s"] == 0.0
    with open(copy / "kernels" / "vote.py", "a") as f:
        f.write("\n# an edit\n")
    again = run_child(VOTE, env, setup=where)
    assert again["compile_s"] > 0 and again["misses"] > 0


@pytest.mark.slow
def test_a_cache_is_never_used_for_another_cpu(tmp_path, clean_env):
    """Entries are keyed on the target CPU: another target compiles its own, and the
    micro-kernel choice follows the target (the L1 uint8 intrinsics included)."""
    env = dict(clean_env, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    l1_uint8 = (
        VOTE
        + """
from fastcls.kernels import l1
X = np.arange(64 * 40, dtype=np.int64).reshape(64, 40) % 251
X = X.astype(np.uint8)
d, i = fastcls.kneighbors(X[:5], X, 3, "l1")
assert (i[:, 0] == np.arange(5)).all()
print("impl", l1.uint8_impl(), file=sys.stderr)
"""
    )
    host = run_child(l1_uint8, env)
    assert host["compile_s"] > 0
    generic = run_child(l1_uint8, dict(env, NUMBA_CPU_NAME="generic"))
    assert generic["compile_s"] > 0, "a cache compiled for the host CPU was reused"
    assert run_child(l1_uint8, env)["compile_s"] == 0.0  # the host's entries still load


@pytest.mark.slow
def test_readme_tour_second_process_compiles_nothing(tmp_path, clean_env):
    env = dict(clean_env, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    cold = run_child(TOUR, env)
    # a kernel called with a literal argument (a constant, or a variable first bound to
    # one) compiles a second copy for the literal's type: _block_scores / _block_update
    # and copy_rows / zero_padded once did, a second or more of every cold start
    assert cold["literal"] == [], cold["literal"]
    warm = run_child(TOUR, env)
    assert warm["compile_s"] == 0.0 and warm["misses"] == 0, warm
