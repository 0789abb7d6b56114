"""The ``fastcls`` command: ``fastcls demo`` runs in-process at a reduced size (--quick)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

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
    assert result["dataset"].startswith("CIFAR-10")
    assert result["sizes"] == dict(zip(("train", "val", "test"), pipeline.CIFAR_QUICK, strict=True))
    knn = result["rows"][0]
    assert knn["test_acc"] > 0.5  # well-separated synthetic classes


@pytest.mark.parametrize(
    "argv,message",
    [
        (["demo", "--folds", "1"], "--folds must be at least 2"),
        (["demo", "--data", "cifar10"], "--data cifar10 needs --path"),
        (["demo", "--data", "cifar10", "--path", "/nonexistent/cifar"], "could not load cifar10"),
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
        main(["demo", "--skip", "hog"])
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


# =========================================================================== subcommands
# Every subcommand runs in-process on the embedded digits and on small generated files of
# every format the data spec reads: MNIST IDX (plain and gzipped), CIFAR-10 (binary and
# python batches, and the archive), an image folder and .npz files.


def _run(argv, capsys):
    """``(exit code, stdout, stderr)`` of ``fastcls *argv`` in this process."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _run_json(argv, capsys):
    code, out, err = _run([*argv, "--json"], capsys)
    assert code == 0, err
    return json.loads(out), err


def _idx(array):
    import struct

    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _separable(rng, n, shape, n_classes=3, noise=30):
    """Images of ``n_classes`` random templates plus noise: easy, but not trivial."""
    templates = rng.integers(0, 256, size=(n_classes, *shape))
    y = np.arange(n) % n_classes
    X = np.clip(templates[y] + rng.normal(0, noise, size=(n, *shape)), 0, 255)
    return X.astype(np.uint8), y


def _write_mnist(folder, gz, n_train=60, n_test=24, seed=0):
    import gzip

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    X, y = _separable(rng, n_train + n_test, (12, 12))
    parts = {
        "train-images-idx3-ubyte": X[:n_train], "train-labels-idx1-ubyte": y[:n_train],
        "t10k-images-idx3-ubyte": X[n_train:], "t10k-labels-idx1-ubyte": y[n_train:],
    }  # fmt: skip
    for name, arr in parts.items():
        data = _idx(np.asarray(arr))
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return folder


def _write_cifar_python(folder, n_per_batch=12, n_test=24, seed=0):
    import pickle

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    X, y = _separable(rng, 5 * n_per_batch + n_test, (3072,))
    for i, name in enumerate([*(f"data_batch_{j}" for j in range(1, 6)), "test_batch"]):
        part = slice(i * n_per_batch, (i + 1) * n_per_batch if i < 5 else None)
        batch = {b"data": X[part], b"labels": [int(v) for v in y[part]], b"batch_label": b"b"}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return folder


def _write_image_folder(root, n_train=8, n_test=4, seed=0):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(seed)
    colours = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}
    for part, n in (("train", n_train), ("test", n_test)):
        for name, rgb in colours.items():
            for i in range(n):
                img = np.clip(np.array(rgb) + rng.normal(0, 20, (10, 10, 3)), 0, 255)
                path = root / part / name / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img.astype(np.uint8)).save(path)
    return root


