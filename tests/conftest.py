"""Shared pytest configuration; fixtures used by one test file belong in that file."""

from hypothesis import settings

# The emulated Kubernetes API server and the running operator, used by the operator, chart and e2e tests.
pytest_plugins = ["tests.operator.fixtures"]

# Shared CI machines are slow: a property test must fail on a wrong answer, never on a slow example.
settings.register_profile("progset", deadline=None)
settings.load_profile("progset")
