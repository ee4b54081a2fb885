"""The master: owns the programs, is their :class:`~.host.Host`, applies reload plans, shuts down.

Everything here runs on the one event-loop thread, so no locks are needed; the only entry points are
loop callbacks (signals, timers, pipes, sockets). What happens to a program is decided elsewhere:
its transitions in :mod:`.program`, reload rules in :mod:`.plan`, stop order in :mod:`.shutdown`;
commands by name are :mod:`.control`, reads are :mod:`.status`, waiting for children is
:mod:`.reaper`. The master only wires them to real processes, the loop and the log.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..config import Config, Program
from ..runtime.log import Logger
from ..runtime.loop import Loop, Timer
from ..runtime.output import OutputSink
from .health import Health
from .plan import plan
from .processes import Options, Processes
from .program import Instance, State, Supervised
from .reaper import Reaper
from .reloads import ReloadRun, Reloads
from .shutdown import run_lanes, stop_lanes

if TYPE_CHECKING:
    import random

__all__ = ["Master", "Options"]


class Master(Processes, Reloads):
    def __init__(self, options: Options, loop: Loop, log: Logger, sink: OutputSink,
                 base_env: MutableMapping[str, str] | None = None) -> None:
        self.options = options
        self.loop = loop
        self.log = log
        self.sink = sink
        self._rng: random.Random | None = None
        # Programs see the supervisor's environment plus HAProxy's marker, as under an HAProxy master.
        # ``progset-supervisor`` passes its own ``os.environ`` (with the marker set), so a program with
        # no ``env`` of its own simply inherits it: nothing to copy or encode at each spawn.
        self.base_env: MutableMapping[str, str] = (
            base_env if base_env is not None else {**os.environ, "HAPROXY_MWORKER": "1"})
        self.config: Config | None = None
        self.programs: dict[str, Supervised] = {}
        self.depends: dict[str, tuple[str, ...]] = {}
        self.dependents: dict[str, list[str]] = {}
        self.old: dict[Instance, None] = {}  # old instances still stopping, in retirement order (O(1) removal)
        self.reaper = Reaper(log.debug)
        self.started_wall = time.time()
        self.version = __version__
        self.reloads = 0
        self.failed_reloads = 0
        self.reload_results: Counter[str] = Counter()
        self.last_reload_time: float | None = None
        self.reload_run: ReloadRun | None = None
        self.reload_queued: bool | None = None  # hard flag of a reload requested during a reload
        self.shutting_down = False
        self.exit_code: int | None = None
        self.finished = False
        self.on_load_hooks: list[Callable[[Config], None]] = []  # each successful reload's new config
        self.on_exit_hooks: list[Callable[[], None]] = []  # run once every program is gone
        self.guardian: Any = None  # kills the programs' processes if this process is SIGKILLed
        self._env: dict[str, tuple[Program, dict[str, str] | None]] = {}
        self.health = Health(self, pdeathsig=options.pdeathsig)  # checks and sd_notify (health.py)

    @property
    def rng(self) -> random.Random:
        """Backoff jitter; made on the first crash, so start-up does not import random."""
        if self._rng is None:
            import random

            self._rng = random.Random(self.options.seed)
        return self._rng

    # -- the Host protocol ------------------------------------------------------------------------
    monotonic = staticmethod(time.monotonic)
    wall = staticmethod(time.time)

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        return self.loop.call_later(delay, callback, *args)

    def dependencies_running(self, program: Program) -> bool:
        for dep in program.depends_on:
            other = self.programs.get(dep)
            if other is None or not self.health.dependency_met(program, other):
                return False
        return True

    def state_changed(self, supervised: Supervised) -> None:
        if supervised.state is State.RUNNING:
            self.health.started(supervised, self._env[supervised.name][1])
            self.wake_dependents(supervised)
        else:
            self.health.stopped(supervised)  # checks never run for a process that is not RUNNING

    def wake_dependents(self, supervised: Supervised) -> None:
        """``supervised`` runs, or became ready: start the programs that waited for it."""
        if not self.shutting_down:
            for name in self.dependents.get(supervised.name, ()):
                waiting = self.programs.get(name)
                if waiting is not None and waiting.state is State.STARTING:
                    waiting.dependency_ready()

    def ended_for_good(self, supervised: Supervised) -> None:
        """A program ended for good (EXITED or FATAL): a critical one takes the supervisor down."""
        self.health.ended_for_good(supervised)
        if supervised.program.critical and not self.shutting_down:
            code = supervised.last_exit.code if supervised.state is State.EXITED and supervised.last_exit else 1
            self.log.alert(f"Critical program '{supervised.name}' ended for good: stopping every program, "
                           f"exit code {code}")
            self.shutdown(code)

    def retired(self, instance: Instance) -> None:
        self.old[instance] = None

    def gone(self, instance: Instance) -> None:
        self.old.pop(instance, None)
        self.reaper.forget(instance)
        if self.guardian is not None:
            self.guardian.remove(instance.pid)

    # -- lifecycle --------------------------------------------------------------------------------
    def install_signals(self) -> None:
        self.loop.add_signal_handler(signal.SIGCHLD, lambda _s: self.reaper.reap())
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, self._on_stop_signal)
        for signum in (signal.SIGHUP, signal.SIGUSR2):
            self.loop.add_signal_handler(signum, lambda s: self.reload(origin=signal.Signals(s).name))
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    def reap(self) -> None:
        self.reaper.reap()

    def watch_exit(self, pid: int, callback: Callable[[int], None]) -> None:
        """A child that is not a program's process (an exec check): ``callback(wait status)`` when it
        is reaped. Registered children are never taken for a program's leftovers."""
        self.reaper.watch(pid, callback)

    def start(self, config: Config) -> None:
        """First load: start every program in dependency order."""
        self.log.notice(f"progset-supervisor {self.version} starting with {len(config.programs)} programs "
                        f"from {config.origin or self.options.config_path}")
        self._apply(plan(None, config), config, None)
        self.log.notice("Loading success.")

    def _on_stop_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.shutting_down:
            self.log.warning(f"{name} received while already stopping; still waiting for programs to exit")
            return
        self.log.warning(f"Exiting Master process... ({name})")
        self.shutdown(0)

    def ready(self) -> tuple[bool, list[str]]:
        """Readiness for ``/readyz``: the named programs (default: all but ``restart: never``) are ready."""
        if self.shutting_down or self.config is None:
            return False, ["supervisor is stopping" if self.shutting_down else "no configuration loaded"]
        names = self.config.ready_programs
        if names is None:
            names = tuple(p.name for p in self.config.programs if p.restart != "never")
        not_ready = [n for n in names if not self.health.is_ready(self.programs[n])]
        return not not_ready, not_ready

    # -- shutdown ---------------------------------------------------------------------------------
    def shutdown(self, exit_code: int = 0) -> None:
        """Stop programs in lanes from the dependency graph (dependents first), then stop the loop."""
        if self.shutting_down:
            return
        self.shutting_down = True
        self.exit_code = exit_code
        old: dict[str, list[Instance]] = {}
        for instance in self.old:
            if not instance.gone:
                old.setdefault(instance.name, []).append(instance)
        alive = []
        for name, supervised in self.programs.items():
            supervised.manually_stopped = True
            if supervised.waiting_for is not None or supervised.pid is not None or name in old:
                alive.append(name)
            else:
                supervised.stop()  # BACKOFF, STARTING: nothing to wait for
        alive += [name for name in old if name not in self.programs]

        def stop(name: str, done: Callable[[], None]) -> bool:
            waits = list(old.get(name, ()))
            remaining = len(waits) + (1 if name in self.programs else 0)

            def one_gone() -> None:
                nonlocal remaining
                remaining -= 1
                if remaining == 0:
                    done()
            for instance in waits:
                instance.waiters.append(one_gone)
            if name in self.programs:
                self.programs[name].stop(one_gone)
            return True
        run_lanes(stop_lanes(self.depends, alive), stop, self._finish)

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        for pid in self.reaper.adopt_strays():  # unattributed descendants of our programs
            self.signal_pid(pid, signal.SIGKILL)
        for supervised in self.programs.values():
            if supervised.instance is not None:
                # Their last words (even without a final newline) are printed before we exit.
                for reader in supervised.instance.readers:
                    reader.drain()
                    reader.close()
        self.health.close()
        for hook in self.on_exit_hooks:
            hook()
        self.log.warning(f"All programs exited. Exiting... ({self.exit_code})")
        self.loop.stop()
