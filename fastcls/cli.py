"""Command line: ``fastcls demo`` (also ``python -m fastcls demo``).

The demo follows the lectures' protocol on the embedded digits (or CIFAR-10):
split train / val / test; choose k-NN's ``k`` and metric by 5-fold cross-validation
on the training part; choose the linear classifiers' learning rate and
regularisation on the validation part; evaluate every chosen model **once** on the
test part; print one table and save the plots.

Each section is a function; a section whose module is missing (an optional extra
or a part not installed) is reported as skipped, and the demo still succeeds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: the lectures' k values for the demo's cross-validation
DEMO_KS = (1, 3, 5, 8, 10, 12, 15, 20)
QUICK_KS = (1, 3, 5)


class DemoError(Exception):
    """A problem with the demo's arguments or data (reported without a traceback)."""


class SectionSkipped(Exception):
    """A section cannot run here (missing optional module); the reason is printed."""


@dataclass
class Row:
    """One line of the demo's result table."""

    model: str
    params: str
    val_acc: float
    test_acc: float
    seconds: float
    selection: str = ""


@dataclass
class Context:
    """What the sections share: arguments, splits, output folder, results."""

    args: argparse.Namespace
    X_train: np.ndarray
    X_val: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_val: np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, ...]
    class_names: tuple[str, ...]
    dataset: str
    out: str
    rows: list[Row] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    _plt_checked: bool = False
    _plt_ok: bool = False

    def log(self, msg: str) -> None:
        if not self.args.json:
            print(msg, flush=True)

    def progress(self) -> bool | None:
        return None if not self.args.no_progress else False

    def plots_enabled(self) -> bool:
        """True when plots are wanted and matplotlib imports (checked once)."""
        if self.args.no_plots:
            return False
        if not self._plt_checked:
            self._plt_checked = True
            try:
                import matplotlib

                matplotlib.use("Agg")  # files only, no window
                import matplotlib.pyplot  # noqa: F401

                self._plt_ok = True
            except ImportError:
                self.notes.append(
                    "plots skipped: matplotlib is not installed (pip install 'fastcls[plots]')"
                )
        return self._plt_ok

    def save(self, fig: Any, name: str) -> None:
        import matplotlib.pyplot as plt

        path = os.path.join(self.out, name)
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        self.plots.append(path)


# --------------------------------------------------------------------------- data
#: CIFAR-10 sizes (train, val, test) read in file order: the lectures' protocols
CIFAR_FULL = (49000, 1000, 10000)
CIFAR_SUBSAMPLE = (5000, 500, 500)
CIFAR_QUICK = (1000, 200, 200)


def load_splits(args: argparse.Namespace) -> tuple[tuple[np.ndarray, ...], tuple, tuple, str]:
    """Load the data and split it.

    Returns
    -------
    splits : (X_train, X_val, X_test, y_train, y_val, y_test)
        Images (n, H, W[, C]) uint8 and labels.
    image_shape, class_names : tuple
    dataset : str
        A short description.
    """
    if args.data == "default":
        from fastcls.datasets import load_default
        from fastcls.model_selection import train_val_test_split

        ds = load_default()
        images, labels = ds.images, ds.labels
        if args.quick:  # a reduced problem for tests: 600 images
            keep = np.random.default_rng(args.seed).permutation(images.shape[0])[:600]
            images, labels = images[keep], labels[keep]
        splits = train_val_test_split(images, labels, 0.2, 0.2, seed=args.seed, stratify=True)
        return splits, ds.images.shape[1:], ds.target_names, "embedded digits (UCI optdigits)"
    if args.path is None:
        raise DemoError("--data cifar10 needs --path DIR (the CIFAR-10 folder or archive)")
    from fastcls.datasets import CIFAR10_CLASSES, load_cifar10

    n_tr, n_va, n_te = (
        CIFAR_QUICK if args.quick else CIFAR_SUBSAMPLE if args.subsample else CIFAR_FULL
    )
    try:
        X_all, y_all, X_te, y_te = load_cifar10(args.path, n_train=n_tr + n_va, n_test=n_te)
    except (OSError, ValueError) as exc:
        raise DemoError(f"could not load CIFAR-10 from {args.path!r}: {exc}") from exc
    # as in the lectures: training images first, the next ones validate; test batch apart
    splits = (X_all[:n_tr], X_all[n_tr:], X_te, y_all[:n_tr], y_all[n_tr:], y_te)
    return splits, X_all.shape[1:], tuple(CIFAR10_CLASSES), "CIFAR-10"


