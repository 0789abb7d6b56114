"""Multiclass SVM and softmax losses with their gradients, through fused Numba kernels.

Conventions (as in the lectures): ``W`` has shape (D, C), ``X`` (N, D), labels ``y``
are integers in ``0..C-1``, ``scores = X @ W + b``. The data loss is averaged over the
rows used, and a penalty on ``W`` (never on ``b``) is added:

=============== ================================ ==============================
``penalty``      value                            gradient
=============== ================================ ==============================
``"l2"``         ``reg * sum(W**2)``              ``2 * reg * W``
``"l1"``         ``reg * sum(|W|)``               ``reg * sign(W)``
``"elasticnet"`` ``reg * sum(beta*W**2 + |W|)``   ``reg * (2*beta*W + sign(W))``
=============== ================================ ==============================

The bias can be given explicitly (``b=``, gradient returned as ``db``) or folded into
``W`` with the *bias trick*: append a column of ones to ``X`` and a row to ``W``; the
last row of ``W`` is then the bias (and is penalised like the other weights, as in
the lectures).

``idx=`` selects a mini-batch of rows (repetitions allowed): the kernel gathers those
rows itself, so the batch is never copied. The loss is then averaged over ``len(idx)``.

Dispatch by name
----------------
:data:`LOSSES` maps each loss name (``"svm"``, ``"softmax"``) to its public function.
:func:`loss_and_gradient` computes the named loss on inputs already validated by
:func:`check_loss_inputs` (what an optimiser calls at every step, with no per-step
validation); the linear classifiers name their loss in ``loss_name``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from fastcls import _validation as V
from fastcls._config import get_num_threads, settings
from fastcls._runtime import check_fork_safe

__all__ = [
    "LOSSES",
    "PENALTIES",
    "LossGradient",
    "check_loss_inputs",
    "loss_and_gradient",
    "softmax_loss",
    "svm_loss",
]

#: penalties on ``W`` understood by every loss (see the table above)
PENALTIES = ("l2", "l1", "elasticnet")


class LossGradient(NamedTuple):
    """What :func:`loss_and_gradient` returns.

    Attributes
    ----------
    loss : float
        Data loss averaged over the rows used, plus the penalty.
    dW : ndarray of shape (D, C)
        Gradient with respect to ``W``, in the dtype of ``W``.
    db : ndarray of shape (C,) or None
        Gradient with respect to the bias; ``None`` when no bias was given.
    """

    loss: float
    dW: np.ndarray
    db: np.ndarray | None


def check_loss_inputs(
    W: Any,
    X: Any,
    y: Any,
    reg: Any,
    b: Any = None,
    penalty: Any = "l2",
    beta: Any = 1.0,
    idx: Any = None,
) -> tuple:
    """Validate the arguments of :func:`svm_loss` / :func:`softmax_loss`.

    Returns ``(W, X, y, reg, b, penalty, beta, idx)`` with ``W``, ``X`` and ``b`` of one
    float dtype (float32 only when ``W`` and ``X`` are both float32 or ``X`` is uint8 with
    float32 ``W``), ``y`` and ``idx`` int64. ``W`` and ``X`` are not scanned for NaN or
    infinity here: :func:`loss_and_gradient` does it when its result is not finite.
    """
    return _checked_loss_inputs(W, X, y, reg, b, penalty, beta, idx, label_range=True)


def _is_plain(a: Any, ndim: int) -> bool:
    """``a`` is a C-contiguous ndarray (not a subclass) of ``ndim`` dimensions."""
    return type(a) is np.ndarray and a.ndim == ndim and a.flags.c_contiguous


def _is_plain_number(v: Any) -> bool:
    """``v`` is a finite Python float or int (not a bool) >= 0."""
    return (type(v) is float or type(v) is int) and math.isfinite(v) and v >= 0


_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_INT64 = np.dtype(np.int64)


def _checked_loss_inputs(
    W: Any,
    X: Any,
    y: Any,
    reg: Any,
    b: Any,
    penalty: Any,
    beta: Any,
    idx: Any,
    label_range: bool,
) -> tuple:
    """:func:`check_loss_inputs`; ``label_range=False`` leaves the range of the labels to
    the kernel (:func:`loss_and_gradient` checks it there, before any label is used).

    Arguments already in the kernel's form (C-contiguous ndarrays, ``W`` and ``X`` of one
    float dtype, int64 labels, Python numbers, no bias or rows) are returned as they are
    after a few attribute checks: the general path costs 30-40 us a call once the
    kernel has pushed the interpreter's data out of the caches (svm_loss at N=256 takes
    0.3-0.4 ms in all). Anything else takes the general path, so results and errors are
    the same either way.
    """
    if (
        b is None
        and idx is None
        and _is_plain(W, 2)
        and _is_plain(X, 2)
        and _is_plain(y, 1)
        and W.dtype in _FLOAT_DTYPES
        and X.dtype == W.dtype
        and y.dtype == _INT64
        and X.shape[0] == y.shape[0] >= 1
        and X.shape[1] == W.shape[0] >= 1
        and W.shape[1] >= 1
        and _is_plain_number(reg)
        and _is_plain_number(beta)
        and type(penalty) is str
        and penalty in PENALTIES
    ):
        if label_range:
            _check_encoded_labels(y, X.shape[0], W.shape[1])
        return W, X, y, float(reg), None, penalty, float(beta), None
    # W and X are scanned for NaN/inf only if the result is not finite: the kernel's
    # transpose of W checks it on the way (see loss_and_gradient and _check_used_rows)
    Wa = V.check_array(
        W,
        "W",
        allow_images=False,
        dtypes=(np.dtype(np.float32), np.dtype(np.float64)),
        check_finite=False,
    )
    Xa = V.check_array(X, "X", check_finite=False)
    if Xa.shape[1] != Wa.shape[0]:
        raise ValueError(
            f"X has {Xa.shape[1]} features but W has {Wa.shape[0]} rows; W must be (D, C) "
            f"= ({Xa.shape[1]}, n_classes)"
        )
    # float32 when W is float32 and X float32 or uint8 pixels (exact in float32), else float64
    dtype = V.shared_kernel_dtype(Wa.dtype, Xa.dtype)
    Wa = np.ascontiguousarray(Wa, dtype=dtype)
    Xa = np.ascontiguousarray(Xa, dtype=dtype)
    n, C = Xa.shape[0], Wa.shape[1]
    # with ``idx`` the kernel sees only the labels of the rows used: all are checked here
    ya = _check_encoded_labels(y, n, C, check_range=label_range or idx is not None)
    reg = V.check_float(reg, "reg", min_value=0.0)
    penalty = V.check_choice(penalty, "penalty", PENALTIES)
    beta = V.check_float(beta, "beta", min_value=0.0)
    if b is not None:
        ba = V.as_numeric_array(b, "b")
        if ba.shape != (C,):
            raise ValueError(f"b must have shape ({C},) (one bias per class), got {ba.shape}")
        ba = np.ascontiguousarray(ba, dtype=dtype)
        V.assert_all_finite(ba.reshape(1, -1), "b")
    else:
        ba = None
    if idx is not None:
        ia = np.asarray(idx)
        if ia.ndim != 1 or ia.dtype.kind not in "iu" or ia.size == 0:
            raise ValueError(
                f"idx must be a non-empty 1-D array of integer row indices, got "
                f"dtype {ia.dtype} and shape {ia.shape}"
            )
        if ia.min() < 0 or ia.max() >= n:
            raise ValueError(f"idx holds row indices outside 0..{n - 1} (X has {n} rows)")
        ia = np.ascontiguousarray(ia, dtype=np.int64)
    else:
        ia = None
    return Wa, Xa, ya, reg, ba, penalty, beta, ia


def _check_encoded_labels(y: Any, n: int, C: int, check_range: bool = True) -> np.ndarray:
    """``y`` as int64 labels, one per row; ``check_range``: also that they lie in ``0..C-1``.

    Without ``check_range`` the caller must check the range before using a label (the
    loss kernel does, in its pass over the rows: see :func:`loss_and_gradient`).
    """
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"y must be 1-D of shape ({n},) (one label per row of X), got {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
            raise ValueError("y must hold integer class indices in 0..C-1")
    elif arr.dtype.kind not in "iu":
        raise TypeError(f"y must hold integer class indices, got dtype {arr.dtype}")
    if check_range and n and (arr.min() < 0 or arr.max() >= C):
        raise _label_range_error(arr, C)
    return np.ascontiguousarray(arr, dtype=np.int64)


def _label_range_error(labels: np.ndarray, C: int) -> ValueError:
    return ValueError(
        f"y holds labels outside 0..{C - 1} (W has {C} columns, one per class); "
        f"got min {labels.min()}, max {labels.max()}"
    )


def _check_used_rows(X: np.ndarray, idx: np.ndarray) -> None:
    """Deferred validation of ``X``, called only when the result is not finite.

    Every row used contributes ``x * dscores`` to every entry of its row of ``dW``, and
    ``nan * 0`` and ``inf * 0`` are NaN (the kernels never use ``nnan``/``ninf``), so a
    NaN or infinity in a used row always makes ``dW`` non-finite. A finite result thus
    proves the rows used were finite, and the scan (as costly as the kernel's own pass)
    is skipped. Otherwise the rows used are checked and a clear error names ``X``.
    """
    rows = X if idx.shape[0] == X.shape[0] else X[np.unique(idx)]
    V.assert_all_finite(rows, "X")


def loss_and_gradient(
    loss: str,
    W: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    reg: float,
    b: np.ndarray | None = None,
    penalty: str = "l2",
    beta: float = 1.0,
    rows: np.ndarray | None = None,
) -> LossGradient:
    """Loss and gradient of the loss named ``loss`` on inputs that are already validated.

    The dispatch behind :func:`svm_loss`, :func:`softmax_loss` and the SGD training of
    :class:`fastcls.LinearSVM` / :class:`fastcls.Softmax`: one fused kernel pass over the
    rows used. Nothing is validated or converted (an optimiser calls this once per
    step); pass what :func:`check_loss_inputs` returns.

    Parameters
    ----------
    loss : str
        A key of :data:`LOSSES` (``"svm"`` or ``"softmax"``).
    W : ndarray of shape (D, C), float32 or float64, C-contiguous
    X : ndarray of shape (N, D), dtype of ``W``, C-contiguous
    y : ndarray of shape (N,), int64
        Class indices in ``0..C-1``.
    reg : float
        Penalty strength (>= 0).
    b : ndarray of shape (C,), dtype of ``W``, optional
        Bias; its gradient is returned as ``db``.
    penalty : {"l2", "l1", "elasticnet"}, default "l2"
    beta : float, default 1.0
        Elastic-net weight of the squared term.
    rows : ndarray of int64, shape (M,), optional
        Rows of ``X`` forming the mini-batch (repetitions allowed, in ``0..N-1``);
        default: every row.

    Returns
    -------
    LossGradient
        ``(loss, dW, db)``, with ``db`` None when ``b`` is None.

    Raises
    ------
    ValueError
        Unknown ``loss`` or ``penalty``; ``X`` holds NaN or infinity in a row used (this
        scan runs only when the result is not finite).

    Examples
    --------
    >>> import numpy as np
    >>> from fastcls.losses import check_loss_inputs, loss_and_gradient
    >>> X = np.ones((4, 2)); y = np.array([0, 1, 2, 0])
    >>> W, X, y, reg, b, penalty, beta, rows = check_loss_inputs(np.zeros((2, 3)), X, y, 0.0)
    >>> out = loss_and_gradient("svm", W, X, y, reg, b, penalty, beta, rows)
    >>> float(out.loss), out.dW.shape, out.db
    (2.0, (2, 3), None)
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {tuple(LOSSES)}, got {loss!r}")
    if penalty not in PENALTIES:
        raise ValueError(f"penalty must be one of {PENALTIES}, got {penalty!r}")
    check_fork_safe()  # a parallel kernel: a clear error in an unsafe forked child
    D, C = W.shape
    m = X.shape[0] if rows is None else rows.shape[0]
    plan = _plan(m, C, D, W.dtype, loss)
    if rows is None:
        rows = plan.all_rows
    dW = np.empty((D, C), dtype=W.dtype)
    db = plan.db_scratch if b is None else np.empty(C, dtype=W.dtype)
    parallel = _TWIN.use_parallel(plan.eligible)
    # one compiled call: transposes, kernel, reduction (Python glue cost ~0.1 ms at N=256)
    started = time.perf_counter()
    data_loss, pen, finite, speedup, labels_ok = plan.kernels.linear_loss_grad(
        X, y, rows, W, plan.zero_bias if b is None else b, plan.loss_codes[loss], plan.bounds,
        plan.part, plan.wide, plan.part_db, plan.part_loss, plan.tile, plan.rblock,
        plan.twins[parallel], reg, plan.penalty_codes[penalty], beta, plan.WT, plan.dWT, dW,
        db, plan.ticks, plan.scratch, plan.prefetch,
    )  # fmt: skip
    if not labels_ok:
        raise _label_range_error(y[rows], C)
    if plan.eligible:
        took = time.perf_counter() - started
        if parallel:
            _TWIN.record(speedup, took, plan.shapes[loss])
        else:
            _TWIN.record_serial(took, plan.shapes[loss])
    if not finite:
        V.assert_all_finite(W, "W")  # NaN, infinity or |w| > MAX_ABS_VALUE: named
        _check_used_rows(X, rows)  # NaN or infinity in X: a clear error naming X
        return _overflow_fallback(loss, W, X, y, reg, b, penalty, beta, rows)
    return LossGradient(data_loss + pen, dW, None if b is None else db)


class _Plan(NamedTuple):
    """What a loss call of one shape needs besides its arrays (see :func:`_plan`)."""

    kernels: Any  # fastcls.kernels.losses (imported on the first call: it loads numba)
    loss_codes: dict[str, int]
    penalty_codes: dict[str, int]
    all_rows: np.ndarray
    bounds: np.ndarray
    tile: tuple[int, ...]
    rblock: int
    twins: tuple[tuple[int, ...], tuple[int, ...]]
    prefetch: bool
    eligible: bool
    #: the twin choice's key of a call, by loss name (see _TwinChoice)
    shapes: dict[str, tuple[int, ...]]
    WT: np.ndarray
    part: np.ndarray
    wide: np.ndarray
    part_db: np.ndarray
    part_loss: np.ndarray
    ticks: np.ndarray
    scratch: tuple[np.ndarray, ...]
    dWT: np.ndarray
    zero_bias: np.ndarray
    db_scratch: np.ndarray


_LOCAL = threading.local()


#: call shapes whose plans a thread keeps (the oldest is dropped beyond): a loop that
#: alternates a mini-batch and a validation loss reuses both
MAX_PLANS = 4


def _plan(m: int, C: int, D: int, dtype: np.dtype, loss: str) -> _Plan:
    """This thread's plan for a ``loss`` call on ``m`` rows, ``C`` classes, ``D`` features.

    Everything that depends only on the shape, the thread count and the tunables (the
    tasks, the micro-kernel, the reusable buffers, whether the parallel twin may run),
    worked out once and reused while the call shape stays the same: the Python around a
    kernel call runs with the caches the kernel just filled with rows, where every
    lookup costs a miss (2 threads, N=256: 54 us of Python in a 0.30 ms call before).
    Callers must not keep the buffers past their call.
    """
    threads = get_num_threads()
    key = (
        m, C, D, dtype, loss, threads, settings.linear_kernel_impl,
        settings.linear_prefetch_min_bytes, settings.linear_row_block_rows,
        settings.linear_parallel_min_work,
    )  # fmt: skip
    plans = getattr(_LOCAL, "plans", None)
    if plans is None:
        plans = _LOCAL.plans = {}
    plan = plans.get(key)
    if plan is not None:
        return plan
    from fastcls.kernels import losses as K

    bounds = K.task_bounds(m)
    impl = K.kernel_impl()
    tile = K.tile_token(impl)
    prefetch_min_bytes = K.prefetch_min_bytes(impl)
    item = np.dtype(dtype).itemsize
    rblock = K.row_block(loss, impl)
    WT, part, wide, part_db, part_loss, ticks, scratch = K.loss_buffers(
        bounds, C, D, tile, dtype, rblock
    )
    plan = _Plan(
        kernels=K,
        loss_codes=K.LOSS_CODES,
        penalty_codes=K.PENALTY_CODES,
        # never written to: a read-only array would be another numba type, hence another
        # compilation of the kernels
        all_rows=np.arange(m, dtype=np.int64),
        bounds=bounds,
        tile=tile,
        rblock=rblock,
        twins=(K.twin_token(False), K.twin_token(True)),
        prefetch=m * D * item >= prefetch_min_bytes,
        eligible=K.use_parallel(m, D, C),
        shapes={name: (code, m, D, C, item, threads) for name, code in K.LOSS_CODES.items()},
        WT=WT,
        part=part,
        wide=wide,
        part_db=part_db,
        part_loss=part_loss,
        ticks=ticks,
        scratch=scratch,
        dWT=np.empty((C, D), dtype),
        zero_bias=np.zeros(C, dtype),
        db_scratch=np.empty(C, dtype),
    )
    if len(plans) >= MAX_PLANS:
        plans.pop(next(iter(plans)))
    plans[key] = plan
    return plan


class _TwinChoice(threading.local):
    """Per thread: whether the next loss call may run the parallel twin.

    A user's loop that calls NumPy between two losses leaves OpenBLAS's threads spinning
    for tens of milliseconds after each product; a parallel region then waits for a
    core (svm_loss, N=256, 2 threads: 2.6 ms after a 512 x 512 product, against 0.27
    alone and 0.47 on the calling thread; limiting OpenBLAS's threads with threadpoolctl
    does not stop the spinning). The parallel kernel times its tasks
    (:func:`fastcls.kernels.losses.task_speedup`): when they ran no faster than one
    thread would have, the calls of the next 2 ms run the serial twin (bit-identical
    results); each parallel try that finds the cores still contended doubles the wait,
    up to 128 ms (OpenBLAS's threads spin for about 2^28 cycles), and a clean one halves
    it. A wait in time, not in calls: after the contention ends, large calls are back on
    every thread within 128 ms (a clean call sets no wait: the calls after it run the
    parallel twin at once). Halved, not reset: under steady contention a try now and then
    finds the cores free (the OpenMP worker got its core in time), and a reset then cost
    the next four tries, each contended (an EPYC Zen 3, svm_loss N=256, 2 threads, after
    each 512 x 512 product: 4-14 ms a contended call against 1.3 on the calling thread;
    the benchmark's median call 4.1 ms against NumPy's 1.0).

    The task timing does not see every contended call: large calls start in time and
    then share the cores with the spinners, every task running about half as fast
    (svm_loss, N=10000, 2 threads: 20.6-21.4 ms after a product against 8.4-8.7 alone
    and 17.4 on the calling thread), and at N=256 many contended calls (2.2-2.5 ms) ran
    their tasks side by side and lost the time around them, the calling thread sharing a
    core with OpenBLAS's spinner and the OpenMP worker's own spin after the region. So a
    parallel call also counts as contended when its kernel call took longer than the
    serial twin would have, or ``SLOW_FACTOR`` times the shortest parallel call,
    whichever is less, in ``SLOW_CALLS`` parallel calls in a row (one slow call is noise;
    the spinners last about 80 ms). A serial call ends the row: the first parallel call
    after serial ones wakes the sleeping OpenMP worker and is often slow (0.40-0.48 ms
    against 0.21 at N=256 on the Xeon), and counting those probes across the serial
    stretches between them kept a quiet host on the serial twin for good. The serial
    twin's time is the shortest measured for the same loss, shape and thread count on
    this thread (a single serial call timed while the spinners held both cores took 38
    ms against 17-18 at N=10000: the last time alone is no yardstick; a key without the
    loss judged softmax calls by the faster SVM's times and sent a whole benchmark group
    to the serial twin). The factor is generous because the shortest parallel call may
    have been seen on a quiet moment: 1.4 sent a busy host's N=256 calls to the serial
    twin for good, 2.0 a quarter of them in a benchmark run; until a serial call of the
    shape was timed (after a contended call the task speed-up caught), the factor alone
    rarely fires at N=10000, whose contended calls take 2.2-2.7 times the shortest.
    """

    MIN_WAIT = 0.002
    MAX_WAIT = 0.128
    #: slow beyond this many times the shortest parallel call of the shape (or the
    #: shortest serial call, if less)
    SLOW_FACTOR = 3.0
    #: slow parallel calls in a row that count as contention
    SLOW_CALLS = 2
    #: shapes whose times are remembered (the oldest are dropped beyond)
    MAX_SHAPES = 32

    def __init__(self) -> None:
        self.serial_until = 0.0
        self.wait = self.MIN_WAIT
        self.best_seconds: dict[tuple[int, ...], float] = {}
        self.serial_seconds: dict[tuple[int, ...], float] = {}
        self.slow_calls = 0

    def use_parallel(self, eligible: bool, now: float | None = None) -> bool:
        """Whether this call runs the parallel twin (``eligible``: big enough for it)."""
        if not eligible or not settings.linear_adaptive_twin:
            return eligible
        return (time.perf_counter() if now is None else now) >= self.serial_until

    @classmethod
    def _remember(
        cls, table: dict[tuple[int, ...], float], shape: tuple[int, ...], value: float
    ) -> None:
        if shape not in table and len(table) >= cls.MAX_SHAPES:
            table.pop(next(iter(table)))
        table[shape] = value

    def record_serial(self, seconds: float, shape: tuple[int, ...]) -> None:
        """Note how long a serial call of a shape eligible for the parallel twin took."""
        shortest = self.serial_seconds.get(shape)
        if shortest is None or seconds < shortest:
            self._remember(self.serial_seconds, shape, seconds)
        self.slow_calls = 0  # "in a row": a serial call ends a run of slow parallel calls

    def record(
        self,
        speedup: float,
        seconds: float = 0.0,
        shape: tuple[int, ...] | None = None,
        now: float | None = None,
    ) -> None:
        """Note a parallel call's :func:`~fastcls.kernels.losses.task_speedup` and how
        long its kernel call took (0: not measured), for the call's ``shape`` key."""
        contended = speedup < 1.0
        slow = False
        if seconds > 0 and shape is not None:
            best = self.best_seconds.get(shape)
            if best is None or seconds < best:
                self._remember(self.best_seconds, shape, seconds)
            if best is not None:
                limit = min(self.SLOW_FACTOR * best, self.serial_seconds.get(shape, np.inf))
                slow = seconds > limit
        self.slow_calls = self.slow_calls + 1 if slow else 0
        contended |= self.slow_calls >= self.SLOW_CALLS
        if contended and settings.linear_adaptive_twin:
            self.serial_until = (time.perf_counter() if now is None else now) + self.wait
            self.wait = min(2 * self.wait, self.MAX_WAIT)
        else:
            self.wait = max(self.wait / 2, self.MIN_WAIT)


_TWIN = _TwinChoice()


def _overflow_fallback(
    loss: str,
    W: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    reg: float,
    b: np.ndarray | None,
    penalty: str,
    beta: float,
    rows: np.ndarray,
) -> LossGradient:
    """A non-finite result from finite inputs: float32 arithmetic overflowed.

    Float32 inputs far from 1 (``X`` near 1e20, say) make float32 scores or gradient sums
    overflow although the result fits: recompute in float64 (only this rare call pays
    for a copy of the rows used) and return it in float32 if it fits. What overflows
    float64 too, or a gradient beyond float32's range, raises ``FloatingPointError``.
    """
    if W.dtype == np.float32:
        out = loss_and_gradient(
            loss,
            W.astype(np.float64),
            X[rows].astype(np.float64),
            y[rows],
            reg,
            None if b is None else b.astype(np.float64),
            penalty,
            beta,
        )  # raises if float64 overflows too
        big = max(
            float(np.abs(out.dW).max()), 0.0 if out.db is None else float(np.abs(out.db).max())
        )
        if big > float(np.finfo(np.float32).max):
            raise FloatingPointError(
                f"the {loss} loss gradient reaches {big:.3g}, beyond float32's range "
                f"(3.4e38): pass float64 W and X, or scale the data down"
            )
        db = None if out.db is None else out.db.astype(np.float32)
        return LossGradient(out.loss, out.dW.astype(np.float32), db)
    raise FloatingPointError(
        f"the {loss} loss or its gradient overflows float64 (the scores X @ W + b exceed "
        f"1.8e308, or a penalty term does): scale X or W down"
    )


def _public_result(out: LossGradient) -> tuple[Any, ...]:
    """The ``(loss, dW)`` / ``(loss, dW, db)`` tuple of the public loss functions."""
    return (out.loss, out.dW) if out.db is None else (out.loss, out.dW, out.db)


def svm_loss(
    W: Any,
    X: Any,
    y: Any,
    reg: float = 0.0,
    penalty: str = "l2",
    *,
    beta: float = 1.0,
    b: Any = None,
    idx: Any = None,
) -> tuple:
    """Multiclass SVM (Weston-Watkins hinge) loss and its gradient, in one pass over ``X``.

    ``loss = mean_i sum_{j != y_i} max(0, s_ij - s_iy_i + 1) + penalty(W)`` with
    ``s = X @ W + b``.

    Parameters
    ----------
    W : array-like of shape (D, C)
        Weights, one column per class (float32 or float64).
    X : array-like of shape (N, D) or images (N, H, W[, C])
        Samples (float32, float64 or uint8; computed in float32 when ``W`` and ``X``
        are float32, or ``X`` uint8 and ``W`` float32; in float64 otherwise).
    y : array-like of shape (N,)
        Integer labels in ``0..C-1``.
    reg : float, default 0
        Regularisation strength (>= 0).
    penalty : {"l2", "l1", "elasticnet"}, default "l2"
        See the module docstring for the formulas.
    beta : float, default 1
        Weight of the squared term of the elastic net: ``reg * sum(beta*W**2 + |W|)``.
    b : array-like of shape (C,), optional
        Bias; when given, its gradient ``db`` is returned as a third value.
    idx : array-like of int, shape (M,), optional
        Rows of ``X`` forming the mini-batch (gathered inside the kernel, no copy).

    Returns
    -------
    loss : float
    dW : ndarray of shape (D, C), dtype of the computation
    db : ndarray of shape (C,), only when ``b`` is given

    Examples
    --------
    >>> import numpy as np, fastcls
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((50, 8)); y = rng.integers(0, 3, 50)
    >>> loss, dW = fastcls.svm_loss(np.zeros((8, 3)), X, y, reg=0.1)
    >>> float(loss)  # every margin is exactly 1 at W = 0: C - 1
    2.0
    >>> dW.shape
    (8, 3)
    """
    args = _checked_loss_inputs(W, X, y, reg, b, penalty, beta, idx, label_range=False)
    return _public_result(loss_and_gradient("svm", *args))


def softmax_loss(
    W: Any,
    X: Any,
    y: Any,
    reg: float = 0.0,
    penalty: str = "l2",
    *,
    beta: float = 1.0,
    b: Any = None,
    idx: Any = None,
) -> tuple:
    """Softmax (cross-entropy) loss and its gradient, in one pass over ``X``.

    ``loss = mean_i (log sum_j exp(s_ij) - s_iy_i) + penalty(W)`` with
    ``s = X @ W + b``, computed with the row maximum subtracted (stable for any scale).

    Parameters
    ----------
    W, X, y, reg, penalty, beta, b, idx
        As in :func:`svm_loss`.

    Returns
    -------
    loss : float
    dW : ndarray of shape (D, C)
    db : ndarray of shape (C,), only when ``b`` is given

    Examples
    --------
    >>> import numpy as np, fastcls
    >>> X = np.ones((4, 2)); y = np.array([0, 1, 2, 0])
    >>> loss, dW = fastcls.softmax_loss(np.zeros((2, 3)), X, y)
    >>> round(float(loss), 6) == round(float(np.log(3)), 6)  # uniform probabilities: ln C
    True
    """
    args = _checked_loss_inputs(W, X, y, reg, b, penalty, beta, idx, label_range=False)
    return _public_result(loss_and_gradient("softmax", *args))


#: a public loss function: ``fn(W, X, y, reg, penalty, *, beta, b, idx) -> (loss, dW[, db])``
LossFunction = Callable[..., tuple[Any, ...]]

#: the losses by name: the registry :func:`loss_and_gradient` dispatches on and the names
#: the linear classifiers give in their ``loss_name``
LOSSES: dict[str, LossFunction] = {"svm": svm_loss, "softmax": softmax_loss}
