"""Processes and threads: n_jobs=None inherits fastcls.num_threads everywhere, and a
forked child after a parallel kernel either works or gets a clear error (never killed)."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

import fastcls
from fastcls import _runtime
from fastcls._config import resolve_n_jobs, set_num_threads

MAX_THREADS = int(numba.config.NUMBA_NUM_THREADS)


# ------------------------------------------------------------------ n_jobs semantics
def test_resolve_n_jobs_none_inherits_and_minus_one_is_all_cores():
    with fastcls.num_threads(1):
        assert resolve_n_jobs(None) == 1
        assert resolve_n_jobs(-1) == MAX_THREADS
        assert resolve_n_jobs(10**6) == MAX_THREADS  # clipped
        assert set_num_threads(None) == 1 and fastcls.get_num_threads() == 1  # no change
        with fastcls.num_threads(None):  # inherits: nothing set, nothing restored
            assert fastcls.get_num_threads() == 1
        assert fastcls.get_num_threads() == 1
    for bad in (0, -2, 1.5, True, "2"):
        with pytest.raises(ValueError, match="n_jobs must be None, -1 or a positive integer"):
            resolve_n_jobs(bad)


@pytest.fixture
def thread_settings(monkeypatch):
    """Every value numba.set_num_threads is given, and the count each kernel driver sees."""
    seen: list[int] = []
    real = numba.set_num_threads

    def spy(n):
        seen.append(int(n))
        real(n)

    monkeypatch.setattr(numba, "set_num_threads", spy)
    return seen


def _default_calls():
    """Every public entry point that runs kernels, each left at n_jobs=None."""
    rng = np.random.default_rng(0)
    X = rng.random((120, 12))
    Xu = rng.integers(0, 256, (120, 12)).astype(np.uint8)
    y = np.arange(120) % 3
    images = rng.integers(0, 256, (6, 16, 16, 3)).astype(np.uint8)
    W = rng.standard_normal((12, 3)) * 0.01
    knn = fastcls.KNearestNeighbor(k=3, metric="l1")
    fitted = fastcls.KNearestNeighbor(k=3, metric="l1").fit(X, y)
    return {
        "pairwise_distances": lambda: fastcls.pairwise_distances(X[:9], X, "l2"),
        "kneighbors l1": lambda: fastcls.kneighbors(X[:9], X, 3, "l1"),
        "kneighbors uint8": lambda: fastcls.kneighbors(Xu[:9], Xu, 3, "l2"),
        "KNearestNeighbor.fit": lambda: knn.fit(X, y),
        "KNearestNeighbor.predict": lambda: fitted.predict(X[:9]),
        "LinearSVM.fit": lambda: fastcls.LinearSVM(n_iters=3, batch_size=16, seed=0).fit(X, y),
        "Softmax.fit": lambda: fastcls.Softmax(n_iters=3, batch_size=16, seed=0).fit(X, y),
        "svm_loss": lambda: fastcls.svm_loss(W, X, y),
        "cross_validate_knn": lambda: fastcls.cross_validate_knn(X, y, [1, 3], "l2", n_folds=3),
        "hog": lambda: fastcls.features.hog(images),
        "color_histogram_hsv": lambda: fastcls.features.color_histogram_hsv(images),
        "extract_features": lambda: fastcls.extract_features(images),
    }


@pytest.mark.parametrize("name", sorted(_default_calls()))
def test_num_threads_governs_every_default_call(name, thread_settings):
    call = _default_calls()[name]
    call()  # compile outside the measured region
    before = numba.get_num_threads()
    thread_settings.clear()
    with fastcls.num_threads(1):
        assert thread_settings == [1]
        call()
        # nothing inside reset the count to all cores, even for a moment
        assert set(thread_settings) == {1}, thread_settings
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == thread_settings[-1] == before


def test_explicit_n_jobs_still_wins_and_restores(thread_settings):
    X = np.random.default_rng(1).random((50, 4))
    fastcls.kneighbors(X[:3], X, 2, "l1")
    with fastcls.num_threads(1):
        thread_settings.clear()
        fastcls.kneighbors(X[:3], X, 2, "l1", n_jobs=-1)
        assert thread_settings == [MAX_THREADS, 1]  # set for the call, then restored
        assert numba.get_num_threads() == 1


# ------------------------------------------------------------------ fork
_CHILD_SCRIPT = textwrap.dedent(
    """
    import json, multiprocessing, sys
    import numpy as np
    import fastcls
    from fastcls import _runtime

    rng = np.random.default_rng(0)
    X = rng.random((400, 16))
    y = np.arange(400) % 4


    def child(queue, clf):
        try:
            queue.put(("ok", clf.predict(X[:50]).tolist()))
        except BaseException as exc:
            queue.put(("error", type(exc).__name__ + ": " + str(exc)))


    if __name__ == "__main__":  # spawn / forkserver children import this file
        clf = fastcls.KNearestNeighbor(k=3, metric="l1").fit(X, y)
        expected = clf.predict(X[:50]).tolist()  # the parent runs parallel kernels
        layer = _runtime.threading_layer_in_use()
        ctx = multiprocessing.get_context(sys.argv[1])
        queue = ctx.Queue()
        proc = ctx.Process(target=child, args=(queue, clf))
        proc.start()
        proc.join(120)
        if proc.is_alive():
            proc.kill()
        outcome = queue.get(timeout=10) if proc.exitcode == 0 else None
        print(json.dumps({"layer": layer, "exitcode": proc.exitcode, "outcome": outcome,
                          "expected": expected}))
    """
)


def _run_parent(tmp_path, start_method: str, layer: str | None) -> dict:
    script = tmp_path / "fork_parent.py"
    script.write_text(_CHILD_SCRIPT)
    env = dict(os.environ)
    env.pop("NUMBA_THREADING_LAYER", None)
    if layer is not None:
        env["NUMBA_THREADING_LAYER"] = layer
    proc = subprocess.run(
        [sys.executable, str(script), start_method],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
@pytest.mark.parametrize("layer", [None, "workqueue"])
def test_forked_child_predicts_or_says_what_to_do(tmp_path, layer):
    got = _run_parent(tmp_path, "fork", layer)
    assert got["layer"] is not None  # a parallel kernel ran in the parent before the fork
    assert got["exitcode"] == 0, f"the child was killed ({got['exitcode']})"
    kind, value = got["outcome"]
    if got["layer"] == "omp" and sys.platform.startswith("linux"):
        # GNU OpenMP cannot run in the child: a clear error, not a SIGTERM
        assert kind == "error" and value.startswith("RuntimeError: "), value
        for advice in ("forked", "GNU OpenMP", "'spawn'", "'forkserver'", "workqueue"):
            assert advice in value
    else:  # workqueue / tbb survive fork(): same predictions as the parent
        assert kind == "ok", value
        assert value == got["expected"]


@pytest.mark.slow
@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
def test_spawned_child_predicts_the_same(tmp_path, start_method):
    got = _run_parent(tmp_path, start_method, None)
    assert got["exitcode"] == 0
    assert got["outcome"] == ["ok", got["expected"]]


def test_unsafe_fork_state_is_refused_at_every_entry(monkeypatch):
    """The check itself, without forking: the refusal reaches every kernel driver."""
    monkeypatch.setattr(_runtime._ForkState, "inherited_layer", "omp")
    monkeypatch.setattr(_runtime._ForkState, "parent_pid", 1)
    monkeypatch.setattr(_runtime.sys, "platform", "linux")
    X = np.ones((4, 3))
    images = np.zeros((1, 8, 8, 3), np.uint8)
    for call in (
        lambda: fastcls.num_threads(1).__enter__(),
        lambda: fastcls.kneighbors(X, X, 1),
        lambda: fastcls.features.hog(images),
        lambda: fastcls.features.color_histogram_hsv(images),
        lambda: fastcls.svm_loss(np.zeros((3, 2)), X, [0, 1, 0, 1]),
    ):
        with pytest.raises(RuntimeError, match="NUMBA_THREADING_LAYER=workqueue"):
            call()
    for layer in ("workqueue", "tbb", None):
        monkeypatch.setattr(_runtime._ForkState, "inherited_layer", layer)
        _runtime.check_fork_safe()
        assert fastcls.kneighbors(X, X, 1)[1].shape == (4, 1)


def _map_in_child(queue):
    queue.put(_runtime.map_chunks(lambda a, b: b - a, 10, 2))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_forked_child_gets_a_fresh_thread_pool():
    # the parent's pool threads do not exist in the child: without the fork hook a
    # submit waits forever (it hung predict under NUMBA_THREADING_LAYER=workqueue)
    assert _runtime.map_chunks(lambda a, b: b - a, 10, 2) == [5, 5]
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_map_in_child, args=(queue,))
    proc.start()
    proc.join(60)
    alive = proc.is_alive()
    if alive:
        proc.kill()
    assert not alive and proc.exitcode == 0
    assert queue.get(timeout=10) == [5, 5]