# --------------------------------------------------------------------------- sections
def section_knn(ctx: Context) -> None:
    """k-NN: 5-fold CV of k and metric on the training part, then val and test once."""
    import fastcls
    from fastcls.model_selection import cross_validate_knn

    args = ctx.args
    ks = QUICK_KS if args.quick else DEMO_KS
    ctx.log(
        f"\n== k-NN: {args.folds}-fold cross-validation of k in {list(ks)} for L1 and L2 "
        f"({ctx.X_train.shape[0]} training samples)"
    )
    t0 = time.perf_counter()
    cv = cross_validate_knn(
        ctx.X_train,
        ctx.y_train,
        ks,
        metrics=("l1", "l2"),
        n_folds=args.folds,
        progress=ctx.progress(),
    )
    ctx.log(cv.table())
    best = cv.best_params_
    clf = fastcls.KNearestNeighbor(k=best["k"], metric=best["metric"]).fit(ctx.X_train, ctx.y_train)
    val_acc = clf.score(ctx.X_val, ctx.y_val)
    test_acc = clf.score(ctx.X_test, ctx.y_test)  # the test set, once
    seconds = time.perf_counter() - t0
    ctx.log(
        f"chosen: metric={best['metric']} k={best['k']} (CV mean {cv.best_score_:.4f}); "
        f"CV took {sum(cv.times_.values()):.2f}s for {len(ks)} k x 2 metrics x "
        f"{args.folds} folds"
    )
    ctx.rows.append(
        Row(
            model="k-NN (raw pixels)",
            params=f"metric={best['metric']}, k={best['k']}",
            val_acc=val_acc,
            test_acc=test_acc,
            seconds=seconds,
            selection=f"{args.folds}-fold CV {cv.best_score_:.4f}",
        )
    )
    ctx.details["knn_cv"] = {
        "ks": cv.ks.tolist(),
        "metrics": list(cv.metrics),
        "fold_accuracies": {f"{m}:{k}": a.tolist() for (m, k), a in cv.fold_accuracies.items()},
        "best_params": best,
        "best_score": cv.best_score_,
    }
    if ctx.plots_enabled():
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        cv.plot(ax=ax)
        ctx.save(fig, "knn_cv.png")


#: the demo's search space for the linear classifiers on standardised inputs: learning
#: rates as multiples of 1 / mean ||x||^2 (so that one grid suits 64 digit pixels, 144
#: HOG features and 3072 CIFAR pixels alike), regularisation strengths as they are
LR_MULTIPLIERS, QUICK_LR_MULTIPLIERS = (0.5, 2.0, 8.0), (2.0, 8.0)
REGS, QUICK_REGS = (1e-4, 1e-2), (1e-4,)
LINEAR_ITERS, QUICK_LINEAR_ITERS = 1000, 200


def linear_grid(X_train: np.ndarray, quick: bool = False) -> dict[str, list[float]]:
    """The demo's (learning rate, reg) grid for training rows ``X_train`` (standardised)."""
    from fastcls.model_selection import default_linear_grid

    if quick:
        return default_linear_grid(X_train, QUICK_LR_MULTIPLIERS, QUICK_REGS)
    return default_linear_grid(X_train, LR_MULTIPLIERS, REGS)


