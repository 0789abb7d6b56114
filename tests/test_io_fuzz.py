"""Fuzz of ``fastcls.load``: corrupted, truncated, edited and resealed model files.

Each mutated file is loaded in a subprocess (workers load many files each and report
one JSON line per file; a line announces each file first, so a worker that dies names
the file that killed it, and a new worker carries on with the rest). The contract:

* a file damaged *without* a new digest (byte flips, truncations, metadata edits,
  swapped arrays) either loads a model whose answers equal the original's bit for bit
  (a flip in a byte nothing reads) or raises :class:`fastcls.ModelFileError`;
* a file edited *and resealed* (its digest recomputed, as a deliberate forger would)
  either raises ``ModelFileError`` or loads a model that answers without error;
* nothing else: no other exception, no crash (signal), no hang.

The default run makes about 1300 files (~20-40 s); ``-m slow`` runs ten times more.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastcls
from fastcls import io as fio

WORKER = textwrap.dedent(
    r"""
    import hashlib, json, sys
    import numpy as np
    import fastcls

    def outputs(model, Q):
        if isinstance(model, fastcls.KNearestNeighbor):
            dist, idx = model.kneighbors(Q)
            return [model.predict(Q), model.predict_proba(Q), dist, idx]
        if isinstance(model, fastcls.FeatureScaler):
            return [model.transform(Q), model.inverse_transform(Q)]
        return [model.predict(Q), model.decision_function(Q), model.predict_proba(Q)]

    def digest(model, Q):
        h = hashlib.sha256(type(model).__name__.encode())
        for a in outputs(model, Q):
            h.update(f"{a.dtype.str}{a.shape}".encode())
            if a.dtype.kind == "O":
                h.update(repr([(type(v).__name__, v) for v in a.tolist()]).encode())
            else:
                h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    queries = np.load(sys.argv[2])
    for line in open(sys.argv[1]):
        job = json.loads(line)
        print(json.dumps({"start": job["file"]}), flush=True)
        out = {"file": job["file"]}
        try:
            model = fastcls.load(job["file"])
        except fastcls.ModelFileError as exc:
            out.update(outcome="refused", field=exc.field)
        except BaseException as exc:
            out.update(outcome="other", error=f"{type(exc).__name__}: {exc}"[:400])
        else:
            try:
                out.update(outcome="loaded", digest=digest(model, queries[job["queries"]]))
            except BaseException as exc:
                out.update(outcome="predict-failed", error=f"{type(exc).__name__}: {exc}"[:400])
        print(json.dumps(out), flush=True)
    """
)


def _run_worker(jobs: list[dict], folder: str, tag: str, timeout: float) -> dict[str, dict]:
    """Outcome of every job; a worker that dies or hangs is replaced, the file it was
    reading recorded as ``crashed`` / ``hung``."""
    results: dict[str, dict] = {}
    todo = list(jobs)
    round_no = 0
    while todo:
        round_no += 1
        jobs_path = os.path.join(folder, f"jobs-{tag}-{round_no}.jsonl")
        with open(jobs_path, "w") as f:
            f.writelines(json.dumps(j) + "\n" for j in todo)
        cmd = [sys.executable, os.path.join(folder, "worker.py"), jobs_path]
        cmd.append(os.path.join(folder, "queries.npz"))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            stdout, rc, hung = proc.stdout, proc.returncode, False
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout or b""
            stdout = out.decode() if isinstance(out, bytes) else out
            rc, hung = None, True
        started = None
        for line in stdout.splitlines():
            rec = json.loads(line)
            if "start" in rec:
                started = rec["start"]
            else:
                results[rec["file"]] = rec
                started = None
        if started is not None:  # the worker died (or hung) inside this file
            results[started] = {"file": started, "outcome": "hung" if hung else "crashed", "rc": rc}
        elif rc != 0 and not hung and len(results) < len(jobs):
            raise AssertionError(f"worker failed before its first file: {proc.stderr[-2000:]}")
        todo = [j for j in todo if j["file"] not in results]
    return results


# --------------------------------------------------------------------------- models
def _base_models() -> list[tuple[str, object, bool, str]]:
    """(name, fitted model, compress, queries key): small, so flips hit every region."""
    rng = np.random.default_rng(7)
    X8 = rng.integers(0, 256, (40, 6)).astype(np.uint8)
    X8[3] = X8[4]
    Xf = rng.normal(size=(40, 6))
    models = [
        (
            "knn-numba",
            fastcls.KNearestNeighbor(k=3, metric="l1").fit(
                X8, np.array(["ant", "bee", "cat"])[np.arange(40) % 3]
            ),
            False,
            "u8",
        ),
        (
            "knn-numpy",
            fastcls.KNearestNeighbor(k=4, weights="distance", backend="numpy").fit(
                Xf, np.arange(40) % 4 - 2
            ),
            True,
            "f8",
        ),
        (
            "svm",
            fastcls.LinearSVM(n_iters=5, seed=0).fit(
                Xf.astype(np.float32), np.array([b"x", b"yy", b"\xff"])[np.arange(40) % 3]
            ),
            False,
            "f8",
        ),
        ("softmax", fastcls.Softmax(n_iters=5, seed=1).fit(Xf, np.arange(40) % 2 == 0), True, "f8"),
        ("scaler", fastcls.FeatureScaler().fit(Xf), False, "f8"),
    ]
    try:
        import faiss  # noqa: F401
    except ImportError:
        return models
    y = np.arange(40) % 2
    models.append(
        ("knn-faiss", fastcls.KNearestNeighbor(k=3, backend="faiss").fit(X8, y), False, "u8")
    )
    models.append(
        (
            "knn-hnsw",
            fastcls.KNearestNeighbor(k=3, backend="faiss", index="HNSW4").fit(Xf, y),
            False,
            "f8",
        )
    )
    return models


def _parts(path: str) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    return json.loads(str(arrays.pop("metadata")[()])), arrays


def _write(path: str, meta: dict, arrays: dict, *, compress: bool, reseal: bool) -> None:
    meta = copy.deepcopy(meta)
    if reseal:
        try:
            meta["digest"] = fio.content_digest(meta, arrays)
        except (TypeError, ValueError):
            pass  # metadata JSON cannot encode (e.g. a huge value): keep the old digest
    writer = np.savez_compressed if compress else np.savez
    with open(path, "wb") as f:
        writer(f, metadata=np.array(json.dumps(meta)), **arrays)


# --------------------------------------------------------------------------- mutations
JSON_VALUES = [None, True, False, 0, 1, -1, 7, 2**31, 2**64, 10**30, 1e308, -0.5, 0.25, "", "x"]
JSON_VALUES += ["l1", "numba", "faiss", "Flat", "bytes", "<U3", "|S2", [], {}, [1], ["fit_X"]]
JSON_VALUES += [{"numpy_generator": {}}, [[[]]]]
DTYPES = ["u1", "i1", "i2", "i4", "i8", "u8", "f2", "f4", "f8", "?", "U3", ">f8", ">i8"]


def _json_paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _json_paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _json_paths(v, (*prefix, i))


def _edit_json(meta: dict, rng: np.random.Generator) -> dict:
    meta = copy.deepcopy(meta)
    paths = [p for p in _json_paths(meta) if p and p[0] != "digest"]
    path = paths[rng.integers(len(paths))]
    parent = meta
    for key in path[:-1]:
        parent = parent[key]
    action = rng.integers(6)
    if action == 0 and isinstance(parent, dict):
        del parent[path[-1]]
    elif action == 1 and isinstance(parent, dict):
        parent["extra"] = 1
    elif action == 2 and isinstance(parent[path[-1]], bool):
        parent[path[-1]] = not parent[path[-1]]
    elif action == 2 and isinstance(parent[path[-1]], int):
        parent[path[-1]] += int(rng.choice([-1, 1, 2**32]))
    elif action == 3 and isinstance(parent[path[-1]], str):
        parent[path[-1]] += "x"
    else:
        parent[path[-1]] = copy.deepcopy(JSON_VALUES[rng.integers(len(JSON_VALUES))])
    return meta


def _edit_array(arr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    kind = rng.integers(5)
    try:
        if kind == 0:
            return arr.astype(DTYPES[rng.integers(len(DTYPES))])
        if kind == 1:
            return arr.reshape(-1)[: max(0, arr.size - 1)]
        if kind == 2:
            return arr.reshape(1, -1) if arr.ndim == 1 else arr.T.copy()
        if kind == 3 and arr.size and arr.dtype.kind in "iuf":
            out = arr.copy()
            flat = out.reshape(-1)
            value = [-1, 2**31 - 1, np.nan, np.inf, 1e200, 0][rng.integers(6)]
            with np.errstate(all="ignore"):
                flat[rng.integers(flat.size)] = np.array(value).astype(out.dtype)
            return out
        return np.concatenate([arr.reshape(-1), arr.reshape(-1)[:1]])
    except (ValueError, TypeError, OverflowError):
        return np.zeros(3, dtype=arr.dtype)


def _mutations(raw: bytes, meta, arrays, compress, rng, scale):
    """(kind, sealed, content or None, write-function) for one base file."""
    n = len(raw)
    for _ in range(70 * scale):  # bit flips anywhere (the zip headers, npy headers, data)
        data = bytearray(raw)
        for _ in range(rng.integers(1, 4)):
            data[rng.integers(n)] ^= 1 << int(rng.integers(8))
        yield "flip", False, bytes(data)
    for _ in range(15 * scale):
        yield "truncate", False, raw[: int(rng.integers(n))]
    for _ in range(25 * scale):
        edited = _edit_json(meta, rng)
        yield "json-raw", False, (edited, arrays, False)
    for _ in range(35 * scale):
        edited = _edit_json(meta, rng)
        yield "json-sealed", True, (edited, arrays, True)
    names = sorted(arrays)
    for _ in range(15 * scale):
        edited = dict(arrays)
        a, b = rng.choice(names, 2, replace=len(names) < 2)
        edited[a], edited[b] = arrays[b], arrays[a]
        sealed = bool(rng.integers(2))
        yield ("swap-sealed" if sealed else "swap-raw"), sealed, (meta, edited, sealed)
    for _ in range(25 * scale):
        edited = dict(arrays)
        name = names[rng.integers(len(names))]
        edited[name] = _edit_array(arrays[name], rng)
        yield "array-sealed", True, (meta, edited, True)
    if "faiss_index" in arrays:  # the index body, resealed: faiss must never see bad bytes
        for _ in range(40 * scale):
            blob = arrays["faiss_index"].copy()
            for _ in range(rng.integers(1, 3)):
                blob[rng.integers(blob.size)] ^= np.uint8(1 << int(rng.integers(8)))
            yield "faiss-sealed", True, (meta, {**arrays, "faiss_index": blob}, True)


def _fuzz(folder: str, scale: int, seed: int) -> tuple[dict, list[str]]:
    with open(os.path.join(folder, "worker.py"), "w") as f:
        f.write(WORKER)
    rng = np.random.default_rng(seed)
    qrng = np.random.default_rng(3)
    np.savez(
        os.path.join(folder, "queries.npz"),
        u8=qrng.integers(0, 256, (9, 6)).astype(np.uint8),
        f8=qrng.normal(size=(9, 6)),
    )
    jobs, expect = [], {}
    for name, model, compress, queries in _base_models():
        base = os.path.join(folder, f"{name}.npz")
        fio.save(model, base, compress=compress)
        jobs.append({"file": base, "queries": queries})
        expect[base] = (name, "base", False)
        raw = open(base, "rb").read()
        meta, arrays = _parts(base)
        for i, (kind, sealed, content) in enumerate(
            _mutations(raw, meta, arrays, compress, rng, scale)
        ):
            path = os.path.join(folder, f"{name}-{i:05d}-{kind}.npz")
            if isinstance(content, bytes):
                with open(path, "wb") as f:
                    f.write(content)
            else:
                m, a, reseal = content
                _write(path, m, a, compress=compress, reseal=reseal)
            jobs.append({"file": path, "queries": queries})
            expect[path] = (name, kind, sealed)
    # two workers, each on every other file (the bases first: their answers are the truth)
    halves = [jobs[0::2], jobs[1::2]]
    timeout = 600.0 * scale
    with ThreadPoolExecutor(2) as pool:
        parts = pool.map(lambda p: _run_worker(p[1], folder, str(p[0]), timeout), enumerate(halves))
        results = {k: v for part in parts for k, v in part.items()}
    truth = {expect[f][0]: r.get("digest") for f, r in results.items() if expect[f][1] == "base"}
    failures = []
    for path, (name, kind, sealed) in expect.items():
        rec = results[path]
        outcome = rec["outcome"]
        if kind == "base":
            ok = outcome == "loaded"
        elif outcome == "refused":
            ok = True
        elif outcome == "loaded":
            ok = sealed or rec["digest"] == truth[name]
        else:
            ok = False
        if not ok:
            failures.append(f"{os.path.basename(path)}: {rec}")
    return results, failures


def test_load_fuzz(tmp_path):
    results, failures = _fuzz(str(tmp_path), scale=1, seed=20261130)
    assert len(results) >= 1000
    counts: dict[str, int] = {}
    for rec in results.values():
        counts[rec["outcome"]] = counts.get(rec["outcome"], 0) + 1
    assert not failures, f"{len(failures)} of {len(results)} files broke the contract " + str(
        failures[:20]
    )
    # the fuzz must reach both sides of the contract
    assert counts.get("refused", 0) > 500 and counts.get("loaded", 0) > 20, counts


@pytest.mark.slow
def test_load_fuzz_large(tmp_path):
    results, failures = _fuzz(str(tmp_path), scale=10, seed=7)
    assert len(results) >= 10000
    assert not failures, f"{len(failures)} of {len(results)} files broke the contract " + str(
        failures[:20]
    )


def test_a_worker_that_dies_names_the_file(tmp_path):
    """The harness itself: a file that kills its worker is reported as crashed and the
    files after it still get loaded by a new worker."""
    folder = str(tmp_path)
    with open(os.path.join(folder, "worker.py"), "w") as f:
        # the hook goes at the load call (indented 8 in the dedented worker)
        hooked = WORKER.replace(
            'model = fastcls.load(job["file"])',
            "import os, signal\n"
            "        if job['file'].endswith('kill.npz'):\n"
            "            os.kill(os.getpid(), signal.SIGSEGV)\n"
            "        model = fastcls.load(job['file'])",
        )
        assert hooked != WORKER
        f.write(hooked)
    np.savez(os.path.join(folder, "queries.npz"), f8=np.zeros((2, 3)))
    good = os.path.join(folder, "good.npz")
    fastcls.FeatureScaler().fit(np.arange(6.0).reshape(2, 3)).save(good)
    jobs = [
        {"file": good, "queries": "f8"},
        {"file": os.path.join(folder, "kill.npz"), "queries": "f8"},
        {"file": os.path.join(folder, "text.npz"), "queries": "f8"},
    ]
    with open(jobs[2]["file"], "w") as f:
        f.write("hello")
    results = _run_worker(jobs, folder, "t", 120)
    assert [results[j["file"]]["outcome"] for j in jobs] == ["loaded", "crashed", "refused"]
    assert results[jobs[1]["file"]]["rc"] < 0
