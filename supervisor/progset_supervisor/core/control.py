"""What an operator can do to one program by name: start, stop, restart, signal, and their errors.

Every surface (the Master CLI today) calls these and only formats the answer, so the rules are in
one place: ``stop X`` also stops the programs that depend on X, dependents first (they wait in
STARTING and start again once X runs); ``restart X`` does the same and starts X again; a program a
reload is replacing starts only once its old process is gone. Answers are single sentences.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..config import parse_signal
from .program import State
from .shutdown import run_lanes, stop_lanes, with_dependents

if TYPE_CHECKING:
    from .master import Master
    from .program import Supervised

Answer = Callable[[str], None]


class CommandError(Exception):
    """A command that cannot be done; the message is shown to the user as is."""


def get(master: Master, name: str) -> Supervised:
    supervised = master.programs.get(name)
    if supervised is None:
        raise CommandError(f"No such program '{name}'.")
    return supervised


def start(master: Master, name: str) -> str:
    supervised = get(master, name)
    if supervised.pid is not None:
        return f"Program '{name}' is already running (pid {supervised.pid})."
    if master.shutting_down:
        raise CommandError("Master is stopping; cannot start programs.")
    supervised.start(manual=True)
    if supervised.pid is not None:
        return f"Program '{name}' started (pid {supervised.pid})."
    if supervised.state is State.REPLACING or (supervised.state is State.STARTING and supervised.waiting_for):
        # Starting now would run two processes at once (the old one may still hold the port).
        return f"Program '{name}' restarts once its old process has exited (reload in progress)."
    if supervised.state is State.STARTING:
        return f"Program '{name}' waits for {', '.join(supervised.program.depends_on)} to run."
    raise CommandError(f"Program '{name}' failed to start: {supervised.fatal_reason}")


def _stop_with_dependents(master: Master, name: str, finished: Callable[[list[str]], None]) -> None:
    """Stop ``name`` for good (until started) and the programs depending on it until it runs again."""
    targets = with_dependents(master.depends, name)
    stopped: list[str] = []

    def stop_one(target: str, done: Callable[[], None]) -> bool:
        supervised = master.programs[target]
        if target != name:
            if supervised.pid is None and supervised.waiting_for is None:
                if supervised.state is not State.STOPPED:
                    supervised.stop(hold=not supervised.manually_stopped)
                return False
            stopped.append(target)
        busy = supervised.pid is not None or supervised.waiting_for is not None
        supervised.stop(done if busy else None, manual=target == name, hold=target != name)
        return busy
    run_lanes(stop_lanes(master.depends, targets), stop_one, lambda: finished(stopped))


def _with(dependents: list[str]) -> str:
    return f" (and its dependents {', '.join(dependents)}, until it runs again)" if dependents else ""


def stop(master: Master, name: str, done: Answer) -> None:
    supervised = get(master, name)
    pid = supervised.pid
    if pid is None and supervised.waiting_for is None:
        state = supervised.state.value
        _stop_with_dependents(master, name, lambda deps: done(f"Program '{name}' is not running ({state})"
                                                              f"{_with(deps)}."))
        return
    _stop_with_dependents(master, name, lambda deps: done(f"Program '{name}' ({pid}) stopped{_with(deps)}."))


def restart(master: Master, name: str, done: Answer) -> None:
    get(master, name)
    if master.shutting_down:
        raise CommandError("Master is stopping; cannot restart programs.")

    def started(_dependents: list[str]) -> None:
        try:
            done(start(master, name))
        except CommandError as exc:
            done(str(exc))
    _stop_with_dependents(master, name, started)


def send_signal(master: Master, name: str, signal_name: str) -> str:
    try:  # before the program: ``signal nosuch SIGBOGUS`` names the signal, as HAProxy's CLI does
        signum = parse_signal(signal_name)
    except ValueError as exc:
        raise CommandError(str(exc)[:1].upper() + str(exc)[1:] + ".") from None
    supervised = get(master, name)
    pid = supervised.pid
    if pid is None:
        raise CommandError(f"Program '{name}' is not running ({supervised.state.value}).")
    supervised.send_signal(signum)
    return f"Sent {signum.name} to program '{name}' ({pid})."
