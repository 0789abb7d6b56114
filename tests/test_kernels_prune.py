"""Partial-distance pruning of the exact integer k-NN kernels (uint8 L1 and L2).

The pruned drivers must return exactly what the unpruned ones and the NumPy reference
return, on data where tiles do stop (clustered images, near duplicates) and where they
do not (random pixels); the pruned tiles' early exit is tested on its own against
hand-set thresholds; :func:`fastcls.kernels.prune.plan` decides per call.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

import fastcls
from fastcls._config import override
from fastcls.kernels import l1, l2int, prune, slab
from fastcls.kernels._tokens import impl_token
from fastcls.kernels.topk import new_topk
from fastcls.reference import (
    group_sums_reference,
    kneighbors_reference,
    pairwise_distances_reference,
    pooled_distances_reference,
)

#: the implementations with pruned twins this CPU runs (forced in turn): (metric, impl,
#: setting, token code)
PRUNED_PATHS = [
    ("l1", impl, {"l1_uint8_impl": impl, "l1_uint8_tile_cols": cols}, code)
    for impl, cols, code in (("avx2", 2, 1), ("avx2", 4, 3))
    if impl in l1.best_simd()
] + [
    ("sqeuclidean", impl, {"l2_uint8_impl": impl}, l2int.INT_CODES[impl])
    for impl in l2int.available_impls()
    if l2int.INT_CODES[impl] in l2int._PRUNED_DOTS
]

needs_pruned_tile = pytest.mark.skipif(not PRUNED_PATHS, reason="no pruned tile on this CPU")


def kernel(metric):
    return l1.l1_topk_uint8 if metric == "l1" else l2int.sqeuclidean_topk_int


def search(metric, Q, X, k, train_tile, **changes):
    """Stream ``X`` through the metric's kernel in tiles (as the API does)."""
    best_d, best_i = new_topk(Q.shape[0], k)
    with override(**changes):
        for start in range(0, X.shape[0], train_tile):
            tile = np.ascontiguousarray(X[start : start + train_tile])
            kernel(metric)(Q, tile, start, best_d, best_i)
    return best_d, best_i


def images(rng, n, d, n_centres=6, noise=25):
    """uint8 rows near a few centres: the distances differ, so tiles stop."""
    centres = rng.integers(0, 256, (n_centres, d))
    rows = centres[rng.integers(0, n_centres, n)] + rng.integers(-noise, noise + 1, (n, d))
    return np.clip(rows, 0, 255).astype(np.uint8)


def make(rng, kind, n_q, n_x, d):
    if kind == "random":
        Q = rng.integers(0, 256, (n_q, d), dtype=np.uint8)
        X = rng.integers(0, 256, (n_x, d), dtype=np.uint8)
    else:
        both = images(rng, n_q + n_x, d, noise=2 if kind == "near-duplicates" else 25)
        Q, X = both[:n_q], both[n_q:]
    if kind == "duplicates":
        X[::3] = X[0]
        Q[0] = X[0]
    if kind == "extremes":
        X[::2] = 255
        X[1::4] = 0
        Q[::2] = 255
    return Q, X


def assert_reference(metric, d, i, Q, X, k):
    dr, ir = kneighbors_reference(Q, X, k, metric)
    np.testing.assert_array_equal(i, ir)
    np.testing.assert_array_equal(d, dr)


# --------------------------------------------------------------------------- results
@needs_pruned_tile
@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(PRUNED_PATHS or [None]),
    st.sampled_from(("images", "random", "duplicates", "near-duplicates", "extremes")),
    st.sampled_from((64, 65, 100, 200, 784, 1000)),
    st.integers(1, 24),
    st.integers(8, 120),
    st.data(),
)
def test_pruned_search_equals_reference(seed, path, kind, d, n_q, n_x, data):
    metric, _, changes, _ = path
    rng = np.random.default_rng(seed)
    Q, X = make(rng, kind, n_q, n_x, d)
    k = data.draw(st.integers(1, min(n_x, 12)), label="k")
    tile = data.draw(st.integers(1, n_x), label="train_tile")
    block = data.draw(st.sampled_from((2, 4, 8, 24, 0)), label="block")
    key = "l1_block_rows" if metric == "l1" else "l2_int_block_rows"
    got = search(metric, Q, X, k, tile, knn_prune="always", **changes, **{key: block})
    assert_reference(metric, *got, Q, X, k)


