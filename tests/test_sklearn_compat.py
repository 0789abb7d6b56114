"""scikit-learn's own estimator checks (run only when scikit-learn is installed)."""

import pytest

pytest.importorskip("sklearn")

from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastcls  # noqa: E402

EXPECTED_FAILURES = {
    "check_supervised_y_2d": "fastcls refuses a column-vector y with a clear error "
    "instead of warning and ravelling it",
}


@pytest.mark.filterwarnings("ignore:Estimator .* does not inherit from")
@parametrize_with_checks(
    [fastcls.KNearestNeighbor(), fastcls.KNearestNeighbor(k=3, metric="l1", weights="distance")],
    expected_failed_checks=lambda est: EXPECTED_FAILURES,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
