"""HTTP endpoints: ``/metrics``, ``/healthz``, ``/readyz``, ``/status`` on the supervisor's own loop.

Why a hand-written server: the supervisor is one thread on one ``selectors`` loop (see :mod:`.loop`),
and ``http.server`` is blocking and thread-based. This is the smallest HTTP/1.1 server Prometheus and
the kubelet need: GET and HEAD, one request per connection (``Connection: close``). Because it shares
the loop that restarts programs, no client may hold that loop:

- sockets are non-blocking; a request is read in pieces as it arrives and capped at ``MAX_REQUEST``;
- every connection has a deadline (``timeout``) covering the request, the response and the close: a
  total, never extended by bytes trickling in;
- at most ``max_connections`` are served at once. When they are all taken, the one that has waited
  longest for its request head is closed to make room (an idle connection is worth less than a new
  one: the kubelet sends its probe at once, a flood of idle or trickling connections never does), so
  ``/healthz`` gets through any such flood. Only when every slot is busy *answering* does a newcomer
  get an immediate 503 (as many again), and beyond that it is closed;
- each listener has its own connections and limits: ``--health-address`` gives the probes a listener
  of their own that serves only ``/healthz`` and ``/readyz``;
- ``accept`` runs at most ``ACCEPT_BATCH`` times per wake-up and backs off when out of descriptors
  (``acceptor.Acceptor``, shared with the Master CLI);
- a ``/metrics`` body is reused for ``METRICS_REUSE_SECONDS``, or for four times as long as it took to
  render if that is longer: a flood of scrapes keeps the loop rendering at most a fifth of the time
  (a render takes about 25 ms of loop time at 200 programs and 130 ms at 1000).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from ..core.status import snapshot
from ..runtime.acceptor import Acceptor
from ..runtime.loop import Timer

if TYPE_CHECKING:
    from ..core.exits import ExitStatus
    from ..core.master import Master
    from ..core.status import ProgramStatus
    from .metrics import Exporter

MAX_REQUEST = 8192
MAX_CONNECTIONS = 64
TIMEOUT_SECONDS = 10.0
LINGER_SECONDS = 1.0
ACCEPT_BATCH = 32
ACCEPT_RETRY_SECONDS = 1.0
METRICS_REUSE_SECONDS = 0.25
ENDPOINTS = ("/metrics", "/healthz", "/readyz", "/status")
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           431: "Request Header Fields Too Large", 500: "Internal Server Error", 503: "Service Unavailable",
           505: "HTTP Version Not Supported"}
TEXT = "text/plain; charset=utf-8"


class Request(NamedTuple):
    method: str
    path: str
    headers: dict[str, str]


class Response(NamedTuple):
    status: int
    body: bytes
    content_type: str = TEXT
    extra_headers: tuple[tuple[str, str], ...] = ()

    def encode(self, head_only: bool) -> bytes:
        head, body = self.parts(head_only)
        return head + body

    def parts(self, head_only: bool) -> tuple[bytes, bytes]:
        """The head and the body (empty for HEAD), sent as two buffers: a ``/metrics`` body (about
        1 MB at 1000 programs, reused between scrapes) is never copied to put a head in front."""
        lines = [f"HTTP/1.1 {self.status} {REASONS.get(self.status, '')}",
                 f"Content-Type: {self.content_type}",
                 f"Content-Length: {len(self.body)}",
                 "Cache-Control: no-store",
                 "Connection: close",
                 *(f"{name}: {value}" for name, value in self.extra_headers)]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head, b"" if head_only else self.body


def text(status: int, message: str) -> Response:
    return Response(status, (message + "\n").encode())


BUSY = text(503, "too many connections").encode(head_only=False)


def parse_request(raw: bytes) -> Request | Response:
    """The request head (without the blank line) into a Request, or the error Response to send."""
    try:
        lines = raw.decode("latin-1").replace("\r\n", "\n").split("\n")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        return text(400, "bad request")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[1] or not parts[2].startswith("HTTP/"):
        return text(400, "bad request line")
    method, target, version = parts
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        return text(505, "only HTTP/1.0 and HTTP/1.1")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return text(400, "bad header line")
        headers[name.lower()] = value.strip()
    if target.startswith(("http://", "https://")):  # absolute form, as sent to proxies
        target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
    return Request(method, target.split("?", 1)[0], headers)


def parse_address(address: str, flag: str = "--metrics-address") -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` (all interfaces); ValueError names the bad input."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"{flag} {address!r}: expected HOST:PORT (e.g. 0.0.0.0:9127) or 'off'")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host or "0.0.0.0", int(port_text)


class Connection:
    """One client: read the request head, answer, close; every step is a loop callback."""

    def __init__(self, server: HttpServer, sock: socket.socket, *, busy: bool = False) -> None:
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()
        self.inbuf = bytearray()
        self.out = memoryview(b"")
        self.rest = b""  # the body, once ``out`` (the head) is sent
        self.closed = False
        self.timer: Timer = server.loop.call_later(server.timeout, self.close)
        if busy:  # over the cap: answer 503 without reading the request
            self._send(BUSY)
        else:
            server.reading[self] = None  # oldest first: the first to go when a newcomer needs the slot
            server.loop.add_reader(self.fd, self._on_readable)

    def _recv(self) -> bytes | None:
        """What the client sent; None if nothing yet, ``b""`` at EOF or on an error (both end it)."""
        try:
            return self.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return b""

    def _on_readable(self) -> None:
        data = self._recv()
        if data is None:
            return
        if not data:
            self.close()
            return
        self.inbuf += data
        end = self.inbuf.find(b"\r\n\r\n")
        if end < 0:
            end = self.inbuf.find(b"\n\n")
        if end < 0 and len(self.inbuf) <= MAX_REQUEST:
            return
        self.server.reading.pop(self, None)
        self.server.loop.remove_reader(self.fd)
        if end < 0 or end > MAX_REQUEST:
            self._send(text(431, "request too large").encode(head_only=False))
            return
        request = parse_request(bytes(self.inbuf[:end]))
        if isinstance(request, Response):
            self._send(request.encode(head_only=False))
            return
        self._send(*self.server.respond(request).parts(head_only=request.method == "HEAD"))

    def _send(self, data: bytes, rest: bytes = b"") -> None:
        self.out = memoryview(data)
        self.rest = rest
        self._flush()
        if self.out and not self.closed:
            self.server.loop.add_writer(self.fd, self._flush)

    def _flush(self) -> None:
        try:
            sent = self.sock.sendmsg([self.out, self.rest]) if self.rest else self.sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if sent >= len(self.out) and self.rest:
            self.out = memoryview(self.rest)[sent - len(self.out):]
            self.rest = b""
        else:
            self.out = self.out[sent:]
        if not self.out:
            self._linger()

    def _linger(self) -> None:
        """Half-close and wait briefly for the client's EOF: closing with unread input would send a
        RST that can destroy the response before the client has read it."""
        self.server.loop.remove_writer(self.fd)
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return
        self.timer.cancel()
        self.timer = self.server.loop.call_later(min(LINGER_SECONDS, self.server.timeout), self.close)
        self.server.loop.add_reader(self.fd, self._discard)

    def _discard(self) -> None:
        if self._recv() == b"":
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.timer.cancel()
        self.server.loop.remove_reader(self.fd)
        self.server.loop.remove_writer(self.fd)
        self.sock.close()
        self.out = memoryview(b"")  # the response: nothing of a finished request outlives it
        self.rest = b""
        self.inbuf = bytearray()
        self.server.connections.discard(self)
        self.server.busy.discard(self)
        self.server.reading.pop(self, None)


class HttpServer:
    """The listening socket, the open connections and the routes."""

    def __init__(self, master: Master, host: str, port: int, *, max_connections: int = MAX_CONNECTIONS,
                 timeout: float = TIMEOUT_SECONDS, metrics_reuse: float = METRICS_REUSE_SECONDS,
                 health_only: bool = False) -> None:
        self.master = master
        self.metrics_reuse = metrics_reuse
        self.loop = master.loop
        self.max_connections = max_connections
        self.timeout = timeout
        self.connections: set[Connection] = set()
        self.busy: set[Connection] = set()  # over the cap, being told 503 (at most max_connections more)
        self.reading: dict[Connection, None] = {}  # still waiting for their request head, oldest first
        self.evicted = 0  # connections closed to make room for a newer one (see the module docstring)
        self.routes: dict[str, Callable[[Request], Response]] = {
            "/": self._index, "/metrics": self._metrics, "/healthz": self._healthz, "/readyz": self._readyz,
            "/status": self._status}
        self.endpoints: tuple[str, ...] = ENDPOINTS
        if health_only:
            self.routes = {"/healthz": self._healthz, "/readyz": self._readyz}
            self.endpoints = ("/healthz", "/readyz")
        self._exporter: Exporter | None = None
        self._metrics_cache: tuple[float, Response] | None = None  # (reuse until, response)
        family, kind, proto, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                              flags=socket.AI_PASSIVE)[0]
        self.listener = socket.socket(family, kind, proto)
        try:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind(sockaddr)
            # A deep backlog: under a connection flood a probe's SYN must wait in the queue, not be
            # dropped (a dropped SYN is retried after 1 s: the kubelet's whole default timeout).
            self.listener.listen(1024)
        except OSError:
            self.listener.close()
            raise
        self.address: tuple[str, int] = self.listener.getsockname()[:2]
        self.acceptor = Acceptor(self.loop, self.listener, self._on_connection, self._on_pause,
                                 batch=ACCEPT_BATCH, pause=ACCEPT_RETRY_SECONDS)

    # -- connections ------------------------------------------------------------------------------
    def _make_room(self) -> None:
        """Close the connection that has waited longest for its request head, to let a newcomer in.

        It is read once first: a probe whose request has arrived but whose turn in this loop
        iteration has not come yet is answered, not reset (under a flood the listener is often
        served before the connections in the same iteration). Bounded: a few candidates per accept.
        """
        for _ in range(8):
            if len(self.connections) < self.max_connections or not self.reading:
                return
            oldest = next(iter(self.reading))
            oldest._on_readable()
            if not oldest.closed and oldest in self.reading:
                self.evicted += 1
                oldest.close()

    def _on_connection(self, sock: socket.socket) -> None:
        if len(self.connections) >= self.max_connections:
            self._make_room()
        if len(self.connections) < self.max_connections:
            self.connections.add(Connection(self, sock))
        elif len(self.busy) < self.max_connections:
            refused = Connection(self, sock, busy=True)
            if not refused.closed:
                self.busy.add(refused)
        else:  # a flood: not even a 503
            sock.close()

    def _on_pause(self, exc: OSError, pause: float) -> None:
        self.master.log.warning(f"HTTP: cannot accept connections ({exc.strerror}); retrying in {pause:g}s")

    def close(self) -> None:
        self.acceptor.close()
        self.listener.close()
        for connection in [*self.connections, *self.busy]:
            connection.close()

    # -- routes -----------------------------------------------------------------------------------
    def respond(self, request: Request) -> Response:
        handler = self.routes.get(request.path)
        if handler is None:
            return text(404, f"not found; endpoints: {' '.join(self.endpoints)}")
        if request.method not in ("GET", "HEAD"):
            return Response(405, b"only GET and HEAD\n", extra_headers=(("Allow", "GET, HEAD"),))
        try:
            return handler(request)
        except Exception as exc:  # a bug in a handler must not take the supervisor down
            self.master.log.alert(f"HTTP {request.path} failed: {type(exc).__name__}: {exc}")
            return text(500, "internal error; see the supervisor's log")

    def _index(self, request: Request) -> Response:
        return text(200, "progset-supervisor " + self.master.version + "\n" + "\n".join(ENDPOINTS))

    def _healthz(self, request: Request) -> Response:
        """Liveness: answering at all proves the loop turns (a stuck loop makes the probe time out)."""
        return text(200, "ok")

    def _readyz(self, request: Request) -> Response:
        status = snapshot(self.master)
        if status.ready:
            return text(200, "ok")
        states = {p.name: p.state.value for p in status.programs}
        details = [f"{name} ({states[name]})" if name in states else name for name in status.not_ready]
        return text(503, "not ready: " + ", ".join(details))

    def _status(self, request: Request) -> Response:
        return Response(200, status_json(status_document(self.master)), "application/json")

    def _metrics(self, request: Request) -> Response:
        now = time.monotonic()
        if self._metrics_cache is not None and now < self._metrics_cache[0]:
            return self._metrics_cache[1]
        if self._exporter is None:
            from .metrics import Exporter  # only once someone scrapes

            self._exporter = Exporter(self.master)
        body, content_type = self._exporter.render()
        response = Response(200, body, content_type)
        done = time.monotonic()
        self._metrics_cache = (done + max(self.metrics_reuse, 4 * (done - now)), response)
        return response


def _exit_document(last: ExitStatus | None) -> dict[str, Any] | None:
    if last is None:
        return None
    return {"code": last.code, "reason": last.reason, "signal": last.signal, "text": last.short(),
            "time": round(last.when, 3)}


def program_document(program: ProgramStatus, now: float) -> dict[str, Any]:
    """One program as ``show programs`` shows it: state, pid, uptime, restarts, last exit, backoff."""
    uptime = program.uptime(now)
    return {
        "name": program.name,
        "state": program.state.value,
        "pid": program.pid,
        "started": round(program.started, 3) if program.started is not None else None,
        "uptime_seconds": round(uptime, 3) if uptime is not None else None,
        "restarts": program.restarts,
        "exits": sum(program.exits.values()),
        "last_exit": _exit_document(program.last_exit),
        "backoff_seconds": round(program.backoff_seconds, 3),
        "restart_policy": program.restart_policy,
        "on_reload": program.on_reload,
        "critical": program.critical,
        "fatal_reason": program.fatal_reason or None,
        "reload_error": program.reload_error or None,
        "ready": program.ready,
        "restarts_by_reason": dict(program.restarts_by_reason),
        "checks": [dict(row) for row in program.checks],
    }


def status_document(master: Master) -> dict[str, Any]:
    """Everything ``/status`` returns: the supervisor, its config, its reloads and every program."""
    status = snapshot(master)
    now = status.now
    return {
        "version": status.version,
        "pid": status.pid,
        "uptime_seconds": round(now - status.started, 3),
        "ready": status.ready,
        "not_ready": list(status.not_ready),
        "shutting_down": status.shutting_down,
        "config": None if status.config_hash is None else {
            "hash": status.config_hash, "origin": status.config_origin, "source": status.config_source or None},
        "reloads": {"success": status.reload_results.get("success", 0),
                    "failure": status.reload_results.get("failure", 0), "last": status.last_reload},
        "programs": [program_document(p, now) for p in status.programs],
        "old_programs": [{"name": o.name, "pid": o.pid, "uptime_seconds": round(max(0.0, now - o.started), 3),
                          "reloads": o.reloads} for o in status.old],
    }


def status_json(document: dict[str, Any]) -> bytes:
    """``document`` with one top-level key, and one program, per line.

    Not ``json.dumps(indent=...)``: with an indent, ``json`` encodes in Python through nested closures
    that form reference cycles, about 30 objects of cyclic garbage per request (issue 18), and takes
    several times as long. Each line here comes from the C encoder.
    """
    lines = []
    for key, value in document.items():
        if isinstance(value, list) and value:
            items = ",\n".join(f"  {json.dumps(item)}" for item in value)
            lines.append(f" {json.dumps(key)}: [\n{items}\n ]")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)}")
    return ("{\n" + ",\n".join(lines) + "\n}\n").encode()


def start_http(master: Master, address: str, *, health_only: bool = False) -> HttpServer:
    """Bind ``address`` (ValueError or OSError if it cannot be used) and log where it listens.

    ``health_only``: the ``--health-address`` listener, with only ``/healthz`` and ``/readyz``.
    """
    host, port = parse_address(address, "--health-address" if health_only else "--metrics-address")
    server = HttpServer(master, host, port, health_only=health_only)
    shown = f"[{server.address[0]}]" if ":" in server.address[0] else server.address[0]
    what = "Health endpoints" if health_only else "HTTP endpoints"
    master.log.notice(f"{what} on http://{shown}:{server.address[1]} ({', '.join(server.endpoints)})")
    return server