@needs_pruned_tile
@pytest.mark.parametrize("slab", [True, False], ids=["slab", "no-slab"])
@pytest.mark.parametrize("path", PRUNED_PATHS, ids=lambda p: f"{p[0]}-{p[1]}-{p[3]}")
def test_pruned_equals_unpruned_bit_for_bit_across_threads(path, slab, monkeypatch):
    from fastcls._config import settings as tunables

    metric, _, changes, _ = path
    if not slab:  # the full-resolution stage alone
        monkeypatch.setattr(prune, "POOL_MAX_FEATURES", 0)
    monkeypatch.setattr(tunables, "knn_parallel_min_work", 0)  # the parallel driver
    rng = np.random.default_rng(5)
    Q, X = make(rng, "images", 37, 400, 784)
    ref = search(metric, Q, X, 7, 400, knn_prune="never", **changes)
    for threads in (1, 2):
        for tile in (400, 123):
            with fastcls.num_threads(threads):
                got = search(metric, Q, X, 7, tile, knn_prune="always", **changes)
            np.testing.assert_array_equal(got[0], ref[0])
            np.testing.assert_array_equal(got[1], ref[1])
    assert_reference(metric, *ref, Q, X, 7)


@needs_pruned_tile
@pytest.mark.parametrize("metric", ["l1", "l2"])
def test_fitted_model_prunes_to_the_same_answer(metric):
    rng = np.random.default_rng(9)
    Q, X = make(rng, "images", 30, 300, 196)
    y = rng.integers(0, 3, 300)
    model = fastcls.KNearestNeighbor(k=5, metric=metric).fit(X, y)
    with override(knn_prune="never"):
        d0, i0 = model.kneighbors(Q)
    with override(knn_prune="always"):
        d1, i1 = model.kneighbors(Q)
    np.testing.assert_array_equal(i0, i1)
    np.testing.assert_array_equal(d0, d1)


# --------------------------------------------------------------------------- the tiles
@njit
def _l1_tile(token, Q, X, cuts, t):
    return l1._tile_uint8_pruned(token, Q, X, 0, 3, 0, X.shape[0] - 1, cuts, t[0], t[1], t[2], t[3])


@njit
def _l2_sweep(token, Q, X, tiles, cuts, qbound, wct, out, sums):
    return l2int._sweep_pruned(
        token, Q, X, 0, 3, X.shape[0] - 1, 0, tiles, tiles.shape[0], cuts, qbound, wct, out, sums
    )


def _l2_tile(token, Q, X, cuts, qnc, wc, t):
    """One pruned L2 tile (a sweep over one row pair): its dot products, or None if it
    stopped."""
    cols = X.shape[0]
    qbound = np.repeat(qnc.T - t[None, :], cols, axis=1).astype(np.int64)  # lane a*cols+b
    tiles = np.zeros(1, dtype=np.int64)
    out = np.full(1, -1, dtype=np.int64)
    sums = np.zeros((1, 4 * cols), dtype=np.int32)
    n = _l2_sweep(token, Q, X, tiles, cuts, qbound, l2int.transposed_bounds(wc), out, sums)
    assert n in (0, 1)
    return sums[0] if n else None


def _tile_case(metric, code, thresholds, cuts_vectors):
    """One tile's outputs on rows of two parts: ``lo`` small differences up to cut 1,
    large beyond, so the partial distances at cut 1 are far below the totals."""
    rng = np.random.default_rng(3)
    vec = 32 if metric == "l1" else 16
    d = vec * cuts_vectors[-1]
    cols = 4 if code == 3 else 2
    Q = rng.integers(100, 130, (4, d)).astype(np.uint8)
    X = rng.integers(100, 130, (cols, d)).astype(np.uint8)
    X[:, vec * cuts_vectors[0] :] = 255  # the far part
    Q[:, vec * cuts_vectors[0] :] = 0
    cuts = np.array(cuts_vectors, dtype=np.int64)
    diff = Q.astype(np.int64)[:, None, :] - X.astype(np.int64)[None, :, :]
    total = np.abs(diff).sum(-1) if metric == "l1" else (diff**2).sum(-1)
    t = np.array(thresholds, dtype=np.int64)
    token = impl_token(code)
    if metric == "l1":
        out = _l1_tile(token, Q, X, cuts, t)
        return np.array(out).reshape(4, cols), total
    bounds = np.minimum(cuts * vec, d)
    qnc, _ = prune.prefix_stats(Q, bounds)
    wc, _ = prune.prefix_stats(X, bounds)
    Qb = np.zeros((4, d), np.int16)
    Qb[:] = Q
    Xb = np.zeros((cols, d), np.int16)
    Xb[:] = X
    dots = _l2_tile(token, Qb, Xb, cuts, qnc, wc, t)
    if dots is None:
        return None, total
    dots = dots.astype(np.int64).reshape(4, cols)
    qn = (Q.astype(np.int64) ** 2).sum(1)
    xn = (X.astype(np.int64) ** 2).sum(1)
    return qn[:, None] + xn[None, :] - 2 * dots, total