def _write_npz(folder, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    X, y = _separable(rng, 80, (6, 6))
    labels = np.array(["ant", "bee", "cow"])[y]  # string labels survive the round trip
    np.savez(folder / "train.npz", X=X[:60], y=labels[:60])
    np.savez(folder / "test.npz", X=X[60:], y=labels[60:])
    return folder / "train.npz", folder / "test.npz"


@pytest.fixture(scope="module")
def data_specs(tmp_path_factory):
    """Data-spec arguments of every format, with the sizes they read."""
    root = tmp_path_factory.mktemp("formats")
    tr, te = _write_npz(root / "npz")
    cifar_bin = _write_fake_cifar(root / "cifar-bin" / "cifar-10-batches-bin", 12, 24)
    specs = {
        "digits": (["--data", "digits"], (1438, 359)),
        "mnist": (["--data", str(_write_mnist(root / "mnist", gz=False))], (60, 24)),
        "mnist-gz": (["--data", "mnist", "--path", str(_write_mnist(root / "mgz", True))],
                     (60, 24)),
        "cifar-binary": (["--data", str(cifar_bin)], (60, 24)),
        "cifar-python": (["--data", str(_write_cifar_python(root / "cifar-10-batches-py"))],
                         (60, 24)),
        "images": (["--data", str(_write_image_folder(root / "pets"))], (24, 12)),
        "npz": (["--train", str(tr), "--test", str(te)], (60, 20)),
    }  # fmt: skip
    return specs


FORMATS = ["digits", "mnist", "mnist-gz", "cifar-binary", "cifar-python", "images", "npz"]

# the JSON every subcommand prints: required keys and their types (the schema check)
NUM = (int, float)
SCHEMAS = {
    "knn": {"command": str, "data": str, "sizes": dict, "params": dict, "accuracy": NUM,
            "seconds": dict, "compile_seconds": NUM, "labels": list,
            "confusion_matrix": list, "class_names": (list, type(None))},
    "cv": {"command": str, "data": str, "sizes": dict, "folds": int, "ks": list,
           "metrics": list, "mean": dict, "std": dict, "best_params": dict,
           "best_score": NUM, "accuracy": NUM, "seconds": NUM},
    "train": {"command": str, "data": str, "model": str, "features": list, "sizes": dict,
              "best_params": dict, "val_accuracy": NUM, "test_accuracy": NUM,
              "accuracy": NUM, "search": list, "seconds": NUM},
    "predict": {"command": str, "model": str, "model_class": str, "input": str,
                "sizes": dict, "accuracy": (*NUM, type(None)), "seconds": NUM},
    "info": {"fastcls": str, "python": str, "numpy": str, "numba": str, "cpu": str,
             "cpu_target": str, "cpu_name": str, "features": list, "simd_levels": list,
             "kernels": dict,
             "threads": int, "threading_layer": str, "cache": str, "extras": dict},
    "demo": {"dataset": str, "sizes": dict, "rows": list, "notes": list, "plots": list,
             "details": dict, "total_seconds": NUM, "refit": bool},
}  # fmt: skip


def check_schema(result, command):
    schema = SCHEMAS[command]
    missing = sorted(set(schema) - set(result))
    assert not missing, f"{command} JSON lacks {missing}"
    for key, types in schema.items():
        assert isinstance(result[key], types), (command, key, type(result[key]))
    if "sizes" in result:
        assert all(isinstance(v, int) and v >= 0 for v in result["sizes"].values())
    for key in ("accuracy", "test_accuracy", "val_accuracy", "best_score"):
        if isinstance(result.get(key), float):
            assert 0.0 <= result[key] <= 1.0


def test_check_schema_can_fail():
    with pytest.raises(AssertionError):
        check_schema({"command": "knn"}, "knn")
    good = {
        k: (0 if t is NUM or t == (*NUM, type(None)) else t[0]() if isinstance(t, tuple) else t())
        for k, t in SCHEMAS["cv"].items()
    }
    check_schema(good, "cv")
    with pytest.raises(AssertionError):
        check_schema({**good, "accuracy": 1.5}, "cv")


@pytest.mark.parametrize("fmt", FORMATS)
def test_knn_on_every_format(fmt, data_specs, capsys, tmp_path):
    spec, (n_train, n_test) = data_specs[fmt]
    pred_file = tmp_path / "pred.csv"
    result, err = _run_json(
        ["knn", *spec, "--k", "3", "--metric", "l1", "--predictions", str(pred_file)], capsys
    )
    check_schema(result, "knn")
    assert result["sizes"] == {"train": n_train, "test": n_test}
    assert result["accuracy"] > 0.8  # separable classes (and the digits)
    m = np.array(result["confusion_matrix"])
    assert m.sum() == n_test and np.trace(m) == round(result["accuracy"] * n_test)
    lines = pred_file.read_text().splitlines()
    assert lines[0] == "index,predicted,true" and len(lines) == n_test + 1
    assert err == ""  # --json: nothing on stderr


@pytest.mark.parametrize("fmt", FORMATS)
def test_cv_on_every_format(fmt, data_specs, capsys):
    spec, (n_train, _) = data_specs[fmt]
    result, _ = _run_json(["cv", *spec, "--ks", "1,3", "--folds", "3"], capsys)
    check_schema(result, "cv")
    assert result["sizes"] == {"train": n_train} and result["ks"] == [1, 3]
    best = result["best_params"]
    i = result["ks"].index(best["k"])
    assert result["best_score"] == pytest.approx(max(max(v) for v in result["mean"].values()))
    assert result["mean"][best["metric"]][i] == result["best_score"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_train_save_and_predict_on_every_format(fmt, data_specs, capsys, tmp_path):
    spec, (_, n_test) = data_specs[fmt]
    model = tmp_path / "m.npz"
    args = ["train", *spec, "--iters", "60", "--batch-size", "16", "--n-val", "6",
            "--lr", "0.01,0.1", "--reg", "1e-4", "--save", str(model)]  # fmt: skip
    result, _ = _run_json(args, capsys)
    check_schema(result, "train")
    assert len(result["search"]) == 2 and result["sizes"]["val"] == 6
    # predict the same test part with the saved model: the same accuracy
    if fmt == "npz":
        pred_args = ["--input", spec[3]]
    else:
        pred_args = spec
    out = tmp_path / "p.npy"
    pred, _ = _run_json(["predict", "--model", str(model), *pred_args, "--output", str(out)],
                        capsys)  # fmt: skip
    check_schema(pred, "predict")
    assert pred["sizes"] == {"n": n_test}
    assert pred["accuracy"] == pytest.approx(result["test_accuracy"])
    assert np.load(out).shape == (n_test,)


@pytest.mark.parametrize("fmt,features", [("images", "hue"), ("digits", "hog")])
def test_train_on_features_then_predict_needs_the_same_features(
    fmt, features, data_specs, capsys, tmp_path
):
    spec, _ = data_specs[fmt]
    model = tmp_path / "f.npz"
    result, _ = _run_json(
        ["train", *spec, "--features", features, "--model", "svm", "--iters", "100",
         "--n-val", "6", "--save", str(model)], capsys,
    )  # fmt: skip
    assert result["features"] == [features] and result["test_accuracy"] > 0.8
    pred, _ = _run_json(["predict", "--model", str(model), *spec, "--features", features], capsys)
    # the saved model has the feature scaling folded in: the same test accuracy
    assert pred["accuracy"] == pytest.approx(result["test_accuracy"])
    code, _, err = _run(["predict", "--model", str(model), *spec], capsys)
    assert code == 2 and "--features" in err and "inputs per sample" in err


def test_knn_save_then_predict_an_image_file_and_npy(data_specs, capsys, tmp_path):
    spec, _ = data_specs["images"]
    model = tmp_path / "knn.npz"
    _run_json(["knn", *spec, "--save", str(model)], capsys)
    png = next((Path(spec[1]) / "test" / "green").glob("*.png"))
    pred, _ = _run_json(["predict", "--model", str(model), "--input", str(png)], capsys)
    assert pred["predictions"] == [1]  # classes sorted: blue, green, red
    assert pred["accuracy"] is None
    from fastcls.datasets import load_image

    np.save(tmp_path / "x.npy", load_image(png)[None])
    code, out, _ = _run(["predict", "--model", str(model), "--input", str(tmp_path / "x.npy")],
                        capsys)  # fmt: skip
    assert code == 0 and out.split() == ["1"]


def test_knn_text_output_progress_on_stderr(capsys):
    code, out, err = _run(["knn", "--data", "digits", "--k", "1", "--n-test", "50"], capsys)
    assert code == 0
    assert "test accuracy" in out and "confusion matrix" in out
    assert "fastcls knn:" in err and "test accuracy" not in err
    code, out, err = _run(["knn", "--k", "1", "--n-test", "50", "--quiet"], capsys)
    assert code == 0 and err == ""


def test_threads_option_gives_the_same_answer(capsys):
    a, _ = _run_json(["knn", "--k", "5", "--threads", "1"], capsys)
    b, _ = _run_json(["knn", "--k", "5"], capsys)
    assert a["confusion_matrix"] == b["confusion_matrix"]


@pytest.mark.skipif(not HAVE_MPL, reason="matplotlib is not installed")
def test_cv_text_and_plot(capsys, tmp_path):
    code, out, _ = _run(["cv", "--ks", "1,2", "--folds", "2", "--out", str(tmp_path)], capsys)
    assert code == 0 and "best: metric=" in out and "l1 mean+-std" in out
    assert (tmp_path / "cv.png").stat().st_size > 1000


def test_info(capsys):
    import fastcls
    from fastcls._runtime import best_simd

    result, _ = _run_json(["info"], capsys)
    check_schema(result, "info")
    assert result["fastcls"] == fastcls.__version__
    assert result["simd_levels"] == list(best_simd())
    assert "k-NN L1 uint8" in result["kernels"]
    # e.g. "avx512 (tile 4x4)": the level chosen, then its tile
    assert result["kernels"]["k-NN L1 uint8"].split(" (")[0] in result["simd_levels"]
    code, out, _ = _run(["info"], capsys)
    assert code == 0 and "kernels" in out and "threading layer" in out


def test_version(capsys):
    import fastcls

    code, out, _ = _run(["--version"], capsys)
    assert code == 0 and out.strip() == f"fastcls {fastcls.__version__}"


@pytest.mark.parametrize("fmt", ["mnist", "images", "cifar-python"])
def test_demo_on_files_with_the_format_inferred(fmt, data_specs, capsys, tmp_path):
    spec, _ = data_specs[fmt]
    path = spec[-1]
    result, err = _run_json(
        ["demo", "--path", path, "--quick", "--n-train", "15", "--n-val", "6",
         "--n-test", "9", "--no-plots", "--skip", "linear", "--skip", "features",
         "--out", str(tmp_path)], capsys,
    )  # fmt: skip
    check_schema(result, "demo")
    assert result["sizes"] == {"train": 15, "val": 6, "test": 9}
    assert result["refit"] is (fmt == "mnist")  # MNIST's protocol refits on train + val
    assert f"writing results.json to {tmp_path}" in err


def test_demo_subsample_accepts_a_partial_cifar_download(tmp_path, capsys):
    path = _write_fake_cifar(tmp_path / "cifar-10-batches-bin", 100, 50)
    for i in range(2, 6):
        (path / f"data_batch_{i}.bin").unlink()  # only the first batch was downloaded
    args = ["demo", "--data", "cifar10", "--path", str(path), "--no-plots", "--skip",
            "linear", "--skip", "features", "--out", str(tmp_path / "o")]  # fmt: skip
    code, _, err = _run(args, capsys)
    assert code == 2 and "missing" in err and "data_batch_2.bin" in err  # full set asked
    result, _ = _run_json([*args, "--subsample"], capsys)
    assert result["sizes"] == {"train": 90, "val": 10, "test": 50}  # all there is
    result, _ = _run_json([*args, "--n-train", "40", "--n-val", "20", "--n-test", "30"], capsys)
    assert result["sizes"] == {"train": 40, "val": 20, "test": 30}


def test_demo_prints_where_outputs_go_and_the_hog_cv_table(tmp_path, capsys):
    code, out, _ = _run(
        ["demo", "--quick", "--no-plots", "--no-progress", "--skip", "knn", "--skip", "linear",
         "--out", str(tmp_path)], capsys,
    )  # fmt: skip
    assert code == 0
    assert out.splitlines()[0] == f"writing results.json to {tmp_path}"
    features = out[out.index("== Features") :]
    assert "l1 mean+-std" in features and "chosen: metric=" in features
    assert f"results: {tmp_path / 'results.json'}" in out


def _truncated_mnist(root):
    folder = _write_mnist(root / "trunc", gz=False)
    f = folder / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-10])
    return folder


