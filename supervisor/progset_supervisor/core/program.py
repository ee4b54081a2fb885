"""One supervised program: every state transition, stop escalation, restart policy and backoff.

Only this module writes a program's state. It performs no system call itself: spawning, signals,
timers and the clock belong to the :class:`~.host.Host` (the master, or a fake in the tests).

States::

  STOPPED    not running, by request (a command, the shutdown) or never started
  STARTING   waiting to start: for its dependsOn programs to run, or for the processes an earlier
             instance left behind to be gone
  RUNNING    its process runs
  BACKOFF    exited; restarts after the backoff delay (and once its leftovers are gone)
  STOPPING   stopSignal sent to its process group and leftovers; SIGKILL after stopTimeoutSeconds
  REPLACING  a reload restarts it: the old instance is stopping, the new one starts when it is gone
  EXITED     ended, and its restart policy says leave it
  FATAL      cannot be started as configured (executable, user, group, working directory)

Transitions (event: from -> to)::

  start()                   STOPPED|EXITED|FATAL|BACKOFF|STARTING -> RUNNING (spawned)
                                                             -> STARTING (a dependency is not running,
                                                                or leftovers of the last run remain)
                                                             -> FATAL (spawn refused; host.ended_for_good)
  dependency_ready()        STARTING -> as start()
  exit, not stopping        RUNNING -> BACKOFF (restart policy says restart; leftovers get stopSignal)
                            RUNNING -> EXITED (host.ended_for_good)
  exit while stopping       STOPPING -> STOPPED once every process of the instance is gone
                                        (-> STARTING instead when stopped for a dependency, ``hold``)
  backoff timer             BACKOFF -> as start()
  stop()                    RUNNING -> STOPPING;  BACKOFF|STARTING|REPLACING -> STOPPED
  kill timer                STOPPING: SIGKILL to the group and leftovers (the instance is then gone)
  check_failed(reason)      RUNNING: stopSignal (SIGKILL after the timeout) without ``stopping``, so
                            its exit is a failure: restart policy and backoff as for a crash, the
                            restart counted with ``reason`` (liveness, startup)
  replace(new definition)   RUNNING -> REPLACING (old instance retired) -> as start() once it is gone
  retire()                  any -> STOPPED, the live instance becomes an old one (removed program)

"Gone" means: the main process was reaped, and nothing of the instance is left (its process group
is empty and every leftover that left the group was reaped), or SIGKILL was sent to all of them.
"""

from __future__ import annotations

import enum
import signal
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..config import Program, parse_signal
from .exits import ExitStatus, backoff_delay
from .instance import Instance
from .spawn import SpawnError

if TYPE_CHECKING:
    from .host import Host, TimerHandle

__all__ = ["ExitStatus", "Instance", "State", "Supervised", "backoff_delay"]


class State(enum.Enum):
    STOPPED = "STOPPED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"
    STOPPING = "STOPPING"
    REPLACING = "REPLACING"
    EXITED = "EXITED"
    FATAL = "FATAL"


