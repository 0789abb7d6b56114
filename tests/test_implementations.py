"""Table-driven correctness: every implementation of fastcls.testing.IMPLEMENTATIONS
agrees with the NumPy reference on random and adversarial data at small sizes.

Each test parametrizes ``func`` and ``library`` and receives the table's entry as the
``implementation`` fixture (tests/conftest.py), skipped when a peer is not installed.
The same table drives the benchmarks in ``bench/``: what is timed there is checked
here. k-NN results may order equal distances their own way (only ``"exact"``
implementations must break ties as the reference does); values are compared to the
tolerances of each implementation's precision (:func:`fastcls.testing.tolerances`).
"""

from __future__ import annotations

import numpy as np
import pytest

from fastcls.reference import kfold_reference, pairwise_distances_reference
from fastcls.testing import (
    ADVERSARIAL_CASES,
    IMPLEMENTATIONS,
    adversarial_images,
    adversarial_knn,
    adversarial_linear,
    assert_kneighbors_equivalent,
    cifar_like,
    images,
    knn_problem,
    linear_problem,
    tolerances,
)

METRICS = ("l1", "l2", "sqeuclidean")
K = 5


def libraries(func: str) -> list[str]:
    return list(IMPLEMENTATIONS[func])


def _knn_cases():
    for case in ADVERSARIAL_CASES:
        for dtype in ("uint8", "float32", "float64"):
            if case == "large-offset" and dtype == "uint8":
                continue
            yield pytest.param(case, dtype, id=f"{case}-{dtype}")


# --------------------------------------------------------------------------- k-NN
def _check_knn(func_out, Q, X, metric, impl):
    dist, idx = func_out
    full = pairwise_distances_reference(Q, X, metric)
    if impl.precision == "exact":
        ref_d, ref_i = IMPLEMENTATIONS["kneighbors"]["reference"](Q, X, k=K, metric=metric)()
        np.testing.assert_array_equal(idx, ref_i)
        np.testing.assert_allclose(dist, ref_d, rtol=1e-12, atol=0)
        return
    precision = impl.precision
    if np.result_type(Q, X) == np.float32 and precision == "float64":
        precision = "float32"  # float32 inputs, float32 results
    rtol, atol = tolerances(precision)
    assert_kneighbors_equivalent(dist, idx, full, rtol=rtol, atol=atol * np.abs(full).max())


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype", ["uint8", "float32", "float64"])
@pytest.mark.parametrize("library", libraries("kneighbors"))
@pytest.mark.parametrize("func", ["kneighbors"])
def test_kneighbors_random(implementation, dtype, metric):
    impl = implementation
    Q, X = knn_problem(7, 50, 24, dtype, seed=3)
    _check_knn(impl(Q, X, k=K, metric=metric)(), Q, X, metric, impl)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(("case", "dtype"), list(_knn_cases()))
@pytest.mark.parametrize("library", libraries("kneighbors"))
@pytest.mark.parametrize("func", ["kneighbors"])
def test_kneighbors_adversarial(implementation, case, dtype, metric):
    impl = implementation
    Q, X = adversarial_knn(case, 12, 60, 16, dtype, seed=5)
    _check_knn(impl(Q, X, k=K, metric=metric)(), Q, X, metric, impl)


@pytest.mark.parametrize("metric", ["l2", "sqeuclidean"])
@pytest.mark.parametrize("case", ["ties", "duplicates", "large-offset", "zero-rows"])
@pytest.mark.parametrize("library", libraries("kneighbors"))
@pytest.mark.parametrize("func", ["kneighbors"])
def test_kneighbors_adversarial_gemm_size(implementation, case, metric):
    """Large enough for fastcls's float32 GEMM path with its certified rerank."""
    impl = implementation
    Q, X = adversarial_knn(case, 40, 1100, 100, "float32", seed=7)
    _check_knn(impl(Q, X, k=K, metric=metric)(), Q, X, metric, impl)


# --------------------------------------------------------------------------- pairwise
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(
    ("case", "dtype"),
    [pytest.param("random", d, id=f"random-{d}") for d in ("uint8", "float32")]
    + list(_knn_cases()),
)
@pytest.mark.parametrize("library", libraries("pairwise_distances"))
@pytest.mark.parametrize("func", ["pairwise_distances"])
def test_pairwise_distances(implementation, case, dtype, metric):
    impl = implementation
    if case == "random":
        Q, X = knn_problem(6, 30, 20, dtype, seed=11)
    else:
        Q, X = adversarial_knn(case, 6, 30, 20, dtype, seed=11)
    got = impl(Q, X, metric=metric)()
    want = pairwise_distances_reference(Q, X, metric)
    precision = impl.precision
    if dtype == "float32" and precision in ("exact", "float64"):
        precision = "float32"  # float32 inputs give a float32 matrix
    rtol, atol = tolerances(precision)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * np.abs(want).max())


