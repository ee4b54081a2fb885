"""Program output: each line a child writes becomes a prefixed line on the supervisor's own stdio.

Children get pipes, never our terminal: that gives every line a program prefix (``api | listening``)
or a JSON record, keeps the last lines of each program in memory for ``show logs``, and means a child
can never write into the middle of one of our lines. Reads are non-blocking from the event loop;
a line longer than ``MAX_LINE`` is cut so one chatty program cannot grow our memory.
"""

from __future__ import annotations

import fcntl
import os
import struct
import termios
import time
from collections import deque
from collections.abc import Callable

from .loop import Loop

MAX_LINE = 16 * 1024
READ_CHUNK = 64 * 1024


def _write_all(fd: int, data: bytes) -> None:
    """Blocking write of everything; a closed stdout must not kill the supervisor."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            import select

            select.select([], [fd], [], 1.0)
            continue
        except (BrokenPipeError, OSError):
            return
        view = view[written:]


class OutputSink:
    """Where prefixed lines go: text ``name | line`` or JSON lines, stdout or stderr by stream."""

    def __init__(self, fmt: str = "text", stdout_fd: int = 1, stderr_fd: int = 2) -> None:
        self.fmt = fmt
        self.fds = {"stdout": stdout_fd, "stderr": stderr_fd}

    def emit(self, program: str, pid: int, stream: str, lines: list[bytes]) -> None:
        if self.fmt == "json":
            import json  # only for --log-format json

            now = round(time.time(), 6)
            payload = b"".join(
                json.dumps({"ts": now, "program": program, "pid": pid, "stream": stream,
                            "line": line.decode("utf-8", "replace")}, ensure_ascii=False).encode() + b"\n"
                for line in lines)
        else:
            prefix = program.encode() + b" | "
            payload = b"".join(prefix + line + b"\n" for line in lines)
        _write_all(self.fds[stream], payload)


class LogRing:
    """The last ``size`` lines of one program (both streams), for ``show logs``."""

    def __init__(self, size: int) -> None:
        self.lines: deque[str] = deque(maxlen=size)

    def add(self, stream: str, lines: list[bytes]) -> None:
        marker = "" if stream == "stdout" else "[stderr] "
        for line in lines:
            self.lines.append(marker + line.decode("utf-8", "replace"))

    def tail(self, count: int) -> list[str]:
        if count <= 0:
            return []
        return list(self.lines)[-count:]


class PipeReader:
    """Reads one child pipe from the loop and hands out complete lines; closes itself at EOF."""

    def __init__(self, loop: Loop, fd: int, on_lines: Callable[[list[bytes]], None],
                 on_eof: Callable[[], None] | None = None) -> None:
        self.loop = loop
        self.fd = fd
        self.on_lines = on_lines
        self.on_eof = on_eof
        self.partial = b""
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._readable)

    def drain(self) -> None:
        """Read what is in the pipe now (or up to EOF) without waiting.

        Bounded by what the kernel holds at the call: a writer that keeps refilling the pipe (a
        grandchild running ``yes`` after its parent exited) kept "until empty" spinning here forever,
        with the whole event loop blocked (no signals, no other program supervised). The rest is read
        by the loop as usual.
        """
        try:
            available = struct.unpack("i", fcntl.ioctl(self.fd, termios.FIONREAD, b"\0\0\0\0"))[0]
        except (OSError, ValueError):
            available = 16 * READ_CHUNK
        while self._readable():
            available -= READ_CHUNK
            if available <= 0:
                break

    def _readable(self) -> bool:
        """Read one chunk; True when a full chunk came and more may be waiting."""
        if self.fd < 0:
            return False
        try:
            data = os.read(self.fd, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            data = b""
        if not data:
            self.close()
            return False
        chunk = self.partial + data
        lines = chunk.split(b"\n")
        self.partial = lines.pop()
        while len(self.partial) > MAX_LINE:
            lines.append(self.partial[:MAX_LINE])
            self.partial = self.partial[MAX_LINE:]
        if lines:
            self.on_lines([line[:MAX_LINE].rstrip(b"\r") for line in lines])
        return len(data) == READ_CHUNK

    def close(self) -> None:
        if self.fd < 0:
            return
        if self.partial:
            self.on_lines([self.partial])
            self.partial = b""
        self.loop.remove_reader(self.fd)
        os.close(self.fd)
        self.fd = -1
        if self.on_eof is not None:
            self.on_eof()
