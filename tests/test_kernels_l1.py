"""L1 kernels (fastcls.kernels.l1) against the plain NumPy reference.

Every comparison is "kernel vs ``kneighbors_reference``": indices exactly equal,
distances equal to the float64 result (exactly for uint8, within 1e-9 relative for
floats, whose reference sums in another order). Data include ties, duplicates,
all-zero and constant rows, extreme values and near-duplicates on which float32
accumulation gets the order wrong, so the exact-rerank certificate and its fallback
are both exercised.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastcls
from fastcls._config import override, settings
from fastcls.kernels import l1
from fastcls.kernels.rounding import gamma
from fastcls.kernels.topk import new_topk
from fastcls.reference import kneighbors_reference, pairwise_distances_reference

DTYPES = (np.uint8, np.float32, np.float64)
DIMS = (1, 2, 3, 7, 31, 32, 33, 63, 64, 65, 100, 130)
KINDS = ("random", "duplicates", "zeros", "constant", "extremes", "offset", "small-ints")


def _available_impls() -> list[str]:
    """The implementations numba may compile here, best last (``NUMBA_CPU_FEATURES``
    counts: an AVX2 build on an AVX-512 host gets no AVX-512 tile)."""
    from fastcls._runtime import best_simd

    return list(reversed(best_simd()))


def make_data(rng, n_q, n_x, D, dtype, kind):
    """Queries and training rows of one adversarial kind, values exact in ``dtype``.

    Float values are dyadic (multiples of 1/8 below 2**12), so every float64 sum is
    exact whatever its order: exact ties stay ties in the reference and the kernel.
    """
    lo, hi = 0, 256
    if kind == "extremes":
        Q = rng.choice([0, 255], (n_q, D))
        X = rng.choice([0, 255], (n_x, D))
    elif kind == "small-ints":
        Q = rng.integers(0, 3, (n_q, D))
        X = rng.integers(0, 3, (n_x, D))
    else:
        Q = rng.integers(lo, hi, (n_q, D))
        X = rng.integers(lo, hi, (n_x, D))
    Q = Q.astype(np.float64)
    X = X.astype(np.float64)
    if dtype != np.uint8 and kind in ("random", "duplicates", "offset"):
        Q += rng.integers(0, 8, Q.shape) / 8.0
        X += rng.integers(0, 8, X.shape) / 8.0
    if kind == "duplicates":
        X[rng.integers(0, n_x, n_x // 2)] = X[0]  # many copies of one row
        Q[0] = X[0]
    elif kind == "zeros":
        X[::2] = 0
        Q[0] = 0
    elif kind == "constant":
        X[:] = X[:, :1]  # every row constant: many equal distances
        Q[:] = Q[:, :1]
    elif kind == "offset" and dtype != np.uint8:
        shift = 2048.0 if dtype == np.float32 else 1e6
        Q += shift
        X += shift
    return np.ascontiguousarray(Q.astype(dtype)), np.ascontiguousarray(X.astype(dtype))


def run_streamed(Q, X, k, tile, shortcut=False):
    """The kernel over training tiles of ``tile`` rows with global offsets (as the API).

    ``shortcut=False`` keeps float pixel values on the float kernel (the one under test).
    """
    kernel = l1.l1_topk_uint8 if Q.dtype == np.uint8 else l1.l1_topk_float
    best_d, best_i = new_topk(Q.shape[0], k)
    with override(l1_uint8_shortcut=shortcut):
        for start in range(0, X.shape[0], tile):
            kernel(Q, np.ascontiguousarray(X[start : start + tile]), start, best_d, best_i)
    return best_d, best_i


def assert_matches_reference(Q, X, k, d, i):
    rd, ri = kneighbors_reference(Q, X, k, "l1")
    np.testing.assert_array_equal(i, ri)
    if Q.dtype == np.uint8:
        np.testing.assert_array_equal(d, rd)
    else:
        np.testing.assert_allclose(d, rd, rtol=1e-9, atol=0)
    assert d.dtype == np.float64 and i.dtype == np.int64


@st.composite
def problems(draw):
    dtype = draw(st.sampled_from(DTYPES))
    n_q = draw(st.integers(1, 9))
    n_x = draw(st.integers(1, 40))
    D = draw(st.sampled_from(DIMS))
    k = draw(st.integers(1, n_x))
    kind = draw(st.sampled_from(KINDS))
    seed = draw(st.integers(0, 2**16))
    tile = draw(st.integers(1, n_x))
    return dtype, n_q, n_x, D, k, kind, seed, tile


BOUNDS = ["relative", "absolute"]


@pytest.mark.parametrize("bound", BOUNDS)
@given(problems())
def test_topk_kernel_streamed_matches_reference(bound, problem):
    dtype, n_q, n_x, D, k, kind, seed, tile = problem
    Q, X = make_data(np.random.default_rng(seed), n_q, n_x, D, dtype, kind)
    with override(l1_float_bound=bound):
        d, i = run_streamed(Q, X, k, tile)
    assert_matches_reference(Q, X, k, d, i)


@given(problems())
def test_kneighbors_api_l1_matches_reference(problem):
    dtype, n_q, n_x, D, k, kind, seed, tile = problem
    Q, X = make_data(np.random.default_rng(seed), n_q, n_x, D, dtype, kind)
    d, i = fastcls.kneighbors(Q, X, k, metric="l1", train_tile=tile)
    assert_matches_reference(Q, X, k, d, i)


@pytest.mark.parametrize("bound", BOUNDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("D", [5, 64, 200])
def test_continuous_random_data(dtype, D, bound, monkeypatch):
    """Non-dyadic values: float32 sums are rounded, the rerank must make them exact."""
    monkeypatch.setattr(settings, "l1_float_bound", bound)
    rng = np.random.default_rng(D)
    if dtype == np.uint8:
        Q = rng.integers(0, 256, (21, D), dtype=np.uint8)
        X = rng.integers(0, 256, (150, D), dtype=np.uint8)
    else:
        Q = rng.standard_normal((21, D)).astype(dtype) * 100
        X = rng.standard_normal((150, D)).astype(dtype) * 100
    for k in (1, 10, 150):
        d, i = run_streamed(Q, X, k, 37)
        assert_matches_reference(Q, X, k, d, i)


@pytest.mark.parametrize("bound", BOUNDS)
@pytest.mark.parametrize("D", [3, 100, 3072])
def test_near_duplicates_where_float32_order_is_wrong(D, bound, monkeypatch):
    """Row j = base + (j + 1) ulp at one feature: the exact distances increase with j
    in 6e-5 steps, below the float32 resolution of partial sums of ~1000 D, so the fast
    sums tie or misorder these rows and the certificate / fallback must repair it."""
    monkeypatch.setattr(settings, "l1_float_bound", bound)
    rng = np.random.default_rng(7)
    q = rng.random(D).astype(np.float32)
    base = (1000 + rng.random(D)).astype(np.float32)  # sums ~1000 D: float32 ulp >> 6e-5
    n = 40
    X = np.repeat(base[None, :], n, axis=0)
    order = rng.permutation(n)  # row order unrelated to distance order
    for j in range(n):
        f = j % D
        X[order[j], f] += np.float32(j + 1) * np.spacing(base[f])
    Q = q[None, :].copy()
    rd, ri = kneighbors_reference(Q, X, n, "l1")
    np.testing.assert_array_equal(ri[0], order)  # exact distances: strictly by j
    if D >= 100:  # the fast float32 sums really get the order wrong
        fast = np.empty((1, n), np.float32)
        l1.l1_pairwise_float(Q, X, fast)
        assert not np.array_equal(np.argsort(fast[0], kind="stable"), order)
    for k in (1, 5, 17, n):
        for tile in (7, n):
            d, i = run_streamed(Q, X, k, tile)
            assert_matches_reference(Q, X, k, d, i)
            d64, i64 = run_streamed(Q.astype(np.float64), X.astype(np.float64), k, tile)
            np.testing.assert_array_equal(i64, i)


def test_float32_overflowing_fast_sums_stay_exact():
    """Values near the float32 maximum: the fast sums overflow to inf, the bound uses
    the largest finite float32 and the exact float64 distances are still found."""
    rng = np.random.default_rng(3)
    big = np.float32(3e38)
    Q = (rng.choice([-1, 1], (3, 40)) * big).astype(np.float32)
    X = (rng.choice([-1, 1], (30, 40)) * big).astype(np.float32)
    X[5] = Q[0]
    d, i = run_streamed(Q, X, 4, 11)
    assert_matches_reference(Q, X, 4, d, i)
    assert d[0, 0] == 0.0 and i[0, 0] == 5


@pytest.mark.parametrize("bound", BOUNDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_tile_sizes_and_candidates_do_not_change_results(dtype, bound, monkeypatch):
    monkeypatch.setattr(settings, "l1_float_bound", bound)
    rng = np.random.default_rng(11)
    Q, X = make_data(rng, 23, 97, 70, dtype, "duplicates")
    expected = run_streamed(Q, X, 9, 97)
    for block, chunk, extra in [(2, 4, 0), (6, 8, 1), (64, 12, 8), (1000, 1000, 30)]:
        monkeypatch.setattr(settings, "l1_block_rows", block)
        monkeypatch.setattr(settings, "l1_query_chunk_rows", chunk)
        monkeypatch.setattr(settings, "l1_extra_candidates", extra)
        for tile in (1, 13, 97):
            d, i = run_streamed(Q, X, 9, tile)
            np.testing.assert_array_equal(i, expected[1])
            np.testing.assert_array_equal(d, expected[0])


def test_fallback_alone_is_exact(monkeypatch):
    """A vacuous bound (c = 0) fails every certificate: the fallback rescan alone."""
    monkeypatch.setattr(l1, "lower_bound_factor", lambda n, dtype: 0.0)
    rng = np.random.default_rng(5)
    for dtype in (np.float32, np.float64):
        Q, X = make_data(rng, 6, 50, 33, dtype, "random")
        d, i = run_streamed(Q, X, 7, 20)
        assert_matches_reference(Q, X, 7, d, i)


@pytest.mark.parametrize("dtype", DTYPES)
def test_thread_count_does_not_change_results(dtype, monkeypatch):
    monkeypatch.setattr(settings, "knn_parallel_min_work", 0)  # the parallel drivers
    rng = np.random.default_rng(13)
    Q, X = make_data(rng, 41, 120, 50, dtype, "random")
    with fastcls.num_threads(1):
        d1, i1 = fastcls.kneighbors(Q, X, 6, metric="l1", train_tile=50)
    with fastcls.num_threads(2):
        d2, i2 = fastcls.kneighbors(Q, X, 6, metric="l1", train_tile=50)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(d1, d2)


@pytest.mark.parametrize("kind", ["random", "extremes", "duplicates", "constant"])
def test_uint8_equals_float_on_the_same_values(kind):
    rng = np.random.default_rng(17)
    Q, X = make_data(rng, 10, 60, 45, np.uint8, kind)
    du, iu = run_streamed(Q, X, 8, 25)
    for dtype in (np.float32, np.float64):
        df, i_f = run_streamed(Q.astype(dtype), X.astype(dtype), 8, 25)
        np.testing.assert_array_equal(iu, i_f)
        np.testing.assert_array_equal(du, df)


@pytest.mark.parametrize("cols", [2, 4])
@pytest.mark.parametrize("impl", _available_impls())
@pytest.mark.parametrize("D", [1, 31, 32, 33, 63, 64, 65, 100, 200, 784])
def test_uint8_implementations_agree(impl, D, cols, monkeypatch):
    """psadbw (AVX-512 / AVX2, tiles of 2 or 4 training rows) and the portable int32
    kernel give the same exact result (70 rows: the last 4 x 4 tile of a block clamped)."""
    rng = np.random.default_rng(D)
    Q, X = make_data(rng, 9, 70, D, np.uint8, "extremes" if D % 2 else "random")
    monkeypatch.setattr(settings, "l1_uint8_impl", impl)
    monkeypatch.setattr(settings, "l1_uint8_tile_cols", cols)
    assert l1.uint8_impl() == impl
    assert l1.uint8_tile_cols(impl) == (2 if impl == "portable" else cols)
    d, i = run_streamed(Q, X, 5, 30)
    assert_matches_reference(Q, X, 5, d, i)
    out = np.empty((Q.shape[0], X.shape[0]))
    l1.l1_pairwise_uint8(Q, X, out)
    np.testing.assert_array_equal(out, pairwise_distances_reference(Q, X, "l1"))


@pytest.mark.parametrize("cols", [2, 4])
@pytest.mark.parametrize("accumulate", ["add", "fma"])
@pytest.mark.parametrize("bound", BOUNDS)
@pytest.mark.parametrize("impl", _available_impls())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("D", [1, 7, 8, 15, 16, 17, 33, 40, 100, 130])
def test_float_tiles_and_feature_slices_are_exact(
    impl, dtype, D, bound, accumulate, cols, monkeypatch
):
    """Every float tile (explicit SIMD of each width, of 2 or 4 training rows on AVX-512,
    adding on the adder or the FMA unit, or the fastmath loop), with the features cut into
    slices of 64 bytes (several slices, a longer last one, rows shorter than a vector),
    gives the exact top-k (70 rows: the last tiles of a block clamped)."""
    if impl == "portable" and accumulate == "fma":
        pytest.skip("the portable loop has one accumulation")
    if cols == 4 and impl != "avx512":
        pytest.skip("4 training rows: the AVX-512 tile only")
    rng = np.random.default_rng(D)
    Q, X = make_data(rng, 9, 70, D, dtype, "duplicates" if D % 2 else "random")
    monkeypatch.setattr(settings, "l1_uint8_impl", impl)
    monkeypatch.setattr(settings, "l1_float_bound", bound)
    monkeypatch.setattr(settings, "l1_float_accumulate", accumulate)
    monkeypatch.setattr(settings, "l1_float_tile_cols", cols)
    monkeypatch.setattr(l1, "_FEATURE_SLICE_BYTES", 64)
    assert f"accumulate {accumulate}" in l1.float_impl()
    assert f"tile 4x{cols}" in l1.float_impl()
    d, i = run_streamed(Q, X, 5, 30)
    assert_matches_reference(Q, X, 5, d, i)


@pytest.mark.parametrize("cols", [2, 4])
@pytest.mark.parametrize("use_max", [False, True])
@pytest.mark.parametrize("impl", [i for i in _available_impls() if i != "portable"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fma_accumulation_rounds_like_the_add(impl, dtype, use_max, cols):
    """fma(t, 1, acc) and fma(x, -1, q) round exactly as acc + t and q - x: the FMA tiles'
    fast sums are bit-identical to the adder's (so kappa and the bounds carry over); a
    tile of 4 training rows gives every pair the same bits as the tile of 2."""
    from numba import njit

    wide = impl == "avx512"
    if cols == 4 and not wide:
        pytest.skip("4 training rows: the AVX-512 tile only")
    on_add = l1._FLOAT_TILES[wide, use_max, False, cols]
    on_fma = l1._FLOAT_TILES[wide, use_max, True, cols]
    narrow = l1._FLOAT_TILES[wide, use_max, False, 2]

    @njit
    def both(Q, X, d1):
        return on_add(Q, X, 0, 3, 0, cols - 1, 0, d1), on_fma(Q, X, 0, 3, 0, cols - 1, 0, d1)

    @njit
    def pairs_of_two(Q, X, d1):
        return narrow(Q, X, 0, 3, 0, 3, 0, d1), narrow(Q, X, 0, 3, 2, 3, 0, d1)

    rng = np.random.default_rng(5)
    for D in (16, 37, 300):
        Q = (rng.standard_normal((4, D)) * 10.0 ** rng.integers(-3, 4, (4, D))).astype(dtype)
        X = (rng.standard_normal((cols, D)) * 10.0 ** rng.integers(-3, 4, (cols, D))).astype(dtype)
        added, fused = both(Q, X, D)
        np.testing.assert_array_equal(np.array(added), np.array(fused))
        expected = [
            (np.maximum(Q[a], X[b]) if use_max else np.abs(Q[a].astype(np.float64) - X[b])).sum()
            for a in range(4)
            for b in range(cols)
        ]
        np.testing.assert_allclose(np.array(fused, np.float64), expected, rtol=1e-4)
        if cols == 4:  # entry 4 a + b of the wide tile == entry 2 a + b % 2 of a narrow one
            first, second = pairs_of_two(Q, X, D)
            narrow_sums = [
                (first, second)[b // 2][2 * a + b % 2] for a in range(4) for b in range(4)
            ]
            np.testing.assert_array_equal(np.array(added), np.array(narrow_sums))


def test_float_tile_cols_choice(monkeypatch):
    """4 training rows per AVX-512 float tile on the measured Xeon's core, 2 elsewhere and
    for the AVX2 and portable tiles; a setting forces it; a bad setting names itself."""
    for xeon in ("rocketlake", "sapphirerapids"):
        monkeypatch.setattr(l1, "cpu_name", lambda xeon=xeon: xeon)
        assert l1.float_tile_cols("avx512") == 4
        assert l1.float_tile_cols("avx2") == l1.float_tile_cols("portable") == 2
    for other in ("znver4", "icelake-server", "haswell"):
        monkeypatch.setattr(l1, "cpu_name", lambda other=other: other)
        assert l1.float_tile_cols("avx512") == 2
    monkeypatch.setattr(settings, "l1_float_tile_cols", 4)
    assert l1.float_tile_cols("avx512") == 4
    assert l1.float_tile_cols("avx2") == 2
    for bad in (3, 8, True, "4"):
        monkeypatch.setattr(settings, "l1_float_tile_cols", bad)
        with pytest.raises(ValueError, match="l1_float_tile_cols"):
            l1.float_tile_cols("avx512")


def test_float_accumulate_choice(monkeypatch):
    """The "auto" choice puts the terms on the FMA unit on AMD Zen 4 (max/add/subtract share
    two ports there), on the adder elsewhere; a bad setting names itself."""
    monkeypatch.setattr(l1, "cpu_name", lambda: "znver4")
    assert l1.float_accumulate("avx512") == l1.float_accumulate("avx2") == "fma"
    assert l1.float_accumulate("portable") == "add"  # the fastmath loop has one form
    for other in ("skylake-avx512", "znver3", "haswell", "generic"):  # not measured / Intel
        monkeypatch.setattr(l1, "cpu_name", lambda other=other: other)
        assert l1.float_accumulate("avx512") == "add"
    monkeypatch.setattr(settings, "l1_float_accumulate", "fma")
    assert l1.float_accumulate("avx2") == "fma"
    assert l1.float_accumulate("portable") == "add"
    monkeypatch.setattr(settings, "l1_float_accumulate", "mul")
    with pytest.raises(ValueError, match="l1_float_accumulate"):
        l1.float_accumulate("avx2")


def test_uint8_tile_cols_choice(monkeypatch):
    """4 training rows per tile on AMD Zen 4 and the Intel Xeon's zmm tile (measured), 2
    elsewhere; the portable tile is always 4 x 2; a setting forces it; a bad setting
    names itself."""
    monkeypatch.setattr(l1, "cpu_name", lambda: "znver4")
    assert l1.uint8_tile_cols("avx512") == l1.uint8_tile_cols("avx2") == 4
    assert l1.uint8_tile_cols("portable") == 2
    for xeon in ("rocketlake", "sapphirerapids"):
        monkeypatch.setattr(l1, "cpu_name", lambda xeon=xeon: xeon)
        assert l1.uint8_tile_cols("avx512") == 4
        assert l1.uint8_tile_cols("avx2") == 2  # its ymm tile was slower with 4 rows
    for other in ("icelake-server", "znver3", "znver5", "haswell"):
        monkeypatch.setattr(l1, "cpu_name", lambda other=other: other)
        assert l1.uint8_tile_cols("avx512") == 2
    monkeypatch.setattr(settings, "l1_uint8_tile_cols", 4)
    assert l1.uint8_tile_cols("avx2") == 4
    assert "(tile 4x" in l1.uint8_description()
    for bad in (3, 8, True, "4"):
        monkeypatch.setattr(settings, "l1_uint8_tile_cols", bad)
        with pytest.raises(ValueError, match="l1_uint8_tile_cols"):
            l1.uint8_tile_cols("avx2")


@pytest.mark.parametrize("cols", [2, 4])
@pytest.mark.parametrize("impl", _available_impls())
@given(
    n_q=st.integers(1, 11),
    n_x=st.integers(1, 40),
    D=st.sampled_from([1, 32, 64, 65, 129]),
    k=st.integers(1, 12),
    levels=st.sampled_from([2, 3, 256]),
    seed=st.integers(0, 2**16),
)
def test_uint8_topk_skips_only_tiles_without_candidates(impl, cols, n_q, n_x, D, k, levels, seed):
    """The top-k driver skips a tile when no pair beats its query's k-th best (one test
    per tile): with few distinct values (ties everywhere), k near or above the row count
    and clamped tiles at both edges, the result is still the exact reference, ties by
    index."""
    rng = np.random.default_rng(seed)
    Q = (rng.integers(0, levels, (n_q, D)) * (255 // max(levels - 1, 1))).astype(np.uint8)
    X = (rng.integers(0, levels, (n_x, D)) * (255 // max(levels - 1, 1))).astype(np.uint8)
    with override(l1_uint8_impl=impl, l1_uint8_tile_cols=cols, l1_block_rows=6):
        best_d, best_i = new_topk(n_q, k)
        l1.l1_topk_uint8(Q, X, 0, best_d, best_i)
    found = min(k, n_x)  # beyond the training rows: the empty slots stay (inf, -1)
    assert_matches_reference(Q, X, found, best_d[:, :found], best_i[:, :found])
    assert np.isinf(best_d[:, found:]).all() and (best_i[:, found:] == -1).all()


def test_uint8_impl_choice(monkeypatch):
    from fastcls import _runtime

    assert l1.uint8_impl() == _available_impls()[-1]
    monkeypatch.setattr(settings, "l1_uint8_impl", "sse9")
    with pytest.raises(ValueError, match="l1_uint8_impl must be None or one of"):
        l1.uint8_impl()
    monkeypatch.setattr(_runtime, "cpu_features", lambda: frozenset())
    monkeypatch.setattr(settings, "l1_uint8_impl", None)
    assert l1.uint8_impl() == "portable"  # a CPU without AVX2 gets the portable kernel
    monkeypatch.setattr(settings, "l1_uint8_impl", "avx2")
    with pytest.raises(ValueError, match="not supported by this CPU"):
        l1.uint8_impl()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("D", [1, 33, 130])
def test_pairwise(dtype, D):
    rng = np.random.default_rng(D)
    if dtype == np.uint8:
        X = rng.integers(0, 256, (11, D), dtype=np.uint8)
        Y = rng.integers(0, 256, (26, D), dtype=np.uint8)
    else:
        X = (rng.standard_normal((11, D)) * 50).astype(dtype)
        Y = (rng.standard_normal((26, D)) * 50).astype(dtype)
    ref = pairwise_distances_reference(X, Y, "l1")
    out = fastcls.pairwise_distances(X, Y, metric="l1")
    assert out.dtype == (np.float32 if dtype == np.float32 else np.float64)
    if dtype == np.uint8:
        np.testing.assert_array_equal(out, ref)
    else:  # documented bound: relative error <= gamma_D(u) (+ the float32 output rounding)
        u = 2.0**-24 if dtype == np.float32 else 2.0**-53
        bound = l1.gamma(D, u) + u
        assert np.all(np.abs(out - ref) <= bound * ref)


def test_lower_bound_factor():
    c32 = l1.lower_bound_factor(3072, np.float32)
    assert 1 - 2e-4 < c32 < 1
    c64 = l1.lower_bound_factor(3072, np.float64)
    assert c32 < c64 < 1
    assert l1.lower_bound_factor(2**24, np.float32) == 0.0  # vacuous bound
    # the bound holds on sums whose float32 error is large: constant terms 0.1
    D = 3072
    q = np.full((1, D), 0.1, np.float32)
    x = np.zeros((1, D), np.float32)
    fast = np.empty((1, 1), np.float32)
    l1.l1_pairwise_float(q, x, fast)
    exact = float(pairwise_distances_reference(q, x, "l1")[0, 0])
    assert l1.lower_bound_factor(D, np.float32) * float(fast[0, 0]) <= exact


def test_empty_inputs_are_noops():
    Q = np.zeros((0, 4), np.float32)
    X = np.zeros((3, 4), np.float32)
    best_d, best_i = new_topk(0, 2)
    l1.l1_topk_float(Q, X, 0, best_d, best_i)
    best_d, best_i = new_topk(2, 2)
    l1.l1_topk_uint8(np.zeros((2, 4), np.uint8), np.zeros((0, 4), np.uint8), 0, best_d, best_i)
    assert np.all(best_i == -1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["random", "extremes", "duplicates", "constant"])
def test_pixel_floats_take_the_exact_uint8_shortcut(dtype, kind, monkeypatch):
    rng = np.random.default_rng(19)
    Q, X = make_data(rng, 10, 60, 45, np.uint8, kind)
    Qf, Xf = Q.astype(dtype), X.astype(dtype)
    expected = run_streamed(Qf, Xf, 8, 25, shortcut=False)

    def refuse(*args):
        raise AssertionError("the float kernel ran on pixel values")

    monkeypatch.setattr(l1, "_topk_float_kernel", refuse)  # parallel driver
    monkeypatch.setattr(l1, "_topk_float_chunk", refuse)  # small searches
    d, i = run_streamed(Qf, Xf, 8, 25, shortcut=True)
    np.testing.assert_array_equal(i, expected[1])
    np.testing.assert_array_equal(d, expected[0])
    out = np.empty((10, 60), dtype)
    l1.l1_pairwise_float(Qf, Xf, out)
    np.testing.assert_array_equal(out, pairwise_distances_reference(Q, X, "l1"))


@pytest.mark.parametrize("bad", [0.5, -1.0, 256.0, -0.25])
def test_non_pixel_values_stay_on_the_float_kernel(bad, monkeypatch):
    rng = np.random.default_rng(23)
    Q, X = make_data(rng, 6, 30, 20, np.uint8, "random")
    Qf, Xf = Q.astype(np.float32), X.astype(np.float32)
    Xf[17, 3] = bad  # one value is enough
    called = []
    for name in ("_topk_float_kernel", "_topk_float_chunk"):  # parallel, small searches
        kernel = getattr(l1, name)
        monkeypatch.setattr(l1, name, lambda *a, kernel=kernel: called.append(1) or kernel(*a))
    d, i = run_streamed(Qf, Xf, 5, 30, shortcut=True)
    assert called
    assert_matches_reference(Qf, Xf, 5, d, i)


@pytest.mark.parametrize("impl", _available_impls())
def test_uint8_strided_inputs(impl, monkeypatch):
    """Row views with a row stride wider than D (column slices) and Fortran-ordered
    arrays give the reference result: the tiles address rows by their stride."""
    rng = np.random.default_rng(5)
    Qw, Xw = make_data(rng, 11, 67, 130, np.uint8, "random")
    monkeypatch.setattr(settings, "l1_uint8_impl", impl)
    for Q, X in ((Qw[:, 3:103], Xw[:, 3:103]), (np.asfortranarray(Qw), np.asfortranarray(Xw))):
        best_d, best_i = new_topk(Q.shape[0], 5)
        l1.l1_topk_uint8(Q, X, 0, best_d, best_i)
        assert_matches_reference(Q, X, 5, best_d, best_i)
        out = np.empty((Q.shape[0], X.shape[0]))
        l1.l1_pairwise_uint8(Q, X, out)
        np.testing.assert_array_equal(out, pairwise_distances_reference(Q, X, "l1"))


@pytest.mark.parametrize("impl", _available_impls())
@pytest.mark.parametrize("D", [1, 31, 32, 33, 63, 64, 65, 100, 784])
def test_uint8_zero_padded_rows_give_identical_topk(impl, D, monkeypatch):
    """The top-k driver's 64-byte aligned, zero-padded copies of query chunks and
    training blocks (``l1_pad_min_queries``) give the same distances and indices as the
    plain rows, over several chunks and blocks (the last block shorter)."""
    rng = np.random.default_rng(D + 1)
    Q, X = make_data(rng, 23, 91, D, np.uint8, "duplicates" if D % 2 else "random")
    monkeypatch.setattr(settings, "l1_uint8_impl", impl)
    monkeypatch.setattr(settings, "l1_block_rows", 10)
    monkeypatch.setattr(settings, "l1_query_chunk_rows", 8)
    results = []
    for min_queries in (0, 1):
        monkeypatch.setattr(settings, "l1_pad_min_queries", min_queries)
        results.append(run_streamed(Q, X, 6, 40))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert_matches_reference(Q, X, 6, *results[1])


def test_padded_width_choice(monkeypatch):
    monkeypatch.setattr(settings, "l1_pad_min_queries", 256)
    assert l1._padded_width("avx512", 784, 1252) == 832
    assert l1._padded_width("avx2", 784, 1252) == 800
    assert l1._padded_width("avx512", 768, 1252) == 0  # already a multiple
    assert l1._padded_width("avx512", 50, 1252) == 0  # shorter than a vector
    assert l1._padded_width("portable", 784, 1252) == 0
    assert l1._padded_width("avx512", 784, 100) == 0  # copies not paid back
    monkeypatch.setattr(settings, "l1_pad_min_queries", 0)
    assert l1._padded_width("avx512", 784, 1252) == 0


def test_uint8_memmap_training_rows_with_padding(tmp_path, monkeypatch):
    """Read-only (memmapped) training rows go through the padded blocks too."""
    rng = np.random.default_rng(3)
    Q, X = make_data(rng, 40, 150, 100, np.uint8, "random")
    np.save(tmp_path / "x.npy", X)
    monkeypatch.setattr(settings, "l1_pad_min_queries", 1)
    Xm = np.load(tmp_path / "x.npy", mmap_mode="r")
    d, i = fastcls.kneighbors(Q, Xm, k=4, metric="l1")
    assert_matches_reference(Q, X, 4, d, i)


def test_auto_bound_choice(monkeypatch):
    """ "auto" takes the absolute bound for data near the origin (pixels, standardised
    features), the relative one for data far from it or near the float32 maximum, and for
    fewer than ABSOLUTE_MIN_QUERIES queries (the rows' sums would cost more than they save)."""
    rng = np.random.default_rng(29)
    pixels = (rng.random((20, 300)) * 255).astype(np.float32)
    scaled = rng.standard_normal((20, 300)).astype(np.float32)
    offset = (1000 + rng.standard_normal((20, 300))).astype(np.float32)
    huge = (rng.random((20, 300)) * 3e36).astype(np.float32)
    c = l1.lower_bound_factor(300, np.float32)

    def chosen(A):
        with override(l1_float_bound="auto"):
            return l1._choose_bound(A[:8], A[8:], "avx512", 1024, c)[0]

    assert chosen(pixels) == 0  # 8 queries: below ABSOLUTE_MIN_QUERIES
    monkeypatch.setattr(l1, "ABSOLUTE_MIN_QUERIES", 8)
    assert chosen(pixels) == 1 and chosen(scaled) == 1
    assert chosen(offset) == 0 and chosen(huge) == 0
    with override(l1_float_bound="nonsense"), pytest.raises(ValueError, match="l1_float_bound"):
        l1._choose_bound(pixels[:8], pixels[8:], "avx512", 1024, c)


@pytest.mark.parametrize("impl", ["portable", "avx2", "avx512"])
def test_absolute_bound_kappa_covers_the_chain(impl):
    """kappa grows with the roundings a term can pass through: the portable loop (any
    order over a slice) needs a larger one than the SIMD tiles."""
    k = l1.absolute_bound_kappa(3072, np.float32, impl, 1024)
    longest = 3072 - 2 * 1024
    assert k >= 2 * gamma(longest // 16 + 2, 2.0**-24)
    if impl == "portable":
        assert k >= 2 * gamma(longest, 2.0**-24)


def test_store_tuple_writes_each_entry_at_its_index():
    """The drivers' tuple-to-buffer store (constant indexes, no indexed jump) writes entry
    t to buf[t] and nothing beyond the tuple."""
    from numba import njit

    from fastcls.kernels._rows import store_tuple

    @njit
    def stored(a, b, c):
        buf = np.full(5, -9, dtype=np.int64)
        store_tuple(buf, (a, b, c))
        return buf

    assert stored(7, -2, 2**40).tolist() == [7, -2, 2**40, -9, -9]
