"""The AMX (bf16x3) scores of the L2 float32 search: the split, the error bound, the search.

The kernel tests run where the CPU has AMX-BF16 and Linux grants its tiles (Intel Xeon
from Sapphire Rapids on); elsewhere they skip, and the choice and error tests still run.
The search tests force each GEMM in turn, so on an AMX machine both paths are checked
against the reference and against each other.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastcls
from fastcls._config import override
from fastcls.kernels import amx, l2
from fastcls.kernels.rounding import U32, gamma
from fastcls.reference import (
    bf16_split_reference,
    bf16x3_scores_reference,
    kneighbors_reference,
    pairwise_distances_reference,
)

needs_amx = pytest.mark.skipif(
    not amx.amx_ready(), reason="needs AMX-BF16 tiles (Intel Xeon 4th gen and later)"
)

GEMMS = ["blas", "amx"] if amx.amx_ready() else ["blas"]


def split(A):
    """:func:`amx.pack_b_tiles` of all of A (the queries' layout)."""
    hi = np.empty(amx.b_tiles_shape(A.shape[0], A.shape[1]), np.uint32)
    lo = np.empty_like(hi)
    amx.pack_b_tiles(A, 0, A.shape[0], hi, lo)
    return hi, lo


def unpack_b(tiles, n, D):
    """(n, D) bfloat16 bits back from the B-tile layout ``[t, kb, p, n]`` of pairs."""
    t, kb = tiles.shape[:2]
    pairs = tiles.view(np.uint16).reshape(t, kb, 16, 16, 2)  # [t, kb, p, n, e]
    return pairs.transpose(0, 3, 1, 2, 4).reshape(16 * t, 32 * kb)[:n, :D]


def scores(Q, X, block_rows=64, first=0, last=None):
    """``X[first:last] . Q^T`` by the AMX kernel: (last - first, n_q) and its padding."""
    last = X.shape[0] if last is None else last
    q_hi, q_lo = split(Q)
    GT = np.full((amx.ceil32(last - first), 16 * q_hi.shape[0]), np.nan, np.float32)
    a_hi = np.empty(amx.a_tiles_shape(block_rows, X.shape[1]), np.uint16)
    a_lo = np.empty_like(a_hi)
    amx.bf16x3_scores(q_hi, q_lo, X, first, last, GT, a_hi, a_lo)
    return GT


def random_rows(rng, n, D, kind):
    """float32 rows of one kind: ordinary, wide exponent range, tiny, signed zeros."""
    if kind == "normal":
        A = rng.standard_normal((n, D))
    elif kind == "pixels":
        A = rng.integers(0, 256, (n, D)) + rng.random((n, D))
    elif kind == "wide":  # magnitudes 2^-40 .. 2^40, both signs
        A = rng.standard_normal((n, D)) * 2.0 ** rng.integers(-40, 41, (n, D))
    elif kind == "tiny":  # near float32's smallest normals: the flush-to-zero term
        A = rng.standard_normal((n, D)) * 2.0**-120
    elif kind == "ties":  # halfway between two bfloat16 values: rounding to even
        odd = 2 * rng.integers(0, 64, (n, D)) + 1
        A = (1.0 + odd * 2.0**-8) * rng.choice([-1.0, 1.0], (n, D))
    else:  # zeros, with a few large entries
        A = np.where(rng.random((n, D)) < 0.9, -0.0, rng.standard_normal((n, D)) * 1e6)
    return np.ascontiguousarray(A, dtype=np.float32)


KINDS = ["normal", "pixels", "wide", "tiny", "ties", "zeros"]


@needs_amx
@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.integers(1, 70), st.sampled_from(KINDS))
def test_split_equals_reference(seed, n, D, kind):
    A = random_rows(np.random.default_rng(seed), n, D, kind)
    hi, lo = split(A)
    ref_hi, ref_lo = bf16_split_reference(A)
    np.testing.assert_array_equal(unpack_b(hi, n, D), ref_hi)
    np.testing.assert_array_equal(unpack_b(lo, n, D), ref_lo)
    # the padding is zeros
    assert not unpack_b(hi, hi.shape[0] * 16, hi.shape[1] * 32)[n:].any()
    assert not unpack_b(lo, lo.shape[0] * 16, lo.shape[1] * 32)[:, D:].any()


