"""An ``exec`` check: the command run as the program would be, reaped by the one reaper, killed at its timeout.

The command is spawned with :func:`spawn.spawn` from the program's own definition with only the argv
replaced, so it runs as the program's user and group, with its environment, working directory and
umask, in a process group of its own. Its exit comes back through the master's reaper (``watch_exit``:
nothing else may wait for children, or it would steal program exits). At the timeout the whole
process group gets SIGKILL, so a hanging check leaves no process behind. The first 512 bytes of its
output are kept for the failure message.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Mapping
from typing import Protocol

from ..config import Program
from ..runtime.loop import Loop, Timer
from .spawn import SpawnError, spawn

Done = Callable[[bool, str], None]
KEEP_OUTPUT = 512


class Reaper(Protocol):
    def watch_exit(self, pid: int, callback: Callable[[int], None]) -> None:
        """Call ``callback(wait_status)`` when child ``pid`` has been reaped."""


class ExecAttempt:
    """One run of an exec check; ``cancel()`` kills it without reporting."""

    __slots__ = ("_done", "_fds", "_loop", "_output", "_timed_out", "_timer", "pid")

    def __init__(self, loop: Loop, reaper: Reaper, program: Program, command: tuple[str, ...],
                 env: Mapping[str, str] | None, timeout: float, done: Done, *, pdeathsig: bool) -> None:
        self._loop = loop
        self._done: Done | None = done
        self._output = b""
        self._timed_out = 0.0
        self._fds: list[int] = []
        self._timer: Timer | None = None
        self.pid = 0
        try:
            pid, out_fd, err_fd = spawn(program._replace(command=command), None if env is None else dict(env),
                                        pdeathsig=pdeathsig)
        except SpawnError as exc:
            loop.call_soon(self._report, False, f"cannot run: {exc}")
            return
        self.pid = pid
        self._fds = [out_fd, err_fd]
        for fd in self._fds:
            os.set_blocking(fd, False)
            loop.add_reader(fd, lambda fd=fd: self._read(fd))
        self._timer = loop.call_later(timeout, self._kill, timeout)
        reaper.watch_exit(pid, self._exited)

    def _read(self, fd: int) -> None:
        try:
            data = os.read(fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close_fd(fd)
        elif len(self._output) < KEEP_OUTPUT:
            self._output += data[:KEEP_OUTPUT - len(self._output)]

    def _close_fd(self, fd: int) -> None:
        if fd in self._fds:
            self._fds.remove(fd)
            self._loop.remove_reader(fd)
            os.close(fd)

    def _kill(self, timeout: float) -> None:
        self._timer = None
        self._timed_out = timeout
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _exited(self, status: int) -> None:
        for fd in list(self._fds):  # what it wrote before it ended, then the pipes go
            self._read(fd)
            self._close_fd(fd)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            os.killpg(self.pid, signal.SIGKILL)  # anything it left in its group goes with it
        except (ProcessLookupError, PermissionError):
            pass
        text = self._output.decode("utf-8", "replace").strip().replace("\n", " ")
        if self._timed_out:
            self._report(False, f"timed out after {self._timed_out:g}s (killed)")
        elif os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            self._report(True, text or "exit 0")
        elif os.WIFEXITED(status):
            self._report(False, f"exit {os.WEXITSTATUS(status)}" + (f": {text}" if text else ""))
        else:
            self._report(False, f"killed by signal {os.WTERMSIG(status)}" + (f": {text}" if text else ""))

    def _report(self, passed: bool, message: str) -> None:
        done, self._done = self._done, None
        if done is not None:
            done(passed, message)

    def cancel(self) -> None:
        """The program stopped: no report; the process is killed and still reaped by the reaper."""
        self._done = None
        if self.pid and self._timer is not None:
            self._kill(0.0)
