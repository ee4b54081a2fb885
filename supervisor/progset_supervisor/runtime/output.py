"""Program output: each line a child writes becomes a line on the supervisor's own stdout or stderr.

Children get pipes, never our terminal: that gives every line a program prefix (``api | listening``),
a JSON record or the raw line (``--output``, per program ``output``), keeps the last lines of each
program in memory for ``show logs``, and means a child can never write into the middle of one of our
lines. Reads are non-blocking from the event loop; a line longer than ``MAX_LINE`` is cut so one
chatty program cannot grow our memory.

Writes never block either. The supervisor's stdout/stderr is usually a pipe to the container
runtime; when that reader stalls, a blocking write froze the whole loop (no reaping, no restarts, no
CLI, no ``/healthz``, SIGTERM ignored until the pod's grace period ran out). Each stream therefore
has a bounded buffer (:class:`StreamWriter`) flushed when the loop sees the fd writable; when the
buffer is full, whole lines are dropped, counted per program (``progset_output_dropped_lines_total``)
and announced once per episode, when the stream has drained again.
"""

from __future__ import annotations

import fcntl
import os
import struct
import termios
import time
from collections import Counter, deque
from collections.abc import Callable

from .loop import Loop

MAX_LINE = 16 * 1024
READ_CHUNK = 64 * 1024
BUFFER_LIMIT = 1024 * 1024  # per stream: 16 full pipes' worth, so bursts pass and a stall costs 1 MiB at most
OUTPUT_MODES = ("prefixed", "raw", "json")
SUPERVISOR = ""  # the key the supervisor's own dropped messages are counted under (not a program name)

# ``on_drained(stream, dropped per program, seconds blocked)``: an episode of dropped lines has ended.
Drained = Callable[[str, Counter[str], float], None]


