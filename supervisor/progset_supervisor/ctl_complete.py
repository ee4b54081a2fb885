"""Tab completion for ``progsetctl``'s prompt: command words, program names, signal names.

The vocabulary comes from the supervisor being talked to, not from this package's own command
table: ``help`` gives the commands (so a client and supervisor of different versions still agree)
and ``show programs`` the program names (it needs operator; on a ``level,user`` socket names are
simply not offered). Both are asked over a separate short connection, so completing never changes
the interactive session's level, target or prompt, and at most once per typed line, so names added
by a reload show up on the next line without a request per Tab.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import NamedTuple

HELP_COLUMN = ": "  # help lines are "  <usage padded to 40>: <text>"
SIGNALS = sorted({s.name for s in signal.Signals if not s.name.startswith("SIGRT")}
                 | {s.name[3:] for s in signal.Signals if not s.name.startswith("SIGRT")})


class Usage(NamedTuple):
    """One command as ``help`` shows it: its literal words, then what its arguments are."""

    words: tuple[str, ...]
    arguments: tuple[str, ...]  # "<name>", "<signal>", "a|b|c" (a choice) or another placeholder


def parse_help(text: str) -> list[Usage]:
    """The commands listed by ``help`` (``@<pid>``-style targets are not completed: they are numbers)."""
    usages = []
    for line in text.splitlines():
        if not line.startswith("  ") or HELP_COLUMN not in line:
            continue
        usage = line[2:].split(HELP_COLUMN, 1)[0].strip()
        if not usage or usage.startswith(("@<", "@!")):
            continue
        words: list[str] = []
        rest = usage
        while rest and not rest.startswith(("<", "[")):
            word, _, rest = rest.partition(" ")
            words.append(word)
            rest = rest.strip()
        arguments: list[str] = []
        if rest.startswith("[") and "|" in rest:  # prompt [help | n | i | p | timed ]*
            arguments.append("|".join(w.strip() for w in rest.strip("[]* ").split("|")))
        else:
            arguments += [w.strip("[]") for w in rest.split()]
        usages.append(Usage(tuple(words), tuple(arguments)))
    return usages


def parse_programs(text: str) -> list[str]:
    """Program names from ``show programs`` (first column, header skipped); nothing for an error."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("#<name>"):
        return []
    return [line.split()[0] for line in lines[1:] if line.strip() and not line.startswith("#")]


def candidates(line: str, usages: list[Usage], programs: list[str]) -> list[str]:
    """Completions for the last word of ``line`` (the text before the cursor)."""
    command = line.rsplit(";", 1)[-1]
    words = command.split()
    current = words.pop() if command and not command[-1].isspace() and words else ""
    while words and words[0].startswith("@"):  # "@master show ..." completes like "show ..."
        words.pop(0)
    found: set[str] = set()
    typed = tuple(words)
    for usage in usages:
        n = len(typed)
        if n < len(usage.words):
            if usage.words[:n] == typed:
                found.add(usage.words[n])
            continue
        if usage.words != typed[:len(usage.words)]:
            continue
        position = n - len(usage.words)
        if position < len(usage.arguments):
            argument = usage.arguments[position]
            if argument == "<name>":
                found.update(programs)
            elif argument == "<signal>":
                found.update(SIGNALS)
            elif "|" in argument:
                found.update(argument.split("|"))
    if not words:
        found.add("@master")
    return sorted(word + " " for word in found if word.startswith(current))


class Completer:
    """A readline completer; ``fetch(commands)`` returns the answers of ``help`` and ``show programs``."""

    def __init__(self, fetch: Callable[[list[bytes]], list[bytes]]) -> None:
        self.fetch = fetch
        self.usages: list[Usage] = []
        self.programs: list[str] = []
        self.fresh = False
        self.matches: list[str] = []

    def new_line(self) -> None:
        """The next Tab asks the supervisor again (a reload may have changed the programs)."""
        self.fresh = False

    def refresh(self) -> None:
        if self.fresh:
            return
        self.fresh = True
        try:
            answers = self.fetch([b"help", b"show programs"])
        except Exception:  # completing must never break the prompt; an unreachable socket shows on Enter
            return
        answers = [a.decode(errors="replace") for a in answers] + ["", ""]
        self.usages = parse_help(answers[0]) or self.usages
        self.programs = parse_programs(answers[1].removeprefix("[3]: ").removeprefix("[6]: "))

    def complete(self, text: str, state: int) -> str | None:
        if state == 0:
            import readline

            self.refresh()
            self.matches = candidates(readline.get_line_buffer()[:readline.get_endidx()], self.usages,
                                      self.programs)
        return self.matches[state] if state < len(self.matches) else None


def install(completer: Completer) -> None:
    """Bind Tab to ``completer`` (GNU readline, or libedit's spelling of the same binding)."""
    import readline

    readline.set_completer(completer.complete)
    readline.set_completer_delims(" \t;")
    if "libedit" in (readline.__doc__ or ""):
        readline.parse_and_bind("bind ^I rl_complete")
    else:
        readline.parse_and_bind("tab: complete")
