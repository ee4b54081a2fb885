"""Scrapes and Master CLI use leave nothing behind: counted in objects, not in time or RSS.

Issue 18: 200 programs scraped back to back, with a ``show proc`` now and then, grew the supervisor
without bound (to 420 MB): every HTTP connection formed a reference cycle with its timeout timer
(connection -> timer -> bound ``connection.close``), holding the response body, which only the cyclic
GC could free, and the GC's oldest generation is collected rarely. Here a real master with real
programs runs on this thread's loop with the cyclic GC off, a client thread scrapes and uses the CLI,
and afterwards ``gc.collect()`` must find (almost) nothing unreachable and the tracked objects must not
have grown with the number of requests.
"""

from __future__ import annotations

import gc
import io
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from progset_supervisor.cli.server import start_cli
from progset_supervisor.config import load_path
from progset_supervisor.core.master import Master, Options
from progset_supervisor.http.server import HttpServer
from progset_supervisor.runtime.log import Logger
from progset_supervisor.runtime.loop import Loop
from progset_supervisor.runtime.output import OutputSink

from .cli_helpers import exchange, socket_dir
from .helpers import http_get, program, programs_config, write_config

PROGRAMS = 20
REQUESTS = 200
CLI_EVERY = 10
# Objects that may appear once, whatever the number of requests (caches warmed by the first request
# of a kind, a timer still pending): far below one per request.
SLACK = 40
SIGNALS = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR2, signal.SIGPIPE)


class InProcess:
    """A master with PROGRAMS real ``sleep`` programs, HTTP and a Master CLI, on this thread's loop."""

    def __init__(self, directory: Path, cli_path: str) -> None:
        config = write_config(directory, programs_config(
            *(program(f"p{i}", "sleep", "3600") for i in range(PROGRAMS))))
        self.loop = Loop()
        self.master = Master(Options(config_path=str(config), watch=False), self.loop,
                             Logger(stream=io.StringIO()), OutputSink())
        self.master.install_signals()
        # A short timeout: a closed connection's cancelled timeout waits in the loop's heap until due.
        self.http = HttpServer(self.master, "127.0.0.1", 0, metrics_reuse=0.0, timeout=0.5)
        self.cli = start_cli(self.master, [f"{cli_path},level,admin"])
        self.cli_path = cli_path
        self.master.start(load_path(config))

    @property
    def port(self) -> int:
        return self.http.address[1]

    def serve(self, client: Callable[[], None]) -> None:
        """Run the loop until ``client`` (in a thread) has finished; its exception is raised here."""
        errors: list[BaseException] = []

        def run() -> None:
            try:
                client()
            except BaseException as exc:  # handed to the test thread
                errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        while thread.is_alive():
            self.loop.run_once(0.05)
        settled = self.loop.time() + self.http.timeout + 0.1  # every connection's timers come due
        while self.loop.time() < settled:
            self.loop.run_once(0.05)
        if errors:
            raise errors[0]

    def close(self) -> None:
        self.master.shutdown(0)
        deadline = self.loop.time() + 15
        while not self.master.finished and self.loop.time() < deadline:
            self.loop.run_once(0.1)
        self.http.close()
        self.cli.close()
        self.loop.close()


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[InProcess]:
    saved = {signum: signal.getsignal(signum) for signum in SIGNALS}
    running: InProcess | None = None
    try:
        with socket_dir() as sockets:
            running = InProcess(tmp_path, str(sockets / "master.sock"))
            yield running
    finally:
        if running is not None:
            running.close()
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def traffic(running: InProcess, requests: int) -> Callable[[], None]:
    def client() -> None:
        for i in range(1, requests + 1):
            reply = http_get(running.port, "/metrics")
            assert reply.status == 200 and b'progset_program_up{program="p0"} 1.0' in reply.body
            if i % CLI_EVERY == 0:
                assert b"p0" in exchange(running.cli_path, "show proc\n")
                assert http_get(running.port, "/status").status == 200
    return client


def test_scrapes_and_cli_use_leave_no_cyclic_garbage_and_no_growth(supervisor: InProcess) -> None:
    was_enabled = gc.isenabled()
    gc.disable()  # what a scrape leaves for the cyclic GC stays countable
    try:
        supervisor.serve(traffic(supervisor, 20))  # first scrape imports and caches what it needs
        gc.collect()
        before = len(gc.get_objects())
        supervisor.serve(traffic(supervisor, REQUESTS))
        unreachable = gc.collect()
        after = len(gc.get_objects())
    finally:
        if was_enabled:
            gc.enable()
    # Before the fix: 200 scrapes left about 1,000 unreachable objects (5 per connection) and, with
    # the GC on, the response body of each connection until a full collection.
    assert unreachable < SLACK, f"{unreachable} objects in reference cycles after {REQUESTS} scrapes"
    assert after - before < SLACK, f"{after - before} more objects tracked after {REQUESTS} scrapes"


def test_a_connection_closed_by_its_timeout_is_freed_without_the_cyclic_gc(supervisor: InProcess) -> None:
    """The other way a connection ends: the client never finishes its request and the timeout closes it."""
    supervisor.http.timeout = 0.2
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        gc.collect()

        def stall() -> None:
            with socket.create_connection(("127.0.0.1", supervisor.port), timeout=5) as sock:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x")
                assert sock.recv(100) == b""  # closed by the server's timeout
        for _ in range(20):
            supervisor.serve(stall)
        unreachable = gc.collect()
    finally:
        if was_enabled:
            gc.enable()
    assert not supervisor.http.connections
    assert unreachable < SLACK


def test_a_slow_reader_gets_the_head_and_the_whole_body(supervisor: InProcess) -> None:
    """Head and body go out as two buffers; small socket buffers force many partial sends of both."""
    supervisor.http.listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # inherited when accepted
    received: list[bytes] = []

    def slow() -> None:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(10)
            sock.connect(("127.0.0.1", supervisor.port))
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            while chunk := sock.recv(512):
                received.append(chunk)
                time.sleep(0.001)

    supervisor.serve(slow)
    head, _, body = b"".join(received).partition(b"\r\n\r\n")
    length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
                 .split(b":")[1])
    assert length > 16 * 4096 // 4 and len(body) == length  # several buffers' worth, all of it
    assert body.startswith(b"# HELP progset_program_up ") and body.endswith(b"\n")
    assert body.count(b"progset_program_up{") == PROGRAMS
