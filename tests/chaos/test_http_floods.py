"""Issue 15.2: ``/healthz`` cannot be starved by idle or trickling connections.

Before: one client holding ~200 idle connections to the metrics port made 30 of 30 one-second
liveness probes fail, and the kubelet restarted the pod. Here floods far beyond the connection limit
run (flooders reconnect the moment they are closed, the worst case), while a probe is made every
0.2 s with the kubelet's default 1 s timeout: every probe must pass.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from ..supervisor.helpers import program, programs_config
from .tools import Flood, StallablePipe, assert_latency, http_get, record, start_supervisor, summary

PROBE_TIMEOUT = 1.0  # the kubelet's default timeoutSeconds
FLOOD_SECONDS = 8.0


def trickle(sock: socket.socket, n: int) -> None:
    """A request head that never ends: one more header byte each time."""
    sock.send(b"GET /metrics HTTP/1.1\r\nX-Slow: " if n == 0 else b"G")


@pytest.fixture
def supervisor(tmp_path: Path):  # type: ignore[no-untyped-def]
    config = tmp_path / "programs.yaml"
    config.write_text(programs_config(program("app", "sleep", "3600")))
    err = StallablePipe()
    err.flow()
    proc = start_supervisor(config, ["--no-watch", "--metrics-address", "127.0.0.1:0",
                                     "--health-address", "127.0.0.1:0"], None, err.write_fd)
    try:
        assert err.wait_for(b"Health endpoints on", 30), err.text()
        text = err.text()
        ports = {name: int(re.search(rf"{name} endpoints on http://\S+:(\d+) ", text).group(1))  # type: ignore[union-attr]
                 for name in ("HTTP", "Health")}
        yield ports
    finally:
        proc.terminate()
        proc.wait(30)
        err.close()


def probe_for(port: int, seconds: float, path: str = "/healthz") -> list[float]:
    times = []
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        took, code, body = http_get(port, path, timeout=PROBE_TIMEOUT)
        assert (code, body) == (200, b"ok\n"), (code, body)
        times.append(took)
        time.sleep(0.2)
    return times


@pytest.mark.parametrize(("kind", "count", "feed"), [("idle", 300, None), ("trickle", 150, trickle)])
def test_probes_pass_through_a_flood(supervisor, kind: str, count: int, feed) -> None:  # type: ignore[no-untyped-def]
    with Flood(supervisor["HTTP"], count, feed) as flood:
        time.sleep(1)  # let the flood fill every slot first
        main = probe_for(supervisor["HTTP"], FLOOD_SECONDS)
        ready = probe_for(supervisor["HTTP"], 2, "/readyz")
        separate = probe_for(supervisor["Health"], 2)
        opened = flood.opened
    record(f"http_{kind}_flood", connections=count, connections_opened=opened, healthz=summary(main),
           readyz=summary(ready), health_listener=summary(separate))
    assert opened >= count
    assert_latency(f"/healthz under an {kind} flood", main + ready + separate)


def test_a_flood_of_the_metrics_port_leaves_the_health_listener_alone(supervisor) -> None:  # type: ignore[no-untyped-def]
    with Flood(supervisor["HTTP"], 300):
        time.sleep(1)
        times = probe_for(supervisor["Health"], 3)
        _, code, body = http_get(supervisor["Health"], "/metrics", timeout=PROBE_TIMEOUT)
        assert code == 404 and body == b"not found; endpoints: /healthz /readyz\n"
    assert_latency("health listener", times)
