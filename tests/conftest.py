"""Shared test configuration.

Hypothesis runs a small, derandomised profile by default (CI must stay fast and
reproducible); ``HYPOTHESIS_PROFILE=thorough`` runs many more examples.
"""

import os

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