def standardize(X_train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """Rows as float32, minus the training mean image, divided by one training std.

    The lectures subtract the mean image; dividing by one global scale as well lets a
    single learning-rate grid suit 0..16 digits and 0..255 CIFAR pixels alike.
    """
    Xtr = X_train.reshape(X_train.shape[0], -1).astype(np.float32)
    mean = Xtr.mean(axis=0)
    Xtr -= mean
    scale = float(Xtr.std()) or 1.0
    out = [Xtr / np.float32(scale)]
    for X in others:
        out.append((X.reshape(X.shape[0], -1).astype(np.float32) - mean) / np.float32(scale))
    return tuple(out)


def _linear_models() -> dict[str, type]:
    from fastcls.linear import LinearSVM, Softmax

    return {"LinearSVM": LinearSVM, "Softmax": Softmax}


def _search_and_test(
    ctx: Context,
    name: str,
    model: Any,
    splits: tuple[np.ndarray, ...],
    label: str,
) -> Any:
    """search_linear on train/val, then the test set once; appends a table row."""
    from fastcls.model_selection import search_linear

    Xtr, Xva, Xte = splits
    grid = linear_grid(Xtr, ctx.args.quick)
    t0 = time.perf_counter()
    res = search_linear(
        model,
        Xtr,
        ctx.y_train,
        Xva,
        ctx.y_val,
        grid=grid,
        seed=ctx.args.seed,
        progress=ctx.progress(),
    )
    best = res.best_model_
    test_acc = float(best.score(Xte, ctx.y_test))  # the test set, once
    seconds = time.perf_counter() - t0
    ctx.log(f"-- {name} on {label}: {len(res.results)} configurations")
    ctx.log(res.table())
    p = res.best_params_
    ctx.rows.append(
        Row(
            model=f"{name} ({label})",
            params=f"lr={p['learning_rate']:g}, reg={p['reg']:g}",
            val_acc=res.best_val_accuracy_,
            test_acc=test_acc,
            seconds=seconds,
            selection=f"val search ({len(res.results)} configs)",
        )
    )
    ctx.details[f"{name} ({label})"] = {
        "best_params": p,
        "results": [
            {"learning_rate": k[0], "reg": k[1], "train_acc": v[0], "val_acc": v[1], "loss": v[2]}
            for k, v in res.results.items()
        ],
    }
    return best


def _plots_module(ctx: Context) -> Any:
    """:mod:`fastcls.plots`, or None (noted once) when this install lacks it."""
    try:
        from fastcls import plots
    except ImportError:
        note = "loss / template plots skipped: fastcls.plots is not available"
        if note not in ctx.notes:
            ctx.notes.append(note)
        return None
    return plots


def _plot_loss(ctx: Context, model: Any, name: str, filename: str) -> None:
    hist = np.asarray(getattr(model, "loss_history_", []), dtype=float)
    if not ctx.plots_enabled() or hist.size == 0:
        return
    plots = _plots_module(ctx)
    if plots is None:
        return
    ax = plots.plot_loss_curve(hist, smooth=max(1, hist.size // 50), title=f"{name} training loss")
    ctx.save(ax.figure, filename)


def _plot_templates(ctx: Context, model: Any, name: str, filename: str) -> None:
    if not ctx.plots_enabled() or getattr(model, "W_", None) is None:
        return
    plots = _plots_module(ctx)
    if plots is None:
        return
    fig = plots.plot_weight_templates(model.W_, ctx.image_shape, class_names=ctx.class_names)
    fig.suptitle(f"{name} weight templates")
    ctx.save(fig, filename)


def section_linear(ctx: Context) -> None:
    """LinearSVM and Softmax on standardised pixels: search on val, test once."""
    models = _linear_models()
    iters = QUICK_LINEAR_ITERS if ctx.args.quick else LINEAR_ITERS
    ctx.log(
        f"\n== Linear classifiers on raw pixels: grid search of learning rate x "
        f"regularisation on the validation set ({iters} SGD iterations each)"
    )
    splits = standardize(ctx.X_train, ctx.X_val, ctx.X_test)
    for name, cls in models.items():
        model = cls(n_iters=iters, batch_size=200, seed=ctx.args.seed)
        best = _search_and_test(ctx, name, model, splits, "raw pixels")
        slug = name.lower()
        _plot_loss(ctx, best, name, f"{slug}_loss.png")
        _plot_templates(ctx, best, name, f"{slug}_templates.png")


def _feature_functions(ctx: Context) -> list[Callable[[np.ndarray], np.ndarray]]:
    import functools

    from fastcls.features import color_histogram_hsv, hog

    # 8x8 digits need small HOG cells; CIFAR's 32x32 images use the lecture's 8x8 cells
    cell = max(2, min(8, min(ctx.image_shape[:2]) // 4))
    fns: list[Callable[[np.ndarray], np.ndarray]] = [functools.partial(hog, cell=cell)]
    if len(ctx.image_shape) == 3 and ctx.image_shape[2] == 3:
        fns.append(color_histogram_hsv)  # grayscale images have a constant hue
    return fns


def section_features(ctx: Context) -> None:
    """HOG (+ hue histogram on colour images) features: k-NN by CV, Softmax by search."""
    from fastcls.features import FeatureScaler, extract_features
    from fastcls.model_selection import cross_validate_knn

    fns = _feature_functions(ctx)
    names = " + ".join(getattr(getattr(f, "func", f), "__name__", "f") for f in fns)
    t0 = time.perf_counter()
    F_tr = extract_features(ctx.X_train, fns)
    scaler = FeatureScaler().fit(F_tr)
    F_tr = scaler.transform(F_tr)
    F_va = extract_features(ctx.X_val, fns, normalize=scaler)
    F_te = extract_features(ctx.X_test, fns, normalize=scaler)
    t_feat = time.perf_counter() - t0
    ctx.log(
        f"\n== Features: {names}, {F_tr.shape[1]} per image, standardised with the "
        f"training statistics ({t_feat:.2f}s)"
    )
    label = "features"
    # k-NN on features, chosen by CV like the raw-pixel one
    ks = QUICK_KS if ctx.args.quick else DEMO_KS
    t0 = time.perf_counter()
    cv = cross_validate_knn(
        F_tr,
        ctx.y_train,
        ks,
        metrics=("l1", "l2"),
        n_folds=ctx.args.folds,
        progress=ctx.progress(),
    )
    import fastcls

    best = cv.best_params_
    clf = fastcls.KNearestNeighbor(k=best["k"], metric=best["metric"]).fit(F_tr, ctx.y_train)
    val_acc = clf.score(F_va, ctx.y_val)
    test_acc = clf.score(F_te, ctx.y_test)
    ctx.rows.append(
        Row(
            model=f"k-NN ({label})",
            params=f"metric={best['metric']}, k={best['k']}",
            val_acc=val_acc,
            test_acc=test_acc,
            seconds=time.perf_counter() - t0 + t_feat,
            selection=f"{ctx.args.folds}-fold CV {cv.best_score_:.4f}",
        )
    )
    ctx.log(f"-- k-NN on features: chosen metric={best['metric']} k={best['k']}")
    iters = QUICK_LINEAR_ITERS if ctx.args.quick else LINEAR_ITERS
    try:
        models = _linear_models()
    except ModuleNotFoundError as exc:
        ctx.notes.append(f"features: linear classifiers skipped (module {exc.name} missing)")
        return
    for name, cls in models.items():
        model = cls(n_iters=iters, batch_size=200, seed=ctx.args.seed)
        _search_and_test(ctx, name, model, (F_tr, F_va, F_te), label)


#: section name -> function; run in this order
SECTIONS: dict[str, Callable[[Context], None]] = {
    "knn": section_knn,
    "linear": section_linear,
    "features": section_features,
}


# --------------------------------------------------------------------------- output
def format_table(rows: Sequence[Row]) -> str:
    """Aligned plain-text table of the demo's results."""
    header = ("model", "chosen hyperparameters", "selected by", "val acc", "test acc", "time")
    body = [
        (
            r.model,
            r.params,
            r.selection,
            f"{r.val_acc:.4f}",
            f"{r.test_acc:.4f}",
            f"{r.seconds:.2f}s",
        )
        for r in rows
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body, strict=True)]
    right = (False, False, False, True, True, True)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)
        ).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep, *(line(b) for b in body)])


