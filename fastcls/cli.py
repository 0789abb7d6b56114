"""Command line: ``fastcls COMMAND`` (also ``python -m fastcls COMMAND``).

Subcommands over one data spec (``--data digits``, ``--data PATH`` of a CIFAR-10 folder
or archive, an MNIST-format folder or an image folder with ``train/`` and ``test/``,
``--data fashion-mnist [--path DIR]``, or ``--train FILE --test FILE`` of ``.npz`` files
holding ``X`` and ``y``):

* ``knn`` -- fit k-NN on the training part, predict the test part: accuracy, times, a
  confusion matrix; ``--save`` the model, ``--predictions`` to a file.
* ``cv`` -- k-fold cross-validation of k (and the metric) on the training part.
* ``train`` -- a linear SVM or softmax, learning rate and regularisation searched on a
  validation split (:func:`~fastcls.model_selection.search_linear`), on pixels or on
  ``--features hog,hue``; ``--save`` the model.
* ``predict`` -- load a saved model and predict a data spec's test part or an
  ``--input`` file.
* ``info`` -- versions, CPU, the kernels chosen, threads, cache, extras.
* ``demo`` -- the lectures' protocol end to end (:func:`fastcls.pipeline.run_demo`).
* ``warmup`` -- compile (or load from the cache) every kernel group.

Every subcommand takes ``--json`` (one JSON object on stdout), ``--threads N`` and
``--quiet``; progress goes to stderr. A bad input ends with exit status 2 and a one-line
message on stderr, never a traceback (``FASTCLS_DEBUG=1`` shows it). The steps live in
:mod:`fastcls.pipeline`; this module parses, calls and prints.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from fastcls.pipeline import (
    DATASETS,
    DEMO_KS,
    SECTIONS,
    DemoConfig,
    DemoReport,
    ResultRow,
    TrainTest,
    load_demo_data,
    load_train_test,
    run_demo,
)


class CLIError(Exception):
    """A problem with the arguments or the data (reported in one line, exit status 2)."""


#: the former name, kept for callers of ``fastcls.cli``
DemoError = CLIError

#: feature names ``fastcls train --features`` accepts
FEATURES = ("hog", "hue")


# --------------------------------------------------------------------------- output
def format_table(rows: Sequence[ResultRow]) -> str:
    """Aligned plain-text table of the demo's results.

    ``time`` is each model's own time (search, fit, test); ``compile`` is the numba
    compilation it paid on first use of a kernel on this machine (``-``: none, the
    kernels came from the on-disk cache).
    """
    header = (
        "model", "chosen hyperparameters", "selected by", "val acc", "test acc", "time", "compile"
    )  # fmt: skip
    body = [
        (
            r.model,
            r.params,
            r.selection,
            f"{r.val_acc:.4f}",
            f"{r.test_acc:.4f}",
            f"{r.seconds:.2f}s",
            f"{r.compile_seconds:.2f}s" if r.compile_seconds >= 0.005 else "-",
        )
        for r in rows
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body, strict=True)]
    right = (False, False, False, True, True, True, True)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)
        ).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep, *(line(b) for b in body)])


def print_report(report: DemoReport, out: str) -> None:
    """The closing summary: result table, notes, plots, total time."""
    print(
        f"\n== Results ({report.dataset}; hyperparameters chosen without the test set, tested once)"
    )
    print(format_table(report.rows))
    for note in report.notes:
        print(f"note: {note}")
    if report.plots:
        print(f"plots: {', '.join(os.path.basename(p) for p in report.plots)} in {out}")
    print(f"results: {os.path.join(out, 'results.json')}")
    print(f"total time {report.total_seconds:.1f}s")


def format_confusion(matrix: np.ndarray, labels: Sequence[Any]) -> str:
    """A confusion matrix as text: rows are true labels, columns predicted labels."""
    names = [str(v) for v in labels]
    width = max(5, *(len(n) for n in names), len(str(int(matrix.max(initial=0)))))
    head = " " * width + " " + " ".join(n.rjust(width) for n in names)
    lines = [head]
    for name, row in zip(names, matrix, strict=True):
        lines.append(name.rjust(width) + " " + " ".join(str(int(v)).rjust(width) for v in row))
    return "\n".join(lines)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, list[Any]]:
    """``(matrix, labels)``: ``matrix[i, j]`` counts true ``labels[i]`` predicted ``labels[j]``."""
    labels, inverse = np.unique(np.concatenate([y_true, y_pred]), return_inverse=True)
    t, p = inverse[: len(y_true)], inverse[len(y_true) :]
    m = np.bincount(t * len(labels) + p, minlength=len(labels) ** 2)
    return m.reshape(len(labels), len(labels)), labels.tolist()


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _emit_json(data: dict[str, Any]) -> None:
    print(json.dumps(data, indent=2, default=_jsonable))


class _Status:
    """Progress lines on stderr (silent with ``--quiet``)."""

    def __init__(self, command: str, quiet: bool) -> None:
        self.command, self.quiet = command, quiet

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"fastcls {self.command}: {message}", file=sys.stderr, flush=True)


def _write_predictions(path: str, pred: np.ndarray, y_true: np.ndarray | None = None) -> None:
    """Predictions to ``.npy`` (the labels) or ``.csv`` (index, predicted[, true])."""
    suffix = Path(path).suffix.lower()
    try:
        if suffix == ".npy":
            np.save(path, pred)
            return
        with open(path, "w", encoding="utf-8") as f:
            f.write("index,predicted" + (",true" if y_true is not None else "") + "\n")
            for i, p in enumerate(pred.tolist()):
                extra = f",{y_true[i]}" if y_true is not None else ""
                f.write(f"{i},{p}{extra}\n")
    except OSError as exc:
        raise CLIError(f"cannot write {path}: {exc.strerror or exc}") from None


def _check_output_suffix(path: str | None, option: str) -> None:
    if path is not None and Path(path).suffix.lower() not in (".npy", ".csv"):
        raise CLIError(f"{option} must end in .npy or .csv, got {path!r}")


def _save_model(model: Any, path: str) -> str:
    from fastcls.io import save

    try:
        save(model, path)
    except OSError as exc:
        raise CLIError(f"cannot save the model to {path}: {exc.strerror or exc}") from None
    return path  # written exactly there (fastcls.io.save appends no suffix)


# --------------------------------------------------------------------------- arguments
class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``fastcls knn: error: ...``), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected numbers, got {text!r}")
    return values


def _name_list(choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [v.strip().lower() for v in text.split(",") if v.strip()]
        bad = [n for n in names if n not in choices]
        if bad or not names:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {', '.join(choices)}, got {text!r}"
            )
        return names

    return parse


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument(
        "--threads", type=_positive, metavar="N", help="threads for the kernels (default: all)"
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines or bars on stderr")


def _add_data(p: argparse.ArgumentParser, *, train_test: bool = True) -> None:
    g = p.add_argument_group("data (one of)")
    g.add_argument(
        "--data",
        metavar="NAME|PATH",
        help=(
            "'digits' (the embedded 8x8 digits, the default), 'fashion-mnist' (Debian's "
            "files unless --path), or a path: a CIFAR-10 folder or archive, an "
            "MNIST-format folder, or an image folder with train/ and test/"
        ),
    )
    g.add_argument("--path", metavar="DIR", help="where the files of a --data NAME are")
    if train_test:
        g.add_argument("--train", metavar="FILE", help=".npz file with X and y to train on")
        g.add_argument("--test", metavar="FILE", help=".npz file with X and y to test on")
    g.add_argument("--n-train", type=_positive, metavar="N", help="use the first N training images")
    g.add_argument("--n-test", type=_positive, metavar="N", help="use the first N test images")
    g.add_argument(
        "--image-size", type=_positive, metavar="S", help="image folders: resize to S x S"
    )
    g.add_argument(
        "--color", choices=("rgb", "gray"), default="rgb", help="image folders: rgb or gray"
    )
    g.add_argument("--seed", type=int, default=0, help="seed of splits and searches (default 0)")


def _data_name_path(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """``(data, path)`` for :func:`~fastcls.pipeline.load_train_test` from the options."""
    data, path = args.data, args.path
    if data in (*DATASETS, "default"):
        if data in ("digits", "default") and path is not None:
            raise CLIError("--path is for data read from files; --data digits is embedded")
        return data, path
    if data is None:
        return ("auto", path) if path is not None else (None, None)
    if path is not None:
        raise CLIError(
            f"--data {data!r} is neither a data set name ({', '.join(DATASETS)}) nor to be "
            "combined with --path: give --data NAME --path DIR, or --data PATH"
        )
    if not os.path.exists(data):
        raise CLIError(
            f"--data {data!r}: no such file or folder, and not a data set name "
            f"({', '.join(DATASETS)})"
        )
    return "auto", data


def load_data(args: argparse.Namespace, status: Callable[[str], None]) -> TrainTest:
    """The training and test parts the data options name."""
    train, test = getattr(args, "train", None), getattr(args, "test", None)
    data, path = _data_name_path(args)
    if train is not None or test is not None:
        if data is not None:
            raise CLIError("give either --data (and --path) or --train and --test, not both")
        if train is None or test is None:
            raise CLIError("--train and --test go together: give both .npz files")
    elif data is None:
        data = "digits"
    t0 = time.perf_counter()
    try:
        result = load_train_test(
            data, path, train=train, test=test, n_train=args.n_train, n_test=args.n_test,
            image_size=args.image_size, color=args.color, seed=args.seed,
        )  # fmt: skip
    except (OSError, ValueError, TypeError, ImportError) as exc:
        raise CLIError(f"cannot load the data: {_one_line(exc)}") from exc
    status(
        f"{result.description}: {result.sizes['train']} training / {result.sizes['test']} "
        f"test inputs of shape {result.image_shape} ({time.perf_counter() - t0:.2f}s)"
    )
    return result


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        text = f"{exc.strerror}: {exc.filename}"
    return " ".join(text.split())


def _rows(X: np.ndarray) -> np.ndarray:
    return X.reshape(X.shape[0], -1)


def _accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(y_true == y_pred)) if len(y_true) else float("nan")


def _class_name_list(data: TrainTest) -> list[str] | None:
    return list(data.class_names) if data.class_names is not None else None


# --------------------------------------------------------------------------- commands
def cmd_knn(args: argparse.Namespace, status: _Status) -> int:
    """``fastcls knn``: fit, predict the test part, accuracy and confusion matrix."""
    from fastcls._progress import compile_seconds
    from fastcls.neighbors import KNearestNeighbor

    _check_output_suffix(args.predictions, "--predictions")
    data = load_data(args, status)
    if args.k > data.X_train.shape[0]:
        raise CLIError(f"--k {args.k} is larger than the {data.X_train.shape[0]} training rows")
    clf = KNearestNeighbor(k=args.k, metric=args.metric, weights=args.weights, backend=args.backend)
    c0, t0 = compile_seconds(), time.perf_counter()
    try:
        clf.fit(data.X_train, data.y_train)
        t_fit = time.perf_counter() - t0
        status(f"predicting {data.X_test.shape[0]} test inputs (k={args.k}, {args.metric})")
        pred = clf.predict(data.X_test, progress=None if not args.quiet else False)
    except (ValueError, TypeError, ImportError) as exc:
        raise CLIError(_one_line(exc)) from exc
    total = time.perf_counter() - t0
    compile_s = compile_seconds() - c0
    acc = _accuracy(data.y_test, pred)
    matrix, labels = confusion_matrix(data.y_test, pred)
    saved = _save_model(clf, args.save) if args.save else None
    if args.predictions:
        _write_predictions(args.predictions, pred, data.y_test)
    result = {
        "command": "knn",
        "data": data.description,
        "sizes": data.sizes,
        "params": {"k": args.k, "metric": args.metric, "weights": args.weights,
                   "backend": args.backend},
        "accuracy": acc,
        "seconds": {
            "fit": t_fit,
            "predict": max(0.0, total - t_fit - compile_s),
            "total": max(0.0, total - compile_s),
        },
        "compile_seconds": compile_s,
        "labels": labels,
        "class_names": _class_name_list(data),
        "confusion_matrix": matrix.tolist(),
        "model": saved,
        "predictions": args.predictions,
    }  # fmt: skip
    if args.json:
        _emit_json(result)
        return 0
    n_ok = int(np.sum(data.y_test == pred))
    print(
        f"k-NN (k={args.k}, metric={args.metric}, weights={args.weights}) on "
        f"{data.description}: {data.sizes['train']} train / {data.sizes['test']} test"
    )
    print(
        f"test accuracy {acc:.4f} ({n_ok}/{len(pred)}); time {total - compile_s:.2f}s "
        f"(fit {t_fit:.2f}s)" + (f", compile {compile_s:.2f}s" if compile_s >= 0.005 else "")
    )
    print("confusion matrix (rows: true label, columns: predicted label)")
    print(format_confusion(matrix, labels))
    if saved:
        print(f"model saved to {saved}")
    if args.predictions:
        print(f"predictions written to {args.predictions}")
    return 0


def cmd_cv(args: argparse.Namespace, status: _Status) -> int:
    """``fastcls cv``: cross-validate k (and the metric) on the training part."""
    from fastcls.model_selection import cross_validate_knn

    data = load_data(args, status)
    ks = sorted(set(args.ks))
    status(f"{args.folds}-fold cross-validation of k in {ks} for {', '.join(args.metrics)}")
    t0 = time.perf_counter()
    try:
        cv = cross_validate_knn(
            data.X_train, data.y_train, ks, metrics=args.metrics, n_folds=args.folds,
            weights=args.weights, progress=None if not args.quiet else False,
        )  # fmt: skip
    except (ValueError, TypeError) as exc:
        raise CLIError(_one_line(exc)) from exc
    seconds = time.perf_counter() - t0
    plot = None
    if args.out:
        plot = _save_cv_plot(cv, args.out)
    means, stds = cv.mean_accuracies, cv.std_accuracies
    result = {
        "command": "cv",
        "data": data.description,
        "sizes": {"train": data.sizes["train"]},
        "folds": args.folds,
        "ks": ks,
        "metrics": list(cv.metrics),
        "mean": {m: [means[(m, k)] for k in ks] for m in cv.metrics},
        "std": {m: [stds[(m, k)] for k in ks] for m in cv.metrics},
        "best_params": cv.best_params_,
        "best_score": cv.best_score_,
        "accuracy": cv.best_score_,
        "seconds": seconds,
        "plot": plot,
    }
    if args.json:
        _emit_json(result)
        return 0
    print(
        f"{args.folds}-fold cross-validation on {data.description} "
        f"({data.sizes['train']} training inputs), accuracy mean +- std:"
    )
    print(cv.table())
    best = cv.best_params_
    print(
        f"best: metric={best['metric']} k={best['k']} (mean {cv.best_score_:.4f}); {seconds:.2f}s"
    )
    if plot:
        print(f"plot: {plot}")
    return 0


def _save_cv_plot(cv: Any, out: str) -> str:
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise CLIError(
            "--out draws a plot and needs matplotlib: pip install 'fastcls[plots]'"
        ) from None
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"cannot create the output folder {out!r}: {exc.strerror}") from None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    cv.plot(ax=ax)
    ax.set_xticks(cv.ks)
    path = os.path.join(out, "cv.png")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _feature_inputs(
    data: TrainTest, features: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray, str]:
    """Rows (pixels, or the chosen features of the images) of both parts, float32."""
    if not features:
        return _rows(data.X_train), _rows(data.X_test), "pixels"
    if len(data.image_shape) < 2:
        raise CLIError(
            f"--features needs images, but the inputs are rows of shape {data.image_shape}"
        )
    X_tr, X_te = feature_rows(data.X_train, features), feature_rows(data.X_test, features)
    return X_tr, X_te, "+".join(features) + " features"


def feature_rows(images: np.ndarray, features: Sequence[str]) -> np.ndarray:
    """``hog`` / ``hue`` features of images (n, H, W[, C]) as float32 rows.

    HOG's cell is the demo's (:func:`~fastcls.pipeline.demo_feature_functions`): a
    quarter of the smaller side, 2..8 pixels.
    """
    import functools

    from fastcls.features import color_histogram_hsv, extract_features, hog

    shape = images.shape[1:]
    if "hue" in features and (len(shape) != 3 or shape[2] != 3):
        raise CLIError("--features hue needs colour images (n, H, W, 3)")
    cell = max(2, min(8, min(shape[:2]) // 4))
    fns: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "hog": functools.partial(hog, cell=cell),
        "hue": color_histogram_hsv,
    }
    try:
        return extract_features(images, [fns[f] for f in features])
    except (ValueError, TypeError) as exc:
        raise CLIError(f"cannot compute --features {','.join(features)}: {_one_line(exc)}") from exc


def _fold_scaler(model: Any, scaler: Any) -> None:
    """Make ``model`` (trained on scaled rows) apply to raw rows: fold the scaling in.

    ``((x - m) / s) @ W + b == x @ (W / s[:, None]) + (b - (m / s) @ W)``; the saved
    model then needs no scaler at prediction time.
    """
    scale = np.asarray(scaler.scale_, dtype=np.float64)
    mean = np.asarray(scaler.mean_, dtype=np.float64)
    W = np.asarray(model.W_, dtype=np.float64)
    b = np.asarray(model.b_, dtype=np.float64)
    model.W_ = (W / scale[:, None]).astype(model.W_.dtype)
    model.b_ = (b - (mean / scale) @ W).astype(model.b_.dtype)


def cmd_train(args: argparse.Namespace, status: _Status) -> int:
    """``fastcls train``: a linear classifier, hyperparameters searched on validation."""
    from fastcls.features import FeatureScaler
    from fastcls.linear import LinearSVM, Softmax
    from fastcls.model_selection import search_linear
    from fastcls.pipeline import fit_pixel_scaler

    data = load_data(args, status)
    n = data.X_train.shape[0]
    n_val = args.n_val or max(1, int(round(n * args.val_fraction)))
    if n_val >= n:
        raise CLIError(f"the validation split ({n_val}) leaves no training data of {n}")
    X_all, X_te, what = _feature_inputs(data, args.features)
    # the validation rows: a seeded random subset of the training part
    order = np.random.default_rng(args.seed).permutation(n)
    va, tr = order[:n_val], order[n_val:]
    scaler = fit_pixel_scaler(X_all[tr]) if not args.features else FeatureScaler().fit(X_all[tr])
    X_s = scaler.transform(X_all).astype(np.float32)
    cls = {"svm": LinearSVM, "softmax": Softmax}[args.model]
    model = cls(n_iters=args.iters, batch_size=args.batch_size or "auto", seed=args.seed)
    grid: dict[str, Any] | None = None
    if args.lr or args.reg:
        from fastcls.model_selection import default_linear_grid

        grid = default_linear_grid(X_s[tr])
        if args.lr:
            grid["learning_rate"] = args.lr
        if args.reg:
            grid["reg"] = args.reg
    status(
        f"searching {cls.__name__} on {what}: {len(tr)} train / {n_val} validation rows, "
        f"{args.iters} SGD steps per configuration"
    )
    t0 = time.perf_counter()
    try:
        res = search_linear(
            model, X_s[tr], data.y_train[tr], X_s[va], data.y_train[va], grid=grid,
            seed=args.seed, progress=None if not args.quiet else False,
        )  # fmt: skip
    except (ValueError, TypeError) as exc:
        raise CLIError(_one_line(exc)) from exc
    best = res.best_model_
    _fold_scaler(best, scaler)  # the model now takes raw pixels / features
    test_acc = float(best.score(X_te, data.y_test))
    seconds = time.perf_counter() - t0
    saved = _save_model(best, args.save) if args.save else None
    result = {
        "command": "train",
        "data": data.description,
        "model": args.model,
        "features": list(args.features or []),
        "sizes": {"train": len(tr), "val": n_val, "test": int(X_te.shape[0])},
        "best_params": res.best_params_,
        "val_accuracy": res.best_val_accuracy_,
        "test_accuracy": test_acc,
        "accuracy": test_acc,
        "search": [
            {"learning_rate": k[0], "reg": k[1], "train_acc": v[0], "val_acc": v[1], "loss": v[2]}
            for k, v in res.results.items()
        ],
        "seconds": seconds,
        "saved": saved,
    }
    if args.json:
        _emit_json(result)
        return 0
    print(f"{cls.__name__} on {what} of {data.description}: search on the validation split")
    print(res.table())
    p = res.best_params_
    print(
        f"chosen lr={p['learning_rate']:g} reg={p['reg']:g}: validation accuracy "
        f"{res.best_val_accuracy_:.4f}, test accuracy {test_acc:.4f}; {seconds:.2f}s"
    )
    if saved:
        hint = f" (predict with --features {','.join(args.features)})" if args.features else ""
        print(f"model saved to {saved}{hint}")
    return 0


def _load_input(path: str, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray | None]:
    """``--input``: a .npy array, a .npz with X (and y), or one image file."""
    from fastcls.datasets import IMAGE_SUFFIXES

    p = Path(path)
    if not p.is_file():
        raise CLIError(f"--input {path!r}: no such file")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(p, allow_pickle=False), None
        if suffix == ".npz":
            with np.load(p, allow_pickle=False) as npz:
                if "X" not in npz.files:
                    raise CLIError(f"--input {path}: no X array (it holds {sorted(npz.files)})")
                return npz["X"], npz["y"] if "y" in npz.files else None
        if suffix in IMAGE_SUFFIXES:
            from fastcls.datasets import load_image

            return load_image(p, args.image_size, args.color)[None], None
    except (OSError, ValueError, ImportError) as exc:
        raise CLIError(f"--input {path}: {_one_line(exc)}") from exc
    raise CLIError(
        f"--input {path!r}: expected a .npy, .npz or image ({'/'.join(IMAGE_SUFFIXES)}) file"
    )


def cmd_predict(args: argparse.Namespace, status: _Status) -> int:
    """``fastcls predict``: a saved model's predictions (and accuracy with labels)."""
    from fastcls.io import load

    _check_output_suffix(args.output, "--output")
    try:
        model = load(args.model)
    except (OSError, ValueError, TypeError, ImportError) as exc:
        raise CLIError(f"cannot load the model: {_one_line(exc)}") from exc
    status(f"loaded {type(model).__name__} from {args.model}")
    if args.input is not None:
        if args.data is not None or args.path is not None:
            raise CLIError("give either --input FILE or a data spec (--data), not both")
        X, y = _load_input(args.input, args)
        source = args.input
    else:
        data = load_data(args, status)
        X, y, source = data.X_test, data.y_test, f"{data.description} (test part)"
    if args.features:
        if X.ndim < 3:
            raise CLIError(f"--features needs images, but the inputs have shape {X.shape}")
        X = feature_rows(X, args.features)
    n_in = getattr(model, "n_features_in_", None)
    d = int(np.prod(X.shape[1:]))
    if n_in is not None and d != n_in:
        hint = (
            " (was it trained with --features? give the same --features here)"
            if not args.features
            else ""
        )
        raise CLIError(f"the model takes {n_in} inputs per sample but {source} has {d}{hint}")
    t0 = time.perf_counter()
    try:
        pred = model.predict(_rows(X))
    except (ValueError, TypeError) as exc:
        raise CLIError(_one_line(exc)) from exc
    seconds = time.perf_counter() - t0
    acc = _accuracy(y, pred) if y is not None else None
    if args.output:
        _write_predictions(args.output, pred, y)
    result: dict[str, Any] = {
        "command": "predict",
        "model": args.model,
        "model_class": type(model).__name__,
        "input": source,
        "sizes": {"n": int(len(pred))},
        "accuracy": acc,
        "seconds": seconds,
        "output": args.output,
    }
    if not args.output:
        result["predictions"] = pred.tolist()
    if args.json:
        _emit_json(result)
        return 0
    if args.output:
        print(f"{len(pred)} predictions written to {args.output} ({seconds:.2f}s)")
    else:
        for p in pred.tolist():
            print(p)
    if acc is not None:  # stdout holds only the labels when they are printed
        out = sys.stdout if args.output else sys.stderr
        print(f"accuracy {acc:.4f} on {len(pred)} labelled inputs", file=out)
    return 0


