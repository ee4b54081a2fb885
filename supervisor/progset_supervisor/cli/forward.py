"""Workers behind ``@``: forwarding Master CLI commands to programs that have their own CLI socket.

HAProxy's master forwards ``@1 show info`` to its worker's CLI. Under progset, a program that declares
a ``runtimeSocket`` (HAProxy's ``stats socket``, e.g. HAProxy itself run as a program) is such a worker:
``show proc`` lists it under ``# workers`` (old processes still stopping under ``# old workers``), and

- ``@<n>`` is the n-th current worker in configuration order (``@1``, the first), ``@!<pid>`` any worker
  process, current or old; ``@``, ``@0`` and ``@master`` the master itself;
- ``@1 <command>`` sends one command: the master connects to the worker's socket, writes the command
  and a newline, and relays what comes back until the worker closes the connection (HAProxy's stats
  socket closes after answering one command), as HAProxy's master relays its worker's answer;
- ``@1`` alone makes the worker the session's default target until the next prefix;
- ``@@1 [<command>]`` (HAProxy 3.2's bidirectional mode): the rest of the line and everything the
  client sends afterwards go to the worker, and everything it answers comes back, until it closes.

The session's level is applied as HAProxy's master applies it: an ``operator`` or ``user`` session
prefixes the forwarded command with ``operator -;`` / ``user -;`` (the ``-`` keeps those silent), so a
``level,user`` Master CLI socket never reaches the worker with more rights, ``@@`` included.

Everything is non-blocking on the supervisor's loop; a worker that accepts but never answers is
dropped after the CLI idle timeout with HAProxy's ``Can't connect to the target CLI!``.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol

from ..config.runtime_socket import SocketAddress, parse_socket_address
from .levels import Level

if TYPE_CHECKING:
    from ..core.master import Master
    from ..runtime.loop import Loop

READ_CHUNK = 64 * 1024
OUTPUT_HIGH = 1024 * 1024  # the session's: above this much unsent client output, stop reading the worker
CONNECT_ERROR = "Can't connect to the target CLI!\n"


class Worker(NamedTuple):
    pid: int
    name: str
    reloads: int
    started: float
    address: SocketAddress


class Target(NamedTuple):
    """What an ``@`` prefix names: the master (``worker`` None) or a worker; ``both``: ``@@``."""

    worker: Worker | None
    both: bool = False


MASTER = Target(None)


def workers(master: Master) -> tuple[list[Worker], list[Worker]]:
    """Current worker processes in configuration order, then old ones still stopping."""
    current: list[Worker] = []
    for supervised in master.programs.values():
        instance = supervised.instance
        text = supervised.program.runtime_socket
        if text is not None and instance is not None and instance.exit_status is None:
            current.append(Worker(instance.pid, instance.name, instance.reloads, instance.started_wall,
                                  parse_socket_address(text)))
    old = [Worker(i.pid, i.name, i.reloads, i.started_wall, parse_socket_address(i.program.runtime_socket))
           for i in master.old if i.exit_status is None and i.program.runtime_socket is not None]
    return current, old


def resolve(master: Master, prefix: str) -> Target | None:
    """The target of ``@...``/``@@...``, or None (HAProxy: "Can't find the target PID matching...")."""
    rest = prefix[1:]
    both = rest.startswith("@")
    if both:
        rest = rest[1:]
    if rest in ("", "master") and not both:
        return MASTER
    current, old = workers(master)
    if rest.startswith("!"):
        pid = rest[1:]
        if not pid.isdigit():
            return None
        found = [w for w in (*current, *old) if w.pid == int(pid)]
        return Target(found[0], both) if found else None
    if not rest.isdigit():
        return None
    number = int(rest, 10)
    if number == 0:
        return None if both else MASTER
    return Target(current[number - 1], both) if number <= len(current) else None


def find_worker(master: Master, pid: int) -> Worker | None:
    current, old = workers(master)
    return next((w for w in (*current, *old) if w.pid == pid), None)


def level_prefix(level: Level) -> bytes:
    """What HAProxy's master puts in front of a forwarded command so the worker applies the session's level."""
    if level == Level.OPERATOR:
        return b"operator -;"
    if level == Level.USER:
        return b"user -;"
    return b""


class Forward:
    """One connection to a worker's CLI: send bytes, relay what comes back, report its end once.

    ``on_data(bytes)`` gets the worker's output as it arrives; ``on_end(error)`` is called once, with
    None when the worker closed after answering, or HAProxy's error text when it could not be reached
    or went silent for ``timeout`` seconds.
    """

    def __init__(self, loop: Loop, worker: Worker, on_data: Callable[[bytes], None],
                 on_end: Callable[[str | None], None], timeout: float) -> None:
        self.loop = loop
        self.worker = worker
        self.on_data = on_data
        self.on_end = on_end
        self.timeout = timeout
        self.pending = bytearray()
        self.connected = False
        self.ended = False
        self.paused = False
        self.half_close = False  # shut the write side once everything pending is sent
        self.reading = self.writing = False
        self.sock = socket.socket(worker.address.family,
                                  socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        self.timer = loop.call_later(timeout, self._expired)
        try:
            self.sock.connect(worker.address.address)
            self._connected()
        except (BlockingIOError, InterruptedError):
            self._want_write(True)  # EINPROGRESS: writable once connected
        except OSError:
            self._end(CONNECT_ERROR)

    # -- public -----------------------------------------------------------------------------------
    def send(self, data: bytes, *, last: bool = False) -> None:
        """Queue ``data`` for the worker; ``last``: nothing more follows (half-close after it)."""
        if self.ended:
            return
        self.pending += data
        self.half_close = self.half_close or last
        if self.connected:
            self._flush()

    def pause(self, paused: bool) -> None:
        """Stop reading the worker while the client's output buffer is full (back-pressure)."""
        self.paused = paused
        if self.connected and not self.ended:
            self._want_read(not paused)

    def close(self) -> None:
        """The client went away: drop the connection without reporting."""
        self.ended = True
        self._teardown()

    # -- internals --------------------------------------------------------------------------------
    def _want_read(self, on: bool) -> None:
        if on and not self.reading:
            self.loop.add_reader(self.sock.fileno(), self._on_readable)
        elif not on and self.reading:
            self.loop.remove_reader(self.sock.fileno())
        self.reading = on

    def _want_write(self, on: bool) -> None:
        if on and not self.writing:
            self.loop.add_writer(self.sock.fileno(), self._on_writable)
        elif not on and self.writing:
            self.loop.remove_writer(self.sock.fileno())
        self.writing = on

    def _connected(self) -> None:
        self.connected = True
        self._want_read(not self.paused)
        self._flush()

    def _on_writable(self) -> None:
        if not self.connected:
            error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                self._end(CONNECT_ERROR)
                return
            self._want_write(False)
            self._connected()
            return
        self._flush()

    def _flush(self) -> None:
        while self.pending:
            try:
                sent = self.sock.send(self.pending)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._end(CONNECT_ERROR)
                return
            del self.pending[:sent]
        if self.pending:
            self._want_write(True)
            return
        self._want_write(False)
        if self.half_close:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._end(None if exc.errno in (errno.ECONNRESET, errno.EPIPE) else CONNECT_ERROR)
            return
        if not data:
            self._end(None)
            return
        self.timer.cancel()
        self.timer = self.loop.call_later(self.timeout, self._expired)
        self.on_data(data)

    def _expired(self) -> None:
        self._end(CONNECT_ERROR)

    def _teardown(self) -> None:
        self.timer.cancel()
        self._want_read(False)
        self._want_write(False)
        self.sock.close()

    def _end(self, error: str | None) -> None:
        if self.ended:
            return
        self.ended = True
        self._teardown()
        self.on_end(error)