def test_split_reference_rounds_to_nearest_even():
    A = np.array([1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8, 1.0 + 2.0**-9, -(1.0 + 2.0**-8)], np.float32)
    hi, lo = bf16_split_reference(A)
    np.testing.assert_array_equal(hi, [0x3F80, 0x3F82, 0x3F80, 0xBF80])
    # the ties went to the even 1.0; lo keeps what hi dropped: 2^-8, 2^-9
    np.testing.assert_array_equal(lo[[0, 2]], [0x3B80, 0x3B00])
    # hi + lo is within 2^-16 relative of A
    value = (hi.astype(np.uint32) << 16).view(np.float32).astype(np.float64) + (
        lo.astype(np.uint32) << 16
    ).view(np.float32).astype(np.float64)
    assert np.all(np.abs(value - A) <= 2.0**-16 * np.abs(A))


def proven_bound(Q, X):
    """|G - Q.X^T| bound of fastcls.kernels.amx (per entry, from the entries' magnitudes)."""
    D = Q.shape[1]
    mag = np.abs(Q.astype(np.float64)) @ np.abs(X.astype(np.float64)).T
    return (1.02 * gamma(3 * D, U32) + 3.01 * 2.0**-16) * mag + amx.gemm_abs_error(D)


@needs_amx
@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 50),
    st.integers(1, 80),
    st.sampled_from([1, 2, 31, 32, 33, 100, 784]),
    st.sampled_from(KINDS),
    st.sampled_from([32, 64, 96]),
)
def test_scores_within_the_proven_bound(seed, n_q, n_x, D, kind, block_rows):
    rng = np.random.default_rng(seed)
    Q, X = random_rows(rng, n_q, D, kind), random_rows(rng, n_x, D, kind)
    G = scores(Q, X, block_rows).T
    exact = Q.astype(np.float64) @ X.astype(np.float64).T
    err = np.abs(G[:n_q, :n_x] - exact)
    # the float64 product itself is within gamma_D(2^-53) of the exact one
    slack = gamma(D, 2.0**-53) * (np.abs(Q.astype(np.float64)) @ np.abs(X.astype(np.float64)).T)
    assert np.all(err <= proven_bound(Q, X) + slack)
    # the padding columns score the zero rows
    assert np.all(G[:n_q, n_x:] == 0)
    # and the three products are what is summed: close to the float64 reference of them
    ref3 = bf16x3_scores_reference(Q, X)
    mag = np.abs(Q.astype(np.float64)) @ np.abs(X.astype(np.float64)).T
    assert np.all(np.abs(G[:n_q, :n_x] - ref3) <= 1.02 * gamma(3 * D, U32) * mag + 2.0**-60 * D)


@needs_amx
def test_scores_of_a_row_range_and_many_blocks():
    rng = np.random.default_rng(3)
    Q, X = random_rows(rng, 45, 200, "pixels"), random_rows(rng, 300, 200, "pixels")
    whole = scores(Q, X, 32)
    part = scores(Q, X, 64, first=37, last=251)
    np.testing.assert_array_equal(part[: 251 - 37, :45], whole[37:251, :45])


@needs_amx
def test_bound_is_close_to_what_the_hardware_reaches():
    """Sanity of the model: the observed error is well inside the proven one, and the
    bf16x3 product is much closer to the exact one than a plain bfloat16 product."""
    rng = np.random.default_rng(4)
    Q, X = random_rows(rng, 64, 3072, "pixels"), random_rows(rng, 64, 3072, "pixels")
    G = scores(Q, X)[:64, :64].T
    exact = Q.astype(np.float64) @ X.astype(np.float64).T
    rel = np.abs(G - exact) / (np.abs(Q.astype(np.float64)) @ np.abs(X.astype(np.float64)).T)
    assert rel.max() <= amx.gemm_cross_coefficient(3072) / 2
    hi = bf16_split_reference(Q)[0].astype(np.uint32) << 16
    xh = bf16_split_reference(X)[0].astype(np.uint32) << 16
    plain = hi.view(np.float32).astype(np.float64) @ xh.view(np.float32).astype(np.float64).T
    assert np.abs(G - exact).max() < np.abs(plain - exact).max() / 16


