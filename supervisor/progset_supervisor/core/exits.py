"""How a process ended, and how long to wait before the next restart: small values, no state."""

from __future__ import annotations

import os
import signal
import time
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import random

    from ..config import Backoff


class ExitStatus(NamedTuple):
    """How a process ended, normalised as HAProxy does: the exit code, or 128 + the signal number."""

    code: int
    signal: int | None
    when: float  # wall-clock time of the exit (time.time())

    @classmethod
    def from_wait_status(cls, status: int) -> ExitStatus:
        if os.WIFEXITED(status):
            return cls(os.WEXITSTATUS(status), None, time.time())
        if os.WIFSIGNALED(status):
            return cls(128 + os.WTERMSIG(status), os.WTERMSIG(status), time.time())
        return cls(255, None, time.time())

    @property
    def failed(self) -> bool:
        return self.code != 0

    @property
    def reason(self) -> str:
        return "signal" if self.signal is not None else "exit"

    def describe(self) -> str:
        """HAProxy's ``(Exit)`` / ``(Terminated)`` text."""
        if self.signal is None:
            return "Exit"
        return signal.strsignal(self.signal) or f"signal {self.signal}"

    def short(self) -> str:
        """For ``show programs``: ``exit 3`` or ``SIGKILL``."""
        if self.signal is None:
            return f"exit {self.code}"
        try:
            return signal.Signals(self.signal).name
        except ValueError:
            return f"signal {self.signal}"


def backoff_delay(backoff: Backoff, failures: int, rng: random.Random) -> float:
    """Delay before restart number ``failures`` (0-based) of a crash streak.

    The first restart is immediate (a single crash costs no downtime); later ones wait
    ``initial x 2^(n-1)``, with +/-10 % jitter so a crash-looping fleet does not restart in lockstep,
    never above ``max``.
    """
    if failures <= 0:
        return 0.0
    base = backoff.initial_seconds * (2.0 ** min(failures - 1, 62))
    return min(backoff.max_seconds, min(base, backoff.max_seconds) * rng.uniform(0.9, 1.1))
