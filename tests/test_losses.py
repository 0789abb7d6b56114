"""Fused SVM / softmax loss kernels against the plain NumPy references."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastcls
from fastcls.reference.losses import (
    linear_loss_reference,
    softmax_loss_naive,
    softmax_loss_vectorized,
    svm_loss_naive,
    svm_loss_vectorized,
)

LOSSES = {"svm": fastcls.svm_loss, "softmax": fastcls.softmax_loss}
PENALTIES = ("l2", "l1", "elasticnet")
RTOL = {np.float32: 1e-5, np.float64: 1e-10}


def problem(seed, N, D, C, dtype, scale=1.0, wscale=0.1):
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((N, D)) * scale).astype(dtype)
    y = rng.integers(0, C, N)
    W = (rng.standard_normal((D, C)) * wscale).astype(dtype)
    b = rng.standard_normal(C).astype(dtype)
    return X, y, W, b


def assert_close(got, ref, rtol, what):
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    # an all-zero gradient (SVM's db with two classes: each row adds +1 and -1) comes out of
    # the float64 reference as +-7e-18 of cancellation, and exactly 0 from the kernel: below
    # 1e-6 the error is measured against 1e-6 (still 1e-11 absolute in float32)
    scale = max(float(np.max(np.abs(ref))), 1e-6)
    err = float(np.max(np.abs(got - ref))) / scale
    assert err <= rtol, f"{what}: relative error {err:.3g} > {rtol:g}"


def check_against_reference(kind, W, X, y, reg, b, penalty, beta, idx, rtol):
    out = LOSSES[kind](W, X, y, reg, penalty, beta=beta, b=b, idx=idx)
    ref = linear_loss_reference(kind, W, X, y, reg, b=b, penalty=penalty, beta=beta, idx=idx)
    assert_close(out[0], ref[0], rtol, "loss")
    assert_close(out[1], ref[1], rtol, "dW")
    assert out[1].shape == W.shape
    if b is not None:
        assert len(out) == 3
        assert_close(out[2], ref[2], rtol, "db")
    else:
        assert len(out) == 2
    return out


def far_from_kinks(W, X, y, b, idx):
    """True when no hinge margin is within float32 rounding of 0 (so the float32 kernel
    and the float64 reference must take the same branch)."""
    Xs = (X[idx] if idx is not None else X).astype(np.float64)
    ys = y[idx] if idx is not None else y
    W = W.astype(np.float64)
    s = Xs @ W
    bound = np.abs(Xs) @ np.abs(W)  # float32 dot error <= ~D * 2^-24 * sum |x w|
    if b is not None:
        s = s + b
        bound = bound + np.abs(b)
    rows = np.arange(len(ys))
    m = s - s[rows, ys][:, None] + 1.0
    tol = 4 * 2.0**-24 * (Xs.shape[1] + 2) * (bound + bound[rows, ys][:, None] + 1.0)
    m[rows, ys] = np.inf
    return bool(np.all(np.abs(m) > tol))


# ----------------------------------------------------------------------------- references
@pytest.mark.parametrize(
    "naive,vec",
    [(svm_loss_naive, svm_loss_vectorized), (softmax_loss_naive, softmax_loss_vectorized)],
)
def test_naive_equals_vectorized(naive, vec):
    X, y, W, _ = problem(0, 40, 13, 5, np.float64)
    l1, g1 = naive(W, X, y, 0.3)
    l2, g2 = vec(W, X, y, 0.3)
    assert l1 == pytest.approx(l2, rel=1e-12)
    np.testing.assert_allclose(g1, g2, rtol=1e-10, atol=1e-12)


def test_general_reference_equals_lecture_reference():
    X, y, W, _ = problem(1, 30, 9, 4, np.float64)
    for kind, ref in (("svm", svm_loss_vectorized), ("softmax", softmax_loss_vectorized)):
        l1, g1, db = linear_loss_reference(kind, W, X, y, 0.2)
        l2, g2 = ref(W, X, y, 0.2)
        assert db is None
        assert l1 == pytest.approx(l2, rel=1e-12)
        np.testing.assert_allclose(g1, g2, rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------- kernels
@given(
    N=st.integers(1, 150),
    D=st.integers(1, 40),
    C=st.integers(2, 11),
    dtype=st.sampled_from([np.float32, np.float64]),
    kind=st.sampled_from(["svm", "softmax"]),
    penalty=st.sampled_from(PENALTIES),
    use_b=st.booleans(),
    use_idx=st.booleans(),
    seed=st.integers(0, 2**16),
    reg=st.sampled_from([0.0, 1e-3, 0.7]),
)
def test_kernel_matches_reference_random(N, D, C, dtype, kind, penalty, use_b, use_idx, seed, reg):
    X, y, W, b = problem(seed, N, D, C, dtype)
    idx = np.random.default_rng(seed + 1).integers(0, N, 1 + seed % 97) if use_idx else None
    b = b if use_b else None
    if kind == "svm" and dtype == np.float32:
        assume(far_from_kinks(W, X, y, b, idx))
    check_against_reference(kind, W, X, y, reg, b, penalty, 0.3, idx, RTOL[dtype])


@given(
    data=st.data(),
    N=st.integers(1, 90),
    D=st.integers(1, 20),
    C=st.integers(2, 9),
    dtype=st.sampled_from([np.float32, np.float64]),
    kind=st.sampled_from(["svm", "softmax"]),
    penalty=st.sampled_from(PENALTIES),
)
def test_kernel_matches_reference_adversarial(data, N, D, C, dtype, kind, penalty):
    """Small integers: ties between scores, margins exactly at the hinge's kink (0), zero
    and duplicate rows, zero weights (sign(0) = 0) -- all exact in both precisions."""
    ints = st.integers(-3, 3)
    X = data.draw(hnp.arrays(np.int64, (N, D), elements=ints)).astype(dtype)
    dup = data.draw(st.integers(0, N - 1))
    X[dup // 2] = X[dup]  # duplicate rows
    X[data.draw(st.integers(0, N - 1))] = 0  # a zero row
    W = data.draw(hnp.arrays(np.int64, (D, C), elements=ints)).astype(dtype)
    y = data.draw(hnp.arrays(np.int64, (N,), elements=st.integers(0, C - 1)))
    b = data.draw(hnp.arrays(np.int64, (C,), elements=ints)).astype(dtype)
    check_against_reference(kind, W, X, y, 0.5, b, penalty, 2.0, None, RTOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["svm", "softmax"])
def test_extreme_scores_are_stable(kind, dtype):
    X, y, W, b = problem(3, 50, 17, 6, dtype, scale=1e3, wscale=10.0)  # scores ~ 1e5
    loss, dW, db = LOSSES[kind](W, X, y, 0.1, b=b)
    assert np.isfinite(loss) and np.isfinite(dW).all() and np.isfinite(db).all()
    if kind == "softmax":
        check_against_reference(kind, W, X, y, 0.1, b, "l2", 1.0, None, RTOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["svm", "softmax"])
def test_many_rows_float32_accumulation(kind, dtype):
    """Thousands of rows (several tasks and sub-blocks): float32 still within 1e-5."""
    from fastcls.kernels.losses import MAX_TASKS, SUB_ROWS

    n_rows = 2 * MAX_TASKS * SUB_ROWS + 40  # two sub-blocks and a short one per task
    for seed in range(4, 100):  # a draw without a margin within float32 rounding of 0
        X, y, W, b = problem(seed, n_rows, 64, 10, dtype, wscale=0.01)
        if far_from_kinks(W, X, y, b, None):
            break
    check_against_reference(kind, W, X, y, 0.05, b, "l2", 1.0, None, RTOL[dtype])


def test_lecture_sanity_values():
    """At small random W: SVM loss ~ C - 1 (every margin ~ 1), softmax ~ ln C."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((500, 3073)).astype(np.float32)
    y = rng.integers(0, 10, 500)
    W = (rng.standard_normal((3073, 10)) * 1e-4).astype(np.float32)
    svm, _ = fastcls.svm_loss(W, X, y, 0.0)
    soft, _ = fastcls.softmax_loss(W, X, y, 0.0)
    assert svm == pytest.approx(9.0, abs=0.1)
    assert soft == pytest.approx(np.log(10), abs=0.01)
    assert fastcls.svm_loss(np.zeros((3073, 10)), X, y)[0] == 9.0  # exactly C - 1