@needs_amx
def test_accumulation_rounds_to_nearest_even():
    """The error bound takes the SDM's word that tdpbf16ps rounds to nearest even: probe it.

    Scores ``1 + t`` with ``t`` a bfloat16 (so the lo halves are zero), in units of
    ``u = 2^-24``: 1.5u rounds up (truncation would keep 1), u and 3u are ties that go to
    the even neighbour (1 and 1 + 4u)."""
    u = 2.0**-24
    X = np.array([[1.0, 1.0]], np.float32)
    for t, expected in ((1.5 * u, 2 * u), (u, 0.0), (3 * u, 4 * u), (0.75 * u, 0.0)):
        Q = np.array([[1.0, t]], np.float32)
        assert float(scores(Q, X)[0, 0]) - 1.0 == expected
    # the search runs the same probe once before it trusts the tiles
    assert amx.bf16_rounding_verified()


def test_scores_refuse_to_run_without_the_tiles(monkeypatch):
    monkeypatch.setattr(amx, "amx_ready", lambda: False)
    Q = np.ones((2, 3), np.float32)
    with pytest.raises(RuntimeError, match="AMX"):
        amx.bf16x3_scores(None, None, Q, 0, 2, None, None, None)


def test_gemm_choice(monkeypatch):
    with override(l2_float_gemm="blas"):
        assert l2.float_gemm() == "blas"
    with override(l2_float_gemm="nope"), pytest.raises(ValueError, match="l2_float_gemm"):
        l2.float_gemm()
    monkeypatch.setattr(amx, "amx_ready", lambda: False)
    with override(l2_float_gemm="auto"):
        assert l2.float_gemm() == "blas"
    with override(l2_float_gemm="amx"), pytest.raises(ValueError, match="AMX"):
        l2.float_gemm()
    monkeypatch.setattr(amx, "amx_ready", lambda: True)
    monkeypatch.setattr(amx, "bf16_rounding_verified", lambda: True)
    with override(l2_float_gemm="auto"):
        assert l2.float_gemm() == "amx"
    # a CPU whose accumulator rounds otherwise keeps BLAS (the bound would not hold)
    monkeypatch.setattr(amx, "bf16_rounding_verified", lambda: False)
    with override(l2_float_gemm="auto"):
        assert l2.float_gemm() == "blas"
    with override(l2_float_gemm="amx"), pytest.raises(ValueError, match="rounds to nearest"):
        l2.float_gemm()


@needs_amx
@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "64"])
def test_amx_block_rows_setting_is_checked(bad):
    Q = np.random.default_rng(0).random((40, 50), dtype=np.float32)
    with (
        override(l2_float_gemm="amx", l2_direct_max_work=0, l2_amx_block_rows=bad),
        pytest.raises(ValueError, match="l2_amx_block_rows"),
    ):
        fastcls.kneighbors(Q[:5], Q, 3, "sqeuclidean")


def test_gemm_coefficients():
    # bf16x3's GEMM term: about 3.2x sgemm's at D = 3072, never smaller
    for D in (1, 100, 3072, 100_000):
        assert amx.gemm_cross_coefficient(D) > 2 * gamma(D, U32)
    assert 3.0 < amx.gemm_cross_coefficient(3072) / (2 * gamma(3072, U32)) < 3.5


