"""The README's shell blocks as commands: what the doc-test runs, parsed from the Markdown itself.

A shell block is a fenced block marked ``sh``, ``bash``, ``shell`` or ``console``. In ``sh`` blocks every
line that is not blank or a comment is a command (a trailing ``\\`` continues it on the next line); in
``console`` blocks the commands are the lines after ``$ `` and the lines that follow, up to the next
``$ `` line, are the output the README shows for them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

README = Path(__file__).resolve().parents[2] / "README.md"
SHELL_LANGUAGES = ("sh", "bash", "shell", "console")
FENCE = re.compile(r"^```(\S*)\s*$")


class Command(NamedTuple):
    line: int  # 1-based line of README.md where the command starts
    text: str  # exactly as written (continuation lines joined with their backslash-newline)
    shown: str | None  # console blocks: the output the README shows; sh blocks: None
    section: str  # the heading above the block, for messages


def commands(path: Path = README) -> list[Command]:
    found: list[Command] = []
    lines = path.read_text().splitlines()
    section = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#") and not line.startswith("#!"):
            section = line.lstrip("#").strip()
        match = FENCE.match(line)
        if not match:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        if match.group(1) in SHELL_LANGUAGES:
            body = lines[i + 1:end]
            parse = _console if match.group(1) == "console" else _script
            found += [Command(i + 2 + offset, text, shown, section) for offset, text, shown in parse(body)]
        i = end + 1
    return found


def _script(body: list[str]) -> list[tuple[int, str, str | None]]:
    out: list[tuple[int, str, str | None]] = []
    j = 0
    while j < len(body):
        start, text = j, body[j]
        while text.endswith("\\") and j + 1 < len(body):
            j += 1
            text += "\n" + body[j]
        j += 1
        if text.strip() and not text.lstrip().startswith("#"):
            out.append((start, text, None))
    return out


def _console(body: list[str]) -> list[tuple[int, str, str | None]]:
    out: list[tuple[int, str, str | None]] = []
    starts = [j for j, text in enumerate(body) if text.startswith("$ ")]
    for n, j in enumerate(starts):
        stop = starts[n + 1] if n + 1 < len(starts) else len(body)
        shown = "\n".join(body[j + 1:stop]).rstrip("\n")
        out.append((j, body[j][2:], shown + "\n" if shown else ""))
    return out