def _bad_npz(root):
    root.mkdir(exist_ok=True)
    np.savez(root / "nox.npz", y=np.arange(3))
    return root / "nox.npz"


@pytest.mark.parametrize(
    "argv,message",
    [
        (["knn", "--data", "/nonexistent/x"], "no such file or folder"),
        (["knn", "--data", "{empty}"], "cannot tell the data format"),
        (["knn", "--data", "{trunc}"], "train-images-idx3-ubyte is truncated"),
        (["knn", "--train", "{nox}"], "--train and --test go together"),
        (["knn", "--train", "{nox}", "--test", "{nox}"], "has no X array"),
        (["knn", "--data", "digits", "--train", "{nox}", "--test", "{nox}"], "not both"),
        (["knn", "--data", "digits", "--path", "{empty}"], "--data digits is embedded"),
        (["knn", "--k", "0"], "expected a positive integer"),
        (["knn", "--k", "5000"], "larger than the 1438 training rows"),
        (["knn", "--metric", "cosine"], "invalid choice"),
        (["knn", "--predictions", "{empty}/p.txt"], "must end in .npy or .csv"),
        (["knn", "--n-train", "99999"], "n_train=99999"),
        (["knn", "--threads", "0"], "expected a positive integer"),
        (["cv", "--ks", "1,x"], "comma-separated integers"),
        (["cv", "--folds", "1"], "n_folds"),
        (["train", "--features", "hue"], "needs colour images"),
        (["train", "--features", "sift"], "comma-separated list of hog, hue"),
        (["predict", "--model", "{empty}/missing.npz"], "cannot load the model"),
        (["predict", "--model", "{text}"], "not a fastcls model file"),
        (["predict", "--model", "{text}", "--input", "x"], "cannot load the model"),
        (
            ["demo", "--skip", "knn", "--skip", "linear", "--skip", "features"],
            "every section is skipped",
        ),
        (["demo", "--data", "mnist"], "--data mnist needs --path"),
        (["demo", "--path", "{empty}"], "cannot tell the data format"),
        (["demo", "--data", "cifar10", "--path", "{trunc}", "--subsample"], "could not load"),
        (["warmup", "nope"], "unknown kernel group"),
    ],
)
def test_bad_input_one_line_and_exit_status_2(argv, message, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "model.txt").write_text("hello\n")
    subs = {
        "{empty}": str(tmp_path / "empty"),
        "{trunc}": str(_truncated_mnist(tmp_path)),
        "{nox}": str(_bad_npz(tmp_path / "npz")),
        "{text}": str(tmp_path / "model.txt"),
    }
    for key, value in subs.items():
        argv = [a.replace(key, value) for a in argv]
    if argv[0] == "demo":
        argv = [*argv, "--out", str(tmp_path / "out")]
    code, out, err = _run(argv, capsys)
    assert code == 2, (out, err)
    assert message in err
    _assert_one_error_line(err)


