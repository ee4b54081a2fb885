"""Health of the supervised programs: the master's side of the checks and of sd_notify.

The :class:`checks.CheckRunner` runs the checks and decides their transitions; this module is the
:class:`checks.Host` that turns them into program behaviour, so the master itself gains only a few
calls (a process started, a process stopping or gone, a reload planned):

- ready: a program is ready when it is RUNNING and, if it has a readiness source (readiness check,
  ``notify``) or a startup check, those passed. ``dependsOn`` waits for ready by default when the
  dependency has a readiness source (``dependsOnCondition`` says otherwise), ``/readyz`` asks it;
- restart: a failed startup or liveness check (or a watchdog miss) calls the program's
  ``check_failed``, which ends the process the way a crash would, so its restart policy and backoff
  apply as to any failure, counted with the reason ``startup``/``liveness``;
- the notify socket exists once a program has ``notify``, and such programs get ``NOTIFY_SOCKET``
  (and ``WATCHDOG_USEC``) in their environment.

It knows the master only through :class:`Owner` (no import of ``master``: no cycle).
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..config import Config, Program
from ..runtime.log import Logger
from ..runtime.loop import Loop
from ..runtime.notifysock import NotifySocket
from .checks import Check, CheckRunner, Result

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Instance(Protocol):
    pid: int


class Supervised(Protocol):
    """The part of ``program.Supervised`` used here (a protocol: importing ``program`` is not needed)."""

    program: Program
    instance: Instance | None

    @property
    def name(self) -> str: ...

    @property
    def state(self) -> Any: ...  # program.State; compared by its value

    def check_failed(self, reason: str, what: str) -> None: ...


RUNNING, STARTING = "RUNNING", "STARTING"


class Owner(Protocol):
    loop: Loop
    log: Logger
    programs: Mapping[str, Supervised]
    shutting_down: bool

    def watch_exit(self, pid: int, callback: Callable[[int], None]) -> None: ...

    def wake_dependents(self, supervised: Supervised) -> None: ...


class Health:
    def __init__(self, owner: Owner, *, pdeathsig: bool) -> None:
        self.owner = owner
        self.runner = CheckRunner(owner.loop, self, owner, pdeathsig=pdeathsig)
        self.notify_socket: NotifySocket | None = None
        self.runs: Counter[tuple[str, str, str]] = Counter()  # (program, check, "success"|"failure")
        # (program, check) -> runs per DURATION_BUCKETS slot (the last: above every bound), and their sum
        self.durations: dict[tuple[str, str], list[int]] = {}
        self.duration_sums: Counter[tuple[str, str]] = Counter()

    # -- what the master asks ---------------------------------------------------------------------
    def configure(self, config: Config) -> None:
        """A config is being applied: the notify socket if needed; running programs' checks re-planned."""
        if self.notify_socket is None and any(p.notify for p in config.programs):
            self.notify_socket = NotifySocket(self.owner.loop, self._notified)
        for program in config.programs:
            self.runner.update(program)
        for name in list(self.runner.programs):
            if name not in {p.name for p in config.programs}:
                self.runner.stop(name)

    def env_for(self, program: Program) -> dict[str, str]:
        """What a program with ``notify`` gets in its environment besides its own ``env``."""
        if not program.notify or self.notify_socket is None:
            return {}
        env = {"NOTIFY_SOCKET": self.notify_socket.address}
        if program.watchdog_seconds > 0:
            env["WATCHDOG_USEC"] = str(int(program.watchdog_seconds * 1_000_000))
        return env

    def started(self, supervised: Supervised, env: Mapping[str, str] | None) -> None:
        """A new process of ``supervised`` runs: its checks begin."""
        program, instance = supervised.program, supervised.instance
        if instance is None or not (program.probes() or program.notify):
            return
        self.runner.start(program, instance.pid, env)

    def stopped(self, supervised: Supervised) -> None:
        """``supervised`` left RUNNING (stopping, exited, replaced): its checks end."""
        self.runner.stop(supervised.name)

    def has_checks(self, program: Program) -> bool:
        return program.has_readiness_source or program.startup is not None

    def is_ready(self, supervised: Supervised) -> bool:
        if supervised.state.value != RUNNING:
            return False
        return not self.has_checks(supervised.program) or self.runner.ready(supervised.name)

    def dependency_met(self, program: Program, dependency: Supervised) -> bool:
        """``dependsOn`` per ``dependsOnCondition``: ready by default when the dependency has a readiness source."""
        condition = program.condition_for(dependency.name)
        if condition is None:
            condition = "ready" if self.has_checks(dependency.program) else "started"
        if condition == "started":
            return bool(dependency.state.value == RUNNING)
        return self.is_ready(dependency)

    def ended_for_good(self, supervised: Supervised) -> None:
        """A program that will not run again: say who is left waiting for it to be ready."""
        if not self.has_checks(supervised.program):
            return
        waiting = [s.name for s in self.owner.programs.values()
                   if s.state.value == STARTING and supervised.name in s.program.depends_on]
        if waiting:
            self.owner.log.alert(f"Program '{supervised.name}' ended ({supervised.state.value}) before it was ready "
                                 f"and will not run again (restart: {supervised.program.restart}): "
                                 f"{', '.join(repr(w) for w in waiting)} wait for it")

    # -- checks.Host ------------------------------------------------------------------------------
    def health(self, program: str, check: Check, result: Result) -> None:
        self.runs[(program, check.name, "success" if result.passed else "failure")] += 1
        key = (program, check.name)
        self.duration_sums[key] += result.duration
        slots = self.durations.get(key)
        if slots is None:
            slots = self.durations[key] = [0] * (len(DURATION_BUCKETS) + 1)
        slots[bisect.bisect_left(DURATION_BUCKETS, result.duration)] += 1
        supervised = self.owner.programs.get(program)
        if supervised is None or check.action is None:
            return
        log = self.owner.log
        if check.action == "restart":
            self._restart(supervised, check, result)
        elif check.action in ("ready", "started"):
            if self.is_ready(supervised):
                log.notice(f"Program '{program}' is ready ({check.name}: {result.message})")
            self.owner.wake_dependents(supervised)
        elif check.action == "unready":
            log.warning(f"Program '{program}' is not ready: {check.name} check failed ({result.message})")

    def _restart(self, supervised: Supervised, check: Check, result: Result) -> None:
        if self.owner.shutting_down:
            return
        reason = "liveness" if check.level == "liveness" else "startup"
        what = "watchdog" if check.name == "watchdog" else f"{check.name} check"
        self.runner.stop(supervised.name)
        supervised.check_failed(reason, f"{what} ({result.message})")

    # -- read model (CLI, /status, metrics) ----------------------------------------------------------
    def check_rows(self, supervised: Supervised) -> list[dict[str, Any]]:
        """Each check of a program with its state; configured checks of a program not running are
        ``inactive`` (checks run only for a running process)."""
        program = supervised.program
        live = {c.name: c for c in self.runner.checks_of(supervised.name)}
        names = [level for level, _ in program.probes()]
        if program.notify:
            names.append("notify")
            if program.watchdog_seconds > 0:
                names.append("watchdog")
        rows = []
        for name in names:
            check = live.get(name)
            if check is None:
                probe = dict(program.probes()).get(name)
                rows.append({"check": name, "target": probe.describe() if probe else
                             ("sd_notify READY=1" if name == "notify" else "sd_notify WATCHDOG=1"),
                             "state": "inactive", "runs": 0, "consecutive_failures": 0, "last_result": None,
                             "last_message": None, "last_failure": None, "last_duration_seconds": None,
                             "status": None})
                continue
            last = check.last
            if check.passing and (last is not None or check.level == "liveness"):
                state = "passing"
            elif last is None and check.name != "watchdog":
                state = "pending"
            else:
                state = "passing" if check.passing else "failing"
            rows.append({
                "check": name, "target": check.describe(), "state": state, "runs": check.runs,
                "consecutive_failures": check.failures,
                "last_result": None if last is None else ("success" if last.passed else "failure"),
                "last_message": None if last is None else last.message,
                "last_failure": check.last_failure or None,
                "last_duration_seconds": None if last is None else round(last.duration, 6),
                "status": check.status_text or None,
            })
        return rows

    def last_result(self, supervised: Supervised) -> str:
        """One word for ``show programs``: the most recent result, e.g. ``readiness=ok``, ``liveness=fail``."""
        latest = None
        for check in self.runner.checks_of(supervised.name):
            if check.last is not None and (latest is None or check.last.when >= latest.last.when):
                latest = check
        if latest is None or latest.last is None:
            return "-"
        return f"{latest.name}={'ok' if latest.last.passed else 'fail'}"

    def _notified(self, pid: int, fields: dict[str, str]) -> None:
        self.runner.notified(pid, fields)

    def close(self) -> None:
        if self.notify_socket is not None:
            self.notify_socket.close()
