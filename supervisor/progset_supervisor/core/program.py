"""One supervised program: its state machine, its processes, restart policy and backoff.

States: STOPPED (not running, by request), STARTING (waiting for ``dependsOn`` to run), RUNNING,
BACKOFF (exited, waiting to restart), STOPPING (stop signal sent), EXITED (ended and the restart
policy says leave it), FATAL (cannot be started as configured: missing executable, bad user).

A program owns at most one *current* :class:`Instance`. An instance being replaced on reload keeps
running as an *old* instance (HAProxy's ``# old programs``) until it has exited.
"""

from __future__ import annotations

import enum
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from ..config import Backoff, Program, parse_signal
from ..runtime.loop import Timer
from ..runtime.output import LogRing, PipeReader
from .spawn import SpawnError, build_env, spawn

if TYPE_CHECKING:
    import random

    from .master import Master


class State(enum.Enum):
    STOPPED = "STOPPED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"
    STOPPING = "STOPPING"
    EXITED = "EXITED"
    FATAL = "FATAL"


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


class Instance:
    """One process of a program: pid, pipes, start time, HAProxy's per-process reload counter."""

    def __init__(self, supervised: Supervised, pid: int) -> None:
        self.supervised = supervised
        self.name = supervised.program.name
        self.pid = pid
        self.started_wall = time.time()
        self.started_mono = time.monotonic()
        self.reloads = 0
        self.stopping = False
        self.kill_timer: Timer | None = None
        self.exit_status: ExitStatus | None = None
        self.readers: list[PipeReader] = []
        self.waiters: list[Callable[[], None]] = []  # run once this process has exited after a stop

    @property
    def alive(self) -> bool:
        return self.exit_status is None

    def uptime(self, now: float | None = None) -> float:
        end = self.exit_status.when if self.exit_status else (time.time() if now is None else now)
        return max(0.0, end - self.started_wall)

    def signal_group(self, signum: int) -> bool:
        """Signal the whole process group (the program and everything it forked that stayed there)."""
        try:
            os.killpg(self.pid, signum)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def group_alive(self) -> bool:
        try:
            os.killpg(self.pid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def drain_output(self) -> None:
        """Read what is already in the pipes, so a program's last words print before its exit line."""
        for reader in self.readers:
            if reader.fd >= 0:
                reader.drain()


class Supervised:
    """The supervisor's view of one configured program across its successive processes."""

    def __init__(self, master: Master, program: Program) -> None:
        self.master = master
        self.program = program
        self.state = State.STOPPED
        self.instance: Instance | None = None
        self.restarts = 0
        self.exits: Counter[tuple[str, int]] = Counter()
        self.last_exit: ExitStatus | None = None
        self.failures = 0
        self.backoff_timer: Timer | None = None
        self.fatal_reason = ""
        self.manually_stopped = False
        self.ring = LogRing(master.options.log_lines)
        self._env: dict[str, str] | None = None  # None: the supervisor's own environment, inherited
        self._env_of: Program | None = None  # the definition ``_env`` was built for

    # -- queries ----------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.program.name

    @property
    def pid(self) -> int | None:
        return self.instance.pid if self.instance is not None and self.instance.alive else None

    def backoff_remaining(self) -> float:
        if self.state is not State.BACKOFF or self.backoff_timer is None:
            return 0.0
        return self.backoff_timer.remaining()

    def _set_state(self, state: State) -> None:
        if state is not self.state:
            self.state = state
            self.master.on_state_change(self)

    # -- starting ---------------------------------------------------------------------------------
    def request_start(self) -> None:
        """Start now if every ``dependsOn`` program runs, otherwise wait in STARTING."""
        if self.instance is not None and self.instance.alive:
            return
        if self.master.shutting_down:  # nothing starts once the shutdown has counted what runs
            return
        self._cancel_backoff()
        self.manually_stopped = False
        if self.master.dependencies_running(self.program):
            self._spawn()
        else:
            self._set_state(State.STARTING)

    def _spawn(self) -> None:
        self.backoff_timer = None
        if self._env_of is not self.program:  # decided once per definition, not on every restart
            base = self.master.base_env
            self._env = None if base is os.environ and not self.program.env else build_env(self.program, base)
            self._env_of = self.program
        try:
            pid, stdout_fd, stderr_fd = spawn(self.program, self._env, pdeathsig=self.master.options.pdeathsig)
        except SpawnError as exc:
            self.fatal_reason = str(exc)
            self.master.log.alert(f"Program '{self.name}' cannot start: {exc}")
            self._set_state(State.FATAL)
            self.master.on_final(self)
            return
        instance = Instance(self, pid)
        self.instance = instance
        self.fatal_reason = ""
        sink, ring = self.master.sink, self.ring
        for stream, fd in (("stdout", stdout_fd), ("stderr", stderr_fd)):

            def on_lines(lines: list[bytes], stream: str = stream, pid: int = instance.pid) -> None:
                ring.add(stream, lines)
                sink.emit(self.name, pid, stream, lines)

            instance.readers.append(PipeReader(self.master.loop, fd, on_lines))
        self.master.track(instance)
        self.master.log.notice(f"New program '{self.name}' ({instance.pid}) forked")
        self._set_state(State.RUNNING)

    def _cancel_backoff(self) -> None:
        if self.backoff_timer is not None:
            self.backoff_timer.cancel()
            self.backoff_timer = None

    # -- exits ------------------------------------------------------------------------------------
    def instance_exited(self, instance: Instance) -> None:
        """Called by the reaper for the current instance (old instances go to the master)."""
        status = instance.exit_status
        assert status is not None
        self.last_exit = status
        self.exits[(status.reason, status.code)] += 1
        if instance.stopping:
            self.master.log.notice(f"Current program '{self.name}' ({instance.pid}) exited with code "
                                   f"{status.code} ({status.describe()})")
            self._set_state(State.STOPPED)
            callbacks, instance.waiters = instance.waiters, []
            for callback in callbacks:
                callback()
            return
        self.master.log.alert(f"Current program '{self.name}' ({instance.pid}) exited with code {status.code} "
                              f"({status.describe()})")
        policy = self.program.restart
        if policy == "always" or (policy == "on-failure" and status.failed):
            ran = time.monotonic() - instance.started_mono
            if ran >= self.program.backoff.reset_after_seconds:
                self.failures = 0
            delay = backoff_delay(self.program.backoff, self.failures, self.master.rng)
            self.failures += 1
            self.restarts += 1
            if delay <= 0:
                self.master.log.notice(f"Restarting program '{self.name}' (restart {self.restarts})")
                self._set_state(State.BACKOFF)
                # Same rule as after a backoff delay: dependsOn holds for restarts too (this path
                # spawned even while a dependency was down).
                self._backoff_done()
            else:
                self.master.log.notice(f"Restarting program '{self.name}' in {delay:.3g}s "
                                       f"(restart {self.restarts}, backoff)")
                self.backoff_timer = self.master.loop.call_later(delay, self._backoff_done)
                self._set_state(State.BACKOFF)
            return
        self._set_state(State.EXITED)
        self.master.on_final(self)

    def _backoff_done(self) -> None:
        if self.state is State.BACKOFF:
            if self.master.dependencies_running(self.program):
                self._spawn()
            else:
                self._set_state(State.STARTING)

    # -- stopping and signalling ------------------------------------------------------------------
    def stop(self, on_stopped: Callable[[], None] | None = None, *, manual: bool = False) -> None:
        """Stop signal to the process group, SIGKILL after ``stopTimeoutSeconds``; then ``on_stopped``."""
        self._cancel_backoff()
        self.manually_stopped = self.manually_stopped or manual
        instance = self.instance
        if instance is None or not instance.alive:
            if instance is not None and not instance.stopping and instance.group_alive():
                # The program exited but left processes in its group (a daemonised child): without
                # this they outlived the supervisor's shutdown. Nothing can be waited for (they are not
                # our children), so they get the stop signal once.
                instance.stopping = True
                self.master.log.notice(f"Program '{self.name}' ({instance.pid}) left processes in its group: "
                                       f"sending {self.program.stop_signal} to them")
                instance.signal_group(parse_signal(self.program.stop_signal))
            if self.state in (State.BACKOFF, State.STARTING, State.RUNNING):
                self._set_state(State.STOPPED)
            if on_stopped is not None:
                on_stopped()
            return
        if on_stopped is not None:
            # Kept on the process, not the program: if a reload retires this process meanwhile, the
            # callback still runs when it exits (as an old instance).
            instance.waiters.append(on_stopped)
        if not instance.stopping:
            self._set_state(State.STOPPING)
            self.master.terminate(instance, self.program)

    def send_signal(self, signum: int) -> bool:
        """Signal the program's main process only (as HAProxy and supervisord do for reload signals)."""
        if self.instance is None or not self.instance.alive:
            return False
        try:
            os.kill(self.instance.pid, signum)
            return True
        except ProcessLookupError:
            return False

    def reload_signal(self) -> int:
        return parse_signal(self.program.effective_reload_signal)
