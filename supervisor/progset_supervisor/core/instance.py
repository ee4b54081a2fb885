"""One process of a program and what it left behind: the record :mod:`.program` keeps per run."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import Program
    from .exits import ExitStatus
    from .host import TimerHandle


class Instance:
    """One process of a program (and what it left behind): pid, pipes, start time, reload counter."""

    def __init__(self, supervised: Any, pid: int, started_wall: float, started_mono: float,
                 readers: list[Any] | None = None) -> None:
        self.supervised = supervised
        self.program: Program = supervised.program  # the definition it runs (its stop settings)
        self.name = supervised.program.name
        self.pid = pid
        self.started_wall = started_wall
        self.started_mono = started_mono
        self.reloads = 0
        self.stopping = False  # stopSignal sent
        self.killed = False  # SIGKILL sent to everything it had
        self.gone = False
        self.old = False
        self.kill_timer: TimerHandle | None = None
        self.exit_status: ExitStatus | None = None
        self.readers: list[Any] = readers if readers is not None else []
        self.leftovers: set[int] = set()  # processes that left its group, re-parented to the supervisor
        self.waiters: list[Callable[[], None]] = []  # run once the instance is gone
        self.kill_reason: str | None = None  # "liveness"/"startup": a failed check ended it (check_failed)

    @property
    def alive(self) -> bool:
        return self.exit_status is None

    def uptime(self, now: float) -> float:
        end = self.exit_status.when if self.exit_status else now
        return max(0.0, end - self.started_wall)

    def drain_output(self) -> None:
        """Read what is already in the pipes, so a program's last words print before its exit line."""
        for reader in self.readers:
            if reader.fd >= 0:
                reader.drain()
