"""Exact L2 kernels (fastcls.kernels.l2) against the plain NumPy reference.

Every comparison is "kernel vs ``kneighbors_reference``" (or the pairwise reference):
indices exactly equal, distances equal to the float64 result (exactly for uint8,
within 1e-9 relative for floats, whose reference sums in another order). The data
are adversarial for the GEMM trick: duplicates, all-zero rows, ties, extreme values,
a +1e4 translation (cancellation) and near-duplicates that float32 GEMM distances
put in the wrong order. Module parameters are shrunk so that small problems take
the GEMM path with several query tiles and training blocks, and so that both the
certificate and its exact fallback run.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastcls
from fastcls._config import override
from fastcls.kernels import amx, l2
from fastcls.kernels.topk import new_topk
from fastcls.reference import kneighbors_reference, pairwise_distances_reference

DTYPES = (np.uint8, np.float32, np.float64)
DIMS = (1, 2, 3, 7, 8, 9, 16, 31, 64, 100)
KINDS = ("random", "duplicates", "zeros", "ties", "extremes", "offset", "near-duplicates")


#: the L2 tunables of fastcls._config.settings under short names
_L2_SETTINGS = {
    "DIRECT_MAX_WORK": "l2_direct_max_work",
    "QUERY_TILE": "l2_query_tile_rows",
    "TRAIN_BLOCK": "l2_train_block_rows",
    "N_EXTRA": "l2_extra_candidates",
    "SPLIT": "l2_thread_split",
    "GEMM": "l2_float_gemm",
}

#: the float32 GEMMs this machine runs (AMX bf16x3 on Intel Xeon 4th gen and later)
GEMMS = ("blas", "amx") if amx.amx_ready() else ("blas",)


def l2_params(shortcut=False, **kw):
    """Temporarily set the L2 tunables (tile sizes, paths) of fastcls._config.settings.

    The whole-number shortcut to the integer kernel is off unless asked for, so float
    data made of integers still test the GEMM path.
    """
    values = {_L2_SETTINGS[name]: value for name, value in kw.items()}
    return override(l2_uint8_shortcut=shortcut, **values)


#: force the GEMM path with several query tiles and training blocks
SMALL_TILES = dict(DIRECT_MAX_WORK=0, QUERY_TILE=5, TRAIN_BLOCK=16, N_EXTRA=2)


def make_data(rng, n_q, n_x, D, dtype, kind):
    """Queries and training rows of one adversarial kind, values exact in ``dtype``.

    Float values are dyadic (multiples of 1/8, or 2**-12 for near-duplicates) small
    enough that every float64 sum is exact whatever its order: exact ties stay ties
    in the reference and the kernel.
    """
    Q = rng.integers(0, 256, (n_q, D)).astype(np.float64)
    X = rng.integers(0, 256, (n_x, D)).astype(np.float64)
    if dtype != np.uint8 and kind == "random":
        Q += rng.integers(0, 8, Q.shape) / 8
        X += rng.integers(0, 8, X.shape) / 8
    if kind == "duplicates":
        X[rng.integers(0, n_x, n_x)] = X[rng.integers(0, n_x, n_x)]
        Q[: n_q // 2] = X[rng.integers(0, n_x, n_q // 2)]
    elif kind == "zeros":
        X[rng.random(n_x) < 0.4] = 0
        Q[rng.random(n_q) < 0.5] = 0
    elif kind == "ties":
        Q = rng.choice([0.0, 1.0, 2.0], (n_q, D))
        X = rng.choice([0.0, 1.0, 2.0], (n_x, D))
    elif kind == "extremes":
        Q = rng.choice([0.0, 255.0], (n_q, D))
        X = rng.choice([0.0, 255.0], (n_x, D))
    elif kind == "offset":
        if dtype != np.uint8:  # +1e4 on every feature: the GEMM trick's cancellation
            Q += 1e4
            X += 1e4
    elif kind == "near-duplicates":
        base = X[rng.integers(0, n_x)]
        X[:] = base
        if dtype == np.uint8:  # integer near-duplicates: +-1 on one feature
            X[np.arange(n_x), rng.integers(0, D, n_x)] += rng.choice([-1.0, 1.0], n_x)
            X = np.clip(X, 0, 255)
        else:  # x + eps on one feature, far below float32 GEMM resolution
            eps = rng.integers(1, 4, n_x) * 2.0**-12
            X[np.arange(n_x), rng.integers(0, D, n_x)] += eps
        Q[:] = base + rng.integers(-2, 3, (n_q, D))
        Q = np.clip(Q, 0, 255)
    return np.ascontiguousarray(Q, dtype=dtype), np.ascontiguousarray(X, dtype=dtype)


def kernel_knn(Q, X, k, train_tile):
    """Stream X tile by tile through the kernel, as the API does."""
    kernel = l2.sqeuclidean_topk_uint8 if Q.dtype == np.uint8 else l2.sqeuclidean_topk_float
    best_d, best_i = new_topk(Q.shape[0], k)
    for start in range(0, X.shape[0], train_tile):
        kernel(Q, np.ascontiguousarray(X[start : start + train_tile]), start, best_d, best_i)
    return best_d, best_i


def assert_matches_reference(d, i, Q, X, k, metric="sqeuclidean"):
    dr, ir = kneighbors_reference(Q, X, k, metric)
    np.testing.assert_array_equal(i, ir)
    if Q.dtype == np.uint8:
        np.testing.assert_array_equal(d, dr)
    else:
        np.testing.assert_allclose(d, dr, rtol=1e-9, atol=0)


@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(DIMS),
    st.integers(1, 60),
    st.integers(1, 12),
    st.sampled_from(DTYPES),
    st.sampled_from(KINDS),
    st.data(),
)
def test_topk_kernel_equals_reference(seed, D, n_x, n_q, dtype, kind, data):
    rng = np.random.default_rng(seed)
    Q, X = make_data(rng, n_q, n_x, D, dtype, kind)
    k = data.draw(st.integers(1, n_x), label="k")
    train_tile = data.draw(st.integers(1, n_x), label="train_tile")
    split = data.draw(st.sampled_from(["queries", "rows"]), label="split")
    ratio = data.draw(st.sampled_from([0.0, 3.0, np.inf]), label="uncentred_max_ratio")
    gemm = data.draw(st.sampled_from(GEMMS), label="gemm")
    with (
        l2_params(**SMALL_TILES, SPLIT=split, GEMM=gemm),
        fastcls.num_threads(2),
        override(l2_uncentred_max_ratio=ratio),
    ):
        d, i = kernel_knn(Q, X, k, train_tile)
    assert_matches_reference(d, i, Q, X, k)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_topk_kernel_several_tiles(dtype, kind):
    """A mid-size case per kind and dtype through every stage (tiles, blocks, rerank)."""
    rng = np.random.default_rng(7)
    Q, X = make_data(rng, 23, 300, 48, dtype, kind)
    for k in (1, 5, 12):
        with l2_params(DIRECT_MAX_WORK=0, QUERY_TILE=8, TRAIN_BLOCK=64, N_EXTRA=4):
            d, i = kernel_knn(Q, X, k, train_tile=110)
        assert_matches_reference(d, i, Q, X, k)


def test_gemm_path_and_fallback_both_run():
    """Many exact ties beyond the candidate list: the certificate must refuse them."""
    rng = np.random.default_rng(3)
    X = rng.integers(0, 256, (200, 32)).astype(np.float32)
    X[50:120] = X[10]  # 71 identical rows
    Q = np.ascontiguousarray(X[[10, 11]] + 0.5)
    before = dict(l2.STATS)
    with l2_params(DIRECT_MAX_WORK=0, N_EXTRA=1):
        d, i = kernel_knn(Q, X, 3, train_tile=200)
    assert l2.STATS["gemm_calls"] > before["gemm_calls"]
    assert l2.STATS["fallback_queries"] > before["fallback_queries"]
    assert_matches_reference(d, i, Q, X, 3)
    np.testing.assert_array_equal(i[0], [10, 50, 51])


def test_certificate_suffices_on_ordinary_data():
    """On random data no query needs the exact fallback (the rerank is cheap)."""
    rng = np.random.default_rng(4)
    Q = rng.random((40, 256), dtype=np.float32)
    X = rng.random((3000, 256), dtype=np.float32)
    before = dict(l2.STATS)
    with l2_params(DIRECT_MAX_WORK=0):
        d, i = kernel_knn(Q, X, 10, train_tile=1000)
    assert l2.STATS["fallback_queries"] == before["fallback_queries"]
    assert l2.STATS["gemm_calls"] == before["gemm_calls"] + 3
    assert_matches_reference(d, i, Q, X, 10)


def near_duplicate_clusters(rng, n_q=20, n_x=400, D=512):
    """Two far-apart clusters of near-duplicates (x + eps on one feature, eps ~ 2**-12).

    The centring vector falls between the clusters, so even centred float32 GEMM
    distances carry errors far above the eps-sized gaps between neighbours.
    """
    b1 = rng.integers(0, 256, D).astype(np.float64)
    b2 = rng.integers(0, 256, D).astype(np.float64)
    X = np.where(np.arange(n_x)[:, None] % 2 == 0, b1, b2)
    X[np.arange(n_x), rng.integers(0, D, n_x)] += rng.integers(1, 64, n_x) * 2.0**-12
    Q = b1 + rng.integers(-3, 4, (n_q, D))
    return Q.astype(np.float32), X.astype(np.float32)


@pytest.mark.parametrize("n_extra", [0, 16])
def test_near_duplicates_float32_exact_where_gemm_is_not(n_extra):
    """Centred float32 GEMM distances lose the neighbour order here; we do not."""
    Q, X = near_duplicate_clusters(np.random.default_rng(5))
    c = X.mean(0, dtype=np.float64).astype(np.float32)
    Qc, Xc = Q - c, X - c
    approx = (Qc**2).sum(1)[:, None] + (Xc**2).sum(1)[None] - 2 * Qc @ Xc.T
    _, ir = kneighbors_reference(Q, X, 10, "sqeuclidean")
    wrong = (np.argsort(approx, axis=1, kind="stable")[:, :10] != ir).any(axis=1)
    assert wrong.mean() > 0.5  # the data really defeat the float32 GEMM trick
    with l2_params(DIRECT_MAX_WORK=0, N_EXTRA=n_extra):
        d, i = kernel_knn(Q, X, 10, train_tile=150)
    assert_matches_reference(d, i, Q, X, 10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", ["l2", "sqeuclidean"])
def test_api_equals_reference(dtype, metric):
    rng = np.random.default_rng(11)
    Q, X = make_data(rng, 30, 500, 64, dtype, "duplicates")
    d, i = fastcls.kneighbors(Q, X, 7, metric, train_tile=128)
    dr, ir = kneighbors_reference(Q, X, 7, metric)
    np.testing.assert_array_equal(i, ir)
    np.testing.assert_allclose(d, dr, rtol=0 if dtype == np.uint8 else 1e-9, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_invariant_to_tiles_and_threads(dtype):
    rng = np.random.default_rng(12)
    Q, X = make_data(rng, 37, 200, 40, dtype, "offset")
    with fastcls.num_threads(2):
        ref = fastcls.kneighbors(Q, X, 9, "l2")
    runs = []
    for threads in (1, 2):
        for train_tile in (29, 200):
            for query_tile, block in ((4, 16), (1024, 2048)):
                for split in ("queries", "rows"):
                    with (
                        l2_params(
                            DIRECT_MAX_WORK=0, QUERY_TILE=query_tile, TRAIN_BLOCK=block, SPLIT=split
                        ),
                        fastcls.num_threads(threads),
                    ):
                        runs.append(fastcls.kneighbors(Q, X, 9, "l2", train_tile=train_tile))
    for d, i in runs:  # bit-identical whatever the tiling and thread count
        np.testing.assert_array_equal(i, ref[1])
        np.testing.assert_array_equal(d, ref[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["random", "duplicates", "ties", "near-duplicates"])
def test_rows_shared_by_many_threads_equal_reference(dtype, kind, monkeypatch):
    """Four (Python) threads sharing the training rows: candidate lists merged three
    times, queries centred and reranked in four chunks; prior entries from an earlier
    tile kept. Same answer as the reference, and as the queries split."""
    import numba

    rng = np.random.default_rng(21)
    Q, X = make_data(rng, 23, 300, 48, dtype, kind)
    monkeypatch.setattr(numba, "get_num_threads", lambda: 4)
    results = {}
    for split in ("rows", "queries"):
        with l2_params(DIRECT_MAX_WORK=0, TRAIN_BLOCK=16, N_EXTRA=3, SPLIT=split):
            results[split] = kernel_knn(Q, X, 8, 170)
    assert_matches_reference(*results["rows"], Q, X, 8)
    np.testing.assert_array_equal(results["rows"][0], results["queries"][0])
    np.testing.assert_array_equal(results["rows"][1], results["queries"][1])


def test_thread_split_choice():
    assert l2._split_rows(500, 10000, 1024, 2048, 2)  # one query tile, two threads
    assert not l2._split_rows(5000, 10000, 1024, 2048, 2)  # enough query tiles
    assert not l2._split_rows(500, 1500, 1024, 2048, 2)  # too few rows to share
    assert not l2._split_rows(500, 10000, 1024, 2048, 1)
    with override(l2_thread_split="rows"):
        assert l2._split_rows(5000, 10, 1024, 2048, 2)
    with override(l2_thread_split="queries"):
        assert not l2._split_rows(500, 10000, 1024, 2048, 2)
    with override(l2_thread_split="diagonal"), pytest.raises(ValueError, match="l2_thread_split"):
        l2._split_rows(500, 10000, 1024, 2048, 2)


@pytest.mark.parametrize(
    "dtype, kind, uncentred",
    [
        (np.float32, "random", True),  # the GEMM reads the rows as stored
        (np.float32, "offset", False),  # rows far from their mean: a centred copy
        (np.float64, "random", False),  # float64 rows ranked in float32: a copy
    ],
)
def test_fitted_model_prepares_rows_once(dtype, kind, uncentred):
    """A fitted model prepares its float rows once; searches with and without what it
    kept, and after a setting it depends on changed, equal the reference."""
    rng = np.random.default_rng(22)
    Q, X = make_data(rng, 40, 600, 64, dtype, kind)
    y = np.arange(600) % 3
    with l2_params(DIRECT_MAX_WORK=0):
        model = fastcls.KNearestNeighbor(k=6).fit(X, y)
        centred = model._index.centred
        assert centred is not None and centred.uncentred == uncentred
        assert (centred.rows is X) == uncentred  # no copy of rows taken as stored
        assert centred.rows.dtype == np.float32
        d, i = model.kneighbors(Q)
        with override(l2_keep_centred_bytes=0, l2_uncentred_max_ratio=0):
            bare = fastcls.KNearestNeighbor(k=6).fit(X, y)
            assert bare._index.centred is None
            d0, i0 = bare.kneighbors(Q)
        with override(l2_uncentred_max_ratio=1e6):  # the kept rows no longer apply
            d1, i1 = model.kneighbors(Q)
    dr, ir = kneighbors_reference(Q, X, 6, "l2")
    for dd, ii in ((d, i), (d0, i0), (d1, i1)):
        np.testing.assert_array_equal(ii, ir)
        np.testing.assert_allclose(dd, dr, rtol=1e-9, atol=0)


@pytest.mark.parametrize("ratio", [0.0, 3.0, np.inf])
@pytest.mark.parametrize("kind", ["random", "offset", "near-duplicates", "zeros"])
def test_uncentred_and_centred_rows_give_the_reference(ratio, kind):
    """The GEMM on rows as stored (any ratio allowed) or on a centred copy (ratio 0):
    the same exact answer, also where uncentred rows make the bound loose (offset)."""
    rng = np.random.default_rng(24)
    Q, X = make_data(rng, 30, 400, 72, np.float32, kind)
    with (
        l2_params(DIRECT_MAX_WORK=0, TRAIN_BLOCK=64, N_EXTRA=4),
        override(l2_uncentred_max_ratio=ratio),
    ):
        centred = l2.centre_rows(X)
        # near-duplicates sit far from zero compared with their spread, as offset rows do
        far = kind in ("offset", "near-duplicates")
        assert centred.uncentred == (ratio == np.inf or (ratio == 3.0 and not far))
        d, i = kernel_knn(Q, X, 5, 400)
    assert_matches_reference(d, i, Q, X, 5)


def test_loaded_model_prepares_its_rows(tmp_path):
    rng = np.random.default_rng(25)
    Q, X = make_data(rng, 20, 400, 32, np.float32, "random")
    model = fastcls.KNearestNeighbor(k=4).fit(X, np.arange(400) % 2)
    fastcls.save(model, tmp_path / "m.npz")
    loaded = fastcls.load(tmp_path / "m.npz")
    assert loaded._index.prepared and loaded._index.centred is not None
    with l2_params(DIRECT_MAX_WORK=0):
        for a, b in zip(model.kneighbors(Q), loaded.kneighbors(Q), strict=True):
            np.testing.assert_array_equal(a, b)


def test_one_shot_search_prepares_rows_only_for_the_gemm_path(monkeypatch):
    """A one-shot search small enough for the direct path computes no norms; a larger one
    prepares the rows once and searches them as one tile."""
    rng = np.random.default_rng(26)
    Q, X = make_data(rng, 10, 300, 16, np.float32, "random")
    calls = []
    real = l2.centre_rows

    def counting(*args, **kwargs):
        calls.append(args[0].shape[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(l2, "centre_rows", counting)
    fastcls.kneighbors(Q, X, 3, "l2")  # 10 x 300 x 16: direct
    assert calls == []
    with l2_params(DIRECT_MAX_WORK=0):
        d, i = fastcls.kneighbors(Q, X, 3, "l2")
    assert calls == [300]  # the whole training set, once
    assert_matches_reference(d**2, i, Q, X, 3)


def test_fitted_rows_kept_only_in_memory_and_within_budget(tmp_path):
    rng = np.random.default_rng(23)
    X = rng.random((300, 16)).astype(np.float32)
    far = X + 1e4  # needs a centred copy
    y = np.arange(300) % 2
    assert fastcls.KNearestNeighbor(k=3).fit(X, y)._index.centred.rows is X
    assert fastcls.KNearestNeighbor(k=3).fit(far, y)._index.centred is not None
    with override(l2_keep_centred_bytes=far.nbytes - 1):  # no room for the copy
        assert fastcls.KNearestNeighbor(k=3).fit(far, y)._index.centred is None
        assert fastcls.KNearestNeighbor(k=3).fit(X, y)._index.centred is not None
    pixels = rng.integers(0, 256, (300, 16)).astype(np.float32)  # the integer kernel's
    assert fastcls.KNearestNeighbor(k=3).fit(pixels, y)._index.centred is None
    assert fastcls.KNearestNeighbor(k=3, metric="l1").fit(X, y)._index.centred is None
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=X.shape)
    mm[:] = X
    assert fastcls.KNearestNeighbor(k=3).fit(mm, y)._index.centred is None


def test_uint8_equals_float64_on_same_values():
    rng = np.random.default_rng(13)
    Q, X = make_data(rng, 25, 700, 96, np.uint8, "random")
    with l2_params(DIRECT_MAX_WORK=0):
        d8, i8 = fastcls.kneighbors(Q, X, 6, "sqeuclidean", train_tile=256)
        d64, i64 = fastcls.kneighbors(Q.astype(np.float64), X.astype(np.float64), 6, "sqeuclidean")
    np.testing.assert_array_equal(i8, i64)
    np.testing.assert_array_equal(d8, d64)  # integer sums below 2**53: exact in both


def test_degenerate_shapes():
    """D=1, one training row, k = n_train, empty tiles: no path may misbehave."""
    for dtype in DTYPES:
        X = np.array([[3], [1], [2], [1]], dtype=dtype)
        Q = np.array([[1], [3]], dtype=dtype)
        with l2_params(DIRECT_MAX_WORK=0, N_EXTRA=0):
            for k in (1, 4):
                d, i = kernel_knn(Q, X, k, train_tile=2)
                assert_matches_reference(d, i, Q, X, k)
        best_d, best_i = new_topk(2, 1)
        kernel = l2.sqeuclidean_topk_uint8 if dtype == np.uint8 else l2.sqeuclidean_topk_float
        kernel(Q, X[:0], 0, best_d, best_i)  # an empty tile changes nothing
        assert np.isinf(best_d).all() and (best_i == -1).all()


def test_huge_values_take_the_direct_path():
    """Centred norms that would overflow float32 fall back to the exact direct path."""
    X = np.array([[1e30, 0.0], [-1e30, 0.0], [0.0, 1e30], [0.0, 0.0]] * 8, dtype=np.float32)
    Q = np.array([[9e29, 0.0], [0.0, -1e30]], dtype=np.float32)
    with l2_params(DIRECT_MAX_WORK=0, N_EXTRA=0):
        d, i = kernel_knn(Q, X, 3, train_tile=32)
    assert_matches_reference(d, i, Q, X, 3)


@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(DIMS),
    st.integers(1, 40),
    st.integers(1, 20),
    st.sampled_from(DTYPES),
    st.sampled_from(KINDS),
)
def test_pairwise_equals_reference(seed, D, n_y, n_x, dtype, kind):
    rng = np.random.default_rng(seed)
    X, Y = make_data(rng, n_x, n_y, D, dtype, kind)
    out = np.empty((n_x, n_y), dtype=np.float32 if dtype == np.float32 else np.float64)
    kernel = l2.sqeuclidean_pairwise_uint8 if dtype == np.uint8 else l2.sqeuclidean_pairwise_float
    with l2_params(DIRECT_MAX_WORK=0, QUERY_TILE=7):
        kernel(X, Y, out)
    expect = pairwise_distances_reference(X, Y, "sqeuclidean")
    if dtype == np.uint8:
        np.testing.assert_array_equal(out, expect)
    else:  # within 2**-30 of exact, then rounded to out's dtype
        rtol = 2.0**-30 + (2.0**-24 if dtype == np.float32 else 0.0)
        np.testing.assert_allclose(out, expect, rtol=rtol, atol=0)
    assert (out >= 0).all()
    assert (out[expect == 0] == 0).all()  # duplicates are exactly 0, never tiny noise


def test_pairwise_api_uses_kernel():
    rng = np.random.default_rng(14)
    X, Y = make_data(rng, 40, 300, 128, np.float32, "offset")
    with l2_params(DIRECT_MAX_WORK=0):
        got = fastcls.pairwise_distances(X, Y, "l2")
    np.testing.assert_allclose(got, pairwise_distances_reference(X, Y, "l2"), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_paths_agree_bit_for_bit_on_duplicates(dtype):
    """Non-dyadic floats (summation order matters) with duplicates across tiles.

    The first tile takes the GEMM + rerank path, the second the direct path: a row and
    its copy must get identical distances, so the lower index comes first.
    """
    rng = np.random.default_rng(15)
    n_q, D = 12, 67
    X = rng.standard_normal((250, D)).astype(dtype)
    X[200:212] = X[:12]  # copies in the second tile of rows in the first
    Q = (X[:12] + 1e-3 * rng.standard_normal((n_q, D))).astype(dtype)
    with l2_params(DIRECT_MAX_WORK=n_q * 50 * D, N_EXTRA=3):
        d, i = kernel_knn(Q, X, 4, train_tile=200)
    assert (i[:, 0] == np.arange(12)).all() and (i[:, 1] == 200 + np.arange(12)).all()
    np.testing.assert_array_equal(d[:, 0], d[:, 1])
    with l2_params(DIRECT_MAX_WORK=10**12):  # everything direct
        d2, i2 = kernel_knn(Q, X, 4, train_tile=250)
    np.testing.assert_array_equal(i, i2)
    np.testing.assert_array_equal(d, d2)
    assert_matches_reference(d, i, Q, X, 4)


def test_concurrent_calls_agree_and_restore_blas_threads():
    """Calls from several Python threads (as Dask does) give the serial answer, and
    the BLAS thread count is as it was before, after calls from any thread."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_info

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    rng = np.random.default_rng(16)
    Q, X = make_data(rng, 40, 600, 64, np.float32, "duplicates")
    with l2_params(DIRECT_MAX_WORK=0):
        expect = kernel_knn(Q, X, 5, train_tile=250)
        before = blas_threads()  # the first call may load another BLAS (scipy's)
        with ThreadPoolExecutor(4) as ex:
            results = list(ex.map(lambda _: kernel_knn(Q, X, 5, train_tile=250), range(8)))
    for d, i in results:
        np.testing.assert_array_equal(i, expect[1])
        np.testing.assert_array_equal(d, expect[0])
    assert blas_threads() == before


