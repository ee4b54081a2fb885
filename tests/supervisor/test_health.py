"""Checks and sd_notify end to end: a real supervisor, real programs, real sockets (issue 10's "done means")."""

from __future__ import annotations

import re
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import (
    Supervisor,
    http_get,
    http_port,
    pid_alive,
    program,
    programs_config,
    scrape_until,
    started,
    wait_until,
)
from .peers import require

# An HTTP server that starts listening after a delay; GET answers 200, or 503 while the file `gate`
# (if given) is missing; while the file `hang` exists it stops answering at all (a stuck event loop).
SERVER = """
import http.server, os, sys, time
port, delay, gate, hang = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
time.sleep(delay)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        while hang and os.path.exists(hang):
            time.sleep(0.05)
        ok = not gate or os.path.exists(gate)
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", port), H)
print("listening", repr(time.time()), flush=True)
server.serve_forever()
"""

# Speaks sd_notify: sends each argument as one message after the given pause ("0.5:READY=1").
NOTIFIER = """
import os, socket, sys, time
address = os.environ["NOTIFY_SOCKET"]
address = "\\0" + address[1:] if address.startswith("@") else address
print("watchdog", os.environ.get("WATCHDOG_USEC"), flush=True)
for item in sys.argv[1:]:
    pause, _, message = item.partition(":")
    time.sleep(float(pause))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(message.replace("|", "\\n").encode(), address)
    s.close()
    print("sent", message, repr(time.time()), flush=True)
time.sleep(3600)
"""

STAMP = "import sys, time; print('started', repr(time.time()), flush=True); time.sleep(3600)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server(port: int, delay: float = 0.0, gate: str = "", hang: str = "") -> list[str]:
    return [sys.executable, "-c", SERVER, str(port), str(delay), gate, hang]


def stamp(sup: Supervisor, name: str, word: str) -> float:
    return float(sup.out.wait_for(rf"^{name} \| {word}.* ([\d.]+)$")[0].group(1))


@pytest.fixture
def start(tmp_path: Path) -> Iterator:
    with started(tmp_path) as start:
        yield start


def test_http_readiness_delays_the_dependent(start) -> None:
    port = free_port()
    sup = start(programs_config(
        program("web", *server(port, delay=1.0), readiness={"http": {"port": port, "path": "/healthz"},
                                                            "periodSeconds": 0.1}),
        program("client", sys.executable, "-c", STAMP, dependsOn=["web"]),
    ))
    sup.wait_log(r"Program 'web' is ready \(readiness: HTTP 200 OK\)")
    listening = stamp(sup, "web", "listening")
    client = stamp(sup, "client", "started")
    assert client >= listening  # it waited for the port, about a second
    forks = [m.group(1) for m in sup.err.matching(r"New program '(\w+)' \(\d+\) forked")]
    assert forks == ["web", "client"]


def test_started_condition_does_not_wait_for_ready(start) -> None:
    port = free_port()
    sup = start(programs_config(
        program("web", *server(port, delay=30.0), readiness={"tcp": {"port": port}, "periodSeconds": 0.2}),
        program("client", sys.executable, "-c", STAMP, dependsOn=["web"], dependsOnCondition={"web": "started"}),
    ))
    sup.wait_ready(2)


def test_liveness_failure_restarts_after_threshold_times_period(start, tmp_path: Path) -> None:
    port, hang = free_port(), tmp_path / "hang"
    sup = start(programs_config(program(
        "api", *server(port, hang=str(hang)), readiness={"http": {"port": port}, "periodSeconds": 0.2},
        liveness={"http": {"port": port}, "periodSeconds": 0.5, "timeoutSeconds": 2, "failureThreshold": 3})),
        metrics="127.0.0.1:0")
    sup.wait_log(r"Program 'api' is ready")
    first = sup.forked_pids("api")[0]
    hang.touch()
    hung_at = time.monotonic()
    sup.wait_log(r"Program 'api' \(\d+\) failed its liveness check \(timed out after 2s\): stopping it for a "
                 r"restart \(reason liveness\)", timeout=30)
    # Three failures in a row, at least a period apart (each here waits out its 2 s timeout).
    assert time.monotonic() - hung_at >= 2 * 0.5
    hang.unlink()
    sup.wait_log(r"New program 'api' \(\d+\) forked", count=2)
    assert sup.forked_pids("api")[1] != first
    wait_until(lambda: not pid_alive(first))
    metrics = scrape_until(http_port(sup), lambda s: s.get("progset_program_restart_reasons_total", program="api",
                                                           reason="liveness") == 1)
    assert metrics.get("progset_program_restarts_total", program="api") == 1
    # three that restarted it (the new process may have failed once more before it listened)
    assert metrics.get("progset_check_runs_total", program="api", check="liveness", result="failure") >= 3
    assert metrics.types["progset_check_duration_seconds"] == "histogram"
    assert http_get(http_port(sup), "/status").json()["programs"][0]["restarts_by_reason"] == {"liveness": 1}


