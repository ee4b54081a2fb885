"""What a supervised program needs from its surroundings: the :class:`Host` protocol.

:mod:`.program` owns every state transition of a program but performs no system call and knows no
master: spawning, signalling, timers, the clock and the log are the host's. The master is the real
host (processes, the event loop); the transition tests use a fake one (a list of calls and a fake
clock), so every rule of the state machine runs in microseconds and without processes. A health
check engine reports through the same host (see ``README.md``, "How the supervisor is built").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import random
    from collections.abc import Callable

    from ..config import Program

# The program and its instances are passed as ``Any``: naming their classes here would make this module
# and :mod:`.program` import each other (the import-cycle check counts type-only imports too).
Supervised = Instance = Any


class TimerHandle(Protocol):
    def cancel(self) -> None: ...
    def remaining(self) -> float: ...


class HostLog(Protocol):
    def notice(self, message: str) -> None: ...
    def warning(self, message: str) -> None: ...
    def alert(self, message: str) -> None: ...


class Host(Protocol):
    """The supervisor as one program sees it. Everything is called from the one loop thread."""

    log: HostLog
    shutting_down: bool

    @property
    def rng(self) -> random.Random: ...

    def monotonic(self) -> float: ...
    def wall(self) -> float: ...
    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle: ...

    # processes
    def spawn(self, supervised: Supervised) -> Instance:
        """Start ``supervised.program`` (raises :class:`~.spawn.SpawnError`); the host wires its output."""
        ...

    def signal_group(self, pgid: int, signum: int) -> bool: ...
    def signal_pid(self, pid: int, signum: int) -> bool: ...
    def group_alive(self, pgid: int) -> bool: ...

    # what the program reports back
    def dependencies_running(self, program: Program) -> bool: ...
    def state_changed(self, supervised: Supervised) -> None: ...
    def ended_for_good(self, supervised: Supervised) -> None: ...
    def retired(self, instance: Instance) -> None:
        """``instance`` became an old instance (HAProxy's ``# old programs``) until it is gone."""
        ...

    def gone(self, instance: Instance) -> None:
        """Every process of ``instance`` has exited (main process, process group, leftovers)."""
        ...
