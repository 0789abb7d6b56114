"""Memory of exact k-NN searches: peak and retained memory above the inputs, per path.

Each case runs in a fresh subprocess (so no case sees another's buffers or numba's
compiled code), which:

1. creates its inputs (queries and training rows; a read-only ``np.memmap`` is read
   once through ``os.read`` so its file is in the page cache but not mapped) and
   touches every page, then compiles the kernels on a tiny search of the same dtype
   and metric, so compilation is not counted;
2. records the baseline (``RssAnon`` / ``RssFile`` of ``/proc/self/status``) and
   resets ``VmHWM`` (``/proc/self/clear_refs``);
3. runs the call(s) of the case while the parent process samples the child's
   ``RssAnon`` and ``RssFile`` every millisecond (the child's threads cannot delay the
   sampling), and records each phase's peaks above the baseline;
4. reports what stays allocated after the call: ``RssAnon`` above the baseline after
   ``gc.collect()``, and the bytes held in fastcls's scratch registry
   (:func:`fastcls._runtime.scratch_bytes`).

Anonymous memory (``RssAnon`` + ``RssShmem``) is what the process allocated;
file-backed memory is the pages of a memory-mapped training set mapped into the
process (page cache that the kernel can drop; fastcls releases each tile's pages once
searched). Both are reported.

Cases (k = 10, 2000 queries x 50000 x 3072 rows; ``--small``: 200 x 5000 x 3072):
``l2-f32-kneighbors`` / ``l2-f32-predict`` (non-integer float32, the sgemm path;
one-shot :func:`fastcls.kneighbors` and a fitted :class:`KNearestNeighbor`, whose
``fit`` and ``predict`` are separate phases), ``l2-u8``, ``l2-u8-memmap``,
``l2-f64``, ``l2-f32-pixels-kneighbors`` / ``l2-f32-pixels-predict`` (float32 holding
whole numbers 0..255: the exact integer path), ``l1-u8``, ``l1-f32``,
``l1-u8-memmap``; ``l2-u8-fashion-mnist`` / ``l1-u8-fashion-mnist``: the Fashion-MNIST
test set against its training set (10000 x 60000 x 784 uint8, whatever the size option;
the pruned drivers, with the reordered copies and L2's slab stage; needs the Debian files,
see ``bench/bench_knn_l2.py``).

Run (big cases one at a time; the lock keeps them away from other benchmarks)::

    flock /tmp/fastcls-bench.lock python bench/memory_knn.py
    python bench/memory_knn.py --small --cases l2-f32-predict,l2-u8-memmap
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from typing import Any

MB = 1e6
CASES = (
    "l2-f32-kneighbors",
    "l2-f32-predict",
    "l2-u8",
    "l2-u8-memmap",
    "l2-f64",
    "l2-f32-pixels-kneighbors",
    "l2-f32-pixels-predict",
    "l1-u8",
    "l1-f32",
    "l1-u8-memmap",
    "l2-u8-fashion-mnist",
    "l1-u8-fashion-mnist",
)
SIZES = {"big": (2000, 50000, 3072), "small": (200, 5000, 3072)}


def read_status(pid: int | str = "self") -> dict[str, int]:
    """``VmRSS``, ``VmHWM``, ``RssAnon``, ``RssFile`` (bytes) of a process."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(rest.split()[0]) * 1024
    return out