def test_ready_over_notify_socket_from_a_python_script(start) -> None:
    sup = start(programs_config(
        program("daemon", sys.executable, "-c", NOTIFIER, "0.1:STATUS=warming up", "0.8:READY=1|STATUS=serving",
                notify=True),
        program("client", sys.executable, "-c", STAMP, dependsOn=["daemon"]),
    ), metrics="127.0.0.1:0")
    port = http_port(sup)
    sup.out.wait_for(r"^daemon \| sent STATUS=warming up")
    assert http_get(port, "/readyz").status == 503
    ready_sent = stamp(sup, "daemon", "sent READY=1")
    assert stamp(sup, "client", "started") >= ready_sent
    sup.wait_log(r"Program 'daemon' is ready \(notify: READY=1\)")
    wait_until(lambda: http_get(port, "/readyz").status == 200)


def test_haproxy_Ws_reports_ready_over_sd_notify(start, tmp_path: Path) -> None:
    haproxy = require("haproxy")
    port = free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(f"global\n    log stderr format raw local0 emerg\ndefaults\n    mode tcp\n    timeout connect 1s\n"
                   f"    timeout client 1s\n    timeout server 1s\nfrontend fe\n    bind 127.0.0.1:{port}\n")
    sup = start(programs_config(
        program("haproxy", haproxy, "-Ws", "-db", "-f", str(cfg), notify=True),
        program("client", sys.executable, "-c", STAMP, dependsOn=["haproxy"]),
    ), metrics="127.0.0.1:0")
    sup.wait_log(r"Program 'haproxy' is ready \(notify: READY=1\)", timeout=30)
    sup.out.wait_for(r"^client \| started")
    assert http_get(http_port(sup), "/readyz").status == 200
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # HAProxy said READY=1 once it was listening


def test_watchdog_miss_restarts_with_reason_liveness(start) -> None:
    sup = start(programs_config(program(
        "dog", sys.executable, "-c", NOTIFIER, "0:READY=1", "0.1:WATCHDOG=1", notify=True, watchdogSeconds=0.5)))
    sup.wait_log(r"Program 'dog' \(\d+\) failed its watchdog \(no WATCHDOG=1 within 0\.5s\): stopping it for a "
                 r"restart \(reason liveness\)", timeout=30)
    sup.wait_log(r"New program 'dog' \(\d+\) forked", count=2)
    sup.out.wait_for(r"^dog \| watchdog 500000$")


def test_reload_that_changes_only_a_check_does_not_restart(start, tmp_path: Path) -> None:
    port = free_port()

    def config(check_port: int) -> str:
        return programs_config(program("web", *server(port), onReload="keep",
                                       readiness={"tcp": {"port": check_port}, "periodSeconds": 0.1}))

    sup = start(config(free_port()), metrics="127.0.0.1:0")  # checks the wrong port: never ready
    sup.wait_ready(1)
    sup.out.wait_for(r"^web \| listening")
    http = http_port(sup)
    assert http_get(http, "/readyz").status == 503
    (tmp_path / "programs.yaml").write_text(config(port))
    sup.send(signal.SIGHUP)
    sup.wait_log(r"Program 'web' is ready")
    assert len(sup.forked_pids("web")) == 1  # the same process, now checked on the right port
    assert http_get(http, "/readyz").status == 200


def test_hanging_exec_check_is_killed_at_its_timeout_and_leaves_no_process(start, tmp_path: Path) -> None:
    pids = tmp_path / "check.pids"
    check = ["sh", "-c", f"echo $$ >> {pids}; sleep 300 & echo $! >> {pids}; wait"]
    sup = start(programs_config(program(
        "app", "sleep", "3600", liveness={"exec": {"command": check}, "timeoutSeconds": 0.3, "periodSeconds": 0.5,
                                          "failureThreshold": 1000})))
    sup.wait_ready(1)
    wait_until(lambda: pids.exists() and len(pids.read_text().split()) >= 4)  # two runs, each with a child
    first_run = [int(p) for p in pids.read_text().split()[:2]]
    wait_until(lambda: not any(pid_alive(p) for p in first_run))  # shell and its background sleep
    assert len(sup.forked_pids("app")) == 1  # failures below the threshold restart nothing
    assert sup.stop() == 0
    assert not any(pid_alive(int(p)) for p in pids.read_text().split())