def _version(module: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cache_folder() -> str:
    """Where numba keeps fastcls's compiled kernels (numba's own rule)."""
    from fastcls._config import cache_enabled

    if not cache_enabled():
        return "off (FASTCLS_NUMBA_CACHE=0)"
    try:
        from numba.core import caching

        import fastcls.kernels.vote as module

        source = module.__file__
        assert source is not None
        impl: Any = getattr(caching, "_CacheImpl", None) or caching.CacheImpl
        for locator in impl._locator_classes:
            found = locator.from_function(module.majority_vote_all_k.py_func, source)
            if found is not None:
                return str(found.get_cache_path())
    except Exception as exc:  # numba internals moved: say so rather than fail
        return f"unknown ({type(exc).__name__})"
    return "unknown"


def system_info() -> dict[str, Any]:
    """What ``fastcls info`` reports, as a dict (JSON-ready)."""
    import numba

    from fastcls import __version__, get_num_threads
    from fastcls._runtime import kernel_report, threading_layer_in_use

    config: Any = numba.config
    threads = get_num_threads()  # starts numba's thread pool, so its layer is known
    # None if the pool could not start
    layer = threading_layer_in_use() or f"not started yet (requested: {config.THREADING_LAYER})"
    extras = {
        "faiss": _version("faiss-cpu") or _version("faiss"),
        "dask": _version("dask"),
        "distributed": _version("distributed"),
        "plots (matplotlib)": _version("matplotlib"),
        "images (Pillow)": _version("pillow"),
        "scikit-learn": _version("scikit-learn"),
    }
    return {
        "fastcls": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "llvmlite": _version("llvmlite"),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        **kernel_report(),
        "threads": threads,
        "numba_num_threads": int(config.NUMBA_NUM_THREADS),
        "threading_layer": layer,
        "cache": _cache_folder(),
        "extras": extras,
    }


def cmd_info(args: argparse.Namespace, status: _Status) -> int:
    """``fastcls info``: versions, CPU, kernels, threads, cache, extras."""
    info = system_info()
    if args.json:
        _emit_json(info)
        return 0
    width = max(len(key) for key in info)
    for key, value in info.items():
        if key == "kernels":
            value = ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
        elif key == "extras":
            value = ", ".join(f"{k} {v}" if v else f"{k} (not installed)" for k, v in value.items())
        elif isinstance(value, list):
            value = " ".join(value) or "-"
        print(f"{key.replace('_', ' '):<{width}} {value}")
    return 0


def demo_config(args: argparse.Namespace) -> DemoConfig:
    """The :class:`~fastcls.pipeline.DemoConfig` of parsed ``fastcls demo`` arguments.

    Raises :class:`CLIError` naming the option for values the pipeline would refuse.
    """
    if args.folds < 2:
        raise CLIError(f"--folds must be at least 2, got {args.folds}")
    if args.jobs is not None and args.jobs < 1 and args.jobs != -1:
        raise CLIError(f"--jobs must be a positive integer or -1, got {args.jobs}")
    data, path = _data_name_path(args)
    if data in ("cifar10", "mnist", "images") and path is None:
        raise CLIError(f"--data {data} needs --path DIR (where the files are)")
    sections = tuple(s for s in SECTIONS if s not in args.skip)
    if not sections:
        raise CLIError(f"every section is skipped ({', '.join(SECTIONS)}): nothing to run")
    try:
        return DemoConfig(
            data=data or "default",
            path=path,
            subsample=args.subsample,
            quick=args.quick,
            n_train=args.n_train,
            n_val=args.n_val,
            n_test=args.n_test,
            image_size=args.image_size,
            color=args.color,
            folds=args.folds,
            seed=args.seed,
            n_jobs=args.threads or args.jobs,
            sections=sections,
            plot_dir=None if args.no_plots else args.out,
            progress=False if (args.no_progress or args.quiet) else None,
        )
    except ValueError as exc:
        raise CLIError(_one_line(exc)) from exc


def cmd_demo(args: argparse.Namespace, status: _Status) -> int:
    """``fastcls demo``: run the pipeline, write results.json, print; the exit code."""
    config = demo_config(args)
    try:
        data = load_demo_data(config)
    except (OSError, ValueError, TypeError, ImportError) as exc:
        where = f" from {config.path!r}" if config.path else ""
        what = "the data" if config.data == "auto" else config.data
        raise CLIError(f"could not load {what}{where}: {_one_line(exc)}") from exc
    out = os.path.abspath(args.out)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"cannot create the output folder {args.out!r}: {exc.strerror}") from exc
    if config.plot_dir is not None:  # files only, no window (before matplotlib loads)
        os.environ.setdefault("MPLBACKEND", "Agg")
    what = "results.json" + ("" if config.plot_dir is None else " and plots")
    # where the outputs go, before the long part (on stderr with --json)
    print(f"writing {what} to {out}", file=sys.stderr if args.json else sys.stdout, flush=True)
    log = None if args.json else _stdout_log
    report = run_demo(config, data=data, log=log)
    result = report.to_dict()
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(result, f, indent=2, default=_jsonable)
    if args.json:
        _emit_json(result)
    else:
        print_report(report, out)
    return 0


