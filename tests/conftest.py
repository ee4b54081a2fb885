"""Shared pytest configuration; fixtures used by one test file belong in that file."""

from hypothesis import settings

# Shared CI machines are slow: a property test must fail on a wrong answer, never on a slow example.
settings.register_profile("progset", deadline=None)
settings.load_profile("progset")
