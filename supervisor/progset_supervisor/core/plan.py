"""Reload semantics, and nothing else: ``plan(old, new)`` says what happens to each program.

Pure and process-free so every rule is unit-testable. The rules fix HAProxy's ``start-on-reload``:

* a program only in ``new`` starts (HAProxy never started new ``no option start-on-reload`` programs);
* a program only in ``old`` stops;
* a program whose definition (argv, env, ids, working dir, umask) changed restarts, whatever its
  ``onReload`` (HAProxy silently kept the old argv of ``no option start-on-reload`` programs);
* otherwise ``onReload`` decides: ``restart`` restarts (HAProxy's default), ``keep`` leaves the process
  alone (no signal at all; HAProxy sent SIGUSR1 anyway), ``signal`` sends ``reloadSignal``.

A *hard* reload restarts every program that still exists, whatever its ``onReload``.
"""

# No ``from __future__ import annotations`` here: typing.NamedTuple compiles every string annotation
# (about 0.1 ms a field), and this module is imported on the way to the first spawn.

from typing import Literal, NamedTuple

from ..config import Config, Program

ActionKind = Literal["start", "stop", "restart", "signal", "keep"]


class Action(NamedTuple):
    kind: ActionKind
    name: str
    reason: str
    program: Program | None = None  # the new definition (None for stop)


def plan(old: Config | None, new: Config, *, hard: bool = False) -> list[Action]:
    """Actions in execution order: stops of removed programs (reverse start order), then the rest
    in the new config's start order."""
    old_programs = old.by_name() if old is not None else {}
    new_names = {p.name for p in new.programs}
    actions: list[Action] = []
    if old is not None:
        for program in reversed(old.start_order()):
            if program.name not in new_names:
                actions.append(Action("stop", program.name, "removed from the configuration"))
    for program in new.start_order():
        before = old_programs.get(program.name)
        if before is None:
            actions.append(Action("start", program.name, "new in the configuration", program))
        elif before.definition() != program.definition():
            actions.append(Action("restart", program.name, "definition changed", program))
        elif hard:
            actions.append(Action("restart", program.name, "hard reload", program))
        elif program.on_reload == "restart":
            actions.append(Action("restart", program.name, "onReload: restart", program))
        elif program.on_reload == "signal":
            actions.append(Action("signal", program.name, f"onReload: signal {program.effective_reload_signal}",
                                  program))
        else:
            actions.append(Action("keep", program.name, "onReload: keep", program))
    return actions