# --------------------------------------------------------------------------- main
def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastcls",
        description="fastcls: fast classical image classification on the CPU.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
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
        choices=("default", "cifar10"),
        default="default",
        help="dataset: the embedded digits (default) or CIFAR-10 (needs --path)",
    )
    demo.add_argument("--path", metavar="DIR", help="CIFAR-10 folder or archive (--data cifar10)")
    demo.add_argument(
        "--subsample",
        action="store_true",
        help=(
            "CIFAR-10: the lecture's subsample, 5000 training / 500 validation / 500 test "
            "images (default: 49000 / 1000 / the 10000 test images)"
        ),
    )
    demo.add_argument(
        "--out",
        metavar="DIR",
        default=os.path.join(".", "fastcls-demo"),
        help="output folder for plots and results.json (default ./fastcls-demo/)",
    )
    demo.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    demo.add_argument("--seed", type=int, default=0, help="seed of splits and searches")
    demo.add_argument("--jobs", type=int, default=None, help="threads (default: all cores)")
    demo.add_argument("--quick", action="store_true", help="a reduced run (tests, smoke checks)")
    demo.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=tuple(SECTIONS),
        help="skip a section (repeatable): knn, linear, features",
    )
    demo.add_argument("--no-plots", action="store_true", help="do not save plots")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.add_argument(
        "--json", action="store_true", help="print the results as JSON instead of the table"
    )
    return parser