# --------------------------------------------------------------------------- integer L2
from fastcls.kernels import l2int  # noqa: E402

INT_IMPLS = l2int.available_impls()
INT_DIMS = (1, 2, 15, 16, 17, 31, 33, 63, 64, 65, 100, 127, 129, 784)


def int_knn(Q, X, k, train_tile, impl=None, block=4, chunk=4):
    """Stream uint8 X through the integer kernel with small blocks and chunks."""
    best_d, best_i = new_topk(Q.shape[0], k)
    with override(l2_uint8_impl=impl, l2_int_block_rows=block, l2_int_query_chunk_rows=chunk):
        for start in range(0, X.shape[0], train_tile):
            tile = np.ascontiguousarray(X[start : start + train_tile])
            l2int.sqeuclidean_topk_int(Q, tile, start, best_d, best_i)
    return best_d, best_i


@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(INT_DIMS),
    st.integers(1, 40),
    st.integers(1, 11),
    st.sampled_from(INT_IMPLS),
    st.sampled_from(("random", "duplicates", "zeros", "ties", "extremes", "near-duplicates")),
    st.data(),
)
def test_int_kernel_equals_reference(seed, D, n_x, n_q, impl, kind, data):
    rng = np.random.default_rng(seed)
    Q, X = make_data(rng, n_q, n_x, D, np.uint8, kind)
    k = data.draw(st.integers(1, n_x), label="k")
    tile = data.draw(st.integers(1, n_x), label="train_tile")
    block = data.draw(st.sampled_from([1, 2, 4, 8, 0]), label="block")
    chunk = data.draw(st.sampled_from([1, 4, 8, 0]), label="chunk")
    d, i = int_knn(Q, X, k, tile, impl, block, chunk)
    assert_matches_reference(d, i, Q, X, k)


