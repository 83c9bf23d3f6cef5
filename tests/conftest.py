"""Shared test settings: one hypothesis profile for the whole suite."""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "fecc",
    max_examples=int(os.environ.get("FECC_HYPOTHESIS_EXAMPLES", "150")),
    deadline=None,                      # compiled code and numba warm-up make timings noisy
    derandomize=True,                   # same examples every run: CI failures reproduce
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile("fecc")
