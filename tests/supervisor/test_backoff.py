"""Backoff delays: immediate first restart, doubling, capped, jitter within 10 %."""

from __future__ import annotations

import random

from progset_supervisor.config import Backoff
from progset_supervisor.core.program import ExitStatus, backoff_delay


def test_first_restart_is_immediate_then_doubles_to_the_cap() -> None:
    rng = random.Random(7)
    policy = Backoff(initial_seconds=0.5, max_seconds=4.0, reset_after_seconds=60)
    delays = [backoff_delay(policy, n, rng) for n in range(8)]
    assert delays[0] == 0.0
    for n, expected in [(1, 0.5), (2, 1.0), (3, 2.0)]:
        assert expected * 0.9 <= delays[n] <= expected * 1.1
    assert all(3.6 <= d <= 4.0 for d in delays[4:])


def test_huge_failure_counts_do_not_overflow() -> None:
    assert backoff_delay(Backoff(0.5, 30, 60), 10_000, random.Random(1)) <= 30


def test_exit_status_normalisation_matches_haproxy() -> None:
    exited = ExitStatus.from_wait_status(3 << 8)
    assert (exited.code, exited.signal, exited.describe(), exited.short()) == (3, None, "Exit", "exit 3")
    killed = ExitStatus.from_wait_status(15)
    assert (killed.code, killed.signal, killed.describe(), killed.short()) == (143, 15, "Terminated", "SIGTERM")
    assert ExitStatus.from_wait_status(10).describe() == "User defined signal 1"
