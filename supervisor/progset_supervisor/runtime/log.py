"""The supervisor's own messages, in HAProxy's shape so its users feel at home.

``[NOTICE]   (1) : New program 'api' (42) forked`` — the level in brackets padded to 10 characters,
the supervisor's pid, then the message. Every message also goes into the *startup log* of the current
load or reload attempt, which ``show startup-logs`` prints and ``reload`` returns over the Master CLI.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

LEVELS = ("DEBUG", "DIAG", "NOTICE", "WARNING", "ALERT")
_RANK = {name: i for i, name in enumerate(LEVELS)}
STARTUP_LOG_LIMIT = 10_000


def haproxy_line(level: str, pid: int, message: str) -> str:
    return f"{'[' + level + ']':<10} ({pid}) : {message}"


class Logger:
    """Writes supervisor messages to stderr (text or JSON) and keeps the current startup log."""

    def __init__(self, stream: TextIO | None = None, fmt: str = "text", min_level: str = "NOTICE") -> None:
        self.stream = stream or sys.stderr
        self.fmt = fmt
        self.min_rank = _RANK[min_level]
        self.pid = os.getpid()
        self.startup: list[str] = []
        self.listeners: list[Callable[[str], None]] = []
        # Where formatted lines go instead of ``stream`` once the loop runs: ``OutputSink.write_supervisor``,
        # which never blocks (a stalled stderr pipe must not freeze the loop).
        self.write: Callable[[str], None] | None = None

    def begin_attempt(self) -> None:
        """A new load or reload attempt starts: its log replaces the previous one."""
        self.startup = []

    def log(self, level: str, message: str) -> None:
        if _RANK[level] < self.min_rank:
            return
        line = haproxy_line(level, self.pid, message)
        if len(self.startup) < STARTUP_LOG_LIMIT:
            self.startup.append(line)
        for listener in self.listeners:
            listener(line)
        if self.fmt == "json":
            import json  # only for --log-format json

            text = json.dumps({"ts": round(time.time(), 6), "level": level.lower(), "pid": self.pid,
                               "source": "progset", "msg": message})
        else:
            text = line
        if self.write is not None:
            self.write(text)
            return
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            pass

    def notice(self, message: str) -> None:
        self.log("NOTICE", message)

    def warning(self, message: str) -> None:
        self.log("WARNING", message)

    def alert(self, message: str) -> None:
        self.log("ALERT", message)

    def debug(self, message: str) -> None:
        self.log("DEBUG", message)