def _stdout_log(message: str) -> None:
    print(message, flush=True)


def cmd_warmup(args: argparse.Namespace, status: _Status) -> int:
    """``fastcls warmup``: compile (or load) the kernels, one progress line per group."""
    from fastcls.precompile import GROUPS
    from fastcls.precompile import warmup as run_warmup

    unknown = sorted(set(args.groups) - set(GROUPS))
    if unknown:
        raise CLIError(f"unknown kernel group(s) {unknown}; groups are {list(GROUPS)}")
    report = run_warmup(
        args.groups or None, progress=not (args.json or args.quiet), stream=sys.stderr
    )
    if args.json:
        _emit_json(
            {
                "command": "warmup",
                "groups": {
                    name: {"seconds": t.seconds, "compile_seconds": t.compile_seconds}
                    for name, t in report.items()
                },
                "seconds": sum(t.seconds for t in report.values()),
            }
        )
    else:
        total = sum(t.seconds for t in report.values())
        print(f"kernels ready in {total:.1f}s (cached on disk for later runs)")
    return 0


# --------------------------------------------------------------------------- parser
def _build_parser() -> argparse.ArgumentParser:
    from fastcls import __version__

    parser = _Parser(
        prog="fastcls",
        description="fastcls: fast classical image classification on the CPU.",
    )
    parser.add_argument("--version", action="version", version=f"fastcls {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    knn = sub.add_parser(
        "knn",
        help="k-NN: fit on the training part, test accuracy, confusion matrix",
        description="Fit k-NN on the training part, predict the test part, print the "
        "accuracy, the time and the confusion matrix.",
    )
    _add_data(knn)
    knn.add_argument("--k", type=_positive, default=1, help="neighbours that vote (default 1)")
    knn.add_argument("--metric", choices=("l1", "l2", "sqeuclidean"), default="l2")
    knn.add_argument("--weights", choices=("uniform", "distance"), default="uniform")
    knn.add_argument("--backend", choices=("numba", "numpy", "faiss", "dask"), default="numba")
    knn.add_argument("--save", metavar="MODEL", help="save the fitted model (.npz)")
    knn.add_argument(
        "--predictions", metavar="FILE", help="write the test predictions (.npy or .csv)"
    )
    _add_common(knn)

    cv = sub.add_parser(
        "cv",
        help="cross-validate k (and the metric) on the training part",
        description="k-fold cross-validation of k-NN on the training part: every k of "
        "--ks for every metric, the table of mean and std, the best setting.",
    )
    _add_data(cv)
    cv.add_argument(
        "--ks", type=_int_list, default=list(DEMO_KS), metavar="K,K,...",
        help=f"k values (default {','.join(map(str, DEMO_KS))})",
    )  # fmt: skip
    cv.add_argument(
        "--metrics", type=_name_list(("l1", "l2", "sqeuclidean")), default=["l1", "l2"],
        metavar="M,M", help="metrics (default l1,l2)",
    )  # fmt: skip
    cv.add_argument("--folds", type=_positive, default=5, help="folds (default 5)")
    cv.add_argument("--weights", choices=("uniform", "distance"), default="uniform")
    cv.add_argument("--out", metavar="DIR", help="save the plot as DIR/cv.png")
    _add_common(cv)

    train = sub.add_parser(
        "train",
        help="linear SVM or softmax, hyperparameters searched on a validation split",
        description="Train a linear SVM or softmax: learning rate and regularisation "
        "searched on a validation split of the training part, then the test accuracy once.",
    )
    _add_data(train)
    train.add_argument("--model", choices=("svm", "softmax"), default="softmax")
    train.add_argument(
        "--features", type=_name_list(FEATURES), metavar="hog,hue",
        help="train on HOG and/or hue-histogram features instead of pixels",
    )  # fmt: skip
    train.add_argument(
        "--val-fraction", type=float, default=0.1, help="validation share (default 0.1)"
    )
    train.add_argument("--n-val", type=_positive, metavar="N", help="validation rows (overrides)")
    train.add_argument("--iters", type=_positive, default=1000, help="SGD steps (default 1000)")
    train.add_argument(
        "--batch-size", type=_positive, help="rows per SGD step (default: 200, at most all)"
    )
    train.add_argument("--lr", type=_float_list, metavar="X,X", help="learning rates to try")
    train.add_argument("--reg", type=_float_list, metavar="X,X", help="regularisations to try")
    train.add_argument("--save", metavar="MODEL", help="save the chosen model (.npz)")
    _add_common(train)

    pred = sub.add_parser(
        "predict",
        help="predict with a saved model",
        description="Load a model saved by --save (or fastcls.save) and predict the test "
        "part of a data spec, or an --input file; with labels, print the accuracy.",
    )
    pred.add_argument("--model", required=True, metavar="MODEL", help="a saved model (.npz)")
    pred.add_argument(
        "--input", metavar="FILE", help=".npy array, .npz with X (and y), or an image file"
    )
    _add_data(pred, train_test=False)
    pred.add_argument(
        "--features", type=_name_list(FEATURES), metavar="hog,hue",
        help="the features the model was trained on (train --features)",
    )  # fmt: skip
    pred.add_argument("--output", metavar="FILE", help="write predictions (.npy or .csv)")
    _add_common(pred)

    info = sub.add_parser(
        "info",
        help="versions, CPU features, kernels chosen, threads, cache, extras",
        description="What fastcls found on this machine.",
    )
    _add_common(info)

    demo = sub.add_parser(
        "demo",
        help="choose k-NN and linear classifiers by CV / validation, test once, plot",
        description=(
            "Split train/val/test; 5-fold cross-validation of k-NN over k for L1 and L2; "
            "learning-rate / regularisation search for LinearSVM and Softmax; the same on "
            "HOG features; evaluate the chosen models once on the test set; print a table "
            "and save plots."
        ),
    )
    demo.add_argument(
        "--data",
        metavar="NAME|PATH",
        default=None,
        help=(
            "digits (default), cifar10, mnist, fashion-mnist, images (with --path), or a "
            "path whose format is inferred"
        ),
    )
    demo.add_argument(
        "--path", metavar="DIR", help="where the files are (without --data: format inferred)"
    )
    demo.add_argument(
        "--subsample",
        action="store_true",
        help=(
            "a subset: 5000 training / 500 validation / 500 test images, at most what the "
            "files hold (default: the full set, CIFAR-10 49000/1000/10000, MNIST "
            "50000/10000/10000)"
        ),
    )
    demo.add_argument("--n-train", type=_positive, metavar="N", help="training images")
    demo.add_argument("--n-val", type=_positive, metavar="N", help="validation images")
    demo.add_argument("--n-test", type=_positive, metavar="N", help="test images")
    demo.add_argument("--image-size", type=_positive, metavar="S", help="image folders: S x S")
    demo.add_argument("--color", choices=("rgb", "gray"), default="rgb", help="image folders")
    demo.add_argument(
        "--out",
        metavar="DIR",
        default=os.path.join(".", "fastcls-demo"),
        help="output folder for plots and results.json (default ./fastcls-demo/)",
    )
    demo.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    demo.add_argument("--seed", type=int, default=0, help="seed of splits and searches")
    demo.add_argument("--jobs", type=int, default=None, help="threads (same as --threads)")
    demo.add_argument("--quick", action="store_true", help="a reduced run (tests, smoke checks)")
    demo.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=SECTIONS,
        help="skip a section (repeatable): knn, linear, features",
    )
    demo.add_argument("--no-plots", action="store_true", help="do not save plots")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_common(demo)

    warm = sub.add_parser(
        "warmup",
        help="compile and cache the kernels now (first use on a machine), one line per group",
        description=(
            "Compile every kernel group the estimators and the CLI use, or load it from "
            "numba's on-disk cache, so that later runs start without waiting on the compiler."
        ),
    )
    warm.add_argument(
        "groups",
        nargs="*",
        metavar="GROUP",
        help="kernel groups (default: all): knn-l1, knn-l2, vote, linear, features",
    )
    _add_common(warm)
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace, _Status], int]] = {
    "knn": cmd_knn,
    "cv": cmd_cv,
    "train": cmd_train,
    "predict": cmd_predict,
    "info": cmd_info,
    "demo": cmd_demo,
    "warmup": cmd_warmup,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fastcls`` command; returns the exit code.

    Examples
    --------
    >>> main(["knn", "--data", "digits", "--k", "3", "--json"])  # doctest: +SKIP
    0
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from fastcls import num_threads

    status = _Status(args.command, args.quiet or args.json)
    command = args.command

    def one_line_warning(message: Any, category: Any, *rest: Any, **kw: Any) -> None:
        text = " ".join(str(message).split())
        print(f"fastcls {command}: warning: {text} ({category.__name__})", file=sys.stderr)

    try:
        with num_threads(getattr(args, "threads", None)), warnings.catch_warnings():
            warnings.showwarning = one_line_warning  # one line each, not Python's two
            return COMMANDS[args.command](args, status)
    except CLIError as exc:
        if os.environ.get("FASTCLS_DEBUG"):
            raise
        print(f"fastcls {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fastcls {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