def run_demo(args: argparse.Namespace) -> int:
    """Run every demo section; returns the exit code."""
    from fastcls._config import num_threads

    if args.folds < 2:
        raise DemoError(f"--folds must be at least 2, got {args.folds}")
    if args.jobs is not None and args.jobs < 1 and args.jobs != -1:
        raise DemoError(f"--jobs must be a positive integer or -1, got {args.jobs}")
    t_start = time.perf_counter()
    splits, image_shape, names, dataset = load_splits(args)
    X_tr, X_va, X_te, y_tr, y_va, y_te = splits
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as exc:
        raise DemoError(f"cannot create the output folder {args.out!r}: {exc}") from exc
    ctx = Context(
        args=args,
        X_train=X_tr,
        X_val=X_va,
        X_test=X_te,
        y_train=y_tr,
        y_val=y_va,
        y_test=y_te,
        image_shape=tuple(image_shape),
        class_names=tuple(names),
        dataset=dataset,
        out=args.out,
    )
    ctx.log(
        f"fastcls demo on {dataset}: {X_tr.shape[0]} train / {X_va.shape[0]} val / "
        f"{X_te.shape[0]} test images of shape {tuple(image_shape)}, {len(names)} classes"
    )
    skipped: dict[str, str] = {}
    with num_threads(args.jobs):
        for name, section in SECTIONS.items():
            if name in args.skip:
                continue
            try:
                section(ctx)
            except SectionSkipped as exc:
                skipped[name] = str(exc)
            except ModuleNotFoundError as exc:
                if not (exc.name or "").startswith(("fastcls", "matplotlib")):
                    raise
                skipped[name] = f"module {exc.name} is not available"
            if name in skipped:
                ctx.log(f"\n== {name}: skipped ({skipped[name]})")
    total = time.perf_counter() - t_start
    result = {
        "dataset": dataset,
        "sizes": {
            "train": int(X_tr.shape[0]),
            "val": int(X_va.shape[0]),
            "test": int(X_te.shape[0]),
        },
        "rows": [asdict(r) for r in ctx.rows],
        "skipped": skipped,
        "notes": ctx.notes,
        "plots": ctx.plots,
        "details": ctx.details,
        "total_seconds": total,
    }
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=2, default=float)
    if args.json:
        print(json.dumps(result, indent=2, default=float))
        return 0
    print(f"\n== Results ({dataset}; hyperparameters chosen without the test set, tested once)")
    print(format_table(ctx.rows))
    for note in ctx.notes:
        print(f"note: {note}")
    for name, why in skipped.items():
        print(f"skipped: {name} ({why})")
    if ctx.plots:
        print(f"plots: {', '.join(os.path.basename(p) for p in ctx.plots)} in {args.out}")
    print(f"total time {total:.1f}s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fastcls`` command; returns the exit code.

    Examples
    --------
    >>> main(["demo", "--quick", "--no-plots", "--out", "/tmp/fastcls-demo"])  # doctest: +SKIP
    0
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return run_demo(args)
    except DemoError as exc:
        print(f"fastcls demo: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastcls demo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
