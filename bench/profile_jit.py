"""Profile a fastcls call with Linux ``perf``, the JIT-compiled kernels named.

``perf`` sees numba's machine code as anonymous ``[JIT]`` addresses. This script compiles
the kernels of one workload in this process (numba's on-disk cache off, so the compiled
libraries keep the LLVM IR the function names are read from), writes ``/tmp/perf-<pid>.map``
(the file ``perf report`` reads JIT symbols from), then calls the workload in a loop while
``perf record`` samples this process (started by the script once the compilation is done)::

    python bench/profile_jit.py svm_loss --rows 256 --threads 1 --seconds 20 --perf /tmp/perf.data
    perf report -i /tmp/perf.data --sort sym

With ``--annotate N`` (and ``--perf``) it also prints the N hottest functions disassembled,
each instruction with its share of the function's samples (:func:`annotated`): where in
a tile the time goes (the loads of rows still in memory, the spills, the reductions).

Without ``--perf`` it only loops (for a ``perf record -p <pid>`` of your own); it prints how
long one call took. Workloads: ``svm_loss`` / ``softmax_loss`` (float32, D=3073, C=10,
``W`` at the lecture's small scale) and ``knn_l2`` / ``knn_l1`` (uint8 rows, 3072 features,
``--rows`` queries against 10000 training rows, k=10). ``perf annotate`` cannot read JIT
code; the map names functions (the kernels' tiles are inlined into the functions that
call them), and ``--annotate`` reads the code from this process instead.
"""

from __future__ import annotations

import argparse
import bisect
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable

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


def sampled_addresses(perf_data: str) -> Counter[int]:
    """How many samples of ``perf_data`` (a ``perf record`` file) fell at each address."""
    script = subprocess.run(
        ["perf", "script", "-i", perf_data, "-F", "ip"], capture_output=True, text=True, check=True
    )
    return Counter(int(word, 16) for word in script.stdout.split())


def read_perf_map(perf_map: str) -> list[tuple[int, int, str]]:
    """``(address, size, name)`` of every line of a perf map."""
    functions = []
    with open(perf_map) as lines:
        for line in lines:
            address, size, name = line.split(" ", 2)
            functions.append((int(address, 16), int(size, 16), name.strip()))
    return functions


def annotated(
    hits: Counter[int],
    functions: list[tuple[int, int, str]],
    top: int,
    code_of: Callable[[int, int], bytes] = ctypes.string_at,
) -> str:
    """The ``top`` functions with the most samples, each disassembled with the share of
    its samples at each instruction: what ``perf annotate`` does for code it can read
    from a file, for numba's JIT code (``code_of(address, size)``: the machine code, read
    from this process's memory by default; x86-64 only, through ``objdump``).

    ``hits``: samples per address (:func:`sampled_addresses`); ``functions``: ``(address,
    size, name)``, not overlapping (:func:`read_perf_map`). Every instruction is listed,
    sampled or not: a loop's shape matters as much as its hot spots. Timer samples land
    on the instruction after the one that was waiting (skid): a load that misses shows as
    the instruction after it.
    """
    total = sum(hits.values()) or 1
    functions = sorted(functions)
    starts = [address for address, _, _ in functions]
    inside: list[dict[int, int]] = [{} for _ in functions]
    for ip, n in hits.items():  # each address to the function starting last before it
        k = bisect.bisect_right(starts, ip) - 1
        if k >= 0 and ip < starts[k] + functions[k][1]:
            inside[k][ip] = n
    owned = [
        (sum(own.values()), address, size, name, own)
        for (address, size, name), own in zip(functions, inside, strict=True)
    ]
    owned.sort(key=lambda item: item[0], reverse=True)
    out = []
    for count, address, size, name, own in owned[:top]:
        out.append(f"== {name}: {100 * count / total:.1f}% of all samples ==")
        with tempfile.NamedTemporaryFile(suffix=".bin") as code:
            code.write(code_of(address, size))
            code.flush()
            listing = subprocess.run(
                ["objdump", "-D", "-b", "binary", "-mi386:x86-64", "--no-show-raw-insn",
                 f"--adjust-vma={address:#x}", code.name],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
        for line in listing.splitlines():
            head = line.split(":", 1)[0].strip()
            try:
                ip = int(head, 16)
            except ValueError:  # objdump's headers
                continue
            out.append(f"{100 * own.get(ip, 0) / max(count, 1):6.2f}  {line.strip()}")
    return "\n".join(out)


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
    parser.add_argument(
        "--annotate",
        type=int,
        default=0,
        metavar="N",
        help="with --perf: the N hottest JIT functions' instructions with their samples",
    )
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
        if args.annotate:
            hits = sampled_addresses(args.perf)
            print(annotated(hits, read_perf_map(path), args.annotate), flush=True)
    print(f"{calls} calls, {took * 1e3:.3f} ms each", flush=True)


if __name__ == "__main__":
    main()
