"""Issue 15.1: a stalled log pipe must not freeze the supervisor.

stdout and stderr go to pipes whose reader stops for 30 s (a container runtime whose log pipe
stalls) while one program floods its output and another crashes again and again. Meanwhile the
crashing one keeps being restarted, the Master CLI and ``/healthz`` answer, and afterwards the
dropped lines are announced; then, with the pipes stalled again, SIGTERM ends the supervisor within
its programs' stop timeout.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

from ..supervisor.cli_helpers import socket_dir
from ..supervisor.helpers import program, programs_config
from .tools import StallablePipe, assert_latency, cli, http_get, record, start_supervisor, summary

STALL_SECONDS = 30.0
STOP_TIMEOUT = 5.0


def status(port: int) -> dict:
    _, code, body = http_get(port, "/status")
    assert code == 200
    return json.loads(body)


def restarts(port: int, name: str) -> int:
    return next(p["restarts"] for p in status(port)["programs"] if p["name"] == name)


def test_stalled_stdout_and_stderr_for_30s(tmp_path: Path) -> None:
    config = tmp_path / "programs.yaml"
    config.write_text(programs_config(
        program("chatty", "sh", "-c", "while :; do seq 100000 102000; sleep 0.1; done",
                stopTimeoutSeconds=STOP_TIMEOUT),
        program("crasher", "sh", "-c", "echo going down; echo on stderr >&2; sleep 0.2; exit 3", restart="always",
                backoff={"initialSeconds": 0.1, "maxSeconds": 0.2}, stopTimeoutSeconds=STOP_TIMEOUT),
        program("steady", "sleep", "3600", stopTimeoutSeconds=STOP_TIMEOUT)))
    out, err = StallablePipe(), StallablePipe()
    out.flow()
    err.flow()
    with socket_dir() as sockets:
        master = str(sockets / "master.sock")
        proc = start_supervisor(config, ["-S", master, "--metrics-address", "127.0.0.1:0", "--no-watch"],
                                out.write_fd, err.write_fd)
        try:
            assert err.wait_for(b"Loading success.", 30)
            assert err.wait_for(b"HTTP endpoints on", 30)
            port = int(re.search(r"HTTP endpoints on http://\S+:(\d+) ", err.text()).group(1))  # type: ignore[union-attr]
            out.stall()
            err.stall()
            before = restarts(port, "crasher")
            began = time.monotonic()
            cli_times, health_times = [], []
            while time.monotonic() - began < STALL_SECONDS:
                seconds, answer = cli(master, "show programs")
                assert b"crasher" in answer and b"steady" in answer, answer
                cli_times.append(seconds)
                seconds, code, body = http_get(port, "/healthz")
                assert (code, body) == (200, b"ok\n")
                health_times.append(seconds)
                time.sleep(0.2)
            during = restarts(port, "crasher") - before
            # Restarting every ~0.4 s; a frozen loop restarts nothing. Far fewer than 30 s allows is fine.
            assert during >= 10, f"only {during} restarts of the crashing program while output was stalled"
            assert proc.poll() is None
            record("stalled_output_30s", crasher_restarts=during, cli=summary(cli_times),
                   healthz=summary(health_times))
            assert_latency("show programs", cli_times)
            assert_latency("/healthz", health_times)

            out.flow()
            err.flow()
            # Once each stream drains, the episode is announced once, with the count per program.
            assert err.wait_for(b"Output to stdout was blocked for", 30), err.text()[-2000:]
            announce = re.search(r"Output to stdout was blocked for [\d.]+s: (\d+) lines were dropped "
                                 r"\(([^)]*)\)", err.text())
            assert announce is not None and int(announce.group(1)) > 0 and "chatty: " in announce.group(2)
            _, code, body = http_get(port, "/metrics")
            metric = re.search(rb'^progset_output_dropped_lines_total\{program="chatty"\} (\S+)$', body, re.M)
            chatty = int(re.search(r"chatty: (\d+)", announce.group(2)).group(1))  # type: ignore[union-attr]
            assert code == 200 and metric is not None and float(metric.group(1)) >= chatty
            assert re.search(rb'^progset_output_dropped_lines_total\{program="steady"\} 0\.0$', body, re.M)
            # (stderr carried only ~1 kB/s of restart messages: its pipe never filled, nothing to announce)

            out.stall()
            err.stall()
            time.sleep(2)  # chatty refills stdout, the restarts' log lines refill stderr
            began = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(STOP_TIMEOUT + 10)
            took = time.monotonic() - began
            record("sigterm_with_stalled_output", seconds=round(took, 2))
            assert code == 0
            # Programs stop on SIGTERM at once; the limit is their stop timeout plus the 1 s final flush.
            assert took < STOP_TIMEOUT + 1 + 2, f"SIGTERM took {took:.1f}s"
        finally:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
            out.close()
            err.close()
