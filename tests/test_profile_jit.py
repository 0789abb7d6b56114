"""bench/profile_jit.py: numba's mangled names read back, and a perf map that names the kernels."""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from collections import Counter
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


@pytest.mark.skipif(
    shutil.which("objdump") is None or platform.machine().lower() not in {"x86_64", "amd64"},
    reason="needs objdump and x86-64 code",
)
def test_annotation_puts_each_sample_on_its_instruction(tmp_path):
    """Two functions of known machine code: the hotter listed first, each instruction
    with its share of the function's samples, unsampled instructions at 0."""
    module = _module()
    # nop; nop; ret  /  xor %eax,%eax; ret
    code = {0x1000: bytes([0x90, 0x90, 0xC3]), 0x2000: bytes([0x31, 0xC0, 0xC3])}
    perf_map = tmp_path / "perf.map"
    perf_map.write_text("1000 3 cold_function\n2000 3 hot_function\n")
    functions = module.read_perf_map(str(perf_map))
    assert functions == [(0x1000, 3, "cold_function"), (0x2000, 3, "hot_function")]
    hits = Counter({0x1001: 1, 0x2000: 3, 0x2002: 1, 0x9999: 5})  # the last in neither
    text = module.annotated(hits, functions, 2, code_of=lambda address, size: code[address])
    lines = text.splitlines()
    assert lines[0] == "== hot_function: 40.0% of all samples =="
    assert lines[1].split()[0] == "75.00" and "xor" in lines[1]
    assert lines[2].split()[0] == "25.00" and "ret" in lines[2]
    assert lines[3] == "== cold_function: 10.0% of all samples =="
    assert [line.split()[0] for line in lines[4:]] == ["0.00", "100.00", "0.00"]
    assert "nop" in lines[5]
    hottest = module.annotated(hits, functions, 1, code_of=lambda a, s: code[a]).splitlines()
    assert [line for line in hottest if line.startswith("== ")] == [lines[0]]