PROXY_COMMANDS = frozenset({"prompt", "quit", "operator", "user", "expert-mode", "experimental-mode",
                            "mcli-debug-mode"})


class Routed(Protocol):
    """The parts of a Master CLI session a route drives (see :class:`.session.Session`)."""

    master: Master
    loop: Loop
    level: Level
    prompt: bool
    pending: bool
    inbuf: bytearray
    outbuf: bytearray
    read_closed: bool

    def _write(self, data: bytes) -> None: ...
    def _write_prompt(self) -> None: ...
    def _proxy_error(self, message: str) -> None: ...
    def _close_after_output(self) -> None: ...
    def _schedule(self) -> None: ...
    def idle_timeout(self) -> float: ...


class WorkerRoute:
    """A session's side of ``@``: its default target, the forward in progress, ``@@`` pass-through."""

    def __init__(self, session: Routed) -> None:
        self.session = session
        self.target: int | None = None  # pid of the default worker (after '@1' alone); None: the master
        self.forward: Forward | None = None
        self.passthrough = False  # '@@': the client's input goes to the worker as it comes

    def prompt_name(self) -> str | None:
        """``<pid>`` for the prompt when a worker is the default target (HAProxy's ``1234> ``)."""
        return str(self.target) if self.target is not None else None

    def target_started(self) -> float | None:
        worker = find_worker(self.session.master, self.target) if self.target is not None else None
        return worker.started if worker is not None else None

    def handle(self, command: bytes, words: list[str]) -> bool:
        """Route one command; True if it went to (or was refused for) a worker, False: the master runs it."""
        session = self.session
        if not words:
            return False  # a blank line is answered by the master, whatever the target
        if words[0].startswith("@"):
            target = resolve(session.master, words[0])
            if target is None:
                session._proxy_error(f"Can't find the target PID matching the prefix '{words[0]}'\n")
                return True
            rest = command.lstrip(b" \t").split(None, 1)[1] if len(words) > 1 else b""
            if target.worker is None:
                if len(words) == 1:
                    self.target = None
                    session._write_prompt()
                    return True
                return False  # '@master <command>': the session strips the prefix and runs it
            if target.both:
                self.start(target.worker, rest, both=True)
            elif len(words) == 1:
                self.target = target.worker.pid
                session._write_prompt()
            else:
                self.start(target.worker, rest, both=False)
            return True
        if self.target is None or words[0] in PROXY_COMMANDS or words[:2] == ["set", "severity-output"]:
            return False
        worker = find_worker(session.master, self.target)
        if worker is None:
            session._proxy_error(f"Can't find the target PID matching the prefix '@!{self.target}'\n")
            return True
        self.start(worker, command, both=False)
        return True

    def start(self, worker: Worker, payload: bytes, *, both: bool) -> None:
        session = self.session
        session.pending = True
        forward = Forward(session.loop, worker, self._data, self._end, session.idle_timeout())
        if forward.ended:  # could not even connect: _end already answered
            return
        self.forward = forward
        prefix = level_prefix(session.level)
        if both:
            self.passthrough = True
            first = payload + b"\n" if payload else (b"prompt\n" if session.prompt else b"")
            forward.send(prefix + first)
            self.pump()
        else:
            forward.send(prefix + payload + b"\n", last=True)

    def pump(self) -> None:
        """``@@``: hand the client's buffered input to the worker (called whenever the client sent more)."""
        session = self.session
        if self.forward is None:
            return
        if session.inbuf:
            self.forward.send(bytes(session.inbuf))
            session.inbuf.clear()
        if session.read_closed:
            self.forward.send(b"", last=True)

    def drained(self, full: bool) -> None:
        """The client's output buffer is ``full`` or not: pause or resume reading the worker."""
        if self.forward is not None:
            self.forward.pause(full)

    def close(self) -> None:
        """The session ends: drop the forward, and the session itself (no reference cycle left for the
        garbage collector: a session is freed as soon as the server forgets it)."""
        if self.forward is not None:
            self.forward.close()
            self.forward = None
        self.session = None  # type: ignore[assignment]

    def _data(self, data: bytes) -> None:
        session = self.session
        session._write(data)
        if self.forward is not None and len(session.outbuf) > OUTPUT_HIGH:
            self.forward.pause(True)

    def _end(self, error: str | None) -> None:
        session = self.session
        self.forward = None
        if error is not None:
            self.passthrough = False
            session._proxy_error(error)  # HAProxy closes the client connection too
            return
        if self.passthrough:
            self.passthrough = False
            session._close_after_output()  # '@@' lasts as long as the worker's side
            return
        session.pending = False
        session._write_prompt()
        session._schedule()