def make_problem(rng, n_q, n_x, D, kind):
    Q = rng.integers(0, 256, (n_q, D)) + rng.integers(0, 8, (n_q, D)) / 8
    X = rng.integers(0, 256, (n_x, D)) + rng.integers(0, 8, (n_x, D)) / 8
    if kind == "near-duplicates":  # x + eps on one feature, far below bf16x3's resolution
        X[:] = X[0]
        X[np.arange(n_x), rng.integers(0, D, n_x)] += rng.integers(1, 4, n_x) * 2.0**-12
        Q[:] = X[0] + rng.integers(-2, 3, (n_q, D))
    elif kind == "duplicates":
        X[rng.integers(0, n_x, n_x)] = X[rng.integers(0, n_x, n_x)]
        Q[: n_q // 2] = X[rng.integers(0, n_x, n_q // 2)]
    elif kind == "offset":  # cancellation in the GEMM trick
        Q += 1e4
        X += 1e4
    return np.ascontiguousarray(Q, np.float32), np.ascontiguousarray(X, np.float32)


@pytest.mark.parametrize("gemm", GEMMS)
@pytest.mark.parametrize("kind", ["random", "near-duplicates", "duplicates", "offset"])
@pytest.mark.parametrize("split_mode", ["queries", "rows"])
def test_search_equals_reference_with_each_gemm(gemm, kind, split_mode):
    rng = np.random.default_rng(5)
    Q, X = make_problem(rng, 37, 301, 77, kind)
    with (
        override(
            l2_float_gemm=gemm, l2_uint8_shortcut=False, l2_direct_max_work=0,
            l2_thread_split=split_mode, l2_train_block_rows=64, l2_query_tile_rows=20,
            l2_amx_block_rows=32,
        ),
        fastcls.num_threads(2),
    ):  # fmt: skip
        d, i = fastcls.kneighbors(Q, X, 7, "sqeuclidean")
    dr, ir = kneighbors_reference(Q, X, 7, "sqeuclidean")
    np.testing.assert_array_equal(i, ir)
    np.testing.assert_allclose(d, dr, rtol=1e-9, atol=0)


@needs_amx
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_amx_and_blas_give_the_same_answer_on_a_fitted_model(dtype):
    rng = np.random.default_rng(6)
    Q, X = make_problem(rng, 70, 2000, 300, "random")
    Q, X = Q.astype(dtype), X.astype(dtype)
    model = fastcls.KNearestNeighbor(k=5, metric="l2").fit(X, np.arange(len(X)) % 3)
    out = {}
    for gemm in ("blas", "amx"):
        for threads in (1, 2):
            with override(l2_float_gemm=gemm, l2_direct_max_work=0), fastcls.num_threads(threads):
                out[gemm, threads] = model.kneighbors(Q)
    first = out["blas", 1]
    for d, i in out.values():
        np.testing.assert_array_equal(i, first[1])
        np.testing.assert_array_equal(d, first[0])


@needs_amx
def test_search_reports_the_amx_path():
    assert "AMX" in l2.selected_paths()["l2_float"]
    with override(l2_float_gemm="blas"):
        assert "AMX" not in l2.selected_paths()["l2_float"]


# --------------------------------------------------------------------------- int8 (uint8 L2)
def int8_search(Q, X, k, chunk=16):
    from fastcls.kernels import l2int
    from fastcls.kernels.topk import new_topk

    best_d, best_i = new_topk(Q.shape[0], k)
    with override(l2_uint8_impl="amx"):
        impl, Qs, qn, xn, xc = l2int._prepare(Q, X)
        assert impl == "amx"
        amx.topk_int8(Qs, X, qn, xn - 2 * xc, np.int64(0), best_d, best_i, chunk)
        serial_d, serial_i = new_topk(Q.shape[0], k)
        amx.topk_int8(Qs, X, qn, xn - 2 * xc, np.int64(0), serial_d, serial_i, chunk, True)
    np.testing.assert_array_equal(serial_d, best_d)
    np.testing.assert_array_equal(serial_i, best_i)
    return best_d, best_i


@needs_amx
@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 40),
    st.integers(1, 90),
    st.sampled_from([1, 3, 63, 64, 65, 127, 128, 200]),
    st.sampled_from(["random", "extremes", "duplicates"]),
)
def test_int8_tiles_equal_reference(seed, n_q, n_x, D, kind):
    rng = np.random.default_rng(seed)
    if kind == "extremes":
        Q = rng.choice([0, 255], (n_q, D)).astype(np.uint8)
        X = rng.choice([0, 255], (n_x, D)).astype(np.uint8)
    else:
        Q = rng.integers(0, 256, (n_q, D), dtype=np.uint8)
        X = rng.integers(0, 256, (n_x, D), dtype=np.uint8)
        if kind == "duplicates":
            X[rng.integers(0, n_x, n_x)] = X[rng.integers(0, n_x, n_x)]
            Q[: n_q // 2] = X[rng.integers(0, n_x, n_q // 2)]
    k = min(5, n_x)
    d, i = int8_search(Q, X, k)
    dr, ir = kneighbors_reference(Q, X, k, "sqeuclidean")
    np.testing.assert_array_equal(i, ir)
    np.testing.assert_array_equal(d, dr)
    from fastcls.kernels import l2int

    with override(l2_uint8_impl="amx"):
        out = np.full((n_q, n_x), np.nan)
        l2int.sqeuclidean_pairwise_int(Q, X, out)
    np.testing.assert_array_equal(out, pairwise_distances_reference(Q, X, "sqeuclidean"))


@needs_amx
def test_small_uint8_calls_take_the_next_kernel_unless_amx_is_forced():
    from fastcls.kernels import l2int

    Q, X = np.zeros((500, 64), np.uint8), np.zeros((1500, 64), np.uint8)
    assert l2int._prepare(Q, X)[0] == l2int.available_impls()[1]
    with override(l2_uint8_impl="amx"):
        assert l2int._prepare(Q, X)[0] == "amx"
    with override(l2_amx_min_work=0):
        assert l2int._prepare(Q, X)[0] == "amx"


@needs_amx
@pytest.mark.parametrize("q_value", [0, 255])
def test_int8_tiles_exact_at_the_largest_feature_count(q_value):
    """int32 accumulators: 65536 features of 255 against queries of 0 or 255 (shifted to
    -128 or 127) are the extremes of the dot product, ``128 * 255 * 65536 < 2^31``."""
    from fastcls.kernels import l2int

    D = l2int.AMX_MAX_FEATURES
    X = np.full((20, D), 255, np.uint8)
    X[::3] = 0
    X[1, :100] = 254
    Q = np.full((3, D), q_value, np.uint8)
    d, i = int8_search(Q, X, 4)
    dr, ir = kneighbors_reference(Q, X, 4, "sqeuclidean")
    np.testing.assert_array_equal(i, ir)
    np.testing.assert_array_equal(d, dr)


_GUARD_SCRIPT = r"""
import ctypes, mmap, sys
import numpy as np
from fastcls.kernels import amx
sys.path.insert(0, sys.argv[1])
from test_kernels_amx import int8_search
page = mmap.PAGESIZE
buf = mmap.mmap(-1, 2 * page)
addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
libc = ctypes.CDLL(None, use_errno=True)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
assert libc.mprotect(ctypes.c_void_p(addr + page), page, 0) == 0  # PROT_NONE
for D in (100, 63, 130):
    n = (page // D) - 1
    X = np.frombuffer(buf, np.uint8, n * D, page - n * D).reshape(n, D)  # ends at the guard
    X[:] = np.random.default_rng(D).integers(0, 256, X.shape, dtype=np.uint8)
    Q = np.ascontiguousarray(X[:5][::-1])
    d, i = int8_search(Q, X, 3)
    assert (i[:, 0] == np.arange(4, -1, -1)).all(), i
print("ok")
"""


@needs_amx
def test_int8_tiles_never_read_past_the_rows(tmp_path):
    """Rows that end at a page the process may not read (D not a multiple of 64): the
    tiles read whole 64-byte pieces, so the last rows must come from a padded copy."""
    import os
    import subprocess
    import sys

    tests = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run(
        [sys.executable, "-c", _GUARD_SCRIPT, tests], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]
