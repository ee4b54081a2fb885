"""The master: owns the programs, reaps children, applies reload plans, stops in order, exits.

Everything here runs on the one event-loop thread, so no locks are needed; the only entry points are
loop callbacks (signals, timers, pipes, sockets). Children are reaped in exactly one place,
:meth:`Master.reap`, driven by SIGCHLD: it dispatches each exit to the program that owns the pid and
quietly reaps everything else (orphans re-parented to us as PID 1 or as a child subreaper).
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, NamedTuple

from .. import __version__
from ..config import Config, ConfigError, Program, load_path, parse_signal
from ..runtime.log import Logger
from ..runtime.loop import Loop
from ..runtime.output import OutputSink
from .plan import Action, plan
from .program import ExitStatus, Instance, State, Supervised

if TYPE_CHECKING:
    import random

ReloadDone = Callable[[bool, list[str]], None]


class CommandError(Exception):
    """A Master CLI command that cannot be done; the message is shown to the user as is."""


class Options(NamedTuple):
    config_path: str
    log_lines: int = 1000
    pdeathsig: bool = True
    debounce_seconds: float = 0.2
    watch: bool = True
    seed: int | None = None
    allow_no_programs: bool = False


class ReloadRun:
    """One reload in progress: how many actions still have to finish, who waits for the answer."""

    __slots__ = ("applied", "hard", "pending", "waiters")

    def __init__(self, hard: bool) -> None:
        self.hard = hard
        self.pending = 0
        self.waiters: list[ReloadDone] = []
        self.applied = False


class Master:
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
        self.dependents: dict[str, list[str]] = {}
        self.old: dict[Instance, None] = {}  # old instances still stopping, in retirement order (O(1) removal)
        self.by_pid: dict[int, Instance] = {}
        self.started_wall = time.time()
        self.started_mono = time.monotonic()
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
        # Programs whose old instance must exit before their new one may start (restart on reload
        # waits, so ports are free again).
        self.replacing: set[Supervised] = set()
        self._alive_dependents: dict[str, int] = {}
        self._stop_requested: set[str] = set()
        self._old_alive: dict[Supervised, list[Instance]] = {}
        self._released: set[str] = set()

    @property
    def rng(self) -> random.Random:
        """Backoff jitter; made on the first crash, so start-up does not import random."""
        if self._rng is None:
            import random

            self._rng = random.Random(self.options.seed)
        return self._rng

    # -- lifecycle --------------------------------------------------------------------------------
    def install_signals(self) -> None:
        self.loop.add_signal_handler(signal.SIGCHLD, lambda _s: self.reap())
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, self._on_stop_signal)
        for signum in (signal.SIGHUP, signal.SIGUSR2):
            self.loop.add_signal_handler(signum, lambda s: self.reload(origin=signal.Signals(s).name))
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)

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

    # -- reaping ----------------------------------------------------------------------------------
    def track(self, instance: Instance) -> None:
        self.by_pid[instance.pid] = instance

    def reap(self) -> None:
        """``waitpid(-1, WNOHANG)`` until nothing is left: the only place children are waited for."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            instance = self.by_pid.pop(pid, None)
            if instance is None:
                self.log.debug(f"Process {pid} exited with code {ExitStatus.from_wait_status(status).code}")
                continue
            instance.exit_status = ExitStatus.from_wait_status(status)
            instance.drain_output()
            self._instance_exited(instance)

    def _instance_exited(self, instance: Instance) -> None:
        status = instance.exit_status
        assert status is not None
        if instance.kill_timer is not None and not instance.group_alive():
            instance.kill_timer.cancel()
        supervised = instance.supervised
        if supervised.instance is instance:
            if self.shutting_down:
                instance.stopping = True
            supervised.instance_exited(instance)
            if self.shutting_down:
                self._release(supervised)
        else:
            self.log.warning(f"Former program '{instance.name}' ({instance.pid}) exited with code {status.code} "
                             f"({status.describe()})")
            self.old.pop(instance, None)
            waiters, instance.waiters = instance.waiters, []
            for waiter in waiters:
                waiter()
        if self.shutting_down:
            self._shutdown_progress()

    def terminate(self, instance: Instance, program: Program) -> None:
        """Stop signal to the process group now, SIGKILL to the group after the stop timeout."""
        instance.stopping = True
        signum = parse_signal(program.stop_signal)
        instance.signal_group(signum)
        instance.kill_timer = self.loop.call_later(program.stop_timeout_seconds, self._kill, instance,
                                                   program.stop_timeout_seconds)

    def _kill(self, instance: Instance, timeout: float) -> None:
        if instance.alive:
            self.log.warning(f"Program '{instance.name}' ({instance.pid}) did not stop within {timeout:g}s: "
                             "sending SIGKILL to its process group")
        instance.signal_group(signal.SIGKILL)

    # -- dependencies and state -------------------------------------------------------------------
    def dependencies_running(self, program: Program) -> bool:
        for dep in program.depends_on:
            other = self.programs.get(dep)
            if other is None or other.state is not State.RUNNING:
                return False
        return True

    def on_state_change(self, supervised: Supervised) -> None:
        if supervised.state is State.RUNNING and not self.shutting_down:
            for name in self.dependents.get(supervised.name, ()):
                waiting = self.programs.get(name)
                if (waiting is not None and waiting.state is State.STARTING and waiting not in self.replacing
                        and self.dependencies_running(waiting.program)):
                    waiting.request_start()

    def on_final(self, supervised: Supervised) -> None:
        """A program ended for good (EXITED or FATAL): a critical one takes the supervisor down."""
        if supervised.program.critical and not self.shutting_down:
            code = supervised.last_exit.code if supervised.state is State.EXITED and supervised.last_exit else 1
            self.log.alert(f"Critical program '{supervised.name}' ended for good: stopping every program, "
                           f"exit code {code}")
            self.shutdown(code)

    def ready(self) -> tuple[bool, list[str]]:
        """Readiness for ``/readyz``: the named programs (default: all but ``restart: never``) run."""
        if self.shutting_down or self.config is None:
            return False, ["supervisor is stopping" if self.shutting_down else "no configuration loaded"]
        names = self.config.ready_programs
        if names is None:
            names = tuple(p.name for p in self.config.programs if p.restart != "never")
        not_ready = [n for n in names if self.programs[n].state is not State.RUNNING]
        return not not_ready, not_ready

    # -- applying plans ---------------------------------------------------------------------------
    def _retire(self, instance: Instance, program: Program, run: ReloadRun | None,
                then: Callable[[], None] | None = None) -> None:
        """Make ``instance`` an old instance and stop it; ``then`` runs once it has exited."""
        self.old[instance] = None
        instance.reloads += 1  # it lived through this reload: HAProxy lists a fresh old program with 1
        if run is not None:
            run.pending += 1
        def finished() -> None:
            if then is not None:
                then()
            if run is not None:
                self._action_done(run)
        instance.waiters.append(finished)
        self.terminate(instance, program)

    def _apply(self, actions: list[Action], config: Config, run: ReloadRun | None) -> None:
        self.config = config
        self.dependents = {p.name: [] for p in config.programs}
        for p in config.programs:
            for dep in p.depends_on:
                self.dependents[dep].append(p.name)
        for instance in self.old:
            instance.reloads += 1
        previous = self.programs
        ordered: dict[str, Supervised] = {}
        for action in actions:
            if action.kind == "stop":
                supervised = previous[action.name]
                instance = supervised.instance
                supervised.instance = None  # its process, if any, becomes an old instance
                supervised.stop(manual=True)  # cancels a pending backoff
                if instance is not None and instance.alive:
                    # A Master CLI ``stop`` waiting for it keeps waiting on the process itself.
                    self._retire(instance, supervised.program, run)
                self.log.notice(f"Program '{action.name}' removed from the configuration: stopping it")
        for program in config.programs:
            ordered[program.name] = previous.get(program.name) or Supervised(self, program)
        self.programs = ordered
        for action in actions:
            # A critical program that cannot start shuts everything down in the middle of a plan: the
            # rest of the plan must not start or replace programs the shutdown has already accounted for.
            if self.shutting_down:
                break
            if action.kind != "stop":
                self._apply_one(action, run)

    def _apply_one(self, action: Action, run: ReloadRun | None) -> None:
        supervised = self.programs[action.name]
        assert action.program is not None
        supervised.program = action.program
        instance = supervised.instance if supervised.instance is not None and supervised.instance.alive else None
        if action.kind == "start":
            supervised.request_start()
        elif action.kind == "restart":
            # ``manually_stopped`` with a live instance: a ``stop``/``restart`` command is stopping it
            # right now. Replacing it here lost the command's answer and started the program again.
            if supervised.manually_stopped:
                self.log.notice(f"Program '{action.name}' stays stopped (stopped by a command); "
                                f"'start {action.name}' starts it")
            elif instance is None:
                supervised.request_start()
            else:
                self.log.notice(f"Restarting program '{action.name}' ({instance.pid}): {action.reason}")
                supervised.instance = None
                self.replacing.add(supervised)
                supervised.state = State.STARTING

                def start_new(supervised: Supervised = supervised) -> None:
                    self.replacing.discard(supervised)
                    if not self.shutting_down and supervised.state is State.STARTING:
                        supervised.request_start()
                self._retire(instance, action.program, run, start_new)
        elif action.kind == "signal":
            if instance is not None:
                instance.reloads += 1
                signum = supervised.reload_signal()
                supervised.send_signal(signum)
                self.log.notice(f"Sent {signal.Signals(signum).name} to program '{action.name}' ({instance.pid}) "
                                f"({action.reason})")
            elif supervised.state is State.FATAL:
                supervised.request_start()
        else:  # keep
            if instance is not None:
                instance.reloads += 1
            elif supervised.state is State.FATAL:
                supervised.request_start()

    # -- reload -----------------------------------------------------------------------------------
    def reload(self, *, hard: bool = False, origin: str = "", done: ReloadDone | None = None) -> bool:
        """Load the config again and apply the plan; ``done(success, log_lines)`` when finished.

        Returns False (and calls nothing) only if a reload is already running and ``done`` was given:
        the Master CLI answers that itself. Otherwise ``done`` is called, now or when the reload has
        finished. Signals and file changes during a reload are queued once.
        """
        if self.shutting_down:
            if done is not None:
                done(False, ["Master is stopping; reload refused."])
            return True
        if self.reload_run is not None:
            if done is not None:
                return False
            self.reload_queued = hard or bool(self.reload_queued)
            return True
        self.log.begin_attempt()
        self.log.notice(f"Reloading progset{' (hard-reload)' if hard else ''}"
                        f"{' on ' + origin if origin else ''}")
        self.reloads += 1
        self.last_reload_time = time.time()
        try:
            config = load_path(self.options.config_path, allow_no_programs=self.options.allow_no_programs)
        except ConfigError as exc:
            for problem in exc.problems:
                self.log.alert(str(problem))
            self.log.alert("Failed to load the new configuration: nothing was changed, programs keep running")
            self.failed_reloads += 1
            self.reload_results["failure"] += 1
            if done is not None:
                done(False, list(self.log.startup))
            return True
        for hook in self.on_load_hooks:
            hook(config)
        run = ReloadRun(hard=hard)
        if done is not None:
            run.waiters.append(done)
        self.reload_run = run
        run.pending += 1  # released below, once every action has been issued
        self._apply(plan(self.config, config, hard=hard), config, run)
        self._action_done(run)
        return True

    def _action_done(self, run: ReloadRun) -> None:
        run.pending -= 1
        if run.pending > 0 or run.applied:
            return
        run.applied = True
        self.failed_reloads = 0
        self.reload_results["success"] += 1
        self.log.notice("Loading success.")
        self.reload_run = None
        lines = list(self.log.startup)
        for waiter in run.waiters:
            waiter(True, lines)
        if self.reload_queued is not None and not self.shutting_down:
            hard, self.reload_queued = self.reload_queued, None
            self.loop.call_soon(lambda: self.reload(hard=hard, origin="queued request"))

    # -- per-program commands (Master CLI) -------------------------------------------------------
    def get(self, name: str) -> Supervised:
        supervised = self.programs.get(name)
        if supervised is None:
            raise CommandError(f"No such program '{name}'.")
        return supervised

    def start_program(self, name: str) -> str:
        supervised = self.get(name)
        if supervised.pid is not None:
            return f"Program '{name}' is already running (pid {supervised.pid})."
        if self.shutting_down:
            raise CommandError("Master is stopping; cannot start programs.")
        if supervised in self.replacing:
            # A reload is replacing it: starting now would run two processes at once (the old one may
            # still hold the port); the reload starts the new one as soon as the old one has exited.
            supervised.manually_stopped = False
            supervised.state = State.STARTING  # undo a 'stop' given meanwhile: the reload's start applies
            return f"Program '{name}' restarts once its old process has exited (reload in progress)."
        supervised.failures = 0
        supervised.request_start()
        if supervised.pid is not None:
            return f"Program '{name}' started (pid {supervised.pid})."
        if supervised.state is State.STARTING:
            return f"Program '{name}' waits for {', '.join(supervised.program.depends_on)} to run."
        raise CommandError(f"Program '{name}' failed to start: {supervised.fatal_reason}")

    def stop_program(self, name: str, done: Callable[[str], None]) -> None:
        supervised = self.get(name)
        pid = supervised.pid
        if pid is None:
            supervised.stop(manual=True)
            done(f"Program '{name}' is not running ({supervised.state.value}).")
            return
        supervised.stop(lambda: done(f"Program '{name}' ({pid}) stopped."), manual=True)

    def restart_program(self, name: str, done: Callable[[str], None]) -> None:
        supervised = self.get(name)
        if self.shutting_down:
            raise CommandError("Master is stopping; cannot restart programs.")

        def started() -> None:
            try:
                done(self.start_program(name))
            except CommandError as exc:
                done(str(exc))
        if supervised.pid is None:
            started()
        else:
            supervised.stop(started, manual=True)

    def signal_program(self, name: str, signal_name: str) -> str:
        try:  # before the program: ``signal nosuch SIGBOGUS`` names the signal, as HAProxy's CLI does
            signum = parse_signal(signal_name)
        except ValueError as exc:
            raise CommandError(str(exc)[:1].upper() + str(exc)[1:] + ".") from None
        supervised = self.get(name)
        if supervised.pid is None:
            raise CommandError(f"Program '{name}' is not running ({supervised.state.value}).")
        pid = supervised.pid
        supervised.send_signal(signum)
        return f"Sent {signum.name} to program '{name}' ({pid})."

    # -- shutdown ---------------------------------------------------------------------------------
    def shutdown(self, exit_code: int = 0) -> None:
        """Stop programs in reverse dependency order (dependents first), then stop the loop."""
        if self.shutting_down:
            return
        self.shutting_down = True
        self.exit_code = exit_code
        for supervised in self.programs.values():
            supervised.manually_stopped = True
        # Old processes (of programs a reload is replacing), by program: looked up once per program
        # below, not by a scan of every old process each time.
        self._old_alive: dict[Supervised, list[Instance]] = {}
        for instance in self.old:
            if instance.alive:
                self._old_alive.setdefault(instance.supervised, []).append(instance)
        self._alive_dependents = {name: 0 for name in self.programs}
        for supervised in self.programs.values():
            if supervised.pid is not None or supervised in self._old_alive:
                for dep in supervised.program.depends_on:
                    if dep in self._alive_dependents:
                        self._alive_dependents[dep] += 1
        for name, count in list(self._alive_dependents.items()):
            if count == 0:
                self._stop_for_shutdown(self.programs[name])
        self._shutdown_progress()

    def _stop_for_shutdown(self, supervised: Supervised) -> None:
        if supervised.name in self._stop_requested:
            return
        self._stop_requested.add(supervised.name)
        # Old processes of a program a reload is replacing count too: releasing its dependencies
        # before they exited stopped a database under a still-running client.
        old = [instance for instance in self._old_alive.get(supervised, ()) if instance.alive]
        remaining = len(old) + 1

        def one_gone() -> None:
            nonlocal remaining
            remaining -= 1
            if remaining == 0:
                self._release(supervised)
        for instance in old:
            instance.waiters.append(one_gone)
        supervised.stop(one_gone)

    def _release(self, supervised: Supervised) -> None:
        """``supervised`` is down: the programs it depends on may stop once no other dependent runs."""
        if supervised.name in self._released:
            return
        self._released.add(supervised.name)
        for dep in supervised.program.depends_on:
            if dep in self._alive_dependents:
                self._alive_dependents[dep] -= 1
                if self._alive_dependents[dep] <= 0:
                    self._stop_for_shutdown(self.programs[dep])

    def _shutdown_progress(self) -> None:
        if self.finished:
            return
        if self.by_pid:  # a process of ours is still alive (current or old): O(1) per exit
            return
        self.finished = True
        for supervised in self.programs.values():
            if supervised.instance is not None:
                # Their last words (even without a final newline) are printed before we exit.
                for reader in supervised.instance.readers:
                    reader.drain()
                    reader.close()
        self.log.warning(f"All programs exited. Exiting... ({self.exit_code})")
        self.loop.stop()