class Supervised:
    """The supervisor's view of one configured program across its successive processes."""

    def __init__(self, host: Host, program: Program, ring: Any = None) -> None:
        self.host = host
        self.program = program
        self.state = State.STOPPED
        self.instance: Instance | None = None
        self.restarts = 0
        self.exits: Counter[tuple[str, int]] = Counter()
        self.restart_reasons: Counter[str] = Counter()  # exit, signal, liveness, startup
        self.last_exit: ExitStatus | None = None
        self.failures = 0
        self.backoff_timer: TimerHandle | None = None
        self.fatal_reason = ""
        self.reload_error = ""  # why the last reload could not apply a new definition (kept the old one)
        self.manually_stopped = False
        self.retiring: Instance | None = None  # the old instance a reload is replacing
        self.hold = False  # stopped because a program it depends on was stopped: restarts with it
        self.ring = ring

    # -- queries ----------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.program.name

    @property
    def pid(self) -> int | None:
        return self.instance.pid if self.instance is not None and self.instance.alive else None

    @property
    def running_program(self) -> Program | None:
        """The definition the live process was started with (differs from ``program`` after a reload
        whose new definition could not start)."""
        return self.instance.program if self.instance is not None and self.instance.alive else None

    @property
    def waiting_for(self) -> Instance | None:
        """The earlier instance a new start must wait for: the one a reload is replacing, or the last
        run while processes it left behind are still there."""
        for instance in (self.retiring, self.instance):
            if instance is not None and not instance.gone:
                return instance
        return None

    def backoff_remaining(self) -> float:
        if self.state is not State.BACKOFF or self.backoff_timer is None:
            return 0.0
        return self.backoff_timer.remaining()

    def _set_state(self, state: State) -> None:
        if state is not self.state:
            self.state = state
            self.host.state_changed(self)

    # -- starting ---------------------------------------------------------------------------------
    def start(self, *, manual: bool = False) -> None:
        """Start now, or wait in STARTING for dependencies or for the last run's leftovers."""
        if manual:
            self.manually_stopped = False
            self.hold = False
            self.failures = 0
        if self.pid is not None or self.host.shutting_down:
            return
        if self.state is State.REPLACING:
            return  # starts as soon as its old instance is gone
        self._cancel_backoff()
        self.manually_stopped = False
        self._try_spawn()

    def dependency_ready(self) -> None:
        if self.state is State.STARTING and self.pid is None:
            self._try_spawn()

    def _try_spawn(self) -> None:
        if self.host.shutting_down:
            return
        previous = self.waiting_for
        if previous is not None:
            # The last run left processes (its group, or ones that left it): they go first, so the
            # new process does not share a port or a lock file with them.
            self._set_state(State.STARTING)
            if self._after_leftovers not in previous.waiters:
                previous.waiters.append(self._after_leftovers)
            if not previous.stopping:
                self._terminate(previous)
            return
        if not self.host.dependencies_running(self.program):
            self._set_state(State.STARTING)
            return
        try:
            instance = self.host.spawn(self)
        except SpawnError as exc:
            self.fatal_reason = str(exc)
            self.host.log.alert(f"Program '{self.name}' cannot start: {exc}")
            self._set_state(State.FATAL)
            self.host.ended_for_good(self)
            return
        self.backoff_timer = None
        self.instance = instance
        self.fatal_reason = ""
        self.host.log.notice(f"New program '{self.name}' ({instance.pid}) forked")
        self._set_state(State.RUNNING)

    def _after_leftovers(self) -> None:
        if self.state is State.STARTING:
            self._try_spawn()

    def _cancel_backoff(self) -> None:
        if self.backoff_timer is not None:
            self.backoff_timer.cancel()
            self.backoff_timer = None

    # -- exits (called by the host's reaper) ------------------------------------------------------
    def exited(self, instance: Instance) -> None:
        """The main process of ``instance`` was reaped (``instance.exit_status`` is set)."""
        status = instance.exit_status
        assert status is not None
        if instance.old or instance is not self.instance:
            self.host.log.warning(f"Former program '{instance.name}' ({instance.pid}) exited with code "
                                  f"{status.code} ({status.describe()})")
            self.settle(instance)
            return
        self.last_exit = status
        self.exits[(status.reason, status.code)] += 1
        if instance.stopping or self.host.shutting_down:
            instance.stopping = True
            self.host.log.notice(f"Current program '{self.name}' ({instance.pid}) exited with code "
                                 f"{status.code} ({status.describe()})")
            if self.state is State.RUNNING:  # exited by itself during the shutdown: that is its stop
                self._set_state(State.STOPPING)
            self.settle(instance)
            return
        self.host.log.alert(f"Current program '{self.name}' ({instance.pid}) exited with code {status.code} "
                            f"({status.describe()})")
        policy = self.program.restart
        if policy == "always" or (policy == "on-failure" and status.failed):
            ran = self.host.monotonic() - instance.started_mono
            if ran >= self.program.backoff.reset_after_seconds:
                self.failures = 0
            delay = backoff_delay(self.program.backoff, self.failures, self.host.rng)
            self.failures += 1
            self.restarts += 1
            self.restart_reasons[instance.kill_reason or status.reason] += 1
            self.settle(instance)
            if not instance.gone:
                self._terminate(instance)  # what is left of its group goes before the restart
            if delay <= 0:
                self.host.log.notice(f"Restarting program '{self.name}' (restart {self.restarts})")
                self._set_state(State.BACKOFF)
                self._backoff_done()
            else:
                self.host.log.notice(f"Restarting program '{self.name}' in {delay:.3g}s "
                                     f"(restart {self.restarts}, backoff)")
                self.backoff_timer = self.host.call_later(delay, self._backoff_done)
                self._set_state(State.BACKOFF)
            return
        self.settle(instance)  # leftovers of a program that ended for good stay until stop or start
        self._set_state(State.EXITED)
        self.host.ended_for_good(self)

    def _backoff_done(self) -> None:
        if self.state is State.BACKOFF:
            self.backoff_timer = None
            self._try_spawn()

    def settle(self, instance: Instance) -> None:
        """Check whether everything of ``instance`` is gone; called after each exit that concerns it."""
        if instance.gone or instance.alive:
            return
        if not instance.killed and (instance.leftovers or self.host.group_alive(instance.pid)):
            return
        instance.gone = True
        if instance.kill_timer is not None:
            instance.kill_timer.cancel()
            instance.kill_timer = None
        if instance is self.instance and self.state is State.STOPPING:
            self._set_state(State.STARTING if self.hold else State.STOPPED)
        if instance is self.retiring:
            self.retiring = None
        self.host.gone(instance)
        callbacks, instance.waiters = instance.waiters, []
        for callback in callbacks:
            callback()

    def adopt(self, instance: Instance, pids: set[int]) -> None:
        """Processes of ``instance`` that left its group and came back to the supervisor (orphans)."""
        instance.leftovers |= pids
        if instance.killed:
            self._signal_all(instance, signal.SIGKILL)
        elif instance.stopping:
            for pid in pids:
                self.host.signal_pid(pid, parse_signal(instance.program.stop_signal))

    def leftover_exited(self, instance: Instance, pid: int) -> None:
        instance.leftovers.discard(pid)
        self.settle(instance)

    # -- stopping ---------------------------------------------------------------------------------
    def _signal_all(self, instance: Instance, signum: int) -> None:
        self.host.signal_group(instance.pid, signum)
        for pid in instance.leftovers:
            self.host.signal_pid(pid, signum)

    def _terminate(self, instance: Instance) -> None:
        """stopSignal to the group and the leftovers now, SIGKILL to all of them after the timeout."""
        instance.stopping = True
        self._signal_all(instance, parse_signal(instance.program.stop_signal))
        timeout = instance.program.stop_timeout_seconds
        instance.kill_timer = self.host.call_later(timeout, self._kill, instance, timeout)

    def _kill(self, instance: Instance, timeout: float) -> None:
        instance.kill_timer = None
        if instance.gone:
            return
        what = "its process group" if instance.alive else "what is left of its process group"
        self.host.log.warning(f"Program '{instance.name}' ({instance.pid}) did not stop within {timeout:g}s: "
                              f"sending SIGKILL to {what}")
        instance.killed = True
        self._signal_all(instance, signal.SIGKILL)
        self.settle(instance)

    def stop(self, on_stopped: Callable[[], None] | None = None, *, manual: bool = False,
             hold: bool = False) -> None:
        """Stop the program (and what its last run left behind); ``on_stopped`` once all of it is gone.

        ``manual``: it stays stopped across reloads until started. ``hold``: it was stopped for a
        dependency and returns to STARTING, so it starts again once that dependency runs.
        """
        self._cancel_backoff()
        self.manually_stopped = self.manually_stopped or manual
        self.hold = hold and not self.manually_stopped
        instance = self.instance
        if instance is None or not instance.alive:
            if self.state in (State.BACKOFF, State.STARTING, State.RUNNING, State.REPLACING, State.STOPPING):
                self._set_state(State.STARTING if self.hold else State.STOPPED)
            if instance is not None and not instance.gone:
                if on_stopped is not None:
                    instance.waiters.append(on_stopped)
                if not instance.stopping:
                    self.host.log.notice(f"Program '{self.name}' ({instance.pid}) left processes behind: "
                                         f"sending {instance.program.stop_signal} to them")
                    self._terminate(instance)
            elif on_stopped is not None:
                on_stopped()
            return
        if on_stopped is not None:
            # Kept on the process, not the program: if a reload retires this process meanwhile, the
            # callback still runs when it is gone (as an old instance).
            instance.waiters.append(on_stopped)
        if not instance.stopping:
            self._set_state(State.STOPPING)
            self._terminate(instance)

    def check_failed(self, reason: str, what: str) -> None:
        """A startup or liveness check failed ``failureThreshold`` times (or the watchdog missed): end
        the process as a crash would, so that the restart policy and the backoff decide what follows."""
        instance = self.instance
        if self.state is not State.RUNNING or instance is None or not instance.alive or instance.stopping:
            return
        self.host.log.alert(f"Program '{self.name}' ({instance.pid}) failed its {what}: stopping it for a restart "
                            f"(reason {reason})")
        instance.kill_reason = reason
        self._signal_all(instance, parse_signal(instance.program.stop_signal))
        timeout = instance.program.stop_timeout_seconds
        instance.kill_timer = self.host.call_later(timeout, self._kill, instance, timeout)

    # -- reloads ----------------------------------------------------------------------------------
    def _retire_instance(self, then: Callable[[], None] | None) -> Instance | None:
        instance = self.instance
        if instance is None or instance.gone:
            return None
        self.instance = None
        instance.old = True
        instance.reloads += 1  # it lived through this reload: HAProxy lists a fresh old program with 1
        if then is not None:
            instance.waiters.append(then)
        self.host.retired(instance)
        if not instance.stopping:
            self._terminate(instance)
        return instance

    def replace(self, program: Program, reason: str, then: Callable[[], None] | None = None) -> bool:
        """Restart on reload, first half: the old instance stops (``then`` once it is gone); the new
        one starts with :meth:`replaced`, which the master calls once the reload's stops are done.

        Returns False when nothing was waited for (``then`` is not called)."""
        self.program = program
        instance = self.instance
        if instance is None or not instance.alive:
            self.start()
            return False
        self.host.log.notice(f"Restarting program '{self.name}' ({instance.pid}): {reason}")
        self._cancel_backoff()
        self.retiring = self._retire_instance(then)
        self._set_state(State.REPLACING)
        return self.retiring is not None

    def replaced(self) -> None:
        """Restart on reload, second half: start the new instance (unless stopped meanwhile)."""
        if self.state is State.REPLACING:
            self._set_state(State.STARTING)
            self._try_spawn()

    def retire(self, then: Callable[[], None] | None = None) -> bool:
        """Removed from the configuration: stop for good; returns False when nothing runs."""
        self._cancel_backoff()
        self.manually_stopped = True
        retired = self._retire_instance(then)
        self._set_state(State.STOPPED)
        return retired is not None

    def send_signal(self, signum: int) -> bool:
        """Signal the program's main process only (as HAProxy and supervisord do for reload signals)."""
        if self.pid is None:
            return False
        return self.host.signal_pid(self.pid, signum)
