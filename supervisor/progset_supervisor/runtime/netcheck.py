"""One TCP connect or one HTTP/1.1 GET, non-blocking on the loop, reported once through a callback.

Health checks run on the supervisor's single thread, so an attempt never blocks: the socket is
non-blocking, readiness comes from the loop's selector, and a timer ends the attempt at its timeout.
Why not ``http.client`` or ``urllib``: both block (a thread per check, which the supervisor does not
have), and a check needs only the status line of the answer. Kubernetes' meanings: a TCP check passes
when the connection is accepted, an HTTP check when the status is 2xx or 3xx (redirects are not
followed); HTTPS certificates are not verified (``ssl`` is imported only when an HTTPS check runs).
Knows nothing of programs: the caller turns the outcome into a check result.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Callable, Sequence
from typing import Any

from .loop import Loop, Timer

Done = Callable[[bool, str], None]  # (passed, message)
MAX_STATUS_LINE = 4096
USER_AGENT = "progset-check"
_ssl_context: Any = None
_NO_LINGER = struct.pack("ii", 1, 0)


def _tls_context() -> Any:
    global _ssl_context
    if _ssl_context is None:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        _ssl_context = context
    return _ssl_context


class Attempt:
    """A check in flight; ``cancel()`` closes it without calling ``done``."""

    __slots__ = ("_buffer", "_done", "_loop", "_request", "_sock", "_timer", "_tls", "_watching", "fd")

    def __init__(self, loop: Loop, host: str, port: int, timeout: float, done: Done,
                 request: bytes | None, tls: bool) -> None:
        self._loop = loop
        self._done: Done | None = done
        self._request = request  # None: a TCP check, finished once connected
        self._buffer = b""
        self._tls = tls
        self._watching = ""  # "r", "w" or "": what the selector waits for
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        self.fd = sock.fileno()
        # Closed with a reset, not a FIN: no TIME_WAIT left behind per check (1,000 checks a second
        # would hold some 60,000 of them, and ephemeral ports), as Kubernetes' and HAProxy's checks do.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _NO_LINGER)
        self._timer: Timer | None = loop.call_later(timeout, self._timed_out, timeout)
        code = sock.connect_ex((host, port))
        if code == 0:
            self._connected()
        elif code in (errno.EINPROGRESS, errno.EAGAIN):
            if request is not None and not tls:
                # On loopback the handshake is usually done by now: try the request at once, which
                # saves waiting for "writable" (one selector change less per check).
                try:
                    self._request = request[sock.send(request):]
                except (BlockingIOError, InterruptedError, OSError):
                    pass
                else:
                    self._wait("w", self._send) if self._request else self._wait("r", self._receive)
                    return
            self._wait("w", self._on_connect)
        else:
            self._finish(False, _connect_error(code))

    def _wait(self, what: str, callback: Callable[[], None]) -> None:
        if what != self._watching and self._watching:
            (self._loop.remove_reader if self._watching == "r" else self._loop.remove_writer)(self.fd)
        (self._loop.add_reader if what == "r" else self._loop.add_writer)(self.fd, callback)
        self._watching = what

    def _on_connect(self) -> None:
        code = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._finish(False, _connect_error(code))
        else:
            self._connected()

    def _connected(self) -> None:
        if self._request is None:
            self._finish(True, "connected")
            return
        if self._tls:
            self._sock = _tls_context().wrap_socket(self._sock, do_handshake_on_connect=False)
            self._handshake()
        else:
            self._send()

    def _handshake(self) -> None:
        import ssl

        try:
            self._sock.do_handshake()  # type: ignore[attr-defined]
        except ssl.SSLWantReadError:
            self._wait("r", self._handshake)
        except ssl.SSLWantWriteError:
            self._wait("w", self._handshake)
        except (OSError, ssl.SSLError) as exc:
            self._finish(False, f"TLS handshake failed: {exc}")
        else:
            self._send()

    def _send(self) -> None:
        assert self._request is not None
        try:
            sent = self._sock.send(self._request)
        except (BlockingIOError, InterruptedError):
            self._wait("w", self._send)
            return
        except OSError as exc:
            self._finish(False, f"send failed: {exc.strerror or exc}")
            return
        self._request = self._request[sent:]
        if self._request:
            self._wait("w", self._send)
        else:
            self._wait("r", self._receive)

    def _receive(self) -> None:
        try:
            data = self._sock.recv(MAX_STATUS_LINE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if type(exc).__name__ in ("SSLWantReadError", "SSLWantWriteError"):
                return
            self._finish(False, f"receive failed: {exc.strerror or exc}")
            return
        self._buffer += data
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if not data:
                self._finish(False, "connection closed before an HTTP status line")
            elif len(self._buffer) >= MAX_STATUS_LINE:
                self._finish(False, "no HTTP status line in the first 4 KiB")
            return
        parts = self._buffer[:end].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            self._finish(False, f"not an HTTP answer: {self._buffer[:end][:80]!r}")
            return
        status = int(parts[1])
        reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
        self._finish(200 <= status < 400, f"HTTP {status} {reason}".rstrip())

    def _timed_out(self, timeout: float) -> None:
        self._timer = None
        self._finish(False, f"timed out after {timeout:g}s")

    def _close(self) -> None:
        if self._watching:
            (self._loop.remove_reader if self._watching == "r" else self._loop.remove_writer)(self.fd)
            self._watching = ""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._sock.close()

    def _finish(self, passed: bool, message: str) -> None:
        done, self._done = self._done, None
        self._close()
        if done is not None:
            done(passed, message)

    def cancel(self) -> None:
        if self._done is not None:
            self._done = None
            self._close()


def _connect_error(code: int) -> str:
    return f"connect failed: {os.strerror(code).lower()}"


def tcp_check(loop: Loop, host: str, port: int, timeout: float, done: Done) -> Attempt:
    """Pass when ``host:port`` accepts a connection within ``timeout`` seconds."""
    return Attempt(loop, host, port, timeout, done, None, False)


def http_request(host: str, port: int, path: str, headers: Sequence[tuple[str, str]]) -> bytes:
    """The GET request, built once per check definition (not per run)."""
    names = {name.lower() for name, _ in headers}
    lines = [f"GET {path} HTTP/1.1"]
    if "host" not in names:
        lines.append(f"Host: {f'[{host}]' if ':' in host else host}:{port}")
    if "user-agent" not in names:
        lines.append(f"User-Agent: {USER_AGENT}")
    if "accept" not in names:
        lines.append("Accept: */*")
    lines += [f"{name}: {value}" for name, value in headers]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


def http_check(loop: Loop, host: str, port: int, request: bytes, tls: bool, timeout: float, done: Done) -> Attempt:
    """Pass when the answer's status is 2xx or 3xx within ``timeout`` seconds (``request``: http_request())."""
    return Attempt(loop, host, port, timeout, done, request, tls)