# --------------------------------------------------------------------------- losses
def _loss_problems():
    yield pytest.param("random", id="random")
    for case in ADVERSARIAL_CASES:
        yield pytest.param(case, id=case)


@pytest.mark.parametrize("case", list(_loss_problems()))
@pytest.mark.parametrize(
    ("func", "library"),
    [(f, lib) for f in ("svm_loss", "softmax_loss") for lib in libraries(f)],
)
def test_losses(implementation, func, case):
    impl = implementation
    if case == "random":
        W, X, y = linear_problem(64, 33, 5, seed=2)
    else:
        W, X, y = adversarial_linear(case, 48, 17, 4, seed=2)
    loss, dW = impl(W, X, y, reg=0.1)()
    ref_loss, ref_dW = IMPLEMENTATIONS[func]["reference"](W, X, y, reg=0.1)()
    rtol, atol = tolerances(impl.precision)
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=rtol)
    assert dW.shape == ref_dW.shape
    np.testing.assert_allclose(dW, ref_dW, rtol=rtol, atol=atol * max(np.abs(ref_dW).max(), 1))


# --------------------------------------------------------------------------- features
def _image_sets():
    yield pytest.param("random", id="random")
    for case in ADVERSARIAL_CASES:
        if case != "large-offset":  # uint8 images have no offset case
            yield pytest.param(case, id=case)


@pytest.mark.parametrize("case", list(_image_sets()))
@pytest.mark.parametrize(
    ("func", "library"),
    [(f, lib) for f in ("hog", "color_histogram_hsv") for lib in libraries(f)],
)
def test_features(implementation, func, case):
    impl = implementation
    ims = images(5, seed=4) if case == "random" else adversarial_images(case, 6, 16, 24, seed=4)
    got = impl(ims)()
    want = IMPLEMENTATIONS[func]["reference"](ims)()
    assert got.shape[0] == want.shape[0]
    if impl.precision == "different":
        return  # comparable work, not the same definition
    assert got.shape == want.shape
    rtol, atol = tolerances(impl.precision)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=max(atol * np.abs(want).max(), 1e-15))


# --------------------------------------------------------------------------- CV
N_FOLDS = 3
KS = (1, 2, 3, 5, 8)


def _cv_data(case):
    if case == "random":
        return cifar_like(60, 12, 4, seed=6)
    X = adversarial_knn(case, 1, 60, 12, "uint8", seed=6)[1]
    return X, np.random.default_rng(6).integers(0, 3, 60)


def _tie_at_kth(X, metric, k, fold):
    """Whether a query of ``fold`` has equal k-th and (k+1)-th neighbour distances."""
    tr, va = kfold_reference(X.shape[0], N_FOLDS)[fold]
    D = np.sort(pairwise_distances_reference(X[va], X[tr], metric), axis=1)
    return bool(np.any(D[:, k - 1] == D[:, k]))


@pytest.mark.parametrize("metric", ["l1", "l2"])
@pytest.mark.parametrize("case", ["random", "ties", "duplicates", "zero-rows"])
@pytest.mark.parametrize("library", libraries("cross_validate_knn"))
@pytest.mark.parametrize("func", ["cross_validate_knn"])
def test_cross_validate_knn(implementation, case, metric):
    impl = implementation
    X, y = _cv_data(case)
    got = impl(X, y, ks=KS, metric=metric, n_folds=N_FOLDS)()
    want = IMPLEMENTATIONS["cross_validate_knn"]["reference"](
        X, y, ks=KS, metric=metric, n_folds=N_FOLDS
    )()
    assert sorted(got) == sorted(want)
    differ = [(k, f) for k in want for f in range(N_FOLDS) if got[k][f] != want[k][f]]
    if impl.precision == "exact":
        assert not differ, differ
    else:  # its own order among equal distances: differences only where a tie straddles k
        unexplained = [(k, f) for k, f in differ if not _tie_at_kth(X, metric, k, f)]
        assert not unexplained, unexplained


# --------------------------------------------------------------------------- the table
def test_every_function_has_a_reference_and_fastcls():
    for func, impls in IMPLEMENTATIONS.items():
        assert {"fastcls", "reference"} <= set(impls), func
        for name, impl in impls.items():
            assert impl.library == name
            assert impl.precision in ("exact", "float64", "float32", "different")


def test_importing_the_table_imports_no_optional_dependency():
    import subprocess
    import sys

    code = (
        "import sys, fastcls, fastcls.testing; "
        "print(sorted(m for m in ('numba', 'faiss', 'sklearn', 'skimage', 'torch') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    code = "import sys, fastcls; print('fastcls.testing' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
