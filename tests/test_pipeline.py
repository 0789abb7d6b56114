"""fastcls.pipeline: each step equals calling the estimators directly; run_demo is quiet."""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import numpy as np
import pytest

from fastcls.features import FeatureScaler, color_histogram_hsv
from fastcls.linear import LinearSVM, Softmax
from fastcls.model_selection import cross_validate_knn, default_linear_grid, search_linear
from fastcls.neighbors import KNearestNeighbor
from fastcls.pipeline import (
    DEMO_METRICS,
    QUICK_KS,
    QUICK_SEARCH,
    DemoConfig,
    DemoReport,
    Splits,
    demo_feature_functions,
    detect_format,
    evaluate_knn_cv,
    evaluate_linear_search,
    fit_pixel_scaler,
    load_demo_data,
    load_train_test,
    run_demo,
    save_demo_plots,
    select_then_test,
)


@pytest.fixture(scope="module")
def quick_data():
    return load_demo_data(DemoConfig(quick=True))


@pytest.fixture(scope="module")
def pixels(quick_data):
    """The quick digits as standardised rows (what the demo's linear section sees)."""
    s = quick_data.splits
    scaler = fit_pixel_scaler(s.X_train)
    rows = [scaler.transform(X.reshape(len(X), -1)) for X in (s.X_train, s.X_val, s.X_test)]
    return s.with_inputs(*rows)


# --------------------------------------------------------------------------- data
def test_load_demo_data_quick_digits(quick_data):
    s = quick_data.splits
    assert s.sizes == {"train": 360, "val": 120, "test": 120}
    assert s.X_train.shape[1:] == quick_data.image_shape == (8, 8)
    assert s.X_train.dtype == np.uint8 and len(quick_data.class_names) == 10
    assert quick_data.description == "embedded digits (UCI optdigits)"
    again = load_demo_data(DemoConfig(quick=True))
    np.testing.assert_array_equal(again.splits.X_test, s.X_test)  # seeded


def test_fit_pixel_scaler_uses_training_statistics_only():
    rng = np.random.default_rng(0)
    tr = rng.integers(0, 17, size=(50, 8, 8), dtype=np.uint8)
    te = rng.integers(0, 17, size=(7, 8, 8), dtype=np.uint8)
    scaler = fit_pixel_scaler(tr)
    assert isinstance(scaler, FeatureScaler)
    a, b = scaler.transform(tr.reshape(50, -1)), scaler.transform(te.reshape(7, -1))
    assert a.dtype == b.dtype == np.float32 and a.shape == (50, 64) and b.shape == (7, 64)
    np.testing.assert_allclose(a.mean(axis=0), 0.0, atol=1e-5)
    assert a.std() == pytest.approx(1.0, rel=1e-4)
    flat = tr.reshape(50, -1).astype(np.float64)
    expected = (te.reshape(7, -1) - flat.mean(0)) / (flat - flat.mean(0)).std()
    np.testing.assert_allclose(b, expected, rtol=1e-5, atol=1e-5)


def test_fit_pixel_scaler_constant_images_are_only_centred():
    scaler = fit_pixel_scaler(np.full((4, 3, 3), 7, dtype=np.uint8))
    np.testing.assert_array_equal(scaler.scale_, 1.0)
    np.testing.assert_array_equal(scaler.transform(np.full((1, 9), 8.0)), 1.0)


def test_demo_feature_functions_by_image_shape():
    grey = demo_feature_functions((8, 8))
    assert len(grey) == 1 and grey[0].keywords == {"cell": 2}
    colour = demo_feature_functions((32, 32, 3))
    assert colour[0].keywords == {"cell": 8} and colour[1] is color_histogram_hsv


# --------------------------------------------------------------------------- steps
def test_evaluate_knn_cv_equals_the_estimators(quick_data):
    s = quick_data.splits
    ev = evaluate_knn_cv(s, QUICK_KS, DEMO_METRICS, 3, progress=False)
    cv = cross_validate_knn(s.X_train, s.y_train, QUICK_KS, DEMO_METRICS, n_folds=3)
    assert ev.best_params == cv.best_params_
    assert ev.search.fold_accuracies.keys() == cv.fold_accuracies.keys()
    for key, acc in cv.fold_accuracies.items():
        np.testing.assert_array_equal(ev.search.fold_accuracies[key], acc)
    clf = KNearestNeighbor(**cv.best_params_).fit(s.X_train, s.y_train)
    assert ev.val_accuracy == clf.score(s.X_val, s.y_val)
    assert ev.test_accuracy == clf.score(s.X_test, s.y_test)
    assert isinstance(ev.estimator, KNearestNeighbor) and ev.estimator.k == cv.best_params_["k"]
    assert ev.seconds > 0


