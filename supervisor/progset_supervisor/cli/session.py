"""One Master CLI client: buffers, the HAProxy session model, fairness and limits.

The supervisor's loop is single-threaded, so a client must never be able to hold it: the socket is
non-blocking, input and output are buffered per client, and each client runs at most one command per
loop turn (a client pipelining thousands of commands waits its turn instead of starving the reaper or
the other clients). Reading stops while a client has a backlog of unparsed input or of unsent output
(a slow or absent reader), so the kernel's socket buffers push back instead of our memory growing;
such a client is closed by the idle timeout when it makes no progress at all.

Session model (HAProxy's master CLI): commands end at a newline or an unescaped ``;``, every answer
ends with a blank line, the connection stays open until EOF or ``quit``, ``prompt`` turns on the
``master> `` prompt. Errors of the "proxy" layer (an unknown ``@`` target, ``operator`` above one's
level, ``prompt`` usage) print their message without the blank line, drop whatever else the client
had sent and close the connection, exactly as HAProxy does; ``reload`` answers and closes too.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from . import commands
from .commands import Reply
from .forward import WorkerRoute
from .levels import Level
from .protocol import encode, find_command_end, split_words
from .render import prompt_clock

if TYPE_CHECKING:
    from ..core.master import Master
    from .sockets import SocketSpec

READ_CHUNK = 64 * 1024
MAX_LINE = 64 * 1024  # a command longer than this closes the session
INPUT_BACKLOG = 64 * 1024  # unparsed input kept before we stop reading from the client
OUTPUT_HIGH = 1024 * 1024  # unsent output above which the client's further commands wait
SEVERITY_NAMES = {0: "emerg", 1: "alert", 2: "crit", 3: "err", 4: "warning", 5: "notice", 6: "info", 7: "debug"}
PROMPT_USAGE = (  # HAProxy 3.2's master CLI, byte for byte
    "Usage: prompt [help | i | p | timed]*\n"
    "Changes the default prompt and interactive mode. Available options:\n"
    "  help    display this help\n"
    "  i       set to interactive mode only (no prompt, multi-command)\n"
    "  p       set to prompt+interactive mode (prompt + multi-command)\n"
    "  timed   toggle displaying the current date in the prompt\n"
    "Without any argument, toggles between i<->p.\n"
)

F = TypeVar("F", bound=Callable[..., Any])


class CliServer(Protocol):
    """What a session needs from the server that accepted it (:class:`.server.CliServer`), declared
    here so that the server imports the session and not the other way round."""

    master: Master
    specs: list[SocketSpec]
    sessions: set[Any]
    maxconn: int
    idle_timeout: float

    def forget(self, session: Session) -> None: ...


def guarded(method: F) -> F:
    """Loop entry points must never raise: a bug in one client's handling closes that client only."""
    @wraps(method)
    def wrapper(self: Session, *args: Any) -> Any:
        try:
            return method(self, *args)
        except Exception as exc:
            self.server.master.log.alert(f"Master CLI: internal error while serving a client, closing it: "
                                         f"{type(exc).__name__}: {exc}")
            self.close()
            return None
    return wrapper  # type: ignore[return-value]