# --------------------------------------------------------------------------- child
def _send(msg: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def _wait_ack() -> None:
    sys.stdin.readline()


def _inputs(case: str, nq: int, nx: int, d: int, tmpdir: str) -> tuple[Any, Any, Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, nx)
    if case.endswith("fashion-mnist"):
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from bench_knn_l2 import fashion_mnist_path

        from fastcls.datasets import load_mnist

        path = fashion_mnist_path()
        if path is None:
            raise SystemExit("Fashion-MNIST files not found (see bench/bench_knn_l2.py)")
        X, y, Q, _ = load_mnist(path, n_train=60000, n_test=10000)
        return Q.reshape(len(Q), -1), X.reshape(len(X), -1), y
    if "u8" in case or "pixels" in case:
        Q = rng.integers(0, 256, (nq, d), dtype=np.uint8)
        if case.endswith("memmap"):
            path = os.path.join(tmpdir, f"X_{nx}x{d}.u8")
            if not os.path.exists(path) or os.path.getsize(path) != nx * d:
                with open(path + ".tmp", "wb") as f:
                    for s in range(0, nx, 4096):
                        f.write(rng.integers(0, 256, (min(nx, s + 4096) - s, d), dtype=np.uint8))
                os.replace(path + ".tmp", path)
            with open(path, "rb") as f:  # into the page cache, not into this process
                while f.read(1 << 24):
                    pass
            X = np.memmap(path, dtype=np.uint8, mode="r", shape=(nx, d))
        else:
            X = rng.integers(0, 256, (nx, d), dtype=np.uint8)
        if "pixels" in case:
            Q, X = Q.astype(np.float32), X.astype(np.float32)
        return Q, X, y
    dt = np.float64 if "f64" in case else np.float32
    # pixels plus a random fraction: not whole numbers, so the float path is taken
    Q = rng.integers(0, 256, (nq, d)).astype(dt) + rng.random((nq, d), dtype=np.float32)
    X = np.empty((nx, d), dtype=dt)
    for s in range(0, nx, 4096):
        e = min(nx, s + 4096)
        X[s:e] = rng.integers(0, 256, (e - s, d)) + rng.random((e - s, d), dtype=np.float32)
    return Q, X, y


def child(case: str, nq: int, nx: int, d: int, k: int, tmpdir: str) -> None:
    import gc

    import numpy as np

    import fastcls
    from fastcls import _runtime
    from fastcls._config import override

    metric = "l1" if case.startswith("l1") else "l2"
    Q, X, y = _inputs(case, nq, nx, d, tmpdir)
    # warm-up on small arrays of the same dtypes (compiles every kernel of the path)
    small_q, small_x = np.ascontiguousarray(Q[:64]), np.ascontiguousarray(X[:3000])
    fastcls.kneighbors(small_q, small_x, k=k, metric=metric)
    fastcls.KNearestNeighbor(k=k, metric=metric).fit(small_x, y[:3000]).predict(small_q)
    with override(knn_prune="always"):  # the pruned drivers' kernels too
        fastcls.kneighbors(small_q, small_x, k=k, metric=metric)
    del small_q, small_x
    _runtime.release_scratch()
    gc.collect()
    base = read_status()
    inputs = Q.nbytes + (0 if isinstance(X, np.memmap) else X.nbytes)
    _send({"event": "base", "inputs": inputs, **base})
    _wait_ack()
    results: dict[str, Any] = {}

    def phase(name: str, fn: Any) -> Any:
        with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current RSS
            f.write("5")
        _send({"event": "begin", "phase": name})
        _wait_ack()
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        hwm = read_status()["VmHWM"]
        _send({"event": "end", "phase": name})
        _wait_ack()
        results[name] = {"seconds": dt, "hwm_above": hwm - base["VmRSS"]}
        return out

    if case.endswith("predict"):
        model = fastcls.KNearestNeighbor(k=k, metric=metric)
        phase("fit", lambda: model.fit(X, y))
        phase("predict", lambda: model.predict(Q))
    else:
        phase("search", lambda: fastcls.kneighbors(Q, X, k=k, metric=metric))
    gc.collect()
    after = read_status()
    after["RssAnon"] += after.get("RssShmem", 0) - base.get("RssShmem", 0)
    scratch = _runtime.scratch_bytes() if hasattr(_runtime, "scratch_bytes") else None
    _send(
        {
            "event": "done",
            "phases": results,
            "retained_anon": after["RssAnon"] - base["RssAnon"],
            "scratch_bytes": scratch,
        }
    )


# --------------------------------------------------------------------------- parent
def run_case(case: str, size: str, k: int, tmpdir: str, env: dict[str, str]) -> dict[str, Any]:
    """Run one case in a fresh subprocess, sampling its memory every millisecond."""
    nq, nx, d = SIZES[size]
    cmd = [sys.executable, __file__, "--child", case, "--shape", f"{nq},{nx},{d}"]
    cmd += ["--k", str(k), "--tmpdir", tmpdir]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    base: dict[str, Any] = {}
    phases: dict[str, dict[str, float]] = {}
    current: str | None = None
    peak = {"RssAnon": 0, "RssFile": 0}
    final: dict[str, Any] = {}

    def ack() -> None:
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.flush()

    while True:
        ready, _, _ = select.select([proc.stdout], [], [], 0.001)
        if current is not None:
            try:
                st = read_status(proc.pid)
            except (FileNotFoundError, ProcessLookupError):
                break
            st["RssAnon"] += st.get("RssShmem", 0)  # a shared anonymous map is allocated too
            for key in peak:
                peak[key] = max(peak[key], st[key])
        if not ready:
            if proc.poll() is not None:
                break
            continue
        line = proc.stdout.readline()
        if not line:
            break
        msg = json.loads(line)
        if msg["event"] == "base":
            base = msg
            base["RssAnon"] += base.get("RssShmem", 0)
        elif msg["event"] == "begin":
            current = msg["phase"]
            peak = {"RssAnon": base["RssAnon"], "RssFile": base["RssFile"]}
        elif msg["event"] == "end":
            phases[str(current)] = {
                "peak_anon": peak["RssAnon"] - base["RssAnon"],
                "peak_file": peak["RssFile"] - base["RssFile"],
            }
            current = None
        elif msg["event"] == "done":
            final = msg
        if msg["event"] != "done":
            ack()
    proc.wait()
    if proc.returncode != 0 or not final:
        raise RuntimeError(f"case {case} failed (exit status {proc.returncode})")
    for name, info in final["phases"].items():
        phases[name].update(info)
    return {
        "case": case,
        "shape": f"{nq}x{nx}x{d}",
        "inputs": base["inputs"],
        "phases": phases,
        "retained_anon": final["retained_anon"],
        "scratch_bytes": final["scratch_bytes"],
    }


def report(rows: list[dict[str, Any]]) -> str:
    """A Markdown table: one line per phase of each case, in MB (10^6 bytes)."""
    out = [
        "| case | phase | inputs MB | peak anon above inputs MB | peak file-backed MB "
        "| VmHWM above MB | retained anon MB | scratch kept MB | time s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        for name, p in r["phases"].items():
            scratch = "-" if r["scratch_bytes"] is None else f"{r['scratch_bytes'] / MB:.1f}"
            out.append(
                f"| {r['case']} | {name} | {r['inputs'] / MB:.0f} | {p['peak_anon'] / MB:.1f} "
                f"| {p['peak_file'] / MB:.1f} | {p['hwm_above'] / MB:.1f} "
                f"| {r['retained_anon'] / MB:.1f} | {scratch} | {p['seconds']:.2f} |"
            )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="200 x 5000 x 3072 (a smoke test)")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="NUMBA_NUM_THREADS (0: default)")
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("--tmpdir", default=os.path.join(tempfile.gettempdir(), "fastcls-memory"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--shape", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        nq, nx, d = (int(s) for s in args.shape.split(","))
        child(args.child, nq, nx, d, args.k, args.tmpdir)
        return
    os.makedirs(args.tmpdir, exist_ok=True)
    env = dict(os.environ)
    if args.threads:
        env["NUMBA_NUM_THREADS"] = str(args.threads)
    rows = []
    for case in args.cases.split(","):
        if case not in CASES:
            raise SystemExit(f"unknown case {case!r}; cases: {', '.join(CASES)}")
        rows.append(run_case(case, "small" if args.small else "big", args.k, args.tmpdir, env))
        print(report(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(report(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