@needs_pruned_tile
@pytest.mark.parametrize("path", PRUNED_PATHS, ids=lambda p: f"{p[0]}-{p[1]}-{p[3]}")
def test_pruned_tile_stops_only_when_no_pair_can_enter(path):
    metric, _, _, code = path
    metric = "l1" if metric == "l1" else "sqeuclidean"
    cuts = [2, 3, 6]
    # thresholds above every total: the tile runs to the end and returns the distances
    got, total = _tile_case(metric, code, [2**40] * 4, cuts)
    np.testing.assert_array_equal(got, total)
    # zero thresholds: no partial distance is below, the tile stops at the first cut
    got, _ = _tile_case(metric, code, [0] * 4, cuts)
    assert stopped(metric, got)
    # a threshold above query 2's partial distances at cut 1 but below its totals: the
    # tile goes on, and after the last cut nothing is below: stopped all the same
    between = int(total[2].min())  # every partial at the first cut is far below this
    got, _ = _tile_case(metric, code, [0, 0, between, 0], cuts)
    assert stopped(metric, got)
    # one total below query 1's threshold: every sum of the tile comes back
    got, total = _tile_case(metric, code, [0, int(total[1].min()) + 1, 0, 0], cuts)
    np.testing.assert_array_equal(got, total)


def stopped(metric, got):
    """Whether a tile's outputs are those of a stopped tile."""
    if metric == "l1":
        return bool((got == prune.STOPPED_SUM).all())
    return got is None  # a stopped L2 tile is left out of the sweep's output


# --------------------------------------------------------------------------- the plan
def test_mode_is_checked():
    with override(knn_prune="sometimes"), pytest.raises(ValueError, match="knn_prune"):
        prune.mode()


def test_candidate_cuts_and_forced_cuts():
    assert prune.candidate_cuts(49).tolist() == [6, 12, 18, 24, 30, 36, 42, 49]
    assert prune.candidate_cuts(3).tolist() == [1, 2, 3]
    rng = np.random.default_rng(0)
    Q, X = make(rng, "images", 8, 64, 200)
    best_d, best_i = new_topk(8, 3)
    args = (Q, X, 0, best_d, best_i, 25, 8, l1.l1_topk_uint8, "l1")
    with override(knn_prune="always"):
        Qp, Xp, cuts, _ = prune.plan(*args)
    assert cuts[-1] == 25 and len(cuts) >= 2 and (np.diff(cuts) > 0).all()
    with override(knn_prune="never"):
        assert prune.plan(*args) is None
    with override(knn_prune="auto"):  # far too small a call to sample
        assert prune.plan(*args) is None


def test_reordered_features_keep_every_distance():
    rng = np.random.default_rng(1)
    Q, X = make(rng, "images", 5, 50, 77)
    X[:, 10] = 0  # a constant feature goes last
    Qp, Xp = prune.reordered(Q, X)
    order = prune.feature_order(X)
    assert sorted(order.tolist()) == list(range(77)) and order[-1] == 10
    np.testing.assert_array_equal(Xp, X[:, order])
    np.testing.assert_array_equal(Qp, Q[:, order])
    for metric in ("l1", "sqeuclidean"):
        np.testing.assert_array_equal(
            kneighbors_reference(Qp, Xp, 50, metric)[0], kneighbors_reference(Q, X, 50, metric)[0]
        )
    with override(knn_prune_copy_max_bytes=X.nbytes + Q.nbytes - 1):  # no room for both
        Qs, Xs = prune.reordered(Q, X)
    assert Qs is Q and Xs is X


