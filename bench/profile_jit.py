"""Profile a fastcls call with Linux ``perf``, the JIT-compiled kernels named.

``perf`` sees numba's machine code as anonymous ``[JIT]`` addresses. This script compiles
the kernels of one workload in this process (numba's on-disk cache off, so the compiled
libraries keep the LLVM IR the function names are read from), writes ``/tmp/perf-<pid>.map``
(the file ``perf report`` reads JIT symbols from), then calls the workload in a loop while
``perf record`` samples this process (started by the script once the compilation is done)::

    python bench/profile_jit.py svm_loss --rows 256 --threads 1 --seconds 20 --perf /tmp/perf.data
    perf report -i /tmp/perf.data --sort sym

Without ``--perf`` it only loops (for a ``perf record -p <pid>`` of your own); it prints how
long one call took. Workloads: ``svm_loss`` / ``softmax_loss`` (float32, D=3073, C=10,
``W`` at the lecture's small scale) and ``knn_l2`` / ``knn_l1`` (uint8 rows, 3072 features,
``--rows`` queries against 10000 training rows, k=10). ``perf annotate`` cannot read JIT
code; the map names functions, which is what the sections of ``docs/performance.md`` used
(the kernels' tiles are inlined into the functions that call them).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

import numpy as np


def demangled(name: str) -> str:
    """``fastcls.kernels.losses._block_scores`` from numba's mangled symbol (the wrappers
    numba adds keep a ``cpython.`` / ``cfunc.`` prefix); other names are returned as they are."""
    prefix = ""
    if name.startswith("cfunc."):
        prefix, name = "cfunc.", name[len("cfunc.") :]
    if name.startswith("_ZN7cpython"):  # the wrapper's namespace, a first part
        prefix, name = prefix + "cpython.", "_ZN" + name[len("_ZN7cpython") :]
    if not name.startswith("_ZN"):
        return prefix + name
    parts, i = [], 3
    while i < len(name) and name[i].isdigit():
        j = i
        while j < len(name) and name[j].isdigit():
            j += 1
        size = int(name[i:j])
        parts.append(name[j : j + size])
        i = j + size
    # numba appends an ABI tag ("B<n>v<k>...") to the last part
    return prefix + ".".join(parts)


def compiled_functions() -> list[tuple[int, str]]:
    """``(address, name)`` of every function defined in the compiled libraries of the
    dispatchers of ``fastcls.kernels`` (callees inlined into them share their address range)."""
    import fastcls.kernels as package

    found: set[tuple[int, str]] = set()
    for module in list(sys.modules.values()):
        if not getattr(module, "__name__", "").startswith(package.__name__):
            continue
        for value in list(vars(module).values()):
            for cres in getattr(value, "overloads", {}).values():
                library = cres.library
                for chunk in library.get_llvm_str().split("\ndefine")[1:]:
                    symbol = chunk.split("@", 1)[1].split("(", 1)[0].strip('"')
                    try:
                        address = library.get_pointer_to_function(symbol)
                    except Exception:  # noqa: BLE001 - declarations, internal symbols
                        continue
                    if address:
                        found.add((address, symbol))
    return sorted(found)


def write_perf_map(path: str | None = None) -> str:
    """Write the perf map of :func:`compiled_functions` (each function up to the next one,
    at most 1 MiB); returns its path."""
    path = path or f"/tmp/perf-{os.getpid()}.map"
    functions = compiled_functions()
    with open(path, "w") as out:
        for n, (address, symbol) in enumerate(functions):
            end = functions[n + 1][0] if n + 1 < len(functions) else address + 65536
            size = min(max(end - address, 1), 1 << 20)
            out.write(f"{address:x} {size:x} {demangled(symbol)}\n")
    return path


def workload(name: str, rows: int):
    """A zero-argument callable running the named workload once."""
    import fastcls

    rng = np.random.default_rng(0)
    if name in ("svm_loss", "softmax_loss"):
        X = rng.standard_normal((rows, 3073)).astype(np.float32)
        y = rng.integers(0, 10, rows)
        W = (1e-3 * rng.standard_normal((3073, 10))).astype(np.float32)
        loss = getattr(fastcls, name)
        return lambda: loss(W, X, y, 1e-3)
    if name in ("knn_l2", "knn_l1"):
        X = rng.integers(0, 256, (10000, 3072), dtype=np.uint8)
        Q = rng.integers(0, 256, (rows, 3072), dtype=np.uint8)
        model = fastcls.KNearestNeighbor(k=10, metric=name[-2:]).fit(X, np.arange(10000) % 10)
        return lambda: model.kneighbors(Q)
    raise SystemExit(f"unknown workload {name!r}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", choices=["svm_loss", "softmax_loss", "knn_l2", "knn_l1"])
    parser.add_argument("--rows", type=int, default=256, help="rows (losses) or queries (k-NN)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the loop")
    parser.add_argument("--perf", metavar="FILE", help="record the loop with perf into FILE")
    args = parser.parse_args(argv)

    # before fastcls's kernels are imported (they read it when they are decorated): a
    # library loaded from numba's cache has no LLVM IR to read the names from
    os.environ["FASTCLS_NUMBA_CACHE"] = "0"
    import fastcls

    if args.threads:
        fastcls.set_num_threads(args.threads)
    call = workload(args.workload, args.rows)
    call()  # compiles
    path = write_perf_map()
    print(f"perf map: {path} (pid {os.getpid()})", flush=True)
    recorder = None
    if args.perf:
        command = ["perf", "record", "-q", "-p", str(os.getpid()), "-o", args.perf]
        recorder = subprocess.Popen(command)
        time.sleep(1.0)  # perf attaches to the running threads
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        call()
        calls += 1
    took = (time.perf_counter() - start) / calls
    if recorder is not None:
        recorder.send_signal(signal.SIGINT)
        recorder.wait()
        print(f"perf report -i {args.perf} --sort sym", flush=True)
    print(f"{calls} calls, {took * 1e3:.3f} ms each", flush=True)


if __name__ == "__main__":
    main()
