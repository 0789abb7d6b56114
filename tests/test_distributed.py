"""Dask-sharded exact k-NN: identical to single-process search, in-process and on a
LocalCluster of 2 worker processes; tree merge order; missing-extra errors."""

from __future__ import annotations

import os
import re
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastcls
from fastcls.distributed import Shards, kneighbors, merge_pair, scatter_shards, shard_topk


def _data(seed, n=301, d=8, nq=15, hi=3, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, hi, (n, d)).astype(dtype)  # few values: many ties across shards
    Q = rng.integers(0, hi, (nq, d)).astype(dtype)
    return X, Q


# ------------------------------------------------------------------ in-process (no client)
@given(
    st.lists(st.integers(1, 40), min_size=1, max_size=6),
    st.integers(1, 12),
    st.sampled_from(["l1", "l2", "sqeuclidean"]),
    st.integers(0, 2**32 - 1),
)
def test_shards_equal_single_process(sizes, k, metric, seed):
    n = sum(sizes)
    X, Q = _data(seed, n=n, nq=5)
    k = min(k, n)
    d0, i0 = fastcls.kneighbors(Q, X, k, metric)
    bounds = np.cumsum([0, *sizes])
    shards = [X[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    d1, i1 = kneighbors(Q, shards, k, metric)  # shards smaller than k included
    np.testing.assert_array_equal(i1, i0)
    np.testing.assert_array_equal(d1, d0)


@given(st.permutations(range(5)), st.integers(0, 2**32 - 1))
def test_merge_order_does_not_matter(order, seed):
    X, Q = _data(seed, n=100, nq=6, hi=2)
    offsets = [0, 20, 40, 60, 80]
    parts = [shard_topk(Q, X[o : o + 20], o, 6, "l1") for o in offsets]
    merged = parts[order[0]]
    for j in order[1:]:
        merged = merge_pair(merged, parts[j])
    d0, i0 = fastcls.kneighbors(Q, X, 6, "l1")
    np.testing.assert_array_equal(merged[1], i0)
    np.testing.assert_array_equal(merged[0], d0)


def test_dask_array_in_process_and_conversions():
    da = pytest.importorskip("dask.array")
    X, Q = _data(3)
    Xf = X.astype(np.float64)
    d0, i0 = fastcls.kneighbors(Q, X, 4, "l2")
    # float64 rows chunked in both dimensions (rechunked to whole rows), uint8 queries
    d1, i1 = kneighbors(Q, da.from_array(Xf, chunks=(64, 3)), 4, "l2")
    np.testing.assert_array_equal(i1, i0)
    np.testing.assert_array_equal(d1, d0)


def test_input_errors():
    X, Q = _data(0)
    with pytest.raises(ValueError, match="Q has 3 features but X has 8"):
        kneighbors(Q[:, :3], X, 2)
    with pytest.raises(ValueError, match="X must hold at least one shard"):
        kneighbors(Q, [], 2)
    with pytest.raises(ValueError, match=r"X\[0\] has 8 features but X\[1\] has 7"):
        kneighbors(Q, [X, X[:, :7]], 2)
    with pytest.raises(ValueError, match="k=700 is larger"):
        kneighbors(Q, [X, X], 700)
    with pytest.raises(ValueError, match="metric must be one of"):
        kneighbors(Q, X, 2, metric="cosine")
    bad = X.astype(np.float64)
    bad[5, 2] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        kneighbors(Q, [X, bad], 2)


def test_missing_dask_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"pip install fastcls\[dask\]"):
        scatter_shards(np.eye(3), client=None)
    # without distributed there is no client: the search runs in-process
    X, Q = _data(1)
    np.testing.assert_array_equal(kneighbors(Q, X, 2)[1], fastcls.kneighbors(Q, X, 2)[1])


# ------------------------------------------------------------------ LocalCluster, 2 processes
@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    psutil = pytest.importorskip("psutil")
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
    )
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()
        # multiprocessing's resource tracker lives as long as this interpreter, by design
        left = [
            p
            for p in me.children(recursive=True)
            if p.pid not in before and "resource_tracker" not in " ".join(p.cmdline())
        ]
        gone, alive = psutil.wait_procs(left, timeout=10)
        assert not alive, f"worker processes left behind: {alive}"


