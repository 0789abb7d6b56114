"""Command line: ``fastcls demo`` (also ``python -m fastcls demo``).

The demo follows the lectures' protocol on the embedded digits (or CIFAR-10):
split train / val / test; choose k-NN's ``k`` and metric by 5-fold cross-validation
on the training part; choose the linear classifiers' learning rate and
regularisation on the validation part; evaluate every chosen model **once** on the
test part; print one table and save the plots.

This module parses the arguments, runs :func:`fastcls.pipeline.run_demo` and prints
what it returns; the steps themselves live in :mod:`fastcls.pipeline`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from fastcls.pipeline import SECTIONS, DemoConfig, DemoReport, ResultRow, load_demo_data, run_demo


class DemoError(Exception):
    """A problem with the demo's arguments or data (reported without a traceback)."""


# --------------------------------------------------------------------------- output
def format_table(rows: Sequence[ResultRow]) -> str:
    """Aligned plain-text table of the demo's results.

    ``time`` is each model's own time (search, fit, test); ``compile`` is the numba
    compilation it paid on first use of a kernel on this machine (``-``: none, the
    kernels came from the on-disk cache).
    """
    header = (
        "model", "chosen hyperparameters", "selected by", "val acc", "test acc", "time", "compile"
    )
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


def _log(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------- main
def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastcls",
        description="fastcls: fast classical image classification on the CPU.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
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
    warm.add_argument("--json", action="store_true", help="print the timings as JSON")
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
        choices=SECTIONS,
        help="skip a section (repeatable): knn, linear, features",
    )
    demo.add_argument("--no-plots", action="store_true", help="do not save plots")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.add_argument(
        "--json", action="store_true", help="print the results as JSON instead of the table"
    )
    return parser


def demo_config(args: argparse.Namespace) -> DemoConfig:
    """The :class:`~fastcls.pipeline.DemoConfig` of parsed ``fastcls demo`` arguments.

    Raises :class:`DemoError` naming the option for values the pipeline would refuse.
    """
    if args.folds < 2:
        raise DemoError(f"--folds must be at least 2, got {args.folds}")
    if args.jobs is not None and args.jobs < 1 and args.jobs != -1:
        raise DemoError(f"--jobs must be a positive integer or -1, got {args.jobs}")
    if args.data == "cifar10" and args.path is None:
        raise DemoError("--data cifar10 needs --path DIR (the CIFAR-10 folder or archive)")
    return DemoConfig(
        data=args.data,
        path=args.path,
        subsample=args.subsample,
        quick=args.quick,
        folds=args.folds,
        seed=args.seed,
        n_jobs=args.jobs,
        sections=tuple(s for s in SECTIONS if s not in args.skip),
        plot_dir=None if args.no_plots else args.out,
        progress=False if args.no_progress else None,
    )


def demo(args: argparse.Namespace) -> int:
    """``fastcls demo``: run the pipeline, write results.json, print; the exit code."""
    config = demo_config(args)
    try:
        data = load_demo_data(config)
    except (OSError, ValueError) as exc:
        if config.data != "cifar10":
            raise
        raise DemoError(f"could not load CIFAR-10 from {args.path!r}: {exc}") from exc
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as exc:
        raise DemoError(f"cannot create the output folder {args.out!r}: {exc}") from exc
    if config.plot_dir is not None:  # files only, no window (before matplotlib loads)
        os.environ.setdefault("MPLBACKEND", "Agg")
    report = run_demo(config, data=data, log=None if args.json else _log)
    result = report.to_dict()
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=2, default=float)
    if args.json:
        print(json.dumps(result, indent=2, default=float))
    else:
        print_report(report, args.out)
    return 0


def warmup(args: argparse.Namespace) -> int:
    """``fastcls warmup``: compile (or load) the kernels, one progress line per group."""
    from fastcls.precompile import GROUPS
    from fastcls.precompile import warmup as run_warmup

    unknown = sorted(set(args.groups) - set(GROUPS))
    if unknown:
        raise DemoError(f"unknown kernel group(s) {unknown}; groups are {list(GROUPS)}")
    report = run_warmup(args.groups or None, progress=not args.json, stream=sys.stderr)
    if args.json:
        data = {name: {"seconds": t.seconds, "compile_seconds": t.compile_seconds}
                for name, t in report.items()}
        print(json.dumps(data, indent=2))
    else:
        total = sum(t.seconds for t in report.values())
        print(f"kernels ready in {total:.1f}s (cached on disk for later runs)")
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
        if args.command == "warmup":
            return warmup(args)
        return demo(args)
    except DemoError as exc:
        print(f"fastcls {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastcls demo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
