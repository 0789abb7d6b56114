"""First-call compile time of the k-NN kernels: cold, and warm from numba's cache.

Each measurement runs in a fresh interpreter. Usage::

    python bench/compile_time.py            # prints a markdown table

"cold": ``FASTCLS_NUMBA_CACHE`` unset, every kernel compiled in the process.
"cache, first run": cache enabled and empty (compiles and writes the cache).
"cache, warm": cache enabled and populated (loads machine code from disk).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
import fastcls
t_import = time.perf_counter() - t0
rng = np.random.default_rng(0)
out = {"import_s": t_import}
for dtype in ("uint8", "float32"):
    X = rng.integers(0, 256, (64, 48)).astype(dtype)
    for metric in ("l1", "l2"):
        t = time.perf_counter()
        fastcls.kneighbors(X[:4], X, 3, metric)
        out[f"{metric}-{dtype}_s"] = time.perf_counter() - t
t = time.perf_counter()
fastcls.KNearestNeighbor(k=3).fit(X, np.arange(64) % 3).predict(X[:4])
out["classifier_s"] = time.perf_counter() - t
print(json.dumps(out))
"""


def run(env: dict[str, str]) -> dict[str, float]:
    res = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    import fastcls

    pkg = Path(fastcls.__file__).parent
    cache_dir = Path(tempfile.mkdtemp(prefix="fastcls-numba-cache-"))
    base = {k: v for k, v in os.environ.items() if k != "FASTCLS_NUMBA_CACHE"}
    cached = dict(base, FASTCLS_NUMBA_CACHE="1", NUMBA_CACHE_DIR=str(cache_dir))
    try:
        rows = {
            "cold (no cache)": run(base),
            "cache, first run": run(cached),
            "cache, warm": run(cached),
        }
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    keys = list(next(iter(rows.values())))
    print(f"fastcls at {pkg}, python {sys.version.split()[0]}")
    print("| run | " + " | ".join(k.removesuffix("_s") for k in keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, r in rows.items():
        print(f"| {name} | " + " | ".join(f"{r[k]:.2f} s" for k in keys) + " |")


if __name__ == "__main__":
    main()