def test_readyz_follows_readiness(start, tmp_path: Path) -> None:
    port, gate = free_port(), tmp_path / "gate"
    sup = start(programs_config(program(
        "web", *server(port, gate=str(gate)), readiness={"http": {"port": port}, "periodSeconds": 0.1,
                                                         "failureThreshold": 2})), metrics="127.0.0.1:0")
    http = http_port(sup)
    sup.out.wait_for(r"^web \| listening")
    assert http_get(http, "/readyz").status == 503
    scrape_until(http, lambda s: s.get("progset_program_ready", program="web") == 0)
    gate.touch()
    wait_until(lambda: http_get(http, "/readyz").status == 200)
    scrape_until(http, lambda s: s.get("progset_program_ready", program="web") == 1)  # scrapes are cached briefly
    gate.unlink()
    wait_until(lambda: http_get(http, "/readyz").status == 503)
    scrape_until(http, lambda s: s.get("progset_program_ready", program="web") == 0)
    sup.wait_log(r"Program 'web' is not ready: readiness check failed \(HTTP 503 Service Unavailable\)")
    assert len(sup.forked_pids("web")) == 1  # readiness failures never restart


def test_readiness_on_a_program_that_exits_for_good_names_the_waiting_dependents(start) -> None:
    sup = start(programs_config(
        program("migrate", "true", restart="never", readiness={"tcp": {"port": free_port()}}),
        program("web", "sleep", "3600", dependsOn=["migrate"]),
    ))
    sup.wait_log(r"Program 'migrate' ended \(EXITED\) before it was ready and will not run again \(restart: never\): "
                 r"'web' wait for it")


def test_environment_of_a_notify_program(start) -> None:
    sup = start(programs_config(program("env", "sh", "-c", "echo NS=$NOTIFY_SOCKET WD=${WATCHDOG_USEC:-none}; "
                                        "sleep 3600", notify=True)))
    line = sup.out.wait_for(r"^env \| NS=(\S+) WD=(\S+)$")[0]
    assert re.fullmatch(r"@progset/\d+/[0-9a-f]+/notify", line.group(1)) and line.group(2) == "none"


def test_show_checks_show_programs_and_status(tmp_path: Path) -> None:
    from .cli_helpers import CliSupervisor, socket_dir

    port, gate = free_port(), tmp_path / "gate"
    config = programs_config(
        program("web", *server(port, gate=str(gate)), readiness={"http": {"port": port, "path": "/ready"},
                                                                 "periodSeconds": 0.1},
                liveness={"tcp": {"port": port}, "periodSeconds": 0.1, "failureThreshold": 100}),
        program("plain", "sleep", "3600"),
        program("later", "sleep", "3600", restart="never", notify=True, dependsOn=["web"]))
    with socket_dir() as directory, CliSupervisor(directory, config, ("m.sock",), "--metrics-address",
                                                  "127.0.0.1:0", programs=2) as sup:
        wait_until(lambda: "HTTP 503" in sup.text("show checks web"))
        rows = [line.split(None, 7) for line in sup.text("show checks").splitlines() if line]
        assert rows[0] == ["#<program>", "<check>", "<state>", "<runs>", "<failures>", "<last>", "<target>",
                           "<last-failure>"]
        by_check = {(r[0], r[1]): r for r in rows[1:]}
        assert set(by_check) == {("web", "readiness"), ("web", "liveness"), ("later", "notify")}
        web = by_check[("web", "readiness")]
        assert web[2] in ("pending", "failing") and web[5] == "failure" and web[7] == "HTTP 503 Service Unavailable"
        assert web[6] == f"http=http://127.0.0.1:{port}/ready"
        assert by_check[("web", "liveness")][2] == "passing"
        assert by_check[("later", "notify")][2] == "inactive"  # waits for web, so not running
        programs = {line.split()[0]: line.split() for line in sup.text("show programs").splitlines()[1:] if line}
        assert programs["web"][2] == "no" and programs["plain"][2] == "yes" and programs["later"][1] == "STARTING"
        assert programs["web"][9] in ("readiness=fail", "liveness=ok")  # <last-check>, before <reason>
        assert sup.text("show checks nosuch") == "No such program 'nosuch'.\n\n"
        gate.touch()
        sup.wait_log(r"Program 'web' is ready")
        wait_until(lambda: sup.text("show programs").splitlines()[1].split()[2] == "yes")
        status = http_get(http_port(sup), "/status").json()
        web_doc = next(p for p in status["programs"] if p["name"] == "web")
        assert web_doc["ready"] is True
        checks = {c["check"]: c for c in web_doc["checks"]}
        assert checks["readiness"]["state"] == "passing" and checks["readiness"]["last_result"] == "success"
        assert checks["readiness"]["last_failure"] == "HTTP 503 Service Unavailable"
        assert checks["readiness"]["runs"] >= 2 and checks["liveness"]["target"] == f"tcp 127.0.0.1:{port}"
        assert web_doc["restarts_by_reason"] == {}
