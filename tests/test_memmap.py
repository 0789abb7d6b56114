"""Out-of-core training data: memmaps and row-sliceable array-likes stream tile by tile,
give the in-memory results, and keep the resident memory at O(tile)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastcls
from fastcls.backends.rows import LazyRows, is_row_source, iter_row_tiles, release_pages


def _memmap(tmp_path, X, name="x.npy", mode="r"):
    path = tmp_path / name
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=X.dtype, shape=X.shape)
    mm[:] = X
    mm.flush()
    del mm
    return np.load(path, mmap_mode=mode)


class Rows:
    """A minimal h5py-like source: shape, dtype, row slicing; records what was read."""

    def __init__(self, a):
        self.a = a
        self.shape = a.shape
        self.dtype = a.dtype
        self.max_rows_read = 0

    def __getitem__(self, s):
        block = self.a[s]
        self.max_rows_read = max(self.max_rows_read, block.shape[0])
        return block.copy()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    X = rng.integers(0, 4, (257, 12)).astype(np.uint8)  # small range: many ties
    Q = rng.integers(0, 4, (20, 12)).astype(np.uint8)
    return X, Q


@pytest.mark.parametrize("metric", ["l1", "l2"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("train_tile", [1, 37, None])
def test_memmap_equals_in_memory(tmp_path, data, metric, dtype, train_tile):
    X, Q = data
    X, Q = X.astype(dtype), Q.astype(dtype)
    mm = _memmap(tmp_path, X)
    d0, i0 = fastcls.kneighbors(Q, X, 7, metric)
    d1, i1 = fastcls.kneighbors(Q, mm, 7, metric, train_tile=train_tile)
    np.testing.assert_array_equal(i1, i0)
    np.testing.assert_array_equal(d1, d0)


def test_classifier_on_memmap_and_mixed_dtypes(tmp_path, data):
    X, Q = data
    mm = _memmap(tmp_path, X)
    y = np.arange(X.shape[0]) % 3
    clf = fastcls.KNearestNeighbor(k=5, metric="l1").fit(mm, y)
    assert np.shares_memory(clf._index.X, mm)  # kept on disk, not copied
    ref = fastcls.KNearestNeighbor(k=5, metric="l1").fit(X, y)
    np.testing.assert_array_equal(clf.predict(Q), ref.predict(Q))
    # float queries against uint8 rows on disk: only the queries are converted
    Qf = Q.astype(np.float32) + 0.25
    np.testing.assert_array_equal(clf.kneighbors(Qf)[1], ref.kneighbors(Qf)[1])
    assert isinstance(clf._index.X, np.memmap) and clf._index.X.dtype == np.uint8


@given(
    st.integers(1, 60),
    st.integers(1, 5),
    st.integers(1, 70),
    st.sampled_from(["l1", "l2", "sqeuclidean"]),
    st.integers(0, 2**32 - 1),
)
def test_lazy_row_source_equals_in_memory(n, d, tile, metric, seed):
    rng = np.random.default_rng(seed)
    X = rng.integers(-3, 3, (n, d)).astype(np.int16)  # non-kernel dtype: float64 per tile
    Q = rng.integers(-3, 3, (4, d)).astype(np.int16)
    src = Rows(X)
    assert is_row_source(src)
    k = min(3, n)
    d0, i0 = fastcls.kneighbors(Q, X, k, metric)
    d1, i1 = fastcls.kneighbors(Q, src, k, metric, train_tile=tile)
    np.testing.assert_array_equal(i1, i0)
    np.testing.assert_array_equal(d1, d0)
    assert src.max_rows_read <= tile  # never read as a whole


def test_lazy_rows_validation():
    with pytest.raises(TypeError, match="numeric"):
        LazyRows(Rows(np.array([["a", "b"]])))
    with pytest.raises(ValueError, match="at least 1 sample"):
        LazyRows(Rows(np.zeros((0, 3))))
    bad = np.ones((50, 3))
    bad[33, 1] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        fastcls.kneighbors(np.ones((1, 3)), Rows(bad), 1, train_tile=10)
    with pytest.raises(ValueError, match="Q has 2 features but X has 3"):
        fastcls.kneighbors(np.ones((1, 2)), Rows(np.ones((5, 3))), 1)
    with pytest.raises(ValueError, match="k=9 is larger"):
        fastcls.kneighbors(np.ones((1, 3)), Rows(np.ones((5, 3))), 9)
    clf = fastcls.KNearestNeighbor(k=1).fit(Rows(np.eye(3)), [0, 1, 2])
    assert isinstance(clf._index.X, LazyRows)
    assert clf.predict(np.eye(3)).tolist() == [0, 1, 2]
    assert not is_row_source(np.eye(2)) and not is_row_source([[1, 2]])


def _vm_rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")  # pragma: no cover


def test_tiles_are_released_from_resident_memory(tmp_path):
    # 48 MiB on disk, read in 1 MiB tiles: without releasing the pages the resident
    # set would grow by ~48 MiB (the mapped file); with it, by about one tile
    n, d = 16384, 3072
    path = tmp_path / "big.npy"
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, d))
    for s in range(0, n, 2048):
        mm[s : s + 2048] = (np.arange(s, s + 2048) % 251)[:, None]
    mm.flush()
    del mm
    ro = np.load(path, mmap_mode="r")
    before = _vm_rss_kb()
    total = 0
    for start, tile in iter_row_tiles(ro, 341, np.uint8):
        total += int(tile[:, 0].astype(np.int64).sum())
        assert tile.flags.c_contiguous and start % 341 == 0
    grown_mib = (_vm_rss_kb() - before) / 1024
    assert total == int((np.arange(n) % 251).sum())
    assert grown_mib < 16, grown_mib
    # the data is still there after release
    np.testing.assert_array_equal(
        ro[-3:, :5], np.repeat((np.arange(n - 3, n) % 251)[:, None], 5, 1)
    )


def test_release_pages_only_read_only_maps(tmp_path, data):
    X, _ = data
    assert not release_pages(X)  # not a memmap
    assert not release_pages(X[:0])
    ro = _memmap(tmp_path, X, "a.npy", "r")
    assert release_pages(ro[10:20])
    assert release_pages(np.ascontiguousarray(ro[10:20]))  # plain view: traced to the map
    np.testing.assert_array_equal(ro, X)
    cow = _memmap(tmp_path, X, "b.npy", "c")
    cow[0, 0] = 99  # private change: releasing would lose it, so it is not released
    assert not release_pages(cow)
    view = np.ascontiguousarray(cow)  # a plain ndarray whose base chain ends in the map
    assert type(view) is np.ndarray and not hasattr(view, "mode")
    assert not release_pages(view) and not release_pages(view[:5])
    assert cow[0, 0] == 99
    rw = _memmap(tmp_path, X, "c.npy", "r+")
    rw[1, 1] = 42  # unflushed edit of a shared writable map: left alone too
    assert not release_pages(rw) and not release_pages(np.ascontiguousarray(rw))
    assert rw[1, 1] == 42


def _tile_releases(monkeypatch):
    """Record every release_pages call of iter_row_tiles and whether it released."""
    from fastcls.backends import rows

    calls: list[bool] = []
    real = rows.release_pages

    def spy(arr):
        calls.append(real(arr))
        return calls[-1]

    monkeypatch.setattr(rows, "release_pages", spy)
    return calls


@pytest.mark.parametrize("mode", ["c", "r+"])
def test_edited_mapping_answers_the_same_twice(tmp_path, data, monkeypatch, mode):
    # the caller edits the mapped training rows in memory (a private copy-on-write
    # edit, or an unflushed shared one) and searches a plain ndarray view of them:
    # the edits must survive every search, so the same query answers the same twice
    X, Q = data
    mapped = _memmap(tmp_path, X, f"{mode}.npy", mode)
    rows_to_edit = np.arange(0, X.shape[0], 3)
    mapped[rows_to_edit] = Q[0]  # every third row becomes the first query
    train = np.ascontiguousarray(mapped)
    assert type(train) is np.ndarray and np.shares_memory(train, mapped)
    edited = np.array(mapped)  # an in-memory copy of what the caller holds
    calls = _tile_releases(monkeypatch)
    expect = fastcls.kneighbors(Q, edited, 5, "l1")
    first = fastcls.kneighbors(Q, train, 5, "l1", train_tile=16)
    second = fastcls.kneighbors(Q, train, 5, "l1", train_tile=16)
    for got in (first, second):
        np.testing.assert_array_equal(got[1], expect[1])
        np.testing.assert_array_equal(got[0], expect[0])
    assert first[0][0, 0] == 0.0  # the edited rows were found
    np.testing.assert_array_equal(train, edited)
    assert calls and not any(calls)  # tiles were offered for release, none released


def test_read_only_map_is_still_released(tmp_path, data, monkeypatch):
    X, Q = data
    ro = np.ascontiguousarray(_memmap(tmp_path, X, "ro.npy", "r"))
    expect = fastcls.kneighbors(Q, X, 5, "l1")
    calls = _tile_releases(monkeypatch)
    got = fastcls.kneighbors(Q, ro, 5, "l1", train_tile=16)
    np.testing.assert_array_equal(got[1], expect[1])
    assert len(calls) == -(-X.shape[0] // 16) and all(calls)  # every tile
    calls.clear()
    fastcls.kneighbors(Q, X, 5, "l1", train_tile=16)  # in memory: nothing to release
    assert calls and not any(calls)


def test_faiss_index_from_memmap(tmp_path, data):
    pytest.importorskip("faiss")
    X, Q = data
    mm = _memmap(tmp_path, X)
    a = fastcls.kneighbors(Q, X, 4, "l1", backend="faiss")
    b = fastcls.kneighbors(Q, mm, 4, "l1", backend="faiss")
    c = fastcls.kneighbors(Q, Rows(X), 4, "l1", backend="faiss")
    for other in (b, c):
        np.testing.assert_array_equal(other[1], a[1])
        np.testing.assert_array_equal(other[0], a[0])
