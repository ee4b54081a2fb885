"""Health checks and sd_notify readiness of the running programs, on the supervisor's loop.

For each running program the runner keeps its checks: the configured ``startup``, ``liveness`` and
``readiness`` probes, plus ``notify`` (readiness the program reports with ``READY=1``) and ``watchdog``
(``WATCHDOG=1`` expected every ``watchdogSeconds``). Each probe has one timer: its first run comes
``initialDelaySeconds`` after the start, the next ``periodSeconds`` after the previous run began (or
at once, if it overran). Nothing polls: TCP/HTTP attempts wait on the selector, exec checks on the
reaper, the watchdog on one timer re-armed by each ``WATCHDOG=1``. Work per run is O(1) in the number
of programs; exec checks beyond ``max_exec`` running at once wait in a queue.

Kubernetes' semantics: ``startup`` runs alone until it passes once, then ``liveness`` and ``readiness``
begin; ``failureThreshold`` failures in a row of ``startup`` or ``liveness`` (or a watchdog miss) mean
"restart"; readiness needs ``successThreshold`` successes in a row and is lost after
``failureThreshold`` failures. The runner decides these transitions and sets :attr:`Check.action`;
what they do to the program (restart through backoff, ready or not) is the :class:`Host`'s.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Mapping
from typing import Protocol

from ..config import Program
from ..config.probes import Probe
from ..runtime.loop import Loop, Timer
from ..runtime.netcheck import http_check, http_request, tcp_check
from .execcheck import ExecAttempt, Reaper

DEFAULT_MAX_EXEC = 16


class Result:
    """One run's outcome."""

    __slots__ = ("duration", "message", "passed", "when")

    def __init__(self, passed: bool, message: str, duration: float, when: float) -> None:
        self.passed, self.message, self.duration, self.when = passed, message, duration, when

    def __repr__(self) -> str:
        return f"Result({self.passed}, {self.message!r})"


class Check:
    """One check of one program: what it runs, its counters and the transition of its last result.

    ``action`` is set by the last result: ``"restart"`` (startup/liveness failed, watchdog missed),
    ``"ready"``/``"unready"`` (a readiness-level check changed), ``"started"`` (startup passed), else None.
    """

    __slots__ = ("_attempt", "_request", "_timer", "action", "failures", "last", "last_failure", "level", "name",
                 "passing", "probe", "runs", "started_at", "status_text", "successes")

    def __init__(self, name: str, level: str, probe: Probe | None) -> None:
        self.name = name  # readiness, liveness, startup, notify, watchdog
        self.level = level  # readiness, liveness, startup
        self.probe = probe
        # Kubernetes' initial states: liveness passes until it fails, readiness and startup do not.
        self.passing = level == "liveness"
        self.successes = 0
        self.failures = 0
        self.runs = 0
        self.last: Result | None = None
        self.last_failure = ""
        self.status_text = ""  # notify: the last STATUS=
        self.action: str | None = None
        self._timer: Timer | None = None
        self._attempt: object | None = None
        self._request = b""
        self.started_at = 0.0

    def describe(self) -> str:
        if self.probe is not None:
            return self.probe.describe()
        return "sd_notify READY=1" if self.name == "notify" else "sd_notify WATCHDOG=1"

    def record(self, result: Result, success_threshold: int, failure_threshold: int) -> None:
        """Count ``result`` and decide the transition (``action``)."""
        self.runs += 1
        self.last = result
        self.action = None
        if result.passed:
            self.successes += 1
            self.failures = 0
            if not self.passing and self.successes >= success_threshold:
                self.passing = True
                self.action = {"readiness": "ready", "startup": "started"}.get(self.level)
        else:
            self.failures += 1
            self.successes = 0
            self.last_failure = result.message
            if self.failures >= failure_threshold:
                if self.level == "readiness":
                    if self.passing:
                        self.passing = False
                        self.action = "unready"
                else:
                    self.passing = False
                    self.action = "restart"

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        attempt, self._attempt = self._attempt, None
        if attempt is not None:
            attempt.cancel()  # type: ignore[attr-defined]


class Host(Protocol):
    """What the runner reports to (the master/program state machine)."""

    def health(self, program: str, check: Check, result: Result) -> None:
        """Every result; act on ``check.action``."""


class ProgramChecks:
    """The checks of one running process of one program."""

    __slots__ = ("checks", "env", "name", "pid", "program", "started_mono", "watchdog_seconds")

    def __init__(self, program: Program, pid: int, env: Mapping[str, str] | None) -> None:
        self.name = program.name
        self.program = program
        self.pid = pid
        self.env = env
        self.started_mono = time.monotonic()
        self.checks: dict[str, Check] = {}
        self.watchdog_seconds = program.watchdog_seconds

    @property
    def ready(self) -> bool:
        """Startup passed (if any) and every readiness-level check passes; True when there is none."""
        return all(c.passing for c in self.checks.values() if c.level in ("readiness", "startup"))


