"""Reloads: load the config again, plan, check what can be checked, stop in lanes, start, answer.

A mixin of :class:`~.master.Master` (it uses the master's programs, log, loop and options): the plan
decides (:mod:`.plan`), the programs act (:mod:`.program`), the stop order is :mod:`.shutdown`'s; this
module only sequences them and keeps the reload counters.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from ..config import Config, ConfigError, load_path, parse_signal
from ..runtime.output import LogRing
from .plan import Action, Facts, plan
from .program import State, Supervised
from .shutdown import run_lanes, stop_lanes
from .spawn import preflight

if TYPE_CHECKING:
    from ..runtime.log import Logger
    from ..runtime.loop import Loop
    from .processes import Options
    from .program import Instance

ReloadDone = Callable[[bool, list[str]], None]


class ReloadRun:
    """One reload in progress: who waits for the answer, what could not be applied."""

    __slots__ = ("hard", "problems", "waiters")

    def __init__(self, hard: bool) -> None:
        self.hard = hard
        self.waiters: list[ReloadDone] = []
        self.problems: list[str] = []


class Reloads:
    options: Options
    loop: Loop
    log: Logger
    base_env: MutableMapping[str, str]
    config: Config | None
    programs: dict[str, Supervised]
    depends: dict[str, tuple[str, ...]]
    dependents: dict[str, list[str]]
    old: dict[Instance, None]
    shutting_down: bool
    reloads: int
    failed_reloads: int
    reload_results: Counter[str]
    last_reload_time: float | None
    reload_run: ReloadRun | None
    reload_queued: bool | None
    on_load_hooks: list[Callable[[Config], None]]
    health: Any

    def facts(self) -> dict[str, Facts]:
        """What :func:`.plan.plan` needs to know about each program at run time."""
        return {name: Facts(s.pid is not None, s.manually_stopped, s.state is State.FATAL, s.running_program)
                for name, s in self.programs.items()}

    # -- applying plans ---------------------------------------------------------------------------
    def _apply(self, actions: list[Action], config: Config, run: ReloadRun | None) -> None:
        old_depends = self.depends
        self.config = config
        self.depends = {p.name: p.depends_on for p in config.programs}
        self.dependents = {p.name: [] for p in config.programs}
        for p in config.programs:
            for dep in p.depends_on:
                self.dependents[dep].append(p.name)
        for instance in self.old:
            instance.reloads += 1
        previous = self.programs
        self.programs = {p.name: previous.get(p.name) or Supervised(self, p, LogRing(self.options.log_lines))
                         for p in config.programs}
        self.health.configure(config)  # the notify socket; checks of running processes re-planned
        stops: dict[str, Callable[[Callable[[], None]], bool]] = {}
        replaced: list[Supervised] = []
        deferred: list[Supervised] = []
        for action in actions:
            if action.kind == "stop":
                stops[action.name] = previous[action.name].retire
                self.log.notice(f"Program '{action.name}' removed from the configuration: stopping it")
        for action in actions:
            if self.shutting_down:  # a critical program that could not start stopped everything
                break
            if action.kind == "stop":
                continue
            supervised = self.programs[action.name]
            assert action.program is not None
            if action.kind == "restart":
                problem = preflight(action.program, self.base_env)
                if problem is not None:  # keep the running process; the next reload tries again
                    supervised.reload_error = f"new definition cannot start: {problem}"
                    self.log.alert(f"Program '{action.name}': the new definition cannot start ({problem}); "
                                   f"keeping the running process ({supervised.pid})")
                    if run is not None:
                        run.problems.append(action.name)
                    continue
                supervised.reload_error = ""
                stops[action.name] = lambda then, s=supervised, a=action: s.replace(a.program, a.reason, then)
                replaced.append(supervised)
                continue
            supervised.program = action.program
            supervised.reload_error = ""
            instance = supervised.instance if supervised.pid is not None else None
            if instance is not None and action.program.definition() == instance.program.definition():
                instance.program = action.program  # same process: new stop settings apply to it
            if action.kind == "start":
                if any(dep in stops for dep in action.program.depends_on):
                    deferred.append(supervised)  # a dependency is being replaced: start after it
                else:
                    supervised.start()
            elif action.kind == "signal" and instance is not None:
                instance.reloads += 1
                signum = parse_signal(supervised.program.effective_reload_signal)
                supervised.send_signal(signum)
                self.log.notice(f"Sent {signum.name} to program '{action.name}' ({instance.pid}) ({action.reason})")
            elif instance is not None:  # keep
                instance.reloads += 1

        def stopped() -> None:
            for supervised in replaced:
                supervised.replaced()
            for supervised in deferred:
                supervised.start()
            if run is not None:
                self._finish_reload(run)
        lanes = stop_lanes({**old_depends, **self.depends}, stops)
        run_lanes(lanes, lambda name, done: stops[name](done), stopped)

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
            config = self.options.loader() if self.options.loader is not None else load_path(self.options.config_path)
        except ConfigError as exc:
            for problem in exc.problems:
                self.log.alert(str(problem))
            self.log.alert("Failed to load the new configuration: nothing was changed, programs keep running")
            self._count(False)
            if done is not None:
                done(False, list(self.log.startup))
            return True
        for hook in self.on_load_hooks:
            hook(config)
        run = ReloadRun(hard=hard)
        if done is not None:
            run.waiters.append(done)
        self.reload_run = run
        self._apply(plan(self.config, config, self.facts(), hard=hard), config, run)
        return True

    def _count(self, success: bool) -> None:
        self.failed_reloads = 0 if success else self.failed_reloads + 1
        self.reload_results["success" if success else "failure"] += 1

    def _finish_reload(self, run: ReloadRun) -> None:
        success = not run.problems
        self._count(success)
        if success:
            self.log.notice("Loading success.")
        else:
            self.log.alert(f"Reload failed for {', '.join(run.problems)}: kept the running processes; "
                           "the next reload tries again")
        self.reload_run = None
        lines = list(self.log.startup)
        for waiter in run.waiters:
            waiter(success, lines)
        if self.reload_queued is not None and not self.shutting_down:
            hard, self.reload_queued = self.reload_queued, None
            self.loop.call_soon(lambda: self.reload(hard=hard, origin="queued request"))
