"""bench/profile_jit.py: numba's mangled names read back, and a perf map that names the kernels."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "profile_jit.py"


def _module():
    spec = importlib.util.spec_from_file_location("profile_jit", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("symbol", "name"),
    [
        (
            "_ZN7fastcls7kernels6losses13_block_scoresB3v17B56c8tJTIeFIjxE5ArrayIfLi2E",
            "fastcls.kernels.losses._block_scores",
        ),
        ("_ZN7cpython7fastcls7kernels2l15_tileB2v1E", "cpython.fastcls.kernels.l1._tile"),
        ("cfunc._ZN7fastcls7kernels3knn3runB2v1E", "cfunc.fastcls.kernels.knn.run"),
        ("NRT_decref", "NRT_decref"),
    ],
)
def test_mangled_names_read_back(symbol, name):
    saved = os.environ.get("FASTCLS_NUMBA_CACHE")
    assert _module().demangled(symbol) == name
    assert os.environ.get("FASTCLS_NUMBA_CACHE") == saved  # importing it changes nothing


@pytest.mark.slow
def test_perf_map_names_the_loss_kernels(tmp_path):
    """The script compiles a loss call (cache off) and its map names the kernels."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    out = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "svm_loss",
            "--rows",
            "8",
            "--threads",
            "1",
            "--seconds",
            "0.05",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=True,
    ).stdout
    path = out.split("perf map: ", 1)[1].split(" ", 1)[0]
    try:
        names = {line.split(" ", 2)[2].strip() for line in Path(path).read_text().splitlines()}
    finally:
        Path(path).unlink(missing_ok=True)
    assert "fastcls.kernels.losses.linear_loss_grad" in names
    assert "fastcls.kernels.losses.linear_loss_grad_rows_serial" in names
    assert "calls," in out