def test_prefix_stats():
    rng = np.random.default_rng(2)
    A = rng.integers(0, 256, (7, 90), dtype=np.uint8)
    bounds = np.array([0, 5, 64, 90])
    norms, sums = prune.prefix_stats(A, bounds)
    for c, b in enumerate(bounds):
        np.testing.assert_array_equal(norms[:, c], (A[:, :b].astype(np.int64) ** 2).sum(1))
        np.testing.assert_array_equal(sums[:, c], A[:, :b].astype(np.int64).sum(1))


def test_best_cuts_weighs_checks_against_stops():
    candidates = np.array([10, 20, 30, 40], dtype=np.int64)
    never = np.zeros((4, 100), dtype=bool)
    cuts, work = prune.best_cuts(never, candidates)
    assert cuts.tolist() == [40] and work == 1.0  # nothing stops: no check pays
    early = np.zeros((4, 100), dtype=bool)
    early[0:] = True  # every tile can stop at the first cut
    cuts, work = prune.best_cuts(early, candidates)
    assert cuts.tolist() == [10, 40] and work < 0.4
    # stops in one tile of two at 20, the rest at 30
    mixed = np.zeros((4, 100), dtype=bool)
    mixed[1, ::2] = True
    mixed[2:] = True
    cuts, work = prune.best_cuts(mixed, candidates)
    assert cuts[-1] == 40 and 20 in cuts.tolist() and work < 0.75


@needs_pruned_tile
@pytest.mark.parametrize("metric", ["l1", "l2"])
def test_auto_prunes_images_and_not_random_pixels(metric):
    """The per-call sample: clustered images are pruned, random pixels are not."""
    rng = np.random.default_rng(4)
    tunables = {"knn_prune": "auto", "knn_prune_min_queries": 16, "knn_prune_min_work": 0}
    if metric == "l1":
        call = (l1.l1_topk_uint8, "l1", 25, 32)
    else:
        call = (l2int.sqeuclidean_topk_int, "sqeuclidean", 49, 16)
    decisions = {}
    for kind in ("near-duplicates", "random"):
        if kind == "random":
            Q, X = make(rng, kind, 64, 2048, 784)
        else:  # many tight clusters
            both = images(rng, 64 + 2048, 784, n_centres=64, noise=2)
            Q, X = both[:64], both[64:]
        best_d, best_i = new_topk(64, 5)
        with override(**tunables):
            decisions[kind] = prune.plan(Q, X, 0, best_d, best_i, call[2], call[3], *call[:2])
    assert decisions["near-duplicates"] is not None
    assert decisions["random"] is None


@pytest.mark.parametrize("metric", ["l1", "sqeuclidean"])
def test_partial_distances_of_the_sample(metric):
    rng = np.random.default_rng(6)
    A = rng.integers(0, 256, (5, 70), dtype=np.uint8)
    B = rng.integers(0, 256, (9, 70), dtype=np.uint8)
    bounds = np.array([3, 32, 33, 70], dtype=np.int64)
    out = np.empty((4, 5, 9), dtype=np.int64)
    prune._partial_distances(A, B, bounds, metric == "sqeuclidean", out)
    for c, b in enumerate(bounds):
        want = kneighbors_reference(A[:, :b], B[:, :b], 9, metric)
        got = np.sort(out[c], axis=1)
        np.testing.assert_array_equal(got, want[0])


def test_info_says_whether_the_integer_kernels_prune():
    from fastcls.kernels.l2 import selected_paths

    with override(knn_prune="never"):
        paths = selected_paths()
    for key in ("l1_uint8", "l2_uint8"):
        assert "pruning" in paths[key]
    with override(l1_uint8_impl="portable", l2_uint8_impl="portable"):
        paths = selected_paths()
    assert "no partial-distance pruning" in paths["l1_uint8"]
    assert "no partial-distance pruning" in paths["l2_uint8"]
    if PRUNED_PATHS:
        with override(knn_prune="never"):
            assert "pruning never" in selected_paths()["l2_uint8"]


@needs_pruned_tile
@pytest.mark.parametrize("metric", ["l1", "sqeuclidean"])
def test_pruned_search_of_memmapped_rows(metric, tmp_path):
    rng = np.random.default_rng(8)
    Q, X = make(rng, "images", 9, 150, 300)
    path = tmp_path / "rows.u8"
    X.tofile(path)
    mapped = np.memmap(path, dtype=np.uint8, mode="r", shape=X.shape)
    got = search(metric, Q, mapped, 4, 150, knn_prune="always")
    assert_reference(metric, *got, Q, X, 4)


