"""The ``fastcls`` command: ``fastcls demo`` runs in-process at a reduced size (--quick)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from fastcls import pipeline
from fastcls.cli import format_table, main
from fastcls.pipeline import ResultRow

try:
    import matplotlib  # noqa: F401

    HAVE_MPL = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_MPL = False


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    """One full quick demo run, shared by the tests that inspect its output."""
    out = tmp_path_factory.mktemp("demo")
    capture = _Capture()
    with capture:
        code = main(["demo", "--quick", "--no-progress", "--out", str(out)])
    return code, capture.text, out


class _Capture:
    """Capture stdout of an in-process run inside a module-scoped fixture."""

    def __enter__(self):
        import io

        self._old, sys.stdout = sys.stdout, io.StringIO()
        return self

    def __exit__(self, *exc):
        self.text = sys.stdout.getvalue()
        sys.stdout = self._old


def test_demo_quick_succeeds_and_prints_the_table(quick_demo):
    code, text, out = quick_demo
    assert code == 0, text
    assert "embedded digits" in text
    header = next(line for line in text.splitlines() if line.startswith("model"))
    for col in ("chosen hyperparameters", "val acc", "test acc", "time"):
        assert col in header
    knn = next(line for line in text.splitlines() if line.startswith("k-NN (raw pixels)"))
    assert "metric=l" in knn and "5-fold CV" in knn
    # accuracies are numbers in [0, 1], and k-NN on digits is far above chance (0.1)
    accs = [float(tok) for tok in knn.split() if re.fullmatch(r"[01]\.\d{4}", tok)]
    assert len(accs) >= 3 and all(0.8 < a <= 1.0 for a in accs)
    assert "total time" in text


def test_demo_quick_writes_results_json(quick_demo):
    code, _, out = quick_demo
    result = json.loads((out / "results.json").read_text())
    assert result["sizes"] == {"train": 360, "val": 120, "test": 120}
    models = [r["model"] for r in result["rows"]]
    assert "k-NN (raw pixels)" in models
    cv = result["details"]["knn_cv"]
    assert cv["ks"] == list(pipeline.QUICK_KS) and set(cv["metrics"]) == {"l1", "l2"}
    assert all(len(v) == 5 for v in cv["fold_accuracies"].values())
    best = cv["best_params"]
    mean_best = np.mean(cv["fold_accuracies"][f"{best['metric']}:{best['k']}"])
    assert mean_best == pytest.approx(max(np.mean(v) for v in cv["fold_accuracies"].values()))
    assert result["skipped"] == {}
    for name in ("LinearSVM", "Softmax"):
        assert f"{name} (raw pixels)" in models
        assert f"{name} (features)" in models


@pytest.mark.skipif(not HAVE_MPL, reason="matplotlib is not installed")
def test_demo_quick_saves_plots(quick_demo):
    _, text, out = quick_demo
    assert (out / "knn_cv.png").stat().st_size > 1000
    for name in ("linearsvm", "softmax"):
        assert (out / f"{name}_loss.png").stat().st_size > 1000
        assert (out / f"{name}_templates.png").stat().st_size > 1000
    assert "plots:" in text


def test_demo_json_output(tmp_path, capsys):
    code = main(
        ["demo", "--quick", "--json", "--no-plots", "--skip", "linear", "--skip", "features",
         "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in result["rows"]] == ["k-NN (raw pixels)"]
    assert result["plots"] == []
    assert 0.0 <= result["rows"][0]["test_acc"] <= 1.0


def test_demo_is_deterministic_with_a_seed(tmp_path, capsys):
    args = ["demo", "--quick", "--json", "--no-plots", "--skip", "linear", "--skip", "features"]
    main([*args, "--seed", "3", "--out", str(tmp_path / "a")])
    a = json.loads(capsys.readouterr().out)
    main([*args, "--seed", "3", "--out", str(tmp_path / "b")])
    b = json.loads(capsys.readouterr().out)
    assert a["details"] == b["details"]
    assert [(r["val_acc"], r["test_acc"]) for r in a["rows"]] == [
        (r["val_acc"], r["test_acc"]) for r in b["rows"]
    ]


def test_demo_without_matplotlib_says_plots_were_skipped(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    code = main(
        ["demo", "--quick", "--no-progress", "--skip", "linear", "--skip", "features",
         "--out", str(tmp_path)]
    )  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0
    assert "plots skipped" in text and "fastcls[plots]" in text
    assert not list(tmp_path.glob("*.png"))


def _write_fake_cifar(folder, n_per_batch=250, n_test=220, seed=0):
    """Small CIFAR-10 binary batches (1 label byte + 3072 channel-first pixel bytes)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    templates = rng.integers(0, 256, size=(10, 3072))

    def batch(n):
        y = rng.integers(0, 10, size=n)
        X = np.clip(templates[y] + rng.normal(0, 40, size=(n, 3072)), 0, 255).astype(np.uint8)
        return np.concatenate([y.astype(np.uint8)[:, None], X], axis=1)

    for i in range(1, 6):
        batch(n_per_batch).tofile(folder / f"data_batch_{i}.bin")
    batch(n_test).tofile(folder / "test_batch.bin")
    return folder


def test_demo_on_cifar10_files(tmp_path, capsys):
    # the linear and feature sections are exercised by the digits run; here the CIFAR-10
    # reading, the lecture's split sizes and k-NN on 3072-pixel colour images
    path = _write_fake_cifar(tmp_path / "cifar-10-batches-bin")
    code = main(
        ["demo", "--data", "cifar10", "--path", str(path), "--quick", "--json", "--no-plots",
         "--skip", "linear", "--skip", "features", "--out", str(tmp_path / "out")]
    )  # fmt: skip
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dataset"] == "CIFAR-10"
    assert result["sizes"] == dict(zip(("train", "val", "test"), pipeline.CIFAR_QUICK, strict=True))
    knn = result["rows"][0]
    assert knn["test_acc"] > 0.5  # well-separated synthetic classes


@pytest.mark.parametrize(
    "argv,message",
    [
        (["demo", "--folds", "1"], "--folds must be at least 2"),
        (["demo", "--data", "cifar10"], "--data cifar10 needs --path"),
        (["demo", "--data", "cifar10", "--path", "/nonexistent/cifar"], "could not load CIFAR-10"),
        (["demo", "--jobs", "0"], "--jobs must be a positive integer"),
    ],
)
def test_demo_bad_arguments_fail_clearly(argv, message, tmp_path, capsys):
    code = main([*argv, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err


def test_argparse_errors_and_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--data", "mnist"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "demo" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--help"])
    assert exc.value.code == 0
    helptext = capsys.readouterr().out
    for option in ("--out", "--data", "--path", "--subsample", "--quick", "--json"):
        assert option in helptext
    assert main([]) == 2  # no command: help and a usage error code


def test_python_dash_m_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "fastcls", "demo", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    assert "fastcls demo" in proc.stdout


def test_format_table_aligns_columns():
    rows = [
        ResultRow("k-NN (raw pixels)", "metric=l2, k=3", 0.98, 0.975, 1.234, "5-fold CV 0.9800"),
        ResultRow("Softmax (features)", "lr=0.01, reg=0.0001", 0.9, 0.91, 12.5, "val search (9)"),
    ]
    lines = format_table(rows).splitlines()
    assert len(lines) == 4 and set(lines[1]) <= {"-", " "}
    # right-aligned numeric columns end at the same position
    assert lines[2].index("0.9750") + 6 == lines[3].index("0.9100") + 6
    assert len({len(line) for line in lines[1:]}) == 1