@pytest.mark.parametrize("kind", ["svm", "softmax"])
def test_idx_gathers_the_same_rows_as_a_copy(kind):
    X, y, W, b = problem(6, 300, 50, 7, np.float32)
    idx = np.random.default_rng(0).integers(0, 300, 200)
    a = LOSSES[kind](W, X, y, 0.1, b=b, idx=idx)
    c = LOSSES[kind](W, X[idx], y[idx], 0.1, b=b)
    assert a[0] == c[0]
    np.testing.assert_array_equal(a[1], c[1])
    np.testing.assert_array_equal(a[2], c[2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["svm", "softmax"])
@pytest.mark.parametrize("several", [False, True])  # one sub-block per task; several
def test_thread_count_and_serial_twin_invariance(kind, dtype, several):
    """Tasks depend on the row count only: bit-identical results for any thread count."""
    from fastcls.kernels import losses as K

    n_rows = K.MAX_TASKS * K.SUB_ROWS + 1000 if several else 3000
    X, y, W, b = problem(7, n_rows, 600, 10, dtype)
    assert K.use_parallel(X.shape[0], X.shape[1], W.shape[1]) or fastcls.get_num_threads() == 1
    results = []
    for n in (1, 2):
        with fastcls.num_threads(n):
            results.append(LOSSES[kind](W, X, y, 0.1, b=b))
    # the serial twin on the same partition
    bounds = K.task_bounds(n_rows)
    assert K.needs_wide(bounds) == (n_rows > K.MAX_TASKS * K.SUB_ROWS)
    kid = K.SVM if kind == "svm" else K.SOFTMAX
    tile, rb = K.tile_token(K.kernel_impl()), K.row_block(kind)
    WT, part, wide, pdb, pl, ticks, scratch = K.loss_buffers(bounds, 10, 600, tile, dtype, rb)
    WT[:10, :600] = W.T
    rows = np.arange(n_rows)
    K.linear_loss_grad_rows_serial(
        X, y, rows, rows[:0], WT, b, kid, bounds, part, wide, pdb, pl, tile, rb, ticks, scratch
    )
    _, part2, wide2, pdb2, pl2, ticks2, scratch2 = K.loss_buffers(bounds, 10, 600, tile, dtype, rb)
    K.linear_loss_grad_rows(
        X,
        y,
        rows,
        rows[:0],
        WT,
        b,
        kid,
        bounds,
        part2,
        wide2,
        pdb2,
        pl2,
        tile,
        rb,
        ticks2,
        scratch2,
    )
    for tk in (ticks, ticks2):  # every task timed: started, then ended
        assert (tk[:, 1] >= tk[:, 0]).all() and ((tk[:, 0] > 0).all() or not K._CYCLE_COUNTER)
    # the serial twin runs its tasks one after another: no speedup (x86: rdtsc)
    if K._CYCLE_COUNTER:
        assert 0.0 < K.task_speedup(ticks, ticks[0, 0]) <= 1.0
    np.testing.assert_array_equal(part, part2)
    np.testing.assert_array_equal(pl, pl2)
    # the padding of the partials is zeros (the reduction never reads it: any value
    # there would mean the tiles wrote outside the gradient)
    assert part.shape[1:] == K.padded_shape(10, 600, tile) and part.dtype == dtype
    assert not part[:, 10:].any() and not part[:, :, 600:].any()
    for r in results[1:]:
        assert r[0] == results[0][0]
        np.testing.assert_array_equal(r[1], results[0][1])
        np.testing.assert_array_equal(r[2], results[0][2])


@pytest.mark.parametrize("kind", ["svm", "softmax"])
@pytest.mark.parametrize(
    "N,D,dtype",
    [
        (1000, 300, np.float32),
        (203, 1100, np.float32),
        (61, 2100, np.float32),
        (97, 600, np.float64),
    ],
)
def test_prefetching_the_next_block_changes_nothing(kind, N, D, dtype):
    """settings.linear_prefetch_min_bytes only decides whether rows are prefetched (rows
    of one chunk or less prefetch nothing; 1100 float32 / 600 float64 features take
    segments in two full 2 KiB chunks, 2100 float32 in two full 4 KiB ones (the chunk of
    the CPUs of WIDE_CHUNK_CPUS); the last block of a task is short)."""
    from fastcls._config import override

    X, y, W, b = problem(8, N, D, 10, dtype)
    results = []
    for min_bytes in (2**62, 0):  # never, always
        with override(linear_prefetch_min_bytes=min_bytes, linear_row_block_rows=8):
            results.append(LOSSES[kind](W, X, y, 0.1, b=b))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_array_equal(results[0][2], results[1][2])


def test_feature_chunk_by_cpu_name():
    """4 KiB chunks of features on the CPUs measured faster with them, 2 KiB elsewhere;
    the compiled kernels take this CPU's (numba's cache is keyed by the CPU name)."""
    from fastcls._runtime import cpu_name
    from fastcls.kernels import losses as K

    assert K.chunk_bytes("znver3") == 4096
    for name in ("rocketlake", "sapphirerapids", "znver4", "haswell", "generic"):
        assert K.chunk_bytes(name) == 2048
    assert K._CHUNK_BYTES == K.chunk_bytes(cpu_name())


@pytest.mark.parametrize(
    "impl, name, setting, expected",
    [
        ("avx2", "znver4", None, 8 * 2**20),  # measured there (docs/performance.md)
        ("avx2", "znver3", None, 32 * 2**20),  # neutral there at 12 MiB: the kernel's own
        ("avx2", "haswell", None, 32 * 2**20),
        ("avx512", "sapphirerapids", None, 0),
        ("avx512", "znver4", None, 0),  # only the ymm tiles have a Zen 4 entry
        ("portable", "znver4", None, 2**62),
        ("avx2", "znver4", 123, 123),  # a setting always wins
    ],
)
def test_single_call_prefetch_threshold_by_kernel_and_cpu(
    monkeypatch, impl, name, setting, expected
):
    from fastcls._config import override
    from fastcls.kernels import losses as K

    monkeypatch.setattr(K, "cpu_name", lambda: name)
    with override(linear_prefetch_min_bytes=setting):
        assert K.prefetch_min_bytes(impl) == expected
    with override(linear_prefetch_min_bytes="8 MiB"):
        with pytest.raises(TypeError, match="linear_prefetch_min_bytes"):
            K.prefetch_min_bytes(impl)


@pytest.mark.parametrize("n_calls", [0, 1, 7, 16, 40, 96, 280])
@pytest.mark.parametrize("n_segments", [1, 16, 96])
def test_prefetch_segments_are_spread_once_each(n_calls, n_segments):
    """Every segment of the next block goes to one tile call (when there are enough calls),
    in address order, and no call past the block's last asks for one."""
    from fastcls.kernels.losses import _prefetch_segment

    got = [_prefetch_segment.py_func(c, n_calls, n_segments) for c in range(n_calls + 50)]
    taken = [m for m in got if m >= 0]
    assert all(m == -1 for m in got[n_calls:])
    assert taken == sorted(set(taken))
    assert all(0 <= m < n_segments for m in taken)
    assert len(taken) == min(n_calls, n_segments)
    if n_calls >= n_segments:  # spread: no two segments on neighbouring calls more than needed
        calls = [c for c, m in enumerate(got) if m >= 0]
        assert max(np.diff(calls), default=1) <= -(-n_calls // n_segments)


def test_task_bounds_cover_rows_in_groups_of_four():
    from fastcls.kernels.losses import MAX_TASKS, task_bounds

    for n in (1, 3, 4, 63, 64, 65, 200, 256, 10000, 123457):
        bd = task_bounds(n)
        assert bd[0] == 0 and bd[-1] == n
        assert np.all(np.diff(bd) > 0)
        assert len(bd) - 1 <= MAX_TASKS
        assert np.all(bd[1:-1] % 4 == 0)


@pytest.mark.parametrize("kind", ["svm", "softmax"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_ready_arguments_take_the_short_validation_with_the_same_results(kind, dtype):
    """C-contiguous arrays of the kernel's dtypes skip the general validation: the same
    bits as arguments that need it (a list for y, a non-contiguous X, NumPy scalars)."""
    import fastcls.losses as L

    X, y, W, _ = problem(5, 70, 40, 6, dtype)
    fast = L._checked_loss_inputs(W, X, y, 0.3, None, "l1", 0.5, None, label_range=True)
    assert all(a is b for a, b in zip(fast[:3], (W, X, y), strict=True))
    assert fast[3:] == (0.3, None, "l1", 0.5, None)
    got = LOSSES[kind](W, X, y, 0.3, "l1", beta=0.5)
    Xs = np.zeros((70, 80), dtype)
    Xs[:, ::2] = X
    general = LOSSES[kind](W, Xs[:, ::2], y.tolist(), np.float64(0.3), "l1", beta=np.float32(0.5))
    assert got[0] == general[0]
    np.testing.assert_array_equal(got[1], general[1])


@pytest.mark.parametrize("kind", ["svm", "softmax"])
@pytest.mark.parametrize("bad", [-1, 6, 2**40, -(2**62)])
@pytest.mark.parametrize("where", [0, 33, 69])
def test_labels_out_of_range_are_refused_on_every_path(kind, bad, where):
    """The kernel checks the labels of the public call (the short validation leaves them to
    it) before any is used: the same error as the general validation, wherever the label."""
    X, y, W, b = problem(6, 70, 40, 6, np.float32)
    y[where] = bad
    message = rf"y holds labels outside 0..5 \(W has 6 columns.*min {min(bad, 0)}, max"
    with pytest.raises(ValueError, match=message):
        LOSSES[kind](W, X, y, 0.1)  # the short validation, the kernel's check
    with pytest.raises(ValueError, match=message):
        LOSSES[kind](W, X, y.astype(np.float64), 0.1)  # the general validation
    with pytest.raises(ValueError, match=message):
        LOSSES[kind](W, X, y, 0.1, b=b)  # the general validation, the kernel's check
    with pytest.raises(ValueError, match=message):  # rows not used are checked too
        LOSSES[kind](W, X, y, 0.1, idx=np.array([(where + 1) % 70]))
    with pytest.raises(ValueError, match=message):
        fastcls.losses.check_loss_inputs(W, X, y, 0.1)


def test_bias_trick_equals_explicit_bias():
    X, y, W, b = problem(8, 60, 10, 4, np.float64)
    Xb = np.hstack([X, np.ones((60, 1))])
    Wb = np.vstack([W, b])
    l1, g1, db = fastcls.softmax_loss(W, X, y, 0.0, b=b)
    l2, g2 = fastcls.softmax_loss(Wb, Xb, y, 0.0)
    assert l1 == pytest.approx(l2, rel=1e-12)
    np.testing.assert_allclose(g2[:-1], g1, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g2[-1], db, rtol=1e-12, atol=1e-15)


def test_dtypes_of_results():
    X, y, W, _ = problem(9, 20, 5, 3, np.float32)
    assert fastcls.svm_loss(W, X, y)[1].dtype == np.float32
    assert fastcls.svm_loss(W.astype(np.float64), X, y)[1].dtype == np.float64
    Xu = np.random.default_rng(0).integers(0, 256, (20, 5)).astype(np.uint8)
    loss, dW = fastcls.svm_loss(W, Xu, y)
    assert dW.dtype == np.float32
    ref = linear_loss_reference("svm", W, Xu, y, 0.0)
    assert loss == pytest.approx(ref[0], rel=1e-5)


# ----------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"y": np.array([0, 1, 3, 0])}, ValueError, r"y holds labels outside 0..2"),
        ({"y": np.array([0, 1, -1, 0])}, ValueError, r"outside 0..2"),
        ({"y": np.array([0, 1, 2])}, ValueError, r"y must be 1-D of shape \(4,\)"),
        ({"y": np.array([0.5, 1, 2, 0])}, ValueError, r"integer class indices"),
        ({"y": np.array(["a", "b", "c", "a"])}, TypeError, r"integer class indices"),
        ({"W": np.zeros((5, 3))}, ValueError, r"X has 2 features but W has 5 rows"),
        ({"X": np.array([[0, np.nan]] * 4)}, ValueError, r"X contains NaN"),
        ({"W": np.array([[np.inf, 0, 0], [0, 0, 0]])}, ValueError, r"W contains infinity"),
        # W is checked in the kernel's transpose pass, whatever reg (0 here: no penalty)
        ({"W": np.array([[0, np.nan, 0], [0, 0, 0]]), "reg": 0.0}, ValueError, r"W contains NaN"),
        ({"W": np.full((2, 3), 1e200), "reg": 0.0}, ValueError, r"W contains a value of magni"),
        ({"reg": -1.0}, ValueError, r"reg must be >= 0"),
        ({"reg": "big"}, TypeError, r"reg must be a real number"),
        ({"penalty": "l3"}, ValueError, r"penalty must be one of"),
        ({"beta": -0.1}, ValueError, r"beta must be >= 0"),
        ({"b": np.zeros(2)}, ValueError, r"b must have shape \(3,\)"),
        ({"idx": np.array([0, 4])}, ValueError, r"idx holds row indices outside 0..3"),
        ({"idx": np.array([], dtype=int)}, ValueError, r"idx must be a non-empty 1-D"),
        ({"idx": np.array([0.0, 1.0])}, ValueError, r"idx must be a non-empty 1-D"),
    ],
)
@pytest.mark.parametrize("loss", [fastcls.svm_loss, fastcls.softmax_loss])
def test_bad_inputs_raise_clear_errors(loss, kwargs, exc, match):
    args = {"W": np.zeros((2, 3)), "X": np.ones((4, 2)), "y": np.array([0, 1, 2, 0]), "reg": 0.1}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        loss(**args)


@pytest.mark.parametrize("impl", ["avx512", "avx2", "portable"])
@pytest.mark.parametrize("loss_fn", [fastcls.svm_loss, fastcls.softmax_loss])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("n", [7, 3000])  # serial and parallel kernels
def test_non_finite_rows_are_caught_after_the_kernel(impl, loss_fn, dtype, bad, n):
    """X is scanned only when the result is not finite: a bad used row must still raise,
    on every path (the SVM's sparse update never multiplies a row of zero derivatives)."""
    from fastcls._config import override

    if impl not in _impls():
        pytest.skip(f"this CPU cannot run the {impl} path")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 12)).astype(dtype)
    X[3, 5] = bad
    y = rng.integers(0, 4, n)
    W_sorted = np.zeros((12, 4), dtype)
    W_sorted[5] = [-1.0, 1.0, 2.0, 3.0]  # +-inf at feature 5: infinite scores of both signs
    with override(linear_kernel_impl=impl):
        for W in (np.zeros((12, 4), dtype), rng.standard_normal((12, 4)).astype(dtype), W_sorted):
            for idx in (None, np.array([0, 3, 3, 1])):
                with pytest.raises(ValueError, match="X contains"):
                    loss_fn(W, X, y, 0.1, idx=idx)
            # a mini-batch that avoids the bad row is computed as usual
            loss, dW = loss_fn(W, X, y, 0.1, idx=np.array([0, 1, 2]))
            assert np.isfinite(loss) and np.isfinite(dW).all()