class CheckRunner:
    def __init__(self, loop: Loop, host: Host, reaper: Reaper, *, max_exec: int = DEFAULT_MAX_EXEC,
                 pdeathsig: bool = True) -> None:
        self.loop = loop
        self.host = host
        self.reaper = reaper
        self.max_exec = max_exec
        self.pdeathsig = pdeathsig
        self.programs: dict[str, ProgramChecks] = {}
        self.by_pid: dict[int, ProgramChecks] = {}
        self.exec_running = 0
        self.exec_queue: deque[tuple[ProgramChecks, Check]] = deque()

    # -- lifecycle of a program's checks ------------------------------------------------------------
    def start(self, program: Program, pid: int, env: Mapping[str, str] | None = None) -> ProgramChecks:
        """A new process of ``program`` runs: begin its checks (startup first, if it has one)."""
        self.stop(program.name)
        state = ProgramChecks(program, pid, env)
        self.programs[program.name] = state
        self.by_pid[pid] = state
        self._plan(state, program)
        return state

    def update(self, program: Program) -> None:
        """Reload: the running process keeps its checks' state where a check is unchanged."""
        state = self.programs.get(program.name)
        if state is None:
            return
        state.program = program
        self._plan(state, program)

    def _plan(self, state: ProgramChecks, program: Program) -> None:
        wanted: dict[str, tuple[str, Probe | None]] = {level: (level, probe) for level, probe in program.probes()}
        if program.notify:
            wanted["notify"] = ("readiness", None)
            if program.watchdog_seconds > 0:
                wanted["watchdog"] = ("liveness", None)
        for name in list(state.checks):
            if name not in wanted or wanted[name][1] != state.checks[name].probe:
                state.checks.pop(name).cancel()
        for name, (level, probe) in wanted.items():
            if name not in state.checks:
                check = state.checks[name] = Check(name, level, probe)
                if probe is not None and probe.kind == "http":
                    check._request = http_request(probe.host, probe.port, probe.path, probe.headers)
        if "watchdog" in state.checks and state.checks["watchdog"]._timer is None:
            self._arm_watchdog(state)
        startup = state.checks.get("startup")
        for check in state.checks.values():
            if check.probe is None or check._timer is not None or check._attempt is not None:
                continue
            if check.name != "startup" and startup is not None and not startup.passing:
                continue  # begins when startup passes
            if check.name == "startup" and check.passing:
                continue  # done for this process
            self._schedule_first(state, check)

    def _schedule_first(self, state: ProgramChecks, check: Check) -> None:
        assert check.probe is not None
        due = state.started_mono + check.probe.initial_delay_seconds - time.monotonic()
        check._timer = self.loop.call_later(max(0.0, due), self._run, state, check)

    def stop(self, name: str) -> None:
        """The program's process stopped or exited: no check of it runs any more."""
        state = self.programs.pop(name, None)
        if state is None:
            return
        self.by_pid.pop(state.pid, None)
        for check in state.checks.values():
            check.cancel()
        if self.exec_queue:
            self.exec_queue = deque(item for item in self.exec_queue if item[0] is not state)

    def ready(self, name: str) -> bool:
        state = self.programs.get(name)
        return state is not None and state.ready

    def checks_of(self, name: str) -> list[Check]:
        state = self.programs.get(name)
        return list(state.checks.values()) if state is not None else []

    # -- running probes -------------------------------------------------------------------------------
    def _run(self, state: ProgramChecks, check: Check) -> None:
        check._timer = None
        probe = check.probe
        assert probe is not None
        check.started_at = time.monotonic()

        def done(passed: bool, message: str) -> None:
            check._attempt = None
            self._result(state, check, passed, message)

        if probe.kind == "tcp":
            check._attempt = tcp_check(self.loop, probe.host, probe.port, probe.timeout_seconds, done)
        elif probe.kind == "http":
            check._attempt = http_check(self.loop, probe.host, probe.port, check._request, probe.scheme == "HTTPS",
                                        probe.timeout_seconds, done)
        elif self.exec_running < self.max_exec:
            self._start_exec(state, check)
        else:
            self.exec_queue.append((state, check))
            check._attempt = _Queued(self, state, check)

    def _start_exec(self, state: ProgramChecks, check: Check) -> None:
        probe = check.probe
        assert probe is not None
        self.exec_running += 1
        check.started_at = time.monotonic()

        def done(passed: bool, message: str) -> None:
            self._exec_finished()
            check._attempt = None
            self._result(state, check, passed, message)

        attempt = ExecAttempt(self.loop, self.reaper, state.program, probe.command, state.env,
                              probe.timeout_seconds, done, pdeathsig=self.pdeathsig)
        check._attempt = _Running(self, attempt)

    def _exec_finished(self) -> None:
        self.exec_running -= 1
        while self.exec_queue and self.exec_running < self.max_exec:
            state, check = self.exec_queue.popleft()
            self._start_exec(state, check)

    def _result(self, state: ProgramChecks, check: Check, passed: bool, message: str) -> None:
        if self.programs.get(state.name) is not state or state.checks.get(check.name) is not check:
            return  # stopped or re-planned meanwhile
        probe = check.probe
        now = time.monotonic()
        result = Result(passed, message, now - check.started_at, time.time())
        if probe is not None:
            check.record(result, probe.success_threshold, probe.failure_threshold)
            if check.action != "restart" and not (check.name == "startup" and check.passing):
                due = check.started_at + probe.period_seconds - now
                check._timer = self.loop.call_later(max(0.0, due), self._run, state, check)
        else:
            check.record(result, 1, 1)
        if check.action == "started":
            self._plan(state, state.program)  # liveness and readiness begin
        self.host.health(state.name, check, result)

    # -- sd_notify --------------------------------------------------------------------------------------
    def attribute(self, pid: int) -> ProgramChecks | None:
        """Which program a notify message from ``pid`` belongs to (``notifyAccess``), or None."""
        state = self.by_pid.get(pid)
        if state is not None:
            return state if state.program.notify else None
        # notifyAccess all: a process of the program's group, or a descendant that left it.
        try:
            state = self.by_pid.get(os.getpgid(pid))
        except OSError:
            return None
        if state is None:
            state = self._ancestor(pid)
        if state is not None and state.program.notify and state.program.notify_access == "all":
            return state
        return None

    def _ancestor(self, pid: int) -> ProgramChecks | None:
        for _ in range(64):
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                return None
            pid = int(stat[stat.rindex(b")") + 2:].split(None, 2)[1])
            if pid <= 1:
                return None
            state = self.by_pid.get(pid)
            if state is not None:
                return state
        return None

    def notified(self, pid: int, fields: Mapping[str, str]) -> bool:
        """A message from the notify socket; False when it belongs to no program that may notify."""
        state = self.attribute(pid)
        if state is None:
            return False
        notify = state.checks.get("notify")
        if notify is None:
            return False
        if "STATUS" in fields:
            notify.status_text = fields["STATUS"][:200]
        outcome: tuple[bool, str] | None = None
        if fields.get("READY") == "1":
            outcome = (True, "READY=1")
        if fields.get("RELOADING") == "1":
            outcome = (False, "RELOADING=1")
        if fields.get("STOPPING") == "1":
            outcome = (False, "STOPPING=1")
        if outcome is not None:
            notify.started_at = time.monotonic()
            self._result(state, notify, *outcome)
        if "WATCHDOG_USEC" in fields and fields["WATCHDOG_USEC"].isdigit():
            state.watchdog_seconds = int(fields["WATCHDOG_USEC"]) / 1e6
        watchdog = state.checks.get("watchdog")
        if watchdog is not None:
            if fields.get("WATCHDOG") == "trigger":
                watchdog.cancel()
                watchdog.started_at = time.monotonic()
                self._result(state, watchdog, False, "WATCHDOG=trigger")
            elif fields.get("WATCHDOG") == "1" or "WATCHDOG_USEC" in fields:
                watchdog.passing = True
                watchdog.runs += 1
                self._arm_watchdog(state)
        return True

    def _arm_watchdog(self, state: ProgramChecks) -> None:
        watchdog = state.checks["watchdog"]
        if watchdog._timer is not None:
            watchdog._timer.cancel()
        watchdog.started_at = time.monotonic()
        watchdog._timer = self.loop.call_later(state.watchdog_seconds, self._watchdog_missed, state, watchdog)

    def _watchdog_missed(self, state: ProgramChecks, watchdog: Check) -> None:
        watchdog._timer = None
        self._result(state, watchdog, False, f"no WATCHDOG=1 within {state.watchdog_seconds:g}s")


class _Queued:
    """An exec check waiting for a slot; cancelling takes it out of the queue."""

    __slots__ = ("check", "runner", "state")

    def __init__(self, runner: CheckRunner, state: ProgramChecks, check: Check) -> None:
        self.runner, self.state, self.check = runner, state, check

    def cancel(self) -> None:
        try:
            self.runner.exec_queue.remove((self.state, self.check))
        except ValueError:
            pass


class _Running:
    """A started exec check; cancelling kills it and frees its slot."""

    __slots__ = ("attempt", "runner")

    def __init__(self, runner: CheckRunner, attempt: ExecAttempt) -> None:
        self.runner, self.attempt = runner, attempt

    def cancel(self) -> None:
        self.attempt.cancel()
        self.runner._exec_finished()

