"""README.md's Quickstart and CI agree: ``.ci/run`` runs README's test command verbatim.

The Quickstart has exactly two set-up commands, each a fenced ``bash`` block: one
installs fastcls and runs ``fastcls demo``, the other installs ``".[dev]"`` and runs the
tests. CI creates and activates its own virtual environment, so the part of the test
command after the venv creation and activation must appear in ``.ci/run`` as is.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CI_RUN = ROOT / ".ci" / "run"

#: the venv part of a Quickstart command: ``python3 -m venv DIR && . DIR/bin/activate &&``
VENV_PREFIX = re.compile(
    r"^\s*python3? -m venv (?P<dir>\S+)\s*&&\s*(?:\.|source) (?P=dir)/bin/activate\s*&&\s*"
)

pytestmark = pytest.mark.skipif(
    not (README.is_file() and CI_RUN.is_file()),
    reason="README.md and .ci/run are in the source tree, not in an installed package",
)


def quickstart_commands() -> list[str]:
    """The fenced ``bash`` blocks of README's Quickstart section, one string each."""
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Quickstart\s*$(.*?)(?=^## )", text, re.M | re.S)
    assert section, "README.md has no '## Quickstart' section"
    blocks = re.findall(r"^```bash\s*\n(.*?)^```\s*$", section.group(1), re.M | re.S)
    return [" ".join(b.replace("\\\n", " ").split()) for b in blocks]


def strip_venv(command: str) -> str:
    """The command without its leading venv creation and activation."""
    match = VENV_PREFIX.match(command)
    assert match, f"Quickstart command does not start by creating a venv: {command!r}"
    return command[match.end() :]


def test_quickstart_has_exactly_two_setup_commands():
    commands = quickstart_commands()
    assert len(commands) == 2, commands
    demo = [c for c in commands if "fastcls demo" in c]
    tests = [c for c in commands if '".[dev]"' in c and "pytest" in c]
    assert len(demo) == 1, commands
    assert len(tests) == 1, commands
    assert demo != tests


def test_ci_runs_readme_test_command_verbatim():
    (command,) = [c for c in quickstart_commands() if '".[dev]"' in c and "pytest" in c]
    test_command = strip_venv(command)
    assert test_command.startswith("pip install"), test_command
    lines = [" ".join(line.split()) for line in CI_RUN.read_text(encoding="utf-8").splitlines()]
    run_lines = [line for line in lines if not line.startswith("#")]
    assert any(test_command in line for line in run_lines), (
        f".ci/run must run README's test command verbatim (not in a comment): {test_command!r}"
    )


def test_strip_venv():
    cmd = 'python3 -m venv .venv && . .venv/bin/activate && pip install ".[dev]" && pytest'
    assert strip_venv(cmd) == 'pip install ".[dev]" && pytest'
    with pytest.raises(AssertionError):
        strip_venv("pip install .")


def test_linear_classifiers_document_their_parameters_in_place():
    """``help(LinearSVM)`` lists every constructor parameter (not a pointer elsewhere)."""
    import inspect

    from fastcls.linear import LinearSVM, Softmax

    for cls in (LinearSVM, Softmax):
        doc = cls.__doc__ or ""
        assert "Parameters\n    ----------" in doc
        missing = [p for p in inspect.signature(cls).parameters if f"\n    {p} :" not in doc]
        assert not missing, f"{cls.__name__} does not document {missing}"