def test_int_threshold_keeps_the_strict_test():
    @njit
    def below(p, d):
        return p < prune.int_threshold(d)

    for d in (0.0, 5.0, 5.5, 1e6 + 0.25, np.inf):
        for p in (0, 4, 5, 6, 1_000_000, 1_000_001):
            assert below(p, d) == (p < d)


@needs_pruned_tile
def test_the_sample_leaves_the_settings_alone():
    """The sample's own search runs unpruned through a thread-local flag, not by changing
    the process-wide setting, which concurrent searches read and restore."""
    from concurrent.futures import ThreadPoolExecutor

    from fastcls._config import settings as tunables

    rng = np.random.default_rng(11)
    both = images(rng, 64 + 2048, 784, n_centres=64, noise=2)
    Q, X = both[:64], both[64:]

    def one(_):
        best_d, best_i = new_topk(64, 5)
        found = prune.plan(
            Q, X, 0, best_d, best_i, 49, 16, l2int.sqeuclidean_topk_int, "sqeuclidean"
        )
        return None if found is None else found[2].tolist()

    with override(knn_prune="auto", knn_prune_min_queries=16, knn_prune_min_work=0):
        with ThreadPoolExecutor(4) as pool:
            plans = list(pool.map(one, range(8)))
        assert tunables.knn_prune == "auto"
    assert plans[0] is not None and all(p == plans[0] for p in plans)


# --------------------------------------------------------------------------- the slab stage
L2_PRUNED = [
    impl for impl in l2int.available_impls() if l2int.INT_CODES[impl] in l2int._PRUNED_DOTS
]
needs_l2_pruned = pytest.mark.skipif(not L2_PRUNED, reason="no pruned L2 tile on this CPU")


@njit
def _slab_l2(PXv, pxn, PQ2, qa, qlast, sbound, out):
    return slab.slab_filter_l2(PXv, pxn, PQ2, qa, qlast, sbound, 0, PXv.shape[0], out)


@njit
def _slab_l1_2(PXv, pxn, PQ2, qa, qlast, sbound, out):
    return slab.slab_filter_l1_2(PXv, pxn, PQ2, qa, qlast, sbound, 0, PXv.shape[0], out)


@njit
def _slab_l1_4(PXv, pxn, PQ2, qa, qlast, sbound, out):
    return slab.slab_filter_l1_4(PXv, pxn, PQ2, qa, qlast, sbound, 0, PXv.shape[0], out)


SLAB_CALLS = {("l2", 2): _slab_l2, ("l1", 2): _slab_l1_2, ("l1", 4): _slab_l1_4}


