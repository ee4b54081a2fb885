"""Reload semantics, and nothing else: ``plan(old, new, facts)`` says what happens to each program.

Pure and process-free so every rule of the README's reload table is unit-testable. The rules fix
HAProxy's ``start-on-reload``:

* a program only in ``new`` starts (HAProxy never started new ``no option start-on-reload`` programs);
* a program only in ``old`` stops;
* a program stopped by a command stays stopped (even if its definition changed) until ``start``;
* a program whose definition (argv, env, ids, working dir, umask) changed restarts, whatever its
  ``onReload`` (HAProxy silently kept the old argv of ``no option start-on-reload`` programs). The
  comparison is with the definition its process *runs*: after a reload whose new definition could
  not start (the old process was kept), the next reload tries again;
* otherwise ``onReload`` decides: ``restart`` restarts (HAProxy's default), ``keep`` leaves the process
  alone (no signal at all; HAProxy sent SIGUSR1 anyway), ``signal`` sends ``reloadSignal``;
* a FATAL program is retried; a restart of a program that does not run is a start.

A *hard* reload restarts every program that still exists, whatever its ``onReload``.
"""

# No ``from __future__ import annotations`` here: typing.NamedTuple compiles every string annotation
# (about 0.1 ms a field), and this module is imported on the way to the first spawn.

from collections.abc import Mapping
from typing import Literal, NamedTuple

from ..config import Config, Program

ActionKind = Literal["start", "stop", "restart", "signal", "keep"]


class Action(NamedTuple):
    kind: ActionKind
    name: str
    reason: str
    program: Program | None = None  # the new definition (None for stop)


class Facts(NamedTuple):
    """What the plan needs to know about a program at run time (the master takes them from its state)."""

    running: bool = False  # its process is alive
    manually_stopped: bool = False  # stopped by a command: stays stopped until 'start'
    fatal: bool = False  # FATAL: could not start as configured
    definition: Program | None = None  # what the live process runs, when it runs


NOT_RUNNING = Facts()


def plan(old: Config | None, new: Config, facts: Mapping[str, Facts] | None = None, *,
         hard: bool = False) -> list[Action]:
    """Actions in execution order: stops of removed programs (reverse start order), then the rest
    in the new config's start order. ``facts`` defaults to "running what ``old`` says"."""
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
            continue
        fact = facts.get(program.name, NOT_RUNNING) if facts is not None else Facts(True, definition=before)
        actions.append(_existing(program, before, fact, hard))
    return actions


def _existing(program: Program, before: Program, fact: Facts, hard: bool) -> Action:
    name = program.name
    if fact.manually_stopped:
        return Action("keep", name, "stays stopped (stopped by a command)", program)
    running = fact.definition if fact.running and fact.definition is not None else before
    if running.definition() != program.definition():
        reason = "definition changed"
    elif hard:
        reason = "hard reload"
    elif program.on_reload == "restart":
        reason = "onReload: restart"
    elif fact.fatal:
        return Action("start", name, "FATAL: retried on reload", program)
    elif program.on_reload == "signal" and fact.running:
        return Action("signal", name, f"onReload: signal {program.effective_reload_signal}", program)
    else:
        return Action("keep", name, f"onReload: {program.on_reload}", program)
    return Action("restart" if fact.running else "start", name, reason, program)