@pytest.mark.parametrize("cls", [LinearSVM, Softmax])
def test_evaluate_linear_search_equals_the_estimators(pixels, cls):
    s = pixels
    grid = QUICK_SEARCH.linear_grid(s.X_train)
    model = cls(n_iters=50, batch_size=100, seed=0)
    params = model.get_params()
    ev = evaluate_linear_search(model, s, grid, seed=0, progress=False)
    res = search_linear(model, s.X_train, s.y_train, s.X_val, s.y_val, grid=grid, seed=0)
    assert ev.search.results == res.results and ev.best_params == res.best_params_
    assert ev.val_accuracy == res.best_val_accuracy_
    assert ev.test_accuracy == res.best_model_.score(s.X_test, s.y_test)
    np.testing.assert_array_equal(ev.estimator.W_, res.best_model_.W_)
    assert model.get_params() == params  # the given model is not modified


def test_search_space_grid_is_default_linear_grid(pixels):
    X = pixels.X_train
    assert QUICK_SEARCH.linear_grid(X) == default_linear_grid(X, (2.0, 8.0), (1e-4,))


class _Counting:
    """An estimator that records what it was scored on."""

    def __init__(self) -> None:
        self.scored: list[int] = []

    def score(self, X, y):
        self.scored.append(len(X))
        return 0.5


class _Result:
    best_params_ = {"alpha": 1}


def test_select_then_test_scores_the_test_set_once():
    calls = []
    est = _Counting()

    def search():
        calls.append("search")
        return _Result()

    def fit_best(result):
        calls.append("fit")
        assert isinstance(result, _Result)
        return est, 0.75

    ev = select_then_test(search, fit_best, np.zeros((3, 2)), np.zeros(3))
    assert calls == ["search", "fit"] and est.scored == [3]
    assert (ev.val_accuracy, ev.test_accuracy, ev.best_params) == (0.75, 0.5, {"alpha": 1})
    assert ev.estimator is est and isinstance(ev.search, _Result) and ev.seconds >= 0


# --------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"folds": 1}, "folds must be an integer of at least 2"),
        ({"folds": 2.5}, "folds must be an integer"),
        ({"n_jobs": 0}, "n_jobs must be a positive integer, -1 or None"),
        ({"data": "svhn"}, "data must be one of"),
        ({"data": "cifar10"}, "path is required"),
        ({"data": "mnist"}, "path is required"),
        ({"sections": ("knn", "svm")}, "sections must be among"),
        ({"sections": ()}, "every section is skipped"),
        ({"n_train": 100}, "not to the embedded digits"),
        ({"data": "fashion-mnist", "n_test": 0}, "n_test must be a positive integer"),
        ({"data": "images", "path": ".", "color": "cmyk"}, "color must be"),
    ],
)
def test_demo_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DemoConfig(**kwargs)


def test_demo_config_search_space():
    assert DemoConfig(quick=True).search_space is QUICK_SEARCH
    assert DemoConfig().search_space.ks == (1, 3, 5, 8, 10, 12, 15, 20)
    assert DemoConfig(search=QUICK_SEARCH).search_space is QUICK_SEARCH


# --------------------------------------------------------------------------- run_demo
@pytest.fixture(scope="module")
def quick_report(quick_data):
    messages: list[str] = []
    config = DemoConfig(quick=True, sections=("knn", "linear"), progress=False)
    report = run_demo(config, data=quick_data, log=messages.append)
    return report, messages


def test_run_demo_rows_equal_the_steps(quick_report, quick_data, pixels):
    report, _ = quick_report
    assert [r.model for r in report.rows] == [
        "k-NN (raw pixels)",
        "LinearSVM (raw pixels)",
        "Softmax (raw pixels)",
    ]
    knn = evaluate_knn_cv(quick_data.splits, QUICK_KS, DEMO_METRICS, 5, progress=False)
    row = report.rows[0]
    assert (row.val_acc, row.test_acc) == (knn.val_accuracy, knn.test_accuracy)
    assert row.params == f"metric={knn.best_params['metric']}, k={knn.best_params['k']}"
    grid = QUICK_SEARCH.linear_grid(pixels.X_train)
    for row, cls in zip(report.rows[1:], (LinearSVM, Softmax), strict=True):
        model = cls(n_iters=QUICK_SEARCH.n_iters, batch_size=QUICK_SEARCH.batch_size, seed=0)
        ev = evaluate_linear_search(model, pixels, grid, seed=0, progress=False)
        assert (row.val_acc, row.test_acc) == (ev.val_accuracy, ev.test_accuracy)
        assert report.evaluations[row.model].best_params == ev.best_params