def test_cluster_search_equals_single_process(client):
    import dask.array as da

    X, Q = _data(21, n=700)
    d0, i0 = fastcls.kneighbors(Q, X, 5, "l2")
    results = {
        "numpy split per worker": kneighbors(Q, X, 5, "l2", client, n_jobs=1),
        "dask array (default client)": kneighbors(
            Q, da.from_array(X, chunks=(150, 8)), 5, "l2", n_jobs=1
        ),
        "scattered shards": kneighbors(Q, scatter_shards(X, client, 3), 5, "l2", client, n_jobs=1),
    }
    for name, (d1, i1) in results.items():
        np.testing.assert_array_equal(i1, i0, err_msg=name)
        np.testing.assert_array_equal(d1, d0, err_msg=name)
    shards = scatter_shards(X, client, 3)
    assert isinstance(shards, Shards) and shards.offsets == (0, 233, 467)
    assert len(set(client.who_has(shards.futures).values())) >= 1


def test_cluster_classifier_votes_on_the_client(client):
    import dask.array as da

    X, Q = _data(22, n=500)
    y = np.array(["x", "y", "z"])[np.arange(500) % 3]
    ref = fastcls.KNearestNeighbor(k=5).fit(X, y)
    for train in (X, da.from_array(X, chunks=(128, 8))):
        clf = fastcls.KNearestNeighbor(k=5, backend="dask").fit(train, y)
        np.testing.assert_array_equal(clf.predict(Q), ref.predict(Q))
        np.testing.assert_array_equal(clf.predict_proba(Q), ref.predict_proba(Q))


# ------------------------------------------------------------------ one rule for integers
@pytest.mark.parametrize("container", ["dask array", "list of shards", "object array"])
def test_integers_beyond_2_53_are_refused_on_every_path(container):
    X = np.arange(40, dtype=np.int64).reshape(10, 4)
    X[7, 1] = 2**53 + 1  # float64 would round it to 2**53
    Q = X[:2].astype(np.float64)
    with pytest.raises(ValueError, match="integers too large to convert to float64"):
        fastcls.kneighbors(Q, X, 2)  # the default path: the rule every path follows
    if container == "dask array":
        da = pytest.importorskip("dask.array")
        train = da.from_array(X, chunks=(5, 4))
    elif container == "list of shards":
        train = [X[:5], X[5:]]
    else:  # Python ints in an object array (np.array(rows.tolist(), dtype=object))
        train = np.array(X.tolist(), dtype=object)
        with pytest.raises(ValueError, match="integers too large to convert to float64"):
            fastcls.kneighbors(Q, train, 2)
        with pytest.raises(ValueError, match="integers too large to convert to float64"):
            fastcls.KNearestNeighbor(k=1).fit(train, np.arange(10) % 2)
    with pytest.raises(ValueError, match="integers too large to convert to float64"):
        kneighbors(Q, train, 2)
    if container == "dask array":  # the estimator, through LazyRows, reads tile by tile
        clf = fastcls.KNearestNeighbor(k=1, backend="dask").fit(train, np.arange(10) % 2)
        with pytest.raises(ValueError, match="integers too large to convert to float64"):
            clf.predict(Q)
    # below 2**53 every path converts exactly and agrees with the default path
    X[7, 1] = 2**53 - 1
    small = {
        "dask array": lambda: pytest.importorskip("dask.array").from_array(X, chunks=(5, 4)),
        "list of shards": lambda: [X[:5], X[5:]],
        "object array": lambda: np.array(X.tolist(), dtype=object),
    }[container]()
    np.testing.assert_array_equal(kneighbors(Q, small, 3)[1], fastcls.kneighbors(Q, X, 3)[1])


