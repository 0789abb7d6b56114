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


def test_model_selection_page_states_what_its_code_gives():
    """docs/model-selection.md, sections 1 and 2: the best k in the comment is the result."""
    import ast

    text = (ROOT / "docs" / "model-selection.md").read_text(encoding="utf-8")
    part = text.split("## 3.", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```", part, re.M | re.S)
    # the imports, the split and the cross-validation (the other blocks are sketches)
    keep = ("from fastcls.model_selection import", "train_val_test_split(X", "cross_validate_knn(X")
    code = "\n".join(b for b in blocks if any(k in b for k in keep))
    code = "\n".join(line for line in code.splitlines() if not line.startswith("res.plot"))
    namespace: dict = {}
    exec(compile(code, "model-selection.md", "exec"), namespace)
    res = namespace["res"]
    stated = re.search(r"^res\.best_params_\s+# (\{.*\})$", part, re.M)
    assert stated, "the page no longer states the best parameters"
    assert ast.literal_eval(stated.group(1)) == res.best_params_
    score = re.search(r"^res\.best_score_\s+# its mean accuracy, ([0-9.]+)$", part, re.M)
    assert score and round(res.best_score_, 4) == float(score.group(1))


def test_readme_tour_command_lines_parse():
    """The ``fastcls ...`` lines of the tour are valid command lines of today's CLI."""
    import shlex

    from fastcls.cli import _build_parser

    text = README.read_text(encoding="utf-8")
    tour = text.split("## A short tour", 1)[1].split("\n## ", 1)[0]
    lines = [
        line.split("#", 1)[0].strip()
        for block in re.findall(r"^```bash\s*\n(.*?)^```", tour, re.M | re.S)
        for line in block.splitlines()
        if line.startswith("fastcls ")
    ]
    assert len(lines) >= 4, "the tour no longer shows the command line"
    parser = _build_parser()
    for line in lines:
        args = parser.parse_args(shlex.split(line)[1:])  # SystemExit on a bad option
        assert args.command in ("knn", "cv", "train", "predict", "info", "demo")
