"""Shared test configuration.

Hypothesis runs a small, derandomised profile by default (CI must stay fast and
reproducible); ``HYPOTHESIS_PROFILE=thorough`` runs many more examples.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    max_examples=25,
    deadline=None,  # first calls include JIT compilation
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# --------------------------------------------------------------------------- the table
# Tests parametrize ``func`` and ``library`` (and ``metric`` where the function has
# one) over fastcls.testing.IMPLEMENTATIONS and ask for ``implementation``: the table's
# entry, or a skip when its optional dependency is missing or it lacks the metric.
@pytest.fixture
def implementation(request, func, library):
    from fastcls.testing import IMPLEMENTATIONS

    impl = IMPLEMENTATIONS[func][library]
    if not impl.available():
        pytest.skip(f"{library} needs {impl.requires}")
    metric = request.getfixturevalue("metric") if "metric" in request.fixturenames else None
    if not impl.supports(metric):
        pytest.skip(f"{library} does not compute {func} with metric={metric!r}")
    return impl