# ------------------------------------------------------------------ a worker lost mid-search
class _FakeFuture:
    def __init__(self, key, status="finished", error=None):
        self.key, self.status, self._error = key, status, error

    def result(self):
        raise self._error


class _LosingClient:
    """A client whose worker ``tcp://b`` died holding shard 1: every task result fails."""

    def __init__(self):
        from distributed.client import FutureCancelledError

        self.error = FutureCancelledError("merge_pair-1", "lost dependencies")

    def scatter(self, data, **kw):
        return _FakeFuture("q")

    def submit(self, fn, *args, **kw):
        return _FakeFuture(f"task-{len(args)}", error=self.error)

    def who_has(self, futures):
        return {"shard-0": ("tcp://a",)}  # shard 1's data is gone with its worker

    def scheduler_info(self):
        return {"workers": {"tcp://a": {}, "tcp://c": {}}}


def test_lost_shard_error_names_the_rows_and_the_worker():
    pytest.importorskip("distributed")
    from fastcls.backends.dask import ShardLostError

    shards = Shards(
        futures=[_FakeFuture("shard-0"), _FakeFuture("shard-1", status="cancelled")],
        offsets=(0, 233),
        shape=(500, 8),
        dtype=np.dtype(np.uint8),
        workers=(("tcp://a",), ("tcp://b",)),
    )
    client = _LosingClient()
    with pytest.raises(ShardLostError) as info:
        kneighbors(np.zeros((2, 8), np.uint8), shards, 3, "l2", client)
    err = info.value
    assert isinstance(err, RuntimeError) and err.__cause__ is client.error
    assert err.shards == ((1, 233, 500),) and err.workers == ("tcp://b",)
    msg = str(err)
    assert "shard 1 (training rows 233:500) held by tcp://b" in msg
    assert "lost dependencies" in msg and "scatter the training rows again" in msg
    # no future says which shard: the holder missing from the workers says it
    shards = Shards(
        futures=[_FakeFuture("shard-0"), _FakeFuture("shard-1")],
        offsets=(0, 233),
        shape=(500, 8),
        dtype=np.dtype(np.uint8),
        workers=(("tcp://a",), ("tcp://b",)),
    )
    with pytest.raises(ShardLostError, match=r"shard 1 \(training rows 233:500\) held by tcp://b"):
        kneighbors(np.zeros((2, 8), np.uint8), shards, 3, "l2", client)


def test_killed_worker_gives_a_clear_error():
    distributed = pytest.importorskip("distributed")
    import logging
    import time

    from fastcls.backends.dask import ShardLostError

    X, Q = _data(31, n=600)
    with (
        distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            dashboard_address=":0",
            silence_logs=logging.CRITICAL,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        shards = scatter_shards(X, client, 2)
        d0, i0 = kneighbors(Q, shards, 4, "l2", client, n_jobs=1)
        np.testing.assert_array_equal(i0, fastcls.kneighbors(Q, X, 4, "l2")[1])
        victim = shards.workers[1][0]
        try:  # the worker process exits at once (its nanny starts a fresh, empty one)
            client.run(os._exit, 1, workers=[victim])
        except Exception:  # noqa: BLE001 - the connection to the dying worker breaks
            pass
        deadline = time.monotonic() + 30
        while victim in client.scheduler_info()["workers"] and time.monotonic() < deadline:
            time.sleep(0.1)
        where = re.escape(f"shard 1 (training rows 300:600) held by {victim}")
        with pytest.raises(ShardLostError, match=where):
            kneighbors(Q, shards, 4, "l2", client, n_jobs=1)
        # the remedy the message gives works: scatter again, search again
        again = kneighbors(Q, scatter_shards(X, client, 2), 4, "l2", client, n_jobs=1)
        np.testing.assert_array_equal(again[1], i0)
