"""The read model: snapshots of the supervisor and of each program, for every surface to format.

``show proc``, ``show programs``, ``show info``, ``/status``, ``/readyz`` and ``/metrics`` read these
and nothing else, so "is it running", "its pid", "its uptime" are worked out once, here. A snapshot is
plain values taken at one instant (no live objects), cheap enough to take per request: one tuple per
program.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

from .exits import ExitStatus
from .program import State

if TYPE_CHECKING:
    from .health import Health
    from .master import Master
    from .program import Supervised


class ProgramStatus(NamedTuple):
    name: str
    state: State
    pid: int | None  # the live current process (RUNNING, or STOPPING while it runs)
    started: float | None  # its start, wall-clock
    reloads: int  # reloads the live process went through (HAProxy's <reloads>)
    restarts: int
    exits: Mapping[tuple[str, int], int]  # (reason, code) -> count
    last_exit: ExitStatus | None
    backoff_seconds: float  # left before the next restart, in BACKOFF
    restart_policy: str
    on_reload: str
    critical: bool
    fatal_reason: str  # why it is FATAL ("" otherwise)
    reload_error: str  # why the last reload kept its old process ("" otherwise)
    ready: bool = False  # RUNNING, and its readiness check / READY=1 / startup check passed (health.py)
    restarts_by_reason: Mapping[str, int] = {}  # exit, signal, liveness, startup
    last_check: str = "-"  # the most recent check result, "readiness=ok"
    checks: tuple[Mapping[str, object], ...] = ()  # health.check_rows()

    @property
    def up(self) -> bool:
        return self.state is State.RUNNING

    def uptime(self, now: float) -> float | None:
        return None if self.started is None else max(0.0, now - self.started)

    @property
    def reason(self) -> str:
        """What is wrong with it, for people: the FATAL reason or the failed reload ("" if nothing)."""
        return self.fatal_reason or self.reload_error


class OldProcess(NamedTuple):
    """A process a reload replaced (or removed), still stopping: HAProxy's ``# old programs``."""

    name: str
    pid: int
    started: float
    reloads: int


class SupervisorStatus(NamedTuple):
    version: str
    pid: int
    started: float
    now: float
    config_path: str
    config_origin: str
    config_hash: str | None
    config_source: str
    programs: tuple[ProgramStatus, ...]
    old: tuple[OldProcess, ...]
    reloads: int  # attempts
    reload_results: Mapping[str, int]  # success / failure
    failed_reloads: int  # consecutive failures (HAProxy's [failed: N])
    last_reload: float | None
    reload_in_progress: bool
    shutting_down: bool
    ready: bool
    not_ready: tuple[str, ...]
    check_runs: Mapping[tuple[str, str, str], int] = {}  # (program, check, success|failure) -> runs
    # (program, check) -> (runs per health.DURATION_BUCKETS slot, the last above every bound; sum of seconds)
    check_durations: Mapping[tuple[str, str], tuple[tuple[int, ...], float]] = {}

    def count(self, *states: State) -> int:
        return sum(1 for p in self.programs if p.state in states)


def program_status(supervised: Supervised, health: Health | None = None) -> ProgramStatus:
    instance = supervised.instance
    live = instance is not None and instance.alive
    program = supervised.program
    return ProgramStatus(
        supervised.name, supervised.state, instance.pid if live else None,  # type: ignore[union-attr]
        instance.started_wall if live else None, instance.reloads if live else 0,  # type: ignore[union-attr]
        supervised.restarts, dict(supervised.exits), supervised.last_exit, supervised.backoff_remaining(),
        program.restart, program.on_reload, program.critical, supervised.fatal_reason, supervised.reload_error,
        *(() if health is None else (health.is_ready(supervised), dict(supervised.restart_reasons),
                                     health.last_result(supervised), tuple(health.check_rows(supervised)))))


def old_processes(master: Master) -> tuple[OldProcess, ...]:
    return tuple(OldProcess(i.name, i.pid, i.started_wall, i.reloads) for i in master.old if i.alive)


def snapshot(master: Master, now: float | None = None) -> SupervisorStatus:
    config = master.config
    ready, not_ready = master.ready()
    return SupervisorStatus(
        master.version, os.getpid(), master.started_wall, time.time() if now is None else now,
        master.options.config_path, config.origin if config else "", config.hash if config else None,
        str(config.source) if config else "",
        tuple(program_status(s, master.health) for s in master.programs.values()), old_processes(master),
        master.reloads, dict(master.reload_results), master.failed_reloads, master.last_reload_time,
        master.reload_run is not None, master.shutting_down, ready, tuple(not_ready),
        dict(master.health.runs),
        {key: (tuple(slots), master.health.duration_sums[key]) for key, slots in master.health.durations.items()})


class Process(NamedTuple):
    """A live process for ``show proc``: the cheapest read, at 200 programs on every call."""

    pid: int
    name: str
    reloads: int
    started: float


def processes(master: Master) -> tuple[list[Process], list[Process]]:
    """Current processes in configuration order, then old ones in retirement order."""
    current = [Process(i.pid, i.name, i.reloads, i.started_wall)
               for s in master.programs.values() if (i := s.instance) is not None and i.exit_status is None]
    old = [Process(i.pid, i.name, i.reloads, i.started_wall) for i in master.old if i.exit_status is None]
    return current, old
