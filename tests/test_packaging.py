"""Start-up cost, README commands and CI agreeing with each other."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_compiles_nothing_and_does_not_load_numba():
    code = "import sys, fastcls; print('numba' in sys.modules, 'sklearn' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "False"]


def test_lazy_public_names_resolve():
    import fastcls

    assert callable(fastcls.kneighbors)
    assert fastcls.KNearestNeighbor.__module__ == "fastcls.neighbors"
    for name in fastcls._SUBMODULES:
        assert name in dir(fastcls)


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", quick, flags=re.S)


def test_readme_has_exactly_two_setup_commands():
    cmds = _readme_commands()
    assert len(cmds) == 2
    assert cmds[0].rstrip().endswith("fastcls demo")
    assert "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command():
    test_cmd = _readme_commands()[1]
    after_venv = test_cmd.split("activate && ", 1)[1].strip()
    assert after_venv in (ROOT / ".ci" / "run").read_text()


def test_readme_tour_runs():
    text = (ROOT / "README.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)\n```", text, flags=re.S)[:1]
    exec(compile(code, "README.md", "exec"), {})
