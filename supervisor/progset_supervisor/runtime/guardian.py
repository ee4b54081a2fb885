"""The supervisor's end of the guardian (see :mod:`.guardian_main`): start it, tell it what to kill.

Writes are tiny lines to a non-blocking pipe; if the guardian ever lags a full pipe buffer behind
(64 KiB: thousands of spawns), the rest waits in memory and goes out when the pipe is writable, so
the loop never blocks on it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .loop import Loop

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "guardian_main.py")


class Guardian:
    def __init__(self, loop: Loop, watch_exit: Callable[[int, Callable[[int], None]], None],
                 on_lost: Callable[[int], None]) -> None:
        """Start the guardian; OSError if it cannot be started."""
        self.loop = loop
        read_end, self.fd = os.pipe()
        try:
            popen = subprocess.Popen([sys.executable, "-S", "-I", SCRIPT], stdin=read_end,
                                     stdout=subprocess.DEVNULL, close_fds=True, start_new_session=True)
        finally:
            os.close(read_end)
        popen.returncode = 0  # reaped by the master's reaper, never by subprocess
        self.pid = popen.pid
        os.set_blocking(self.fd, False)
        self._backlog = bytearray()
        self._on_lost = on_lost
        watch_exit(self.pid, self._exited)

    def _exited(self, status: int) -> None:
        if self.fd >= 0:
            self._close()
            self._on_lost(status)

    def _send(self, line: bytes) -> None:
        if self.fd < 0:
            return
        if self._backlog:
            self._backlog += line
            return
        try:
            written = os.write(self.fd, line)
        except BlockingIOError:
            written = 0
        except OSError:
            self._close()
            return
        if written < len(line):
            self._backlog += line[written:]
            self.loop.add_writer(self.fd, self._flush)

    def _flush(self) -> None:
        try:
            written = os.write(self.fd, self._backlog)
        except BlockingIOError:
            return
        except OSError:
            self._close()
            return
        del self._backlog[:written]
        if not self._backlog:
            self.loop.remove_writer(self.fd)

    def add(self, pgid: int) -> None:
        self._send(b"+%d\n" % pgid)

    def remove(self, pgid: int) -> None:
        self._send(b"-%d\n" % pgid)

    def adopt(self, pid: int) -> None:
        self._send(b"o%d\n" % pid)

    def release(self, pid: int) -> None:
        """An adopted process was reaped: its pid may be reused by anything, never kill it."""
        self._send(b"x%d\n" % pid)

    def _close(self) -> None:
        if self.fd >= 0:
            if self._backlog:
                self.loop.remove_writer(self.fd)
            os.close(self.fd)
            self.fd = -1

    def finish(self) -> None:
        """Clean exit: every program was stopped, nothing for the guardian to do."""
        if self.fd < 0:
            return
        if self._backlog:
            self.loop.remove_writer(self.fd)
        os.set_blocking(self.fd, True)
        try:
            os.write(self.fd, bytes(self._backlog) + b"q\n")
        except OSError:
            pass
        self._backlog.clear()
        self._close()
