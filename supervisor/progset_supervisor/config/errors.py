"""Configuration errors that say where the problem is and how to fix it.

Every loader reports problems as :class:`ConfigError`; each :class:`Problem` carries a location
(``file:line`` for HAProxy syntax and YAML with marks, or ``file: spec.programs[1].command``) so a user
can jump straight to the bad line. Loaders collect all problems they can find before raising, so one
run shows every mistake instead of one per attempt.
"""

# No ``from __future__ import annotations`` here: typing.NamedTuple compiles every string annotation
# (about 0.1 ms a field), and this module is imported on the way to the first spawn.

from typing import NamedTuple


class Problem(NamedTuple):
    """One thing wrong with a configuration."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class ConfigError(Exception):
    """A configuration could not be loaded; ``problems`` lists every reason found."""

    def __init__(self, problems: list[Problem] | Problem | str) -> None:
        if isinstance(problems, str):
            problems = [Problem("", problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @property
    def first(self) -> Problem:
        return self.problems[0]


def haproxy_wording(problem: Problem) -> Problem:
    """The same problem in HAProxy's words: ``config : parsing [h.cfg:14]: message``.

    Loaders locate problems as ``file:line`` (and ``file:line (keyword)`` for a value); HAProxy's
    alerts say ``parsing [file:line]``, and scripts that grep HAProxy's output look for that.
    Problems of YAML/JSON files keep their own form: HAProxy has nothing to compare them with.
    """
    location = problem.location
    keyword = ""
    if location.endswith(")") and " (" in location:
        location, keyword = location[:-1].split(" (", 1)
    file, _, line = location.rpartition(":")
    if file.endswith((".yaml", ".yml", ".json")):
        return problem  # HAProxy never read those: progset's own wording (file:line (spec path): message)
    message = f"({keyword}) {problem.message}" if keyword else problem.message
    if file and line.isdigit():
        return Problem(f"config : parsing [{file}:{line}]", message)
    return Problem(f"config : {problem.location}" if problem.location else "config", problem.message)