def test_run_demo_logs_through_the_callback_only(quick_report, capsys):
    report, messages = quick_report
    assert messages[0].startswith("fastcls demo on embedded digits")
    assert any(m.startswith("\n== k-NN: 5-fold") for m in messages)
    assert any(m.startswith("-- Softmax on raw pixels") for m in messages)
    assert report.sizes == {"train": 360, "val": 120, "test": 120}
    assert capsys.readouterr().out == ""


def test_report_to_dict_is_the_results_json_format(quick_report):
    report, _ = quick_report
    result = json.loads(json.dumps(report.to_dict(), default=float))
    assert list(result) == [
        "dataset", "sizes", "refit", "rows", "skipped", "notes", "plots", "details",
        "total_seconds",
    ]  # fmt: skip
    assert list(result["details"]) == [
        "knn_cv",
        "LinearSVM (raw pixels)",
        "Softmax (raw pixels)",
    ]
    assert result["rows"][0] == {
        "model": "k-NN (raw pixels)",
        "params": report.rows[0].params,
        "val_acc": report.rows[0].val_acc,
        "test_acc": report.rows[0].test_acc,
        "seconds": report.rows[0].seconds,
        "selection": report.rows[0].selection,
        "compile_seconds": report.rows[0].compile_seconds,
    }


def test_save_demo_plots_without_matplotlib_notes_the_extra(quick_report, tmp_path, monkeypatch):
    report, _ = quick_report
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    copy = DemoReport(**{**vars(report), "notes": [], "plots": []})
    assert save_demo_plots(copy, str(tmp_path)) == []
    assert copy.notes == [
        "plots skipped: matplotlib is not installed (pip install 'fastcls[plots]')"
    ]
    empty = DemoReport(report.config, "x", {}, (8, 8), ())
    assert save_demo_plots(empty, str(tmp_path)) == [] and empty.notes == []


def test_save_demo_plots_writes_the_figures(quick_report, tmp_path):
    pytest.importorskip("matplotlib")
    report, _ = quick_report
    copy = DemoReport(**{**vars(report), "notes": [], "plots": []})
    saved = save_demo_plots(copy, str(tmp_path / "plots"))
    names = [p.rsplit("/", 1)[1] for p in saved]
    assert names == [
        "knn_cv.png",
        "linearsvm_loss.png",
        "linearsvm_templates.png",
        "softmax_loss.png",
        "softmax_templates.png",
    ]
    assert copy.plots == saved and all(
        (tmp_path / "plots" / n).stat().st_size > 1000 for n in names
    )


def test_splits_with_inputs_keeps_the_labels(quick_data):
    s = quick_data.splits
    f = s.with_inputs(np.zeros((360, 2)), np.zeros((120, 2)), np.zeros((120, 2)))
    assert isinstance(f, Splits) and f.y_test is s.y_test and f.X_val.shape == (120, 2)


# --------------------------------------------------------------------------- refit, data
def test_refit_fits_the_chosen_models_on_train_and_val(quick_data, pixels):
    s = quick_data.splits
    ev = evaluate_knn_cv(s, QUICK_KS, DEMO_METRICS, 3, progress=False, refit=True)
    plain = evaluate_knn_cv(s, QUICK_KS, DEMO_METRICS, 3, progress=False)
    assert ev.best_params == plain.best_params and ev.val_accuracy == plain.val_accuracy
    assert ev.estimator.n_samples_fit_ == 480 and plain.estimator.n_samples_fit_ == 360
    X, y = s.train_and_val()
    best = KNearestNeighbor(**ev.best_params).fit(X, y)
    assert ev.test_accuracy == best.score(s.X_test, s.y_test)
    model = Softmax(n_iters=50, batch_size=100, seed=0)
    grid = QUICK_SEARCH.linear_grid(pixels.X_train)
    ev = evaluate_linear_search(model, pixels, grid, seed=0, progress=False, refit=True)
    Xp, yp = pixels.train_and_val()
    again = Softmax(**ev.estimator.get_params()).fit(Xp, yp)
    np.testing.assert_array_equal(ev.estimator.W_, again.W_)
    assert ev.estimator.learning_rate == ev.best_params["learning_rate"]


