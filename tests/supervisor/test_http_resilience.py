"""A real supervisor keeps supervising while HTTP clients misbehave; its endpoints cost nothing unused."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from progset_supervisor.http.server import MAX_CONNECTIONS

from .helpers import Supervisor, http_get, http_port, program, scrape_until, started
from .helpers import programs_config as programs

FAST = {"initialSeconds": 0.05, "maxSeconds": 0.1, "resetAfterSeconds": 60}


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    with started(tmp_path) as start_supervisor:
        yield start_supervisor


def connect(port: int, *, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    return sock


def test_stalled_flooding_and_slow_clients_do_not_block_restarts(start: Any) -> None:
    # 150 more programs make /metrics a few hundred kB: more than a slow reader's socket buffers hold.
    fillers = [program(f"filler-{i}", "sleep", "1000") for i in range(150)]
    sup: Supervisor = start(programs(program("victim", "sleep", "1000", backoff=FAST), *fillers),
                            "--no-watch", metrics="127.0.0.1:0")
    port = http_port(sup)
    sup.wait_ready(151)

    # Binary garbage that never ends a request head gets 431 after MAX_REQUEST bytes.
    with connect(port) as flooder:
        flooder.sendall(os.urandom(20000).replace(b"\n", b"\x00"))
        assert flooder.recv(100).startswith(b"HTTP/1.1 431 ")

    slow = connect(port, rcvbuf=1024)
    slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads the answer
    # As many stalled clients as the server serves at once: the slots are full even if the server
    # has managed to hand the whole response to the slow reader's kernel buffers and let it go.
    stalled = [connect(port) for _ in range(MAX_CONNECTIONS)]
    for sock in stalled:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHo")  # and never finishes
    try:
        # Every slot is taken, but the oldest stalled request gives way: a probe still gets through.
        with connect(port) as extra:
            extra.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
            assert extra.recv(100).startswith(b"HTTP/1.1 200 ")
        # The loop still reaps and restarts.
        os.kill(sup.forked_pids("victim")[-1], signal.SIGKILL)
        sup.wait_log(r"New program 'victim' \(\d+\) forked", count=2)
    finally:
        for sock in [slow, *stalled]:
            sock.close()
    result = scrape_until(port, lambda s: s.get("progset_program_restarts_total", program="victim") == 1)
    assert result.get("progset_program_up", program="victim") == 1
    assert http_get(port, "/healthz").status == 200
    assert sup.stop() == 0


def test_metrics_are_written_without_prometheus_client(start: Any) -> None:
    """Python reports each import on stderr with -X importtime: the metrics module comes with the first
    scrape, prometheus_client never (its import alone cost 11 MiB of the supervisor's RSS, issue 18)."""
    sup: Supervisor = start(programs(program("one", "sleep", "1000")), "--no-watch", metrics="127.0.0.1:0",
                            env={"PYTHONPROFILEIMPORTTIME": "1"})
    port = http_port(sup)
    sup.wait_ready(1)
    for path in ("/healthz", "/readyz", "/status", "/"):
        assert http_get(port, path).status == 200
    metrics_module = r"import time:.*\| +progset_supervisor\.http\.metrics$"
    assert sup.err.matching(metrics_module) == []
    assert http_get(port, "/metrics").status == 200
    sup.wait_log(metrics_module)
    assert http_get(port, "/metrics").status == 200
    assert http_get(port, "/status").status == 200
    assert sup.stop() == 0
    assert sup.err.matching(r"import time:.*\| +prometheus_client") == []


def test_metrics_address_off_and_in_use(start: Any) -> None:
    quiet: Supervisor = start(programs(program("one", "sleep", "1000")), "--no-watch")  # metrics="off"
    quiet.wait_ready(1)
    assert quiet.err.matching("HTTP endpoints") == []
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    with holder:
        taken: Supervisor = start(programs(program("two", "sleep", "1000")), "--no-watch",
                                  metrics=f"127.0.0.1:{holder.getsockname()[1]}", name="taken.yaml")
        assert taken.proc.wait(15) == 1
    taken.wait_log(r"\[ALERT\].*Cannot start: .*Address already in use")
    assert taken.forked_pids("two") == []
    assert quiet.stop() == 0