class StreamWriter:
    """A non-blocking fd with a bounded buffer: ``write`` never waits, it buffers or drops.

    Without a loop (start-up, ``-c``) there is nobody to flush a buffer later, so writes go out
    directly and only what the fd takes at once is kept; the fd is made non-blocking only once a
    loop is attached (:meth:`attach`), and set back at :meth:`close`.
    """

    def __init__(self, fd: int, name: str, *, limit: int = BUFFER_LIMIT) -> None:
        self.fd = fd
        self.name = name
        self.limit = limit
        self.buffer = bytearray()
        self.loop: Loop | None = None
        self.waiting = False  # a writer callback is registered
        self.dropped: Counter[str] = Counter()  # this episode, by program (SUPERVISOR for our own lines)
        self.dropped_total: Counter[str] = Counter()  # since start, for the metric
        self.episode_started = 0.0
        self.on_drained: Drained | None = None
        self.broken = False  # the reader is gone (EPIPE): discard silently, as a closed stdout did before
        self._was_blocking: bool | None = None

    def attach(self, loop: Loop) -> None:
        """From now on writes are non-blocking and the rest is flushed from ``loop``."""
        self.loop = loop
        try:
            self._was_blocking = os.get_blocking(self.fd)
            os.set_blocking(self.fd, False)
        except OSError:
            self.broken = True

    def write(self, data: bytes, lines: int = 1, program: str = SUPERVISOR) -> bool:
        """Queue ``data`` (``lines`` whole lines of ``program``); False if it was dropped."""
        if self.broken:
            return True
        if not self.buffer:
            data = self._write_now(data)
            if not data:
                return True
        if len(self.buffer) + len(data) > self.limit:
            if not self.dropped:
                self.episode_started = time.monotonic()
            self.dropped[program] += lines
            self.dropped_total[program] += lines
            return False
        self.buffer += data
        self._want_writable()
        return True

    def _write_now(self, data: bytes) -> bytes:
        """Write what the fd takes without waiting; the rest is returned."""
        try:
            written = os.write(self.fd, data)
        except (BlockingIOError, InterruptedError):
            return data
        except OSError:  # EPIPE, EBADF: nobody reads our output any more
            self.broken = True
            self.buffer.clear()
            return b""
        return data[written:]

    def _want_writable(self) -> None:
        if self.loop is None:
            # No loop yet: nothing would ever flush the buffer, so write it out now (start-up output
            # is small, and stdio still blocks at this point).
            self._flush_blocking()
            return
        if not self.waiting and self.buffer:
            self.waiting = True
            self.loop.add_writer(self.fd, self._writable)

    def _flush_blocking(self) -> None:
        while self.buffer and not self.broken:
            try:
                written = os.write(self.fd, self.buffer)
            except BlockingIOError:
                import select

                select.select([], [self.fd], [], 1.0)
                continue
            except OSError:
                self.broken = True
                break
            del self.buffer[:written]
        self.buffer.clear()

    def _writable(self) -> None:
        while self.buffer:
            try:
                written = os.write(self.fd, self.buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.broken = True
                self.buffer.clear()
                break
            del self.buffer[:written]
        if self.waiting and self.loop is not None:
            self.loop.remove_writer(self.fd)
            self.waiting = False
        if self.dropped:
            dropped, self.dropped = self.dropped, Counter()
            seconds = time.monotonic() - self.episode_started
            if self.on_drained is not None:
                self.on_drained(self.name, dropped, seconds)

    def close(self, deadline: float = 1.0) -> None:
        """Last flush before exit, waiting at most ``deadline`` seconds for a stalled reader; the fd's
        blocking mode is restored (it is shared with whoever gave it to us, a shell for instance)."""
        if self.loop is not None and self.waiting:
            self.loop.remove_writer(self.fd)
            self.waiting = False
        end = time.monotonic() + deadline
        while self.buffer and not self.broken:
            left = end - time.monotonic()
            if left <= 0:
                break
            import select

            try:
                select.select([], [self.fd], [], left)
            except (OSError, ValueError):
                break
            rest = self._write_now(bytes(self.buffer))
            self.buffer = bytearray(rest)
        if self._was_blocking:
            try:
                os.set_blocking(self.fd, True)
            except OSError:
                pass
        self.loop = None


def format_lines(mode: str, program: str, pid: int, stream: str, lines: list[bytes]) -> bytes:
    """``lines`` as they go out in output mode ``mode`` (see :data:`OUTPUT_MODES`)."""
    if mode == "json":
        import json  # only for JSON output

        now = round(time.time(), 6)
        return b"".join(
            json.dumps({"ts": now, "program": program, "pid": pid, "stream": stream,
                        "line": line.decode("utf-8", "replace")}, ensure_ascii=False).encode() + b"\n"
            for line in lines)
    if mode == "raw":  # HAProxy's behaviour: the program's bytes, unchanged
        return b"".join(line + b"\n" for line in lines)
    prefix = program.encode() + b" | "
    return b"".join(prefix + line + b"\n" for line in lines)


class OutputSink:
    """Where program lines go: stdout or stderr by stream, in the program's output mode.

    ``mode`` is the default output mode (``--output``); a program's own ``output`` field, looked up
    through ``mode_of``, wins. ``fmt`` is the older name of the same choice (``--log-format``):
    ``json`` means JSON lines, ``text`` prefixed lines.
    """

    def __init__(self, fmt: str = "text", stdout_fd: int = 1, stderr_fd: int = 2, *, mode: str | None = None,
                 limit: int = BUFFER_LIMIT) -> None:
        self.mode = mode or ("json" if fmt == "json" else "prefixed")
        out = StreamWriter(stdout_fd, "stdout", limit=limit)
        # ``2>&1`` (one pipe for both): one writer, so a partial write of one stream can never be
        # followed by a line of the other in the middle of a line.
        self.writers = {"stdout": out, "stderr": out if _same_file(stdout_fd, stderr_fd) else
                        StreamWriter(stderr_fd, "stderr", limit=limit)}
        self.mode_of: Callable[[str], str | None] = lambda program: None

    def attach(self, loop: Loop, on_drained: Drained | None = None) -> None:
        """Writes become non-blocking and buffered from here on (see :class:`StreamWriter`)."""
        for writer in self._distinct():
            writer.on_drained = on_drained
            writer.attach(loop)

    def emit(self, program: str, pid: int, stream: str, lines: list[bytes]) -> None:
        mode = self.mode_of(program) or self.mode
        self.writers[stream].write(format_lines(mode, program, pid, stream, lines), len(lines), program)

    def write_supervisor(self, text: str) -> None:
        """One message of the supervisor's own (already formatted, without newline) to stderr."""
        self.writers["stderr"].write(text.encode("utf-8", "replace") + b"\n")

    def dropped_lines(self) -> Counter[str]:
        """Lines of each program dropped since start, both streams (for the metric)."""
        total: Counter[str] = Counter()
        for writer in self._distinct():
            total.update({k: v for k, v in writer.dropped_total.items() if k != SUPERVISOR})
        return total

    def close(self, deadline: float = 1.0) -> None:
        for writer in self._distinct():
            writer.close(deadline / 2)

    def _distinct(self) -> list[StreamWriter]:
        return list(dict.fromkeys(self.writers.values()))


def _same_file(fd1: int, fd2: int) -> bool:
    try:
        a, b = os.fstat(fd1), os.fstat(fd2)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


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