def _mnist_folder(root, n_train=80, n_test=30):
    import gzip
    import struct

    rng = np.random.default_rng(0)
    root.mkdir()
    shapes = {"train": n_train, "t10k": n_test}
    for part, n in shapes.items():
        X = rng.integers(0, 256, size=(n, 8, 8), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        for kind, arr in (("images-idx3", X), ("labels-idx1", y)):
            head = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
            (root / f"{part}-{kind}-ubyte.gz").write_bytes(gzip.compress(head + arr.tobytes()))
    return root


def test_detect_format_and_load_train_test(tmp_path):
    folder = _mnist_folder(tmp_path / "fashion")
    assert detect_format(folder) == "mnist"
    data = load_train_test(None, folder, n_train=50)
    assert data.sizes == {"train": 50, "test": 30} and data.image_shape == (8, 8)
    assert data.format == "mnist" and data.class_names is not None
    assert data.description.startswith("Fashion-MNIST")  # "fashion" in the path
    (tmp_path / "x.npz").write_bytes(b"")
    assert detect_format(tmp_path / "x.npz") == "npz"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="cannot tell the data format"):
        detect_format(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        detect_format(tmp_path / "nowhere")
    digits = load_train_test("digits", seed=1)
    assert digits.sizes == {"train": 1438, "test": 359}
    again = load_train_test("digits", seed=1)
    np.testing.assert_array_equal(digits.y_test, again.y_test)


def test_mnist_demo_data_splits_in_file_order_and_refits(tmp_path):
    folder = _mnist_folder(tmp_path / "m")
    config = DemoConfig(data="mnist", path=str(folder), n_train=40, n_val=20, n_test=25)
    data = load_demo_data(config)
    assert data.splits.sizes == {"train": 40, "val": 20, "test": 25} and data.refit
    from fastcls.datasets import load_mnist

    X, y, Xt, _ = load_mnist(folder)
    np.testing.assert_array_equal(data.splits.X_val, X[40:60])
    np.testing.assert_array_equal(data.splits.X_test, Xt[:25])
    assert not load_demo_data(replace(config, refit=False)).refit
    with pytest.raises(ValueError, match="holds 80 items, fewer than the 90"):
        load_demo_data(replace(config, n_train=70))


# --------------------------------------------------------------------------- figures
def test_weight_template_title_sits_above_the_panel_titles():
    plt = pytest.importorskip("matplotlib.pyplot")
    from fastcls import plots

    W = np.random.default_rng(0).normal(size=(64, 10))
    fig = plots.plot_weight_templates(W, (8, 8), title="LinearSVM weight templates")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    top = fig._suptitle.get_window_extent(renderer)
    for ax in fig.axes:
        panel = ax.title.get_window_extent(renderer)
        assert top.y0 >= panel.y1, "the figure title overlaps a panel title"
    plt.close(fig)


def test_loss_curve_log_scale_when_the_first_steps_dwarf_the_rest():
    plt = pytest.importorskip("matplotlib.pyplot")
    from fastcls import plots

    rng = np.random.default_rng(0)
    svm_like = np.r_[9.0, 0.1 + 0.02 * rng.random(999)]  # the LinearSVM curve's shape
    ax = plots.plot_loss_curve(svm_like, smooth=20)
    assert ax.get_yscale() == "log"
    raw, avg = ax.lines
    assert raw.get_alpha() < 0.5 and avg.get_alpha() in (None, 1.0)  # the raw curve is faint
    flat = np.linspace(2.3, 0.5, 100)
    assert plots.plot_loss_curve(flat).get_yscale() == "linear"
    assert plots.plot_loss_curve(svm_like, log_scale=False).get_yscale() == "linear"
    with_zero = svm_like.copy()
    with_zero[5] = 0.0
    assert plots.plot_loss_curve(with_zero).get_yscale() == "linear"
    plt.close("all")


def test_fashion_mnist_without_the_package_says_how_to_get_it(monkeypatch, tmp_path):
    import fastcls.pipeline as pipeline

    monkeypatch.setattr(pipeline, "FASHION_MNIST_PATH", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_train_test("fashion-mnist")