class Session:
    def __init__(self, server: CliServer, sock: socket.socket, spec: SocketSpec) -> None:
        self.server = server
        self.master: Master = server.master
        self.loop = server.master.loop
        self.sock = sock
        self.fd = sock.fileno()
        self.level: Level = spec.level
        self.prompt = False
        self.timed = False
        self.experimental = self.expert = self.mcli_debug = False
        self.severity_output = "none"
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.reading = False
        self.writing = False
        self.read_closed = False
        self.closing = False
        self.closed = False
        self.pending = False
        self.in_handler = False
        self.route = WorkerRoute(self)  # '@1', '@!<pid>', '@@1': workers behind the master (forward.py)
        self.early_reply: Reply | None = None
        self.scheduled = False
        # Progress, not traffic: a command arriving complete or an answer fully delivered (running the
        # backlog of commands a client sent long ago is not new progress). A byte trickled in
        # (or read out) every second used to reset this forever and held a connection slot for good.
        self.last_activity = self.loop.time()
        self._set_reading(True)

    # -- reading ----------------------------------------------------------------------------------
    def _set_reading(self, on: bool) -> None:
        on = on and not self.read_closed and not self.closing and not self.closed
        if on and not self.reading:
            self.loop.add_reader(self.fd, self._on_readable)
        elif not on and self.reading:
            self.loop.remove_reader(self.fd)
        self.reading = on

    @guarded
    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not data:
            self.read_closed = True
            self._set_reading(False)
        else:
            if b"\n" in data or b";" in data:
                self.last_activity = self.loop.time()  # a command arrived complete: progress
            self.inbuf += data
            if len(self.inbuf) >= INPUT_BACKLOG:
                self._set_reading(False)
        if not self.scheduled:
            self._process()  # one command now (no extra loop turn for the common one-command client)

    def _schedule(self) -> None:
        if not self.scheduled and not self.closed:
            self.scheduled = True
            self.loop.call_soon(self._process)

    # -- the command loop -------------------------------------------------------------------------
    @guarded
    def _process(self) -> None:
        """Run at most one command, then yield to the loop (fairness between clients and the reaper)."""
        self.scheduled = False
        if self.route.passthrough and not self.closed:
            self.route.pump()  # '@@': the client talks to the worker
            self._set_reading(True)
            return
        if self.closed or self.pending or self.closing:
            return
        if len(self.outbuf) > OUTPUT_HIGH:
            self._set_reading(False)
            return  # resumed by _flush once the client has read enough
        end = find_command_end(self.inbuf)
        if (end < 0 and len(self.inbuf) > MAX_LINE) or end > MAX_LINE:
            self._too_long()
            return
        if end < 0:
            if not self.read_closed:
                self._set_reading(True)
                return
            if not self.inbuf.strip():
                self._close_after_output()  # EOF and nothing left
                return
            command, self.inbuf = bytes(self.inbuf), bytearray()  # unterminated last command at EOF
        else:
            command = bytes(self.inbuf[:end])
            del self.inbuf[:end + 1]
        self._execute(command)
        if not (self.closed or self.closing or self.pending):
            if len(self.inbuf) < INPUT_BACKLOG and len(self.outbuf) <= OUTPUT_HIGH:
                self._set_reading(True)
            if self.inbuf or self.read_closed:
                self._schedule()

    def _too_long(self) -> None:
        self._reply(Reply.error(f"Command line too long: more than {MAX_LINE} bytes without a "
                                "newline or ';'. Closing the connection.\n"), prompt=False)
        self._close_after_output()

    def _execute(self, command: bytes) -> None:
        command = command.rstrip(b"\r")
        words = split_words(command)
        routed = (words and words[0].startswith("@")) or self.route.target is not None
        if routed and self.route.handle(command, words):  # a worker's ('@1 ...'), see forward.py
            return
        if words and words[0].startswith("@"):
            if not self._is_master(words[0]):
                self._proxy_error(f"Can't find the target PID matching the prefix '{words[0]}'\n")
                return
            words = words[1:]
            if not words:
                self._write_prompt()  # a prefix alone selects the default target: the master
                return
        if words and self._session_command(words):
            return
        if not words:
            self._reply(Reply.dump(""))  # HAProxy 3.x: a blank line answers a bare newline
            return
        if words[0] == "help":
            self._reply(commands.usage(words, is_help=True))
            return
        command_def = commands.find(words)
        if command_def is None or command_def.run is None:
            self._reply(commands.usage(words, is_help=False))
            return
        if self.level < command_def.level:
            self._reply(Reply.error("Permission denied\n"))
            return
        self.pending = True
        self.in_handler = True
        try:
            reply = command_def.run(self, words)
        finally:
            self.in_handler = False
        if reply is None and self.early_reply is not None:
            reply, self.early_reply = self.early_reply, None
        if reply is not None:
            self.pending = False
            self._reply(reply)

    @staticmethod
    def _is_master(prefix: str) -> bool:
        """``@``, ``@master`` and ``@0`` name the master; programs have no CLI, and there are no workers."""
        rest = prefix[1:]
        if rest in ("", "master"):
            return True
        if rest.startswith("!"):
            return False
        try:
            return int(rest, 10) == 0
        except ValueError:
            return False

    def _session_command(self, words: list[str]) -> bool:
        """HAProxy's proxy-level commands; True if ``words`` was one of them."""
        name = words[0]
        if name == "prompt":
            self._prompt_command(words[1:])
        elif name == "quit":
            self._write_prompt()
            self._close_after_output()
        elif name in ("operator", "user"):
            wanted = Level.OPERATOR if name == "operator" else Level.USER
            if self.level < wanted:
                self._proxy_error("Permission denied!\n")
                return True
            self.level = wanted
            self._write_prompt()
        elif name in ("expert-mode", "experimental-mode", "mcli-debug-mode"):
            if self.level < Level.ADMIN:
                self._proxy_error("Permission denied!\n")
                return True
            on = len(words) > 1 and words[1] == "on"
            if name == "expert-mode":
                self.expert = on
            elif name == "experimental-mode":
                self.experimental = on
            else:
                self.mcli_debug = on
            self._write_prompt()
        elif words[:2] == ["set", "severity-output"]:
            if len(words) < 3 or words[2] not in ("none", "number", "string"):
                self._reply(Reply.error("one of 'none', 'number', 'string' is a required argument\n"))
                return True
            self.severity_output = words[2]
            self._write_prompt()
        else:
            return False
        return True

    def _prompt_command(self, args: list[str]) -> None:
        if not args:
            self.prompt = not self.prompt
        for arg in args:
            if arg == "p":
                self.prompt = True
            elif arg == "i":
                self.prompt = False
            elif arg == "timed":
                self.prompt = True
                self.timed = not self.timed
            else:
                self._proxy_error(PROMPT_USAGE)
                return
        self._write_prompt()

    # -- answers ----------------------------------------------------------------------------------
    def finish(self, reply: Reply) -> None:
        """Answer of a command that had to wait (stop, restart, reload)."""
        if self.closed:
            return
        if self.in_handler:
            self.early_reply = reply
            return
        self._finish(reply)

    @guarded
    def _finish(self, reply: Reply) -> None:
        self.pending = False
        self._reply(reply)
        if not self.closing:
            self._schedule()

    def prompt_text(self) -> str:
        worker = self.route.prompt_name()
        if self.timed:
            started = self.route.target_started() if worker else self.master.started_wall
            text = prompt_clock(time.time() - started) if started is not None else "[gone] "
        else:
            text = ""
        text += worker or "master"
        if worker is None and self.master.failed_reloads > 0:
            text += "[ReloadFailed]"
        flags = ("x" if self.experimental else "") + ("e" if self.expert else "") + ("d" if self.mcli_debug else "")
        if flags:
            text += f"({flags})"
        return text + "> "

    def _write_prompt(self) -> None:
        if self.prompt:
            self._write(self.prompt_text().encode())

    def _reply(self, reply: Reply, *, prompt: bool = True) -> None:
        text = reply.text
        if reply.severity is not None and self.severity_output != "none":
            label = str(reply.severity) if self.severity_output == "number" else SEVERITY_NAMES[reply.severity]
            text = f"[{label}]: {text}"
        self._write(encode(text) + b"\n")
        if reply.close:
            self._close_after_output()
        elif prompt:
            self._write_prompt()

    def _proxy_error(self, message: str) -> None:
        self._write(encode(message))
        self._close_after_output()

    def _close_after_output(self) -> None:
        """End the session: drop what the client sent beyond this point, stop reading, and close as
        soon as the output written so far has been sent."""
        self.closing = True
        self.inbuf = bytearray()
        self._set_reading(False)
        self._flush()

    # -- writing ----------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if self.closed:
            return
        self.outbuf += data
        self._flush()

    def _flush(self) -> None:
        if self.closed:
            return
        while self.outbuf:
            try:
                sent = self.sock.send(self.outbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.close()  # EPIPE, ECONNRESET: the client is gone
                return
            if sent <= 0:
                break
            del self.outbuf[:sent]
            if not self.outbuf:
                self.last_activity = self.loop.time()
        if self.outbuf:
            if not self.writing:
                self.loop.add_writer(self.fd, self._on_writable)
                self.writing = True
            return
        if self.writing:
            self.loop.remove_writer(self.fd)
            self.writing = False
        if self.closing:
            self.close()

    @guarded
    def _on_writable(self) -> None:
        was_full = len(self.outbuf) > OUTPUT_HIGH
        self._flush()
        self.route.drained(len(self.outbuf) > OUTPUT_HIGH)
        if was_full and not self.closed and len(self.outbuf) <= OUTPUT_HIGH:
            self._schedule()

    # -- lifetime ---------------------------------------------------------------------------------
    def check_idle(self, now: float) -> None:
        """Called by the server's sweep: close a client that made no progress for the timeout.

        Progress is a complete command or a fully read answer, so the timeout is a total deadline
        for each line and each answer, whatever trickles meanwhile. A client waiting for its own
        ``stop``/``reload`` answer is not idle. (One sweep timer for all
        clients rather than a timer each: a connect/close flood must not pile up timers.)
        """
        if not self.closed and not self.pending and now - self.last_activity >= self.server.idle_timeout:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.route.close()
        if self.reading:
            self.loop.remove_reader(self.fd)
        if self.writing:
            self.loop.remove_writer(self.fd)
        self.reading = self.writing = False
        try:
            self.sock.close()
        except OSError:
            pass
        self.server.forget(self)

    def idle_timeout(self) -> float:
        return self.server.idle_timeout

    # -- Context for handlers ---------------------------------------------------------------------
    def sockets(self) -> list[SocketSpec]:
        return self.server.specs

    def connections(self) -> tuple[int, int]:
        return len(self.server.sessions), self.server.maxconn