@pytest.mark.parametrize("impl", INT_IMPLS)
@pytest.mark.parametrize("D", [1, 7, 16, 63, 64, 65, 784, 3072 + 5])
def test_int_kernel_all_255_and_zero_rows(impl, D):
    """Extreme magnitudes (every product 255^2) and zero rows, tails of every length."""
    rng = np.random.default_rng(D)
    X = rng.integers(0, 256, (29, D)).astype(np.uint8)
    X[[0, 7, 8, 20]] = 255
    X[[3, 9, 21]] = 0
    Q = rng.integers(0, 256, (10, D)).astype(np.uint8)
    Q[[0, 4]] = 255
    Q[[1, 5]] = 0
    Q[6] = X[7]
    for k in (1, 4, 29):
        d, i = int_knn(Q, X, k, 13, impl)
        assert_matches_reference(d, i, Q, X, k)


@pytest.mark.parametrize("impl", INT_IMPLS)
@pytest.mark.parametrize("D", [32768 + 1, 33025, 70001])
def test_int_kernel_large_d_stays_exact(impl, D):
    """Above 33000 features an int32 sum of 255^2 products would overflow: segments."""
    rng = np.random.default_rng(D)
    X = np.full((6, D), 255, dtype=np.uint8)
    X[1] = 0
    X[2, : D // 2] = 0
    X[3] = rng.integers(0, 256, D)
    X[4] = 254
    Q = np.full((5, D), 255, dtype=np.uint8)
    Q[1] = 0
    Q[2] = rng.integers(0, 256, D)
    Q[3] = X[3]
    Q[3, -1] ^= 1
    d, i = int_knn(Q, X, 6, 4, impl, block=0, chunk=0)
    assert_matches_reference(d, i, Q, X, 6)
    assert d[0, -1] == 255.0**2 * D  # all-255 query against the zero row


@pytest.mark.parametrize("D", [5, 64, 100, 784])
def test_int_path_equals_float_path(D):
    """Same whole-number values: the integer kernel, the float32/float64 GEMM path and
    the float shortcut give identical distances and indices."""
    rng = np.random.default_rng(20 + D)
    Q, X = make_data(rng, 21, 300, D, np.uint8, "duplicates")
    du, iu = kernel_knn(Q, X, 7, train_tile=110)
    for dtype in (np.float32, np.float64):
        for shortcut in (False, True):
            with l2_params(shortcut=shortcut, DIRECT_MAX_WORK=0, QUERY_TILE=8, TRAIN_BLOCK=64):
                df, i_f = kernel_knn(Q.astype(dtype), X.astype(dtype), 7, train_tile=110)
            np.testing.assert_array_equal(iu, i_f)
            np.testing.assert_array_equal(du, df)


def test_float_shortcut_takes_the_int_kernel(monkeypatch):
    """Whole numbers 0..255 in float arrays go to the integer kernel, others do not."""
    calls = []
    real = l2.sqeuclidean_topk_int
    monkeypatch.setattr(l2, "sqeuclidean_topk_int", lambda *a: calls.append(1) or real(*a))
    rng = np.random.default_rng(21)
    Q, X = make_data(rng, 6, 50, 40, np.float32, "extremes")
    with l2_params(shortcut=True):
        d, i = kernel_knn(Q, X, 3, train_tile=50)
    assert calls == [1]
    assert_matches_reference(d, i, Q, X, 3)
    Q[0, 0] = 0.5  # not a pixel value: the float path
    with l2_params(shortcut=True):
        d, i = kernel_knn(Q, X, 3, train_tile=50)
    assert calls == [1]
    assert_matches_reference(d, i, Q, X, 3)


@pytest.mark.parametrize("impl", INT_IMPLS)
def test_int_kernel_invariant_to_tiles_and_threads(impl, monkeypatch):
    from fastcls._config import settings

    monkeypatch.setattr(settings, "knn_parallel_min_work", 0)  # the parallel driver
    rng = np.random.default_rng(22)
    Q, X = make_data(rng, 37, 211, 100, np.uint8, "duplicates")
    ref = int_knn(Q, X, 9, 211, impl, 0, 0)
    for threads in (1, 2):
        for tile, block, chunk in ((29, 4, 4), (211, 1, 1), (100, 16, 12), (211, 0, 0)):
            with fastcls.num_threads(threads):
                d, i = int_knn(Q, X, 9, tile, impl, block, chunk)
            np.testing.assert_array_equal(i, ref[1])
            np.testing.assert_array_equal(d, ref[0])
    assert_matches_reference(*ref, Q, X, 9)


def test_int_impl_choice(monkeypatch):
    from fastcls import _runtime

    assert l2int.int_impl() == INT_IMPLS[0]
    with override(l2_uint8_impl="sse9"), pytest.raises(ValueError, match="l2_uint8_impl must"):
        l2int.int_impl()
    monkeypatch.setattr(_runtime, "cpu_features", lambda: frozenset({"avx2"}))
    assert l2int.int_impl() == "avx2"  # AVX2 without AVX-512 VNNI (AMD Zen 3)
    monkeypatch.setattr(_runtime, "cpu_features", lambda: frozenset({"avx2", "avxvnni"}))
    assert l2int.int_impl() == "avxvnni"  # Intel client CPUs from Alder Lake on
    assert l2int.available_impls() == ("avxvnni", "avx2", "portable")
    no_vnni = frozenset({"avx2", "avx512f", "avx512bw"})  # Skylake-SP
    monkeypatch.setattr(_runtime, "cpu_features", lambda: no_vnni)
    assert l2int.available_impls() == ("avx512bw", "avx2", "portable")
    monkeypatch.setattr(_runtime, "cpu_features", lambda: frozenset())
    assert l2int.int_impl() == "portable"
    with override(l2_uint8_impl="vnni"), pytest.raises(ValueError, match="not supported"):
        l2int.int_impl()
    paths = l2.selected_paths()
    assert paths["l2_uint8"].startswith("portable:")


_AVX2_ONLY = (
    "+avx,+avx2,+bmi,+bmi2,+cx16,+f16c,+fma,+fsgsbase,+lzcnt,+movbe,+pclmul,+popcnt,"
    "+sahf,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave"
)


def _host_has(flag: str) -> bool:
    import llvmlite.binding as ll

    return bool(ll.get_host_cpu_features().get(flag, False))


_AVX512_NO_VNNI = ",+avx512f,+avx512bw,+avx512cd,+avx512dq,+avx512vl"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "impl"),
    [
        ("", "avx2"),
        pytest.param(
            ",+avxvnni",
            "avxvnni",
            marks=pytest.mark.skipif(not _host_has("avxvnni"), reason="no AVX-VNNI here"),
        ),
        pytest.param(
            _AVX512_NO_VNNI,
            "avx512bw",
            marks=pytest.mark.skipif(not _host_has("avx512bw"), reason="no AVX-512BW here"),
        ),
    ],
)
def test_int_kernel_on_an_avx2_only_target(tmp_path, extra, impl):
    """Compiled for Haswell's features (AVX2), plus AVX-VNNI (Intel client CPUs from Alder
    Lake on) or AVX-512 without VNNI (Skylake-SP): the matching kernel is chosen and
    exact; the AVX2 and AVX-VNNI builds use no 512-bit register, the AVX-VNNI one the VEX
    form of ``vpdpbusd``."""
    import os
    import subprocess
    import sys

    code = f"""
import numpy as np
from fastcls.kernels import l2int
from fastcls.kernels.topk import new_topk
from fastcls.reference import kneighbors_reference
assert l2int.int_impl() == {impl!r}, l2int.int_impl()
rng = np.random.default_rng(0)
for D in (16, 17, 784, 33025):
    Q = rng.integers(0, 256, (9, D)).astype(np.uint8)
    X = rng.integers(0, 256, (31, D)).astype(np.uint8)
    X[3] = 255; Q[2] = 255; X[4] = 0
    bd, bi = new_topk(9, 5)
    l2int.sqeuclidean_topk_int(Q, X, 0, bd, bi)
    dr, ir = kneighbors_reference(Q, X, 5, "sqeuclidean")
    assert (bi == ir).all() and (bd == dr).all(), D
asm = "".join(l2int._topk_int_chunk.inspect_asm().values())
assert ("zmm" in asm) == ({impl!r} == "avx512bw")
if {impl!r} == "avxvnni":
    assert "{{vex}}\tvpdpbusd\t%ymm" in asm
print("ok")
"""
    env = dict(
        os.environ,
        NUMBA_CPU_NAME="haswell",
        NUMBA_CPU_FEATURES=_AVX2_ONLY + extra,
        NUMBA_CACHE_DIR=str(tmp_path),
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("metric", ["l1", "l2"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backend_keeps_a_pixel_copy_of_whole_number_floats(metric, dtype):
    """Float pixels are checked and copied to uint8 once, when the backend is built;
    pixel queries then take the integer kernels, other queries the float path."""
    from fastcls.backends import build_backend

    rng = np.random.default_rng(23)
    Q, X = make_data(rng, 12, 150, 70, np.uint8, "duplicates")
    index = build_backend("numba", X.astype(dtype), metric)
    np.testing.assert_array_equal(index.X_pixels, X)
    for queries in (Q.astype(dtype), Q.astype(dtype) + dtype(0.25)):
        d, i = index.search(queries, 6)
        dr, ir = kneighbors_reference(queries, X, 6, metric)
        np.testing.assert_array_equal(i, ir)
        np.testing.assert_allclose(d, dr, rtol=1e-12, atol=0)
    assert build_backend("numba", X.astype(dtype) + dtype(0.5), metric).X_pixels is None
    assert build_backend("numba", X, metric).X_pixels is None  # uint8 needs no copy
    with override(l1_uint8_shortcut=False, l2_uint8_shortcut=False):
        assert build_backend("numba", X.astype(dtype), metric).X_pixels is None


@pytest.mark.parametrize("sgemm", [True, False])
def test_float64_ranked_in_float32_or_float64(sgemm):
    """float64 inputs: float32 GEMM + float64 rerank (default) or a float64 GEMM; rows
    too large for float32 switch to float64 on their own. Always the exact answer."""
    rng = np.random.default_rng(24)
    X = rng.standard_normal((300, 40))
    X[50:60] = X[5]  # duplicates: ties
    Q = X[[5, 7, 9]] + 1e-9 * rng.standard_normal((3, 40))
    for scale in (1.0, 1e30):
        with override(l2_float64_sgemm=sgemm), l2_params(DIRECT_MAX_WORK=0, N_EXTRA=2):
            before = dict(l2.STATS)
            d, i = kernel_knn(Q * scale, X * scale, 12, train_tile=128)
        assert l2.STATS["gemm_calls"] > before["gemm_calls"]
        assert_matches_reference(d, i, Q * scale, X * scale, 12)


@pytest.mark.parametrize("impl", INT_IMPLS)
@pytest.mark.parametrize("D", [1, 17, 64, 100])
def test_int_pairwise_equals_reference(impl, D):
    rng = np.random.default_rng(25 + D)
    X, Y = make_data(rng, 13, 22, D, np.uint8, "extremes")
    out = np.empty((13, 22))
    with override(l2_uint8_impl=impl, l2_int_block_rows=4, l2_int_query_chunk_rows=4):
        l2int.sqeuclidean_pairwise_int(X, Y, out)
    np.testing.assert_array_equal(out, pairwise_distances_reference(X, Y, "sqeuclidean"))


@pytest.mark.parametrize("impl", INT_IMPLS)
@pytest.mark.parametrize("D", [1, 15, 16, 17, 63, 64, 65, 784, 3072 + 5, 33025])
def test_int_kernel_zero_padded_rows_give_identical_topk(impl, D):
    """The driver's 64-byte aligned, zero-padded copies of query chunks and training
    blocks (``l2_int_pad_min_queries``) give the same distances and indices as the plain
    rows, over several chunks and blocks (the last block shorter)."""
    rng = np.random.default_rng(D)
    Q, X = make_data(rng, 13, 47, D, np.uint8, "duplicates" if D % 2 else "random")
    X[[2, 30]] = 255
    Q[3] = 255
    results = []
    for min_queries in (0, 1):
        with override(l2_int_pad_min_queries=min_queries):
            results.append(int_knn(Q, X, 5, 20, impl, block=8, chunk=8))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert_matches_reference(*results[1], Q, X, 5)


def test_int_padded_width_choice():
    with override(l2_int_pad_min_queries=256):
        assert l2int._padded_width("vnni", 784, 1252) == 832
        # the int16 tile always reads widened copies padded to its 16 lanes
        assert l2int._padded_width("avx2", 784, 1252) == 784
        assert l2int._padded_width("avx2", 785, 1252) == 800
        assert l2int._padded_width("avx2", 1, 1) == 16
        assert l2int._padded_width("vnni", 768, 1252) == 0
        assert l2int._padded_width("portable", 785, 1252) == 0
        assert l2int._padded_width("vnni", 784, 100) == 0
    with override(l2_int_pad_min_queries=0):
        assert l2int._padded_width("vnni", 784, 1252) == 0
        assert l2int._padded_width("avx2", 785, 3) == 800


def test_int_kernel_memmapped_rows_with_padding(tmp_path):
    """Read-only (memmapped) training rows go through the padded blocks too."""
    rng = np.random.default_rng(4)
    Q, X = make_data(rng, 30, 120, 100, np.uint8, "random")
    np.save(tmp_path / "x.npy", X)
    Xm = np.load(tmp_path / "x.npy", mmap_mode="r")
    with override(l2_int_pad_min_queries=1):
        d, i = fastcls.kneighbors(Q, Xm, k=4, metric="sqeuclidean")
    assert_matches_reference(d, i, Q, X, 4)