def _assert_one_error_line(err):
    """No traceback; the message is the last line of stderr, after any progress lines."""
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert [i for i, line in enumerate(lines) if "error:" in line] == [len(lines) - 1], err


def test_unreadable_image_is_named_in_one_line(data_specs, tmp_path, capsys):
    import shutil

    spec, _ = data_specs["images"]
    root = Path(shutil.copytree(spec[1], tmp_path / "pets"))
    (root / "train" / "red" / "bad.png").write_bytes(b"nope")
    code, _, err = _run(["knn", "--data", str(root)], capsys)
    assert code == 2 and "bad.png" in err
    _assert_one_error_line(err)


def test_every_subcommand_has_the_common_options(capsys):
    for command in ("knn", "cv", "train", "predict", "info", "demo", "warmup"):
        code, out, _ = _run([command, "--help"], capsys)
        assert code == 0
        for option in ("--json", "--threads", "--quiet"):
            assert option in out, (command, option)


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(),
    reason="dataset-fashion-mnist is not installed",
)
def test_knn_on_a_slice_of_the_real_fashion_mnist(capsys):
    # Debian's files found by name alone; 2000 / 500 images keep this under a second
    result, _ = _run_json(
        ["knn", "--data", "fashion-mnist", "--n-train", "2000", "--n-test", "500", "--k", "5"],
        capsys,
    )
    check_schema(result, "knn")
    assert result["class_names"][9] == "Ankle boot"
    assert 0.72 < result["accuracy"] < 0.9  # k-NN on 2000 images; ~0.86 on all 60000


def test_warnings_are_one_line_on_stderr(capsys, tmp_path):
    # training pixels 0..255, test images scaled to [0, 1]: fastcls warns about the scale
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(30, 4, 4), dtype=np.uint8)
    np.savez(tmp_path / "tr.npz", X=X, y=np.arange(30) % 3)
    np.savez(tmp_path / "te.npz", X=X[:6] / 255.0, y=np.arange(6) % 3)
    argv = ["knn", "--train", str(tmp_path / "tr.npz"), "--test", str(tmp_path / "te.npz")]
    code, out, err = _run([*argv, "-q"], capsys)
    assert code == 0 and "test accuracy" in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastcls knn: warning: "), err
    assert lines[0].endswith("(DataRangeWarning)")


def test_demo_has_no_false_scale_warning(capsys, tmp_path):
    # standardised HOG features are heavy-tailed: the demo scales every part alike
    code, _, err = _run(
        ["demo", "--quick", "--no-plots", "--skip", "knn", "--skip", "linear",
         "--out", str(tmp_path), "-q"], capsys,
    )  # fmt: skip
    assert code == 0 and "warning" not in err.lower()
