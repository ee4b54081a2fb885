"""The HTTP server on a real event loop, in this process: routing, malformed input, limits, timeouts.

The master here has loaded no configuration (nothing is spawned); the loop runs in a thread of its
own so the test can be the client over real sockets. Small limits (2 connections, 0.3 s timeout)
make the limit paths quick to reach.
"""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from progset_supervisor.core.master import Master, Options
from progset_supervisor.http.server import HttpServer, parse_address, parse_request, start_http
from progset_supervisor.runtime.log import Logger
from progset_supervisor.runtime.loop import Loop
from progset_supervisor.runtime.output import OutputSink

from .helpers import http_get, wait_until


@dataclass
class Running:
    server: HttpServer
    log: io.StringIO

    @property
    def port(self) -> int:
        return self.server.address[1]


@pytest.fixture
def running(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Running]:
    limits = getattr(request, "param", {})
    loop = Loop()
    log = io.StringIO()
    master = Master(Options(config_path=str(tmp_path / "unused.yaml")), loop, Logger(stream=log), OutputSink())
    server = HttpServer(master, "127.0.0.1", 0, **limits)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            loop.run_once(0.02)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield Running(server, log)
    finally:
        stop.set()
        thread.join(5)
        server.close()
        loop.close()


def raw(port: int, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send ``data``, half-close, read the whole answer (the server closes after one response)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_endpoints_answer_with_status_type_and_body(running: Running) -> None:
    port = running.port
    healthz = http_get(port, "/healthz")
    assert (healthz.status, healthz.body, healthz.headers["connection"]) == (200, b"ok\n", "close")
    readyz = http_get(port, "/readyz")
    assert (readyz.status, readyz.body) == (503, b"not ready: no configuration loaded\n")
    status = http_get(port, "/status")
    assert status.headers["content-type"] == "application/json"
    document = status.json()
    assert (document["programs"], document["config"], document["ready"]) == ([], None, False)
    metrics = http_get(port, "/metrics?ignored=1")
    assert metrics.status == 200
    assert metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert b'progset_reloads_total{result="failure"} 0.0\n' in metrics.body
    head = http_get(port, "/metrics", method="HEAD")
    assert (head.status, head.body) == (200, b"")
    assert int(head.headers["content-length"]) > 0
    assert http_get(port, "/").body.splitlines()[1:] == [b"/metrics", b"/healthz", b"/readyz", b"/status"]
    missing = http_get(port, "/nope")
    assert missing.status == 404 and b"/metrics" in missing.body
    post = http_get(port, "/metrics", method="POST")
    assert (post.status, post.headers["allow"]) == (405, "GET, HEAD")


def test_malformed_requests_get_4xx_and_a_closed_connection(running: Running) -> None:
    port = running.port
    assert raw(port, b"\x16\x03\x01\x02\x00garbage\r\n\r\n").startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert raw(port, b"GET /healthz HTTP/2.0\r\n\r\n").startswith(b"HTTP/1.1 505 ")
    assert raw(port, b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw(port, b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 20000).startswith(b"HTTP/1.1 431 ")
    # Bare newlines, as typed into netcat, are accepted.
    assert raw(port, b"GET /healthz HTTP/1.0\n\n").endswith(b"\r\n\r\nok\n")
    # A client that closes before finishing its request costs nothing.
    assert raw(port, b"GET /heal") == b""
    assert http_get(port, "/healthz").status == 200


@pytest.mark.parametrize("running", [{"max_connections": 2}], indirect=True)
def test_over_the_cap_the_oldest_waiting_connection_gives_way(running: Running) -> None:
    """Idle and trickling connections cannot starve a probe: the longest wait for a request head goes."""
    port = running.port
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
    idle[1].sendall(b"GET /healthz HTTP/1.1\r\nHost: x")  # stalls in the middle of its request
    wait_until(lambda: len(running.server.connections) == 2)
    assert raw(port, b"GET /healthz HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 200 OK\r\n")
    assert idle[0].recv(100) == b""  # the oldest, closed without a response
    assert running.server.evicted == 1
    for sock in idle:
        sock.close()
    wait_until(lambda: not running.server.connections)
    assert http_get(port, "/healthz").status == 200


@pytest.mark.parametrize("running", [{"timeout": 0.3}], indirect=True)
def test_stalled_clients_are_disconnected_at_the_deadline(running: Running) -> None:
    idle = [socket.create_connection(("127.0.0.1", running.port), timeout=5) for _ in range(2)]
    idle[1].sendall(b"GET /healthz HTTP/1.1\r\nHost: x")  # stalls in the middle of its request
    for sock in idle:
        assert sock.recv(100) == b""  # closed by the server, without a response
        sock.close()
    wait_until(lambda: not running.server.connections)
    assert http_get(running.port, "/healthz").status == 200


def test_a_slow_reader_gets_its_whole_response(running: Running) -> None:
    """The response is written as the client reads it, not in one blocking send."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        sock.settimeout(5)
        sock.connect(("127.0.0.1", running.port))
        sock.sendall(b"GET /status HTTP/1.1\r\n\r\n")
        assert http_get(running.port, "/healthz").status == 200  # served meanwhile
        data = b""
        while chunk := sock.recv(256):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and body.endswith(b"}\n")
    assert f"Content-Length: {len(body)}".encode() in head


def test_parse_address() -> None:
    assert parse_address("0.0.0.0:9127") == ("0.0.0.0", 9127)
    assert parse_address("[::1]:80") == ("::1", 80)
    assert parse_address(":9127") == ("0.0.0.0", 9127)
    for bad in ("9127", "host:", "host:http", "1.2.3.4:70000"):
        with pytest.raises(ValueError, match="expected HOST:PORT"):
            parse_address(bad)


def test_parse_request() -> None:
    request = parse_request(b"GET http://pod:9127/metrics?x=1 HTTP/1.1\r\nAccept: text/plain\r\nHost: pod")
    assert not isinstance(request, Exception)
    assert (request.method, request.path, request.headers) == ("GET", "/metrics", {"accept": "text/plain",
                                                                                   "host": "pod"})
    assert parse_request(b"GET  /metrics HTTP/1.1").status == 400  # type: ignore[union-attr]


def test_address_in_use_is_an_error(running: Running) -> None:
    with pytest.raises(OSError):
        start_http(running.server.master, f"127.0.0.1:{running.port}")
