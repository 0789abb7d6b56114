"""Start-up cost as a user meets it: import, the README tour, the demo, each kernel group.

Every measurement runs in a fresh interpreter, so "cold" (an empty numba cache: every
kernel compiles) and "warm" (the cache written by the cold run) are what a user's first
and second runs see. Usage::

    python bench/compile_time.py            # markdown tables with the targets
    python bench/compile_time.py --json     # the raw figures

Targets (issue "The first answer in seconds", 2-core machine class): README tour cold
<= 8 s and warm <= 1 s, import included; ``fastcls demo`` warm <= 5 s and cold <= 25 s;
``import fastcls`` < 0.2 s and compiling nothing. They are reported, not asserted:
this is a benchmark, not a test (shared machines are noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMPORT = r"""
import sys, time, json
t0 = time.perf_counter()
import fastcls
t = time.perf_counter() - t0
print(json.dumps({"import_s": t, "numba_loaded": "numba" in sys.modules}))
"""

TOUR = r"""
import numpy as np
import fastcls
from fastcls.datasets import load_default

data = load_default()
X, y = data.images, data.labels
clf = fastcls.KNearestNeighbor(k=3, metric="l1").fit(X[:1500], y[:1500])
print(clf.score(X[1500:], y[1500:]))
dist, idx = fastcls.kneighbors(X[1500:], X[:1500], k=5, metric="l2")
D = fastcls.pairwise_distances(X[:10], X[:20], metric="l1")
with fastcls.num_threads(1):
    clf.predict(X[1500:])
print(fastcls.LinearSVM(seed=0).fit(X[:1500], y[:1500]).score(X[1500:], y[1500:]))
"""


def timed(cmd: list[str], env: dict[str, str], cwd: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, res.stdout


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def measure(repeats: int = 3) -> dict[str, object]:
    from fastcls._runtime import best_simd

    work = tempfile.mkdtemp(prefix="fastcls-compile-time-")
    cache = os.path.join(work, "numba-cache")
    env = {k: v for k, v in os.environ.items() if k not in ("FASTCLS_NUMBA_CACHE",)}
    env["NUMBA_CACHE_DIR"] = cache
    py = sys.executable
    out: dict[str, object] = {
        "cpu": cpu_model(),
        "simd": best_simd()[0],
        "threads": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        imports = [json.loads(timed([py, "-c", IMPORT], env, work)[1]) for _ in range(5)]
        out["import_s"] = statistics.median(r["import_s"] for r in imports)
        out["import_loads_numba"] = any(r["numba_loaded"] for r in imports)

        shutil.rmtree(cache, ignore_errors=True)
        out["tour_cold_s"] = timed([py, "-c", TOUR], env, work)[0]
        out["tour_warm_s"] = statistics.median(
            timed([py, "-c", TOUR], env, work)[0] for _ in range(repeats)
        )

        demo = [py, "-m", "fastcls", "demo", "--no-plots", "--no-progress", "--out", work]
        shutil.rmtree(cache, ignore_errors=True)
        out["demo_cold_s"] = timed(demo, env, work)[0]
        out["demo_warm_s"] = statistics.median(timed(demo, env, work)[0] for _ in range(repeats))

        warm_cmd = [py, "-m", "fastcls", "warmup", "--json"]
        shutil.rmtree(cache, ignore_errors=True)
        # `fastcls warmup --json` nests the groups under "groups"
        cold_groups = json.loads(timed(warm_cmd, env, work)[1])["groups"]
        warm_groups = json.loads(timed(warm_cmd, env, work)[1])["groups"]
        out["groups"] = {
            name: {"cold_s": cold_groups[name]["seconds"], "warm_s": warm_groups[name]["seconds"]}
            for name in cold_groups
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def report(r: dict) -> str:
    def row(name: str, value: float, target: str, ok: bool) -> str:
        return f"| {name} | {value:.2f} s | {target} | {'met' if ok else 'missed'} |"

    lines = [
        f"CPU: {r['cpu']} ({r['simd']} kernels), {r['threads']} threads, "
        f"Python {r['python']}",
        "",
        "| measurement (fresh process) | median | target | |",
        "|---|---:|---|---|",
        row("`import fastcls`", r["import_s"], "< 0.2 s, compiles nothing",
            r["import_s"] < 0.2 and not r["import_loads_numba"]),
        row("README tour, cold cache", r["tour_cold_s"], "<= 8 s", r["tour_cold_s"] <= 8),
        row("README tour, warm cache", r["tour_warm_s"], "<= 1 s", r["tour_warm_s"] <= 1),
        row("`fastcls demo`, cold cache", r["demo_cold_s"], "<= 25 s", r["demo_cold_s"] <= 25),
        row("`fastcls demo`, warm cache", r["demo_warm_s"], "<= 5 s", r["demo_warm_s"] <= 5),
        "",
        "| kernel group (`fastcls warmup`) | cold | warm |",
        "|---|---:|---:|",
    ]  # fmt: skip
    for name, g in r["groups"].items():
        lines.append(f"| {name} | {g['cold_s']:.2f} s | {g['warm_s']:.2f} s |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    r = measure(args.repeats)
    print(json.dumps(r, indent=2) if args.json else report(r))


if __name__ == "__main__":
    main()