@given(
    T=st.integers(1, 5),
    C=st.integers(1, 6),
    D=st.integers(1, 40),
    penalty=st.sampled_from(["l2", "l1", "elasticnet"]),
    dtype=st.sampled_from([np.float32, np.float64]),
    zeros=st.booleans(),
    parallel=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_finish_gradient_equals_reduction_plus_penalty_reference(
    T, C, D, penalty, dtype, zeros, parallel, seed
):
    from fastcls.kernels.losses import (
        PENALTY_CODES,
        finish_gradient,
        finish_gradient_parallel,
    )
    from fastcls.reference.losses import penalty_reference

    finish = finish_gradient_parallel if parallel else finish_gradient
    rng = np.random.default_rng(seed)
    part = rng.standard_normal((T, C, D))
    part_db = rng.standard_normal((T, C))
    part_loss = rng.random(T)
    W = rng.standard_normal((D, C)).astype(dtype)
    if zeros:
        W[::2] = 0  # the subgradient of |w| at 0 is 0
    reg, beta, scale = 0.3, 0.7, 1.0 / 37
    WT = np.ascontiguousarray(W.T)
    dWT, db = np.empty_like(WT), np.empty(C, dtype)
    code = PENALTY_CODES[penalty]
    data, pen, finite = finish(part, part_db, part_loss, scale, WT, reg, code, beta, dWT, db)
    ref_pen, ref_grad = penalty_reference(W, reg, penalty, beta)
    expect = part.sum(axis=0).T * scale + ref_grad
    assert finite
    assert dWT.dtype == dtype and db.dtype == dtype
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(dWT.T, expect.astype(dtype), rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(db, (part_db.sum(axis=0) * scale).astype(dtype), rtol=rtol)
    np.testing.assert_allclose(data, part_loss.sum() * scale, rtol=1e-12)
    np.testing.assert_allclose(pen, ref_pen, rtol=1e-12)
    for arr in (part, part_db, part_loss):
        flat = arr.reshape(-1)
        saved, flat[0] = flat[0], np.nan
        out = finish(part, part_db, part_loss, scale, WT, reg, code, beta, dWT, db)
        assert not out[2]
        flat[0] = saved


@given(
    T=st.integers(1, 5),
    C=st.integers(1, 4),
    D=st.integers(1, 40),
    dtype=st.sampled_from([np.float32, np.float64]),
    parallel=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_finish_gradient_sums_the_partials_in_task_order_in_float64(T, C, D, dtype, parallel, seed):
    """Bit for bit ``((p0 + p1) + p2) + ...`` in float64, then scaled and cast: the order
    that makes the gradient independent of the thread count (the first two partials
    share a pass; the sum must not change with it)."""
    from fastcls.kernels.losses import PENALTY_CODES, finish_gradient, finish_gradient_parallel

    finish = finish_gradient_parallel if parallel else finish_gradient
    rng = np.random.default_rng(seed)
    # magnitudes apart, so another order would round differently
    part = (rng.standard_normal((T, C, D)) * 10.0 ** rng.integers(-6, 7, (T, C, D))).astype(dtype)
    WT = np.zeros((C, D), dtype)
    dWT, db = np.empty_like(WT), np.empty(C, dtype)
    scale = 1.0 / 37
    finish(part, np.zeros((T, C)), np.zeros(T), scale, WT, 0.0, PENALTY_CODES["l2"], 1.0, dWT, db)
    total = part[0].astype(np.float64)
    for t in range(1, T):
        total = total + part[t].astype(np.float64)
    np.testing.assert_array_equal(dWT, (total * scale).astype(dtype))


def _class_lane_sum(values_by_class):
    """The penalty value's order in finish_gradient: per class, 8 lanes (value ``d`` into
    lane ``d % 8``, the last ``D % 8`` into lane 0) added by the tree
    ``((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))``, then the classes in order."""
    total = 0.0
    for row in values_by_class:
        D = len(row)
        D8 = D - D % 8
        lanes = [0.0] * 8
        for d in range(D8):
            lanes[d % 8] += float(row[d])
        for d in range(D8, D):
            lanes[0] += float(row[d])
        total += ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + (
            (lanes[4] + lanes[5]) + (lanes[6] + lanes[7])
        )
    return total


@given(
    C=st.integers(1, 12),
    D=st.integers(1, 200),
    penalty=st.sampled_from(["l2", "l1", "elasticnet"]),
    dtype=st.sampled_from([np.float32, np.float64]),
    parallel=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_penalty_value_is_summed_in_the_order_the_code_writes(C, D, penalty, dtype, parallel, seed):
    """Bit for bit the 8-lane order written in finish_gradient, not whatever lanes a
    vectoriser picks, on the calling thread and with the classes shared among threads:
    the parallel and serial twins compile their own copies, and a reassociated sum once
    gave them losses 1 ulp apart."""
    from fastcls.kernels.losses import (
        PENALTY_CODES,
        finish_gradient,
        finish_gradient_parallel,
    )

    finish = finish_gradient_parallel if parallel else finish_gradient
    rng = np.random.default_rng(seed)
    WT = (rng.standard_normal((C, D)) * 10.0 ** rng.integers(-3, 4, (C, D))).astype(dtype)
    beta = 0.7
    terms = WT.astype(np.float64)
    if penalty == "l2":
        terms = terms * terms
    elif penalty == "l1":
        terms = np.abs(terms)
    else:
        terms = beta * terms * terms + np.abs(terms)
    part = np.zeros((2, C, D))
    dWT, db = np.empty_like(WT), np.empty(C, dtype)
    _, pen, _ = finish(
        part, np.zeros((2, C)), np.zeros(2), 1.0, WT, 1.0, PENALTY_CODES[penalty], beta, dWT, db
    )
    assert pen == _class_lane_sum(terms)


@given(
    n=st.integers(1, 40),
    m=st.integers(1, 40),
    extra_cols=st.integers(0, 9),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**16),
)
def test_transpose_into_equals_numpy_transpose_bit_for_bit(n, m, extra_cols, dtype, seed):
    """The weights' transpose into the loss kernel's layout and the gradient's back: 8 x 8
    vector blocks, overlapping last blocks, element loops below 8 (both sides of each)."""
    from fastcls.kernels._rows import transpose_into

    rng = np.random.default_rng(seed)
    wide = rng.standard_normal((n, m + extra_cols)).astype(dtype)
    special = np.array([np.nan, -0.0, np.inf, -np.inf, np.finfo(dtype).tiny / 4], dtype)
    wide.reshape(-1)[rng.integers(0, wide.size, 5)] = special
    src = wide[:, :m]  # unit column stride, a row stride wider than the row
    dst = np.full((m + 3, n + 5), 7.0, dtype)  # beyond src.shape[::-1]: left untouched
    transpose_into(src, dst)
    expect = np.full_like(dst, 7.0)
    expect[:m, :n] = src.T
    assert dst.tobytes() == expect.tobytes()
    # a column stride other than one item, on either side, takes the element loop
    strided = np.repeat(src, 2, axis=1)[:, ::2]  # src's values, column stride 2 items
    out = np.full((m, 2 * n), 7.0, dtype)
    transpose_into(strided, out[:, ::2])
    assert np.ascontiguousarray(out[:, ::2]).tobytes() == np.ascontiguousarray(src.T).tobytes()
    assert (out[:, 1::2] == 7.0).all()


# ----------------------------------------------------------------------------- dispatch by name
@pytest.mark.parametrize("name", ["svm", "softmax"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_loss_and_gradient_is_the_registry_dispatch(name, with_bias):
    from fastcls.losses import LOSSES, LossGradient, check_loss_inputs, loss_and_gradient

    X, y, W, b = problem(5, 40, 7, 4, np.float64)
    b = b if with_bias else None
    idx = np.array([3, 3, 0, 39, 12])
    args = check_loss_inputs(W, X, y, 0.2, b, "elasticnet", 0.3, idx)
    out = loss_and_gradient(name, *args)
    assert isinstance(out, LossGradient)
    public = LOSSES[name](W, X, y, 0.2, "elasticnet", beta=0.3, b=b, idx=idx)
    assert out.loss == public[0]
    np.testing.assert_array_equal(out.dW, public[1])
    if with_bias:
        np.testing.assert_array_equal(out.db, public[2])
    else:
        assert out.db is None and len(public) == 2
    full = loss_and_gradient(name, *args[:-1])  # rows=None: every row
    assert full.loss == LOSSES[name](W, X, y, 0.2, "elasticnet", beta=0.3, b=b)[0]


def test_loss_and_gradient_refuses_unknown_names():
    from fastcls.losses import check_loss_inputs, loss_and_gradient

    X, y, W, _ = problem(0, 5, 3, 2, np.float64)
    args = check_loss_inputs(W, X, y, 0.0)
    with pytest.raises(ValueError, match=r"loss must be one of \('svm', 'softmax'\)"):
        loss_and_gradient("hinge", *args)
    with pytest.raises(ValueError, match="penalty must be one of"):
        loss_and_gradient("svm", *args[:5], "l0")


# ----------------------------------------------------------------------------- CPU paths
def _impls():
    from fastcls.kernels.losses import CLASS_TILES

    avail = fastcls._runtime.best_simd({"avx512": ("avx512f",), "avx2": ("avx2", "fma")})
    return [impl for impl in CLASS_TILES if impl in avail]


@pytest.mark.parametrize("impl", ["avx512", "avx2", "portable"])
@given(
    N=st.integers(1, 80),
    D=st.integers(1, 1100),  # up to three 2 KiB D chunks (two of 4 KiB) with a ragged tail
    C=st.integers(2, 11),
    dtype=st.sampled_from([np.float32, np.float64]),
    kind=st.sampled_from(["svm", "softmax"]),
    penalty=st.sampled_from(PENALTIES),
    rblock=st.sampled_from([4, 8, 32]),
    use_b=st.booleans(),
    use_idx=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_each_cpu_path_matches_reference(
    impl, N, D, C, dtype, kind, penalty, rblock, use_b, use_idx, seed
):
    """Every micro-kernel (forced through the tunable) and row block against the reference."""
    from fastcls._config import override

    if impl not in _impls():
        pytest.skip(f"this CPU cannot run the {impl} path")
    X, y, W, b = problem(seed, N, D, C, dtype, wscale=0.3 / np.sqrt(D))
    idx = np.random.default_rng(seed + 1).integers(0, N, 1 + seed % 97) if use_idx else None
    b = b if use_b else None
    if kind == "svm" and dtype == np.float32:
        assume(far_from_kinks(W, X, y, b, idx))
    with override(linear_kernel_impl=impl, linear_row_block_rows=rblock):
        check_against_reference(kind, W, X, y, 0.01, b, penalty, 0.3, idx, RTOL[dtype])


def svm_problem_with_violations(violations, D, C, dtype, seed):
    """An SVM problem whose row ``r`` violates exactly ``violations[r]`` margins, each
    0.5 away from the hinge's kink, so the derivative's pattern (and with it the sparse
    update's form for each block) is set by the caller: 0 violations is a zero row, 1-2
    the lists' direct form, ``C - 1`` the complement form, about half the dense update."""
    rng = np.random.default_rng(seed)
    N = len(violations)
    X = rng.standard_normal((N, D))
    y = rng.integers(0, C, N)
    S = np.full((N, C), -1.5)  # margins s_c - s_y + 1 = -0.5: not violated
    for r, k in enumerate(violations):
        others = np.delete(np.arange(C), y[r])
        S[r, rng.choice(others, k, replace=False)] = -0.5  # margin +0.5
        S[r, y[r]] = 0.0
    W = np.linalg.lstsq(X, S, rcond=None)[0]  # X @ W = S (N <= D)
    return X.astype(dtype), y, W.astype(dtype)


@pytest.mark.parametrize("impl", ["avx512", "avx2", "portable"])
@given(
    data=st.data(),
    C=st.integers(2, 11),
    D=st.sampled_from([40, 71, 300, 1100]),
    dtype=st.sampled_from([np.float32, np.float64]),
    penalty=st.sampled_from(PENALTIES),
    rblock=st.sampled_from([4, 8]),
    seed=st.integers(0, 2**16),
)
def test_svm_update_in_every_derivative_form(impl, data, C, D, dtype, penalty, rblock, seed):
    """The multiclass SVM's update (sparse lists where the micro-kernel has them, in the
    direct and complement forms and mixed within a block; the dense tiles for blocks over
    SPARSE_MAX_FILL; both within one sub-block) against the reference."""
    from fastcls._config import override

    if impl not in _impls():
        pytest.skip(f"this CPU cannot run the {impl} path")
    N = min(D, 40)
    kinds = st.sampled_from([0, 1, 2, C // 2, C - 1])
    violations = data.draw(st.lists(kinds.map(lambda k: min(k, C - 1)), min_size=1, max_size=N))
    X, y, W = svm_problem_with_violations(violations, D, C, dtype, seed)
    with override(linear_kernel_impl=impl, linear_row_block_rows=rblock):
        check_against_reference("svm", W, X, y, 0.01, None, penalty, 0.3, None, RTOL[dtype])


@pytest.mark.parametrize("impl", ["avx512", "avx2", "portable"])
def test_svm_update_over_many_sparse_blocks_and_sub_blocks(impl):
    """Thousands of rows at a small W (every block in the complement form, the sum of
    rows carried across blocks and added at each sub-block's end), then rows with one
    violation (the direct form): float32 within 1e-5 of the reference."""
    from fastcls._config import override
    from fastcls.kernels.losses import SUB_ROWS

    if impl not in _impls():
        pytest.skip(f"this CPU cannot run the {impl} path")
    X, y, W, b = problem(8, SUB_ROWS + 1000, 300, 10, np.float32, wscale=1e-4)
    with override(linear_kernel_impl=impl):
        check_against_reference("svm", W, X, y, 0.01, b, "l2", 0.3, None, 1e-5)
    X, y, W = svm_problem_with_violations([1] * 200 + [9] * 40, 300, 10, np.float32, 9)
    with override(linear_kernel_impl=impl, linear_row_block_rows=8):
        check_against_reference("svm", W, X, y, 0.01, None, "l2", 0.3, None, 1e-5)


@pytest.mark.parametrize("impl", ["avx512", "avx2", "portable"])
@pytest.mark.parametrize("kind", ["svm", "softmax"])
@pytest.mark.parametrize(
    "N,D,dtype",
    [
        (5, 300, np.float32),  # one task, one block
        (300, 1100, np.float32),  # tasks of several blocks, a ragged feature chunk
        (97, 70, np.float64),
        (16 * 1024 + 40, 3, np.float32),  # tasks of two sub-blocks (float64 sums)
    ],
)
def test_first_block_overwrites_stale_partials(impl, kind, N, D, dtype):
    """The partials (and the float64 sub-block sums) are reused from call to call:
    poisoned with NaN beforehand, the result is still right (a stale value that leaked
    into a sum would make the gradient NaN). Guards any change to how a task starts its
    partial (writing it with the first block instead of zeroing it was measured and
    not kept: docs/performance.md)."""
    from fastcls._config import override
    from fastcls.losses import _plan

    if impl not in _impls():
        pytest.skip(f"this CPU cannot run the {impl} path")
    seed = 3
    X, y, W, b = problem(seed, N, D, 7, dtype, wscale=0.3 / np.sqrt(D))
    while kind == "svm" and dtype == np.float32 and not far_from_kinks(W, X, y, b, None):
        seed += 1  # a margin at float32 rounding of 0 may take the other branch
        X, y, W, b = problem(seed, N, D, 7, dtype, wscale=0.3 / np.sqrt(D))
    with override(linear_kernel_impl=impl, linear_row_block_rows=8):
        plan = _plan(N, 7, D, np.dtype(dtype), kind)  # the plan the call below reuses
        plan.part[:] = np.nan
        if plan.wide.size:
            plan.wide[:] = np.nan
        check_against_reference(kind, W, X, y, 0.01, b, "l2", 0.3, None, RTOL[dtype])


@pytest.mark.parametrize("kind", ["svm", "softmax"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cpu_paths_thread_count_invariant_and_close(kind, dtype):
    """Each path is bit-identical across thread counts and serial/parallel; paths agree
    with each other to rounding (they sum float32 products in different orders)."""
    from fastcls._config import override

    X, y, W, b = problem(11, 2000, 700, 10, dtype, wscale=0.01)
    out = {}
    for impl in _impls():
        runs = []
        for n_threads, min_work in ((1, 0), (2, 0), (2, 1 << 62)):  # serial twin last
            with (
                fastcls.num_threads(n_threads),
                override(linear_kernel_impl=impl, linear_parallel_min_work=min_work),
            ):
                runs.append(LOSSES[kind](W, X, y, 0.1, b=b))
        for r in runs[1:]:
            assert r[0] == runs[0][0]
            np.testing.assert_array_equal(r[1], runs[0][1])
            np.testing.assert_array_equal(r[2], runs[0][2])
        out[impl] = runs[0]
    first = next(iter(out.values()))
    for r in out.values():
        assert_close(r[1], first[1], RTOL[dtype], "dW across paths")


@pytest.mark.parametrize(
    ("impl", "update"), [("avx512", "dense"), ("avx2", "sparse"), ("portable", "sparse")]
)
def test_info_names_the_svm_update(impl, update):
    from fastcls._config import override
    from fastcls.kernels import losses as K

    if impl not in _impls():
        pytest.skip(f"this CPU cannot run the {impl} path")
    with override(linear_kernel_impl=impl):
        assert K.loss_impl().startswith(f"{impl} (SVM update {update}, SGD prefetch ")


def test_row_block_by_loss_and_path_unless_set():
    from fastcls._config import override
    from fastcls.kernels import losses as K

    assert K.row_block("svm", "avx2") == K.row_block("svm", "portable") == K.SPARSE_ROW_BLOCK
    assert K.row_block("svm", "avx512") == K.DENSE_ROW_BLOCK
    assert K.row_block("softmax", "avx2") == K.DENSE_ROW_BLOCK
    with override(linear_row_block_rows=8):
        assert K.row_block("svm", "avx2") == K.row_block("softmax", "avx512") == 8
    with override(linear_row_block_rows=16.0), pytest.raises(TypeError, match="an int"):
        K.row_block("svm", "avx2")


def test_forcing_an_unknown_or_unsupported_path_is_refused():
    from fastcls._config import override

    X, y, W, _ = problem(0, 8, 3, 2, np.float64)
    with override(linear_kernel_impl="sse9"), pytest.raises(ValueError, match="one of"):
        fastcls.svm_loss(W, X, y)
    with override(linear_row_block_rows=6), pytest.raises(ValueError, match="multiple of 4"):
        fastcls.svm_loss(W, X, y)
    missing = [i for i in ("avx512", "avx2") if i not in _impls()]
    if missing:
        with override(linear_kernel_impl=missing[0]), pytest.raises(ValueError, match="CPU"):
            fastcls.svm_loss(W, X, y)


@pytest.mark.parametrize(
    ("name", "levels", "chosen"),
    [
        ("znver4", ("avx512", "avx2", "portable"), "avx2"),  # AVX-512 on 256-bit halves
        ("sapphirerapids", ("avx512", "avx2", "portable"), "avx512"),
        ("znver5", ("avx512", "avx2", "portable"), "avx512"),
        ("znver3", ("avx2", "portable"), "avx2"),
        ("znver4", ("portable",), "portable"),  # the name never adds a level
    ],
)
def test_default_path_by_cpu_features_then_name(monkeypatch, name, levels, chosen):
    from fastcls._config import override
    from fastcls.kernels import losses as K

    monkeypatch.setattr(K, "cpu_name", lambda: name)
    monkeypatch.setattr(K, "best_simd", lambda required: levels)
    assert K.kernel_impl() == chosen
    if "avx512" in levels:  # forcing still reaches the zmm tiles on every AVX-512 CPU
        with override(linear_kernel_impl="avx512"):
            assert K.kernel_impl() == "avx512"


def test_cpu_name_follows_numba_target(monkeypatch):
    from numba.core import config

    from fastcls._runtime import cpu_name

    cpu_name.cache_clear()
    try:
        monkeypatch.setattr(config, "CPU_NAME", "znver3", raising=False)
        assert cpu_name() == "znver3"
        cpu_name.cache_clear()
        monkeypatch.setattr(config, "CPU_NAME", None, raising=False)
        import llvmlite.binding as ll

        assert cpu_name() == ll.get_host_cpu_name()
    finally:
        cpu_name.cache_clear()


from fastcls.testing import HASWELL_FEATURES, run_on_cpu_targets  # noqa: E402

_AVX2_CHILD = r"""
import re, sys
import numpy as np
import fastcls
from fastcls._config import override
from fastcls.kernels import losses as K
from fastcls.reference.losses import linear_loss_reference

assert K.kernel_impl() == "avx2", K.kernel_impl()
rng = np.random.default_rng(0)
for dtype, tol in ((np.float32, 1e-5), (np.float64, 1e-10)):
    for N, D, C in ((37, 1100, 10), (300, 64, 3)):
        X = rng.standard_normal((N, D)).astype(dtype)
        y = rng.integers(0, C, N)
        W = (rng.standard_normal((D, C)) * 0.3 / np.sqrt(D)).astype(dtype)
        b = rng.standard_normal(C).astype(dtype)
        for kind in ("softmax", "svm"):
            for penalty in ("l2", "l1", "elasticnet"):
                for impl in ("avx2", "portable"):
                    with override(linear_kernel_impl=impl):
                        fn = fastcls.softmax_loss if kind == "softmax" else fastcls.svm_loss
                        loss, dW, db = fn(W, X, y, 0.01, penalty, beta=0.3, b=b)
                    ref = linear_loss_reference(kind, W, X, y, 0.01, b, penalty, 0.3)
                    for got, want in ((loss, ref[0]), (dW, ref[1]), (db, ref[2])):
                        err = np.max(np.abs(np.asarray(got, float) - want)) / np.max(np.abs(want))
                        assert err < (tol if kind == "softmax" else 1e-3), (kind, impl, err)
# the avx2 tiles use packed FMAs on ymm and never zmm (LLVM emitted AVX2 code)
from numba import njit
from fastcls.kernels import linear_tiles as T

@njit(cache=False)
def tiles(xb, WT, g, acc, rows):
    T.update_tile_avx2(xb, g, 0, acc, 0, 0, 2, xb, rows, 1, 0, True)
    return T.scores_tile_avx2(xb, WT, 0, 0, 0, 2, xb, rows, 1, rows, 2, 16, True)

xb = np.ones((4, 16), np.float32)
tiles(xb, xb[:2].copy(), np.ones((4, 2), np.float32), np.zeros((2, 16), np.float32), np.arange(4))
for sig, asm in tiles.inspect_asm().items():
    assert "zmm" not in asm
    assert re.search(r"vfmadd\d+ps\s+[^\n]*%ymm", asm)
print("AVX2-OK")
"""


@pytest.mark.slow
def test_avx2_path_compiled_for_haswell_in_a_subprocess():
    """LLVM compiles AVX2 code (NUMBA_CPU_NAME=haswell with haswell's features: the name
    alone keeps the host's features in numba) and the avx2/portable paths stay right."""
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "NUMBA_CPU_NAME": "haswell",
        "NUMBA_CPU_FEATURES": HASWELL_FEATURES,
        "FASTCLS_NUMBA_CACHE": "0",  # inspect_asm needs this process's own compile
    }
    out = subprocess.run(
        [sys.executable, "-c", _AVX2_CHILD], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "AVX2-OK" in out.stdout


def test_hot_loops_vectorise_natively():
    """The tiles compile to packed FMAs of their width (the notes: 4- and 8-row updates
    once silently compiled to scalar code; LLVM keeps 256-bit vectors on the AVX-512
    CPUs it tunes for prefer-256-bit, hence the explicit IR tiles). The on-disk cache
    hides the assembly, so everything is compiled afresh here."""
    import numba

    from fastcls._runtime import cpu_features
    from fastcls.kernels import linear_tiles as T

    if not {"fma", "avx"} <= cpu_features():
        pytest.skip("packed FMAs need a CPU with AVX and FMA")
    xb = np.ones((4, 32), np.float32)
    WT = np.ones((10, 32), np.float32)
    gw = np.ones((4, 10), np.float32)
    widths = [
        ("portable", T.scores_tile_portable, T.update_tile_portable, "ymm"),
        ("avx2", T.scores_tile_avx2, T.update_tile_avx2, "ymm"),
    ]
    if "avx512f" in cpu_features():
        widths.append(("avx512", T.scores_tile_avx512, T.update_tile_avx512, "zmm"))
    for name, scores_tile, update_tile, reg in widths:

        def tiles(xb, WT, g, acc, rows, scores_tile=scores_tile, update_tile=update_tile):
            update_tile(xb, g, 0, acc, 0, 0, 2, xb, rows, 1, 0, True)
            return scores_tile(xb, WT, 0, 0, 0, 2, xb, rows, 1, rows, 2, 16, True)

        fn = numba.njit(cache=False)(tiles)
        fn(xb, WT, gw, WT.copy(), np.arange(4))
        asm = "\n".join(fn.inspect_asm().values())
        if name == "portable":  # multiply, then add: no FMA, whatever the CPU has
            assert re.search(rf"mulps\s+[^\n]*%{reg}", asm), name
            assert re.search(rf"addps\s+[^\n]*%{reg}", asm), name
            assert "vfmadd" not in asm, name
        else:
            assert re.search(rf"vfmadd\d+ps\s+[^\n]*%{reg}", asm), name
        assert "prefetcht2" in asm, name


# ----------------------------------------------------------------------------- range (issue 10)
@pytest.mark.parametrize("impl", ["avx512", "avx2", "portable"])
@pytest.mark.parametrize("kind", ["svm", "softmax"])
@pytest.mark.parametrize("xs,ws", [(1e20, 1.0), (1.0, 1e20), (1e20, 1e20), (3e38, 1.0)])
def test_float32_inputs_far_from_one_give_finite_right_results(impl, kind, xs, ws):
    """float32 scores or gradient sums overflowed to inf/NaN for in-range inputs (1e20):
    such calls are recomputed in float64 and returned in float32 (on every path)."""
    from fastcls._config import override

    if impl not in _impls():
        pytest.skip(f"this CPU cannot run the {impl} path")
    rng = np.random.default_rng(0)
    X = np.clip(rng.standard_normal((40, 6)) * xs, -3e38, 3e38).astype(np.float32)
    W = (rng.standard_normal((6, 3)) * ws).astype(np.float32)
    y = rng.integers(0, 3, 40)
    with override(linear_kernel_impl=impl):
        loss, dW = LOSSES[kind](W, X, y, 1e-3)
    assert np.isfinite(loss) and dW.dtype == np.float32 and np.isfinite(dW).all()
    ref = linear_loss_reference(kind, W, X, y, 1e-3)
    assert loss == pytest.approx(ref[0], rel=1e-6)
    assert_close(dW, ref[1], 1e-6, "dW")


@pytest.mark.parametrize("kind", ["svm"])  # softmax gradients stay within max |x|
def test_results_beyond_the_range_raise_a_clear_error(kind):
    X = np.full((8, 3), 3e38, np.float32)
    W = np.zeros((3, 4), np.float32)
    W[:, 1] = 1.0  # class 1 scores far above class 0: every row's gradient ~ -3e38 * 3
    y = np.zeros(8, np.int64)
    with pytest.raises(FloatingPointError, match="beyond float32's range"):
        LOSSES[kind](W, X, y)
    # float64: validation caps |values| at 1e150, so scores and gradients stay finite
    loss, dW = LOSSES[kind](W.astype(np.float64) * 1e150, X.astype(np.float64) * 0 + 1e150, y)
    assert np.isfinite(loss) and np.isfinite(dW).all()


def test_results_do_not_alias_reused_buffers():
    """The kernels' scratch buffers are reused between calls: a returned gradient must
    not change when the next call (same or other shape, other dtype) runs."""
    X, y, W, b = problem(3, 300, 50, 10, np.float32)
    loss, dW, db = fastcls.svm_loss(W, X, y, 0.1, b=b)
    keep = (loss, dW.copy(), db.copy())
    X2, y2, W2, b2 = problem(4, 300, 50, 10, np.float32)
    fastcls.svm_loss(W2, X2, y2, 0.5, b=b2)
    X3, y3, W3, _ = problem(5, 40, 30, 4, np.float64)
    fastcls.softmax_loss(W3, X3, y3, 0.1)
    assert loss == keep[0]
    np.testing.assert_array_equal(dW, keep[1])
    np.testing.assert_array_equal(db, keep[2])
    again = fastcls.svm_loss(W, X, y, 0.1, b=b)
    assert again[0] == loss
    np.testing.assert_array_equal(again[1], dW)


@pytest.mark.parametrize("impl", ["avx512", "avx2", "portable"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("D", [1, 7, 17, 3073])
@pytest.mark.parametrize("N", [8, 9])  # 8: the last row is read by a tile
def test_tiles_never_read_past_the_last_feature(impl, dtype, D, N):
    """The packing tiles read ``X`` in whole vectors except the last, a masked load: ``X``
    placed so that its last byte ends a page followed by an inaccessible page must not
    crash (an unmasked tail would fault), and the result must match the reference."""
    import ctypes
    import mmap

    from fastcls._config import override

    if impl not in _impls():
        pytest.skip(f"this CPU cannot run the {impl} path")
    page = mmap.PAGESIZE
    C = 10
    nbytes = N * D * np.dtype(dtype).itemsize
    n_pages = -(-nbytes // page) + 1
    region = mmap.mmap(-1, n_pages * page, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(region))
    libc = ctypes.CDLL(None, use_errno=True)
    guard = base + (n_pages - 1) * page
    assert libc.mprotect(ctypes.c_void_p(guard), ctypes.c_size_t(page), 0) == 0
    try:
        Xg, y, W, b = problem(5, N, D, C, dtype, wscale=0.3 / np.sqrt(D))
        start = (n_pages - 1) * page - nbytes
        X = np.frombuffer(region, dtype=dtype, count=N * D, offset=start).reshape(N, D)
        X[:] = Xg
        with override(linear_kernel_impl=impl):
            check_against_reference("softmax", W, X, y, 0.01, b, "l2", 1.0, None, RTOL[dtype])
        del X
    finally:
        libc.mprotect(ctypes.c_void_p(guard), ctypes.c_size_t(page), 3)


# ----------------------------------------------------------------------------- twin choice
def test_twin_choice_backs_off_under_contention_and_recovers():
    """A parallel call whose tasks ran no faster than one thread sends the calls of the
    next 2 ms to the serial twin, then 4, 8, ... up to 128 ms while it lasts; a clean
    parallel call halves the wait (and sets none); the setting turns it off."""
    from fastcls._config import override
    from fastcls.losses import _TwinChoice

    twin = _TwinChoice()
    assert not twin.use_parallel(False, now=0.0)  # too small for the parallel twin
    assert twin.use_parallel(True, now=0.0)
    t = 10.0
    waits = []
    for _ in range(8):
        twin.record(0.4, now=t)  # contended
        assert not twin.use_parallel(True, now=t + 0.001)
        waits.append(round(twin.serial_until - t, 6))
        t = twin.serial_until
        assert twin.use_parallel(True, now=t)  # the wait is over: try parallel again
    assert waits == [0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.128]
    twin.record(1.8, now=t)  # a clean parallel call: half the wait, none set
    assert twin.use_parallel(True, now=t) and twin.wait == 0.064
    twin.record(0.4, now=t)  # contended again: the halved wait, not the shortest
    assert not twin.use_parallel(True, now=t + 0.0639)
    assert twin.use_parallel(True, now=t + 0.064)
    t += 0.064
    for _ in range(10):  # clean calls in a row: down to the shortest wait, no lower
        twin.record(1.8, now=t)
        assert twin.use_parallel(True, now=t)
    assert twin.wait == _TwinChoice.MIN_WAIT
    twin.record(0.4, now=t)
    assert not twin.use_parallel(True, now=t + 0.0019)
    assert twin.use_parallel(True, now=t + 0.002)
    with override(linear_adaptive_twin=False):
        twin.record(0.4, now=t + 1.0)
        assert twin.use_parallel(True, now=t + 1.0)
        assert not twin.use_parallel(False, now=t + 1.0)


def test_twin_choice_sees_calls_slower_than_the_serial_twin_as_contended():
    """Parallel calls that took longer than the shortest serial call of the same shape or
    SLOW_FACTOR times the shortest parallel call, whichever is less, in SLOW_CALLS calls
    in a row, count as contended; other shapes, a single slow call and unmeasured calls
    do not."""
    from fastcls.losses import _TwinChoice

    twin = _TwinChoice()
    a, b = (10000, 3073, 10, 4, 2), (256, 3073, 10, 4, 2)
    twin.record(1.9, 100.0, a, now=0.0)  # the first call of a shape: nothing to compare
    for t in (1.0, 1.1):  # 2.9 times the shortest, no serial time yet: not slow
        twin.record(1.9, 290.0, a, now=t)
    assert twin.use_parallel(True, now=1.1)
    twin.record(1.9, 900.0, b, now=1.2)  # another shape: its own times
    twin.record(1.9, 310.0, a, now=2.0)  # beyond 3 times the shortest: once is noise
    assert twin.use_parallel(True, now=2.0)
    twin.record(1.9, 320.0, a, now=2.5)  # twice in a row: the cores are shared
    assert not twin.use_parallel(True, now=2.501)
    assert twin.use_parallel(True, now=2.502)
    twin.record_serial(170.0, a)  # the serial twin's time: the yardstick when shorter
    twin.record_serial(380.0, a)  # a serial call timed under contention: not shorter
    assert twin.serial_seconds[a] == 170.0
    for t in (3.0, 3.1):
        twin.record(1.9, 160.0, a, now=t)  # faster than the serial twin: fine
    assert twin.use_parallel(True, now=3.1) and twin.wait == _TwinChoice.MIN_WAIT
    for t in (4.0, 4.1):  # slower than the serial twin, twice
        twin.record(1.9, 180.0, a, now=t)
    assert not twin.use_parallel(True, now=4.101)
    twin.record(1.9, 180.0, a, now=4.2)  # still slower: still contended, a longer wait
    assert twin.serial_until == pytest.approx(4.2 + 0.004)
    twin.record(1.9, 120.0, a, now=5.0)  # a faster call ends the run of slow ones
    twin.record(1.9, 180.0, a, now=5.1)
    assert twin.use_parallel(True, now=5.1)
    twin.record(1.9, 0.0, a, now=6.0)  # not measured: nothing to compare
    assert twin.use_parallel(True, now=6.0) and twin.wait == _TwinChoice.MIN_WAIT
    for n in range(2 * _TwinChoice.MAX_SHAPES):  # the remembered shapes stay bounded
        twin.record(1.9, 1.0, (n,), now=7.0)
        twin.record_serial(2.0, (n,))
    assert len(twin.best_seconds) == len(twin.serial_seconds) == _TwinChoice.MAX_SHAPES


def test_twin_choice_judges_slow_calls_in_a_row_not_across_serial_stretches():
    """The first parallel call after a stretch of serial calls is often slow (the OpenMP
    worker has gone to sleep and must be woken): two such probes separated by serial
    calls are not "slow calls in a row". Counting them so kept a quiet host's N=256
    calls on the serial twin for good (Intel Xeon, 2026-12-02: 0.33 ms a call against
    0.21 ms parallel, every probe 0.40-0.48 ms)."""
    from fastcls.losses import _TwinChoice

    twin = _TwinChoice()
    shape = (256, 3073, 10, 4, 2)
    twin.record(1.9, 0.21, shape, now=0.0)
    twin.record(0.1, 7.5, shape, now=1.0)  # contended (OpenBLAS's spinner held a core)
    assert not twin.use_parallel(True, now=1.001)
    t = 1.0
    for _ in range(6):  # each probe after the wait: slow, once, then serial calls
        t = twin.serial_until
        twin.record_serial(0.33, shape)
        assert twin.use_parallel(True, now=t)
        twin.record(1.1, 0.45, shape, now=t)
        assert twin.use_parallel(True, now=t)  # one slow probe is not contention
        twin.record_serial(0.33, shape)  # (a serial call in between ends the run)
    twin.record(1.1, 0.45, shape, now=t + 0.01)  # but two slow parallel calls in a row are
    twin.record(1.1, 0.45, shape, now=t + 0.02)
    assert not twin.use_parallel(True, now=t + 0.021)


def test_task_speedup_of_tasks_run_side_by_side_or_one_after_another():
    from fastcls.kernels.losses import task_speedup

    together = np.array([[100, 200], [105, 205]], dtype=np.int64)
    in_turn = np.array([[100, 200], [200, 300]], dtype=np.int64)
    late = np.array([[100, 200], [900, 1000]], dtype=np.int64)  # second thread started late
    assert task_speedup(together, 100) == pytest.approx(200 / 105)
    assert task_speedup(in_turn, 100) == pytest.approx(1.0)
    assert task_speedup(late, 100) == pytest.approx(200 / 900)
    # every task, the calling thread's included, started late after the region's entry
    assert task_speedup(together, 0) == pytest.approx(200 / 205)
    assert task_speedup(together + 2000, 0) == pytest.approx(200 / 2205)
    assert task_speedup(together, 150) == pytest.approx(200 / 105)  # entry after a start
    # no measurable time (no cycle counter on this CPU): no evidence of contention
    assert task_speedup(np.array([[5, 5]], dtype=np.int64), 5) == np.inf
    assert task_speedup(np.zeros((3, 2), dtype=np.int64), 0) == np.inf


def _spy(module, calls):
    real = module.linear_loss_grad

    def spy(*args):
        calls.append(args[13])  # the twin token
        return real(*args)

    return spy


def test_losses_are_the_same_bits_whichever_twin_the_choice_takes(monkeypatch):
    import fastcls
    import fastcls.kernels.losses
    from fastcls.losses import _TWIN, svm_loss

    X, y, W, b = problem(11, 3000, 600, 10, np.float32)
    calls = []
    monkeypatch.setattr(
        fastcls.kernels.losses, "linear_loss_grad", _spy(fastcls.kernels.losses, calls)
    )
    with fastcls.num_threads(2):
        monkeypatch.setattr(_TWIN, "serial_until", 0.0)
        first = svm_loss(W, X, y, 0.1, b=b)
        monkeypatch.setattr(_TWIN, "serial_until", float("inf"))
        second = svm_loss(W, X, y, 0.1, b=b)
    assert calls == [(0,), ()]  # the parallel twin, then the serial one
    assert first[0] == second[0]
    np.testing.assert_array_equal(first[1], second[1])
    np.testing.assert_array_equal(first[2], second[2])


_PORTABLE_CHILD = r"""
import numba, numpy as np, fastcls
from fastcls._config import override
from fastcls.testing import linear_problem

W, X, y = linear_problem(300, 203, 7, seed=4)
for dtype in (np.float32, np.float64):
    # every call on the parallel twin when 2 threads are set (3 tasks of 100 rows)
    with override(linear_kernel_impl="portable", linear_parallel_min_work=0):
        for threads in (1, 2):
            numba.set_num_threads(threads)
            for loss in (fastcls.svm_loss, fastcls.softmax_loss):
                value, dW = loss(W.astype(dtype), X.astype(dtype), y, 1e-3, penalty="l1")
                print(dtype.__name__, threads, np.float64(value).hex(), dW.tobytes().hex())
"""


@pytest.mark.slow
def test_portable_tiles_give_the_same_bits_on_every_cpu():
    """The portable micro-kernel writes its lanes in the IR and multiplies then adds (no
    FMA): compiled for the host, for Haswell (AVX2) and for the x86-64 baseline (SSE2),
    on 1 and 2 threads, the losses and gradients agree bit for bit."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("an x86-64 host runs the other targets")
    outs = run_on_cpu_targets(_PORTABLE_CHILD)
    for stdout in outs:
        lines = stdout.splitlines()
        assert len(lines) == 8
        for i in (0, 1, 4, 5):  # the same loss and dtype on 1 and on 2 threads
            assert lines[i].split()[2:] == lines[i + 2].split()[2:]
    assert outs[0] == outs[1] == outs[2]