@needs_pruned_tile
@settings(max_examples=90, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(sorted(SLAB_CALLS)),
    st.integers(1, 41),
    st.integers(1, 9),
    st.integers(1, 70) | st.sampled_from((300, 600)),  # many pairs: the L1 int16 sums
    st.sampled_from((1, 2, 4, 8, 16)),
    st.sampled_from(("random", "extremes", "alike")),
)
def test_slab_filter_keeps_exactly_the_tiles_below(seed, variant, n_rows, n_queries, d, size, kind):
    """Against NumPy: the tiles kept are those with a pooled distance below its query's
    threshold (L2: group size times it), for the 4 queries (clamped), rows past the end
    padded with zeros and dropped by the driver."""
    metric, tile_rows = variant
    rng = np.random.default_rng(seed)
    if kind == "random":
        Q = rng.integers(0, 256, (n_queries, d), dtype=np.uint8)
        X = rng.integers(0, 256, (n_rows, d), dtype=np.uint8)
    elif kind == "extremes":
        Q = rng.choice(np.array([0, 255], np.uint8), (n_queries, d))
        X = rng.choice(np.array([0, 255], np.uint8), (n_rows, d))
    else:
        X = np.clip(rng.integers(0, 256, (1, d)) + rng.integers(-3, 4, (n_rows, d)), 0, 255)
        X = X.astype(np.uint8)
        Q = X[rng.integers(0, n_rows, n_queries)]
    n_groups = max(1, -(-d // size))
    group_of = rng.permutation(np.arange(d) % n_groups).astype(np.int64)
    PXv, pxn = prune.slab_rows(X, group_of, n_groups)
    PQ2, pqn = prune.query_pairs(Q, group_of, n_groups)
    pq, px = (
        group_sums_reference(Q, group_of, n_groups),
        group_sums_reference(X, group_of, n_groups),
    )
    np.testing.assert_array_equal(pqn[:, 0], (pq**2).sum(1))
    np.testing.assert_array_equal(pxn[:n_rows], (px**2).sum(1))
    factor = int(np.bincount(group_of).max()) if metric == "l2" else 1
    pooled = pooled_distances_reference(Q, X, group_of, n_groups, metric)
    # thresholds: at, above and below pooled distances / factor, zero and +inf
    choices = [0.0, np.inf, *np.unique(pooled // factor).astype(float)[:5]]
    best_d = np.full((n_queries, 3), np.inf)
    best_d[:, -1] = rng.choice(np.array(choices), n_queries)
    for qa in range(0, n_queries, 4):
        sbound = np.empty(4, dtype=np.int32)
        if metric == "l2":
            slab.slab_bounds_l2(sbound, pqn, best_d, qa, n_queries - 1, np.int64(factor))
        else:
            slab.slab_bounds_l1(sbound, best_d, qa, n_queries - 1)
        out = np.empty(PXv.shape[0] * 4 + 1, dtype=np.int64)
        n = SLAB_CALLS[variant](PXv, pxn, PQ2, qa, n_queries - 1, sbound, out)
        kept = [j for j in out[:n] if j < n_rows]
        want = []
        for j in range(0, n_rows, tile_rows):
            rows = [r for r in range(j, j + tile_rows) if r < n_rows]
            qs = sorted({min(qa + a, n_queries - 1) for a in range(4)})
            if any(pooled[q, r] < factor * best_d[q, -1] for q in qs for r in rows):
                want.append(j)
        # a tile with rows past the end may be kept for its zero rows: the driver merges
        # it exactly, so what is kept must include everything wanted and nothing else
        assert set(want) <= set(kept)
        assert all(j in want or j + tile_rows > n_rows for j in kept)
        assert kept == sorted(kept)


@needs_pruned_tile
@pytest.mark.parametrize("tile_rows", [2, 4])
def test_l1_slab_sums_many_large_differences_exactly(tile_rows):
    """255 against 0 in groups of 16 over 2048 features: 64 pairs of int16 differences of
    4080 per lane, widened every 8 pairs; the pooled distance is exactly 255 * 2048."""
    d, size = 2048, 16
    group_of = np.arange(d) // size
    Q = np.full((4, d), 255, dtype=np.uint8)
    X = np.zeros((8, d), dtype=np.uint8)
    PXv, pxn = prune.slab_rows(X, group_of, d // size)
    PQ2, _ = prune.query_pairs(Q, group_of, d // size)
    call = SLAB_CALLS[("l1", tile_rows)]
    out = np.empty(8, dtype=np.int64)
    exact = 255 * d
    for threshold, n_kept in ((exact, 0), (exact + 1, 8 // tile_rows)):
        sbound = np.full(4, threshold, dtype=np.int32)
        assert call(PXv, pxn, PQ2, 0, 3, sbound, out) == n_kept


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 300), st.integers(1, 16))
def test_feature_groups_nest_and_bound_the_distance(seed, d, max_size):
    """Each level partitions the features into groups of at most 2^level (nested), and
    its pooled squared distance is at most its size times the distance (Cauchy-Schwarz)."""
    rng = np.random.default_rng(seed)
    X = images(rng, 64, d, n_centres=4, noise=30)
    levels = prune.feature_groups(X, max_size)
    previous = np.arange(d)
    for level, (group_of, n_groups, size) in enumerate(levels, start=1):
        counts = np.bincount(group_of, minlength=n_groups)
        assert counts.min() >= 1 and counts.max() == size <= min(2**level, max_size)
        # nested: features grouped together stay together
        for g in range(previous.max() + 1):
            assert len(set(group_of[previous == g])) == 1
        previous = group_of
        for metric, factor in (("l2", size), ("l1", 1)):
            pooled = pooled_distances_reference(X[:8], X[8:16], group_of, n_groups, metric)
            exact = "sqeuclidean" if metric == "l2" else "l1"  # whole numbers in float64
            full = pairwise_distances_reference(X[:8], X[8:16], exact)
            assert (pooled <= factor * full).all()


def test_feature_groups_find_neighbouring_pixels():
    """On smooth images, the first level pairs mostly adjacent pixels."""
    rng = np.random.default_rng(12)
    yy, xx = np.mgrid[0:16, 0:16]
    blobs = []
    for _ in range(600):
        cy, cx, r = rng.uniform(0, 16), rng.uniform(0, 16), rng.uniform(2, 6)
        blobs.append(255 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)))
    X = np.array(blobs).reshape(600, -1).astype(np.uint8)
    group_of, n_groups, _ = prune.feature_groups(X, 2)[0]
    adjacent = 0
    for g in range(n_groups):
        members = np.flatnonzero(group_of == g)
        if len(members) == 2:
            (y0, y1), (x0, x1) = divmod(members[0], 16), divmod(members[1], 16)
            adjacent += abs(y0 - x0) + abs(y1 - x1) == 1
    assert adjacent >= 0.8 * n_groups


def test_slab_size_keeps_int32_exact():
    for d in (1, 2, 64, 784, 1000, 1024, 2048, 3072):
        size = prune.slab_size(d)
        if d > prune.POOL_MAX_FEATURES or d < 1:
            assert size == 0
            continue
        assert size == 0 or 255**2 * size * d < 2**30
        assert size == 16 or 255**2 * 2 * size * d >= 2**30 or size == 0
    assert prune.slab_size(784) == 16 and prune.slab_size(2048) == 8


@needs_pruned_tile
@pytest.mark.parametrize("path", PRUNED_PATHS, ids=lambda p: f"{p[0]}-{p[1]}-{p[3]}")
@pytest.mark.parametrize("d", [1, 2, 31, 784, 2048])
def test_slab_stage_at_the_extremes(d, path):
    """All-255 and zero rows, at the widest features each group size allows: exact."""
    metric, _, changes, _ = path
    rng = np.random.default_rng(d)
    X = rng.choice(np.array([0, 255], np.uint8), (90, d))
    X[::3] = 255
    X[1::3] = 0
    Q = np.concatenate([X[:6], rng.integers(0, 256, (5, d), dtype=np.uint8)])
    got = search(metric, Q, X, 7, 90, knn_prune="always", **changes)
    assert_reference(metric, *got, Q, X, 7)


def _plan_for_clustered_images(metric, seed, **changes):
    """The plan of a call on 64 queries x 2048 tight clusters of 784-feature images."""
    rng = np.random.default_rng(seed)
    both = images(rng, 64 + 2048, 784, n_centres=64, noise=2)
    Q, X = both[:64], both[64:]
    best_d, best_i = new_topk(64, 5)
    tunables = {"knn_prune": "auto", "knn_prune_min_queries": 16, "knn_prune_min_work": 0}
    if metric == "l1":
        call = (25, 32, l1.l1_topk_uint8, "l1")
    else:
        call = (49, 16, l2int.sqeuclidean_topk_int, "sqeuclidean")
    with override(**tunables, **changes):
        return Q, X, prune.plan(Q, X, 0, best_d, best_i, *call)


@needs_pruned_tile
def test_l1_plan_chooses_a_slab_stage_for_images():
    _, _, found = _plan_for_clustered_images("l1", 14)
    assert found is not None and found[3] is not None
    assert 2 <= found[3][2] <= 16
    assert prune.slab_size_l1(784) == 16 and prune.slab_size_l1(4096) == 0


@needs_l2_pruned
def test_plan_chooses_a_slab_stage_for_images(monkeypatch):
    Q, X, found = _plan_for_clustered_images("sqeuclidean", 13)
    assert found is not None and found[3] is not None
    group_of, n_groups, size = found[3]
    assert group_of.shape == (784,) and 2 <= size <= 16
    # a budget too small for the reordered copies (1.7 MB) but not for the group sums
    # of 16 (0.2 MB): the features keep their order, the slab stage stays
    Q, X, found = _plan_for_clustered_images("sqeuclidean", 13, knn_prune_copy_max_bytes=400_000)
    assert found is not None and found[0] is Q and found[1] is X
    assert found[3] is not None and prune.slab_fits(Q, X, found[3][1])
    got = search("sqeuclidean", Q, X, 5, 2048, knn_prune="always", knn_prune_copy_max_bytes=400_000)
    assert_reference("sqeuclidean", *got, Q, X, 5)
    # nothing fits
    _, _, found = _plan_for_clustered_images("sqeuclidean", 13, knn_prune_copy_max_bytes=100_000)
    assert found is None or found[3] is None
    monkeypatch.setattr(prune, "POOL_MAX_FEATURES", 0)
    _, _, found = _plan_for_clustered_images("sqeuclidean", 13)
    assert found is not None and found[3] is None
