"""The check engine on a real loop against real servers, sockets and processes (no master).

The reaper here waits for the watched pids only (``waitpid(pid)``), driven by SIGCHLD on the loop, as
the master's reaper does for the whole supervisor; the checks under test use it through the same
``watch_exit`` hook.
"""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from progset_supervisor.config import Program
from progset_supervisor.config.probes import Header, Probe
from progset_supervisor.core.checks import Check, CheckRunner, Result
from progset_supervisor.runtime.loop import Loop
from progset_supervisor.runtime.netcheck import http_check, http_request, tcp_check
from progset_supervisor.runtime.notifysock import NotifySocket, parse


class PidReaper:
    def __init__(self, loop: Loop) -> None:
        self.watched: dict[int, Callable[[int], None]] = {}
        loop.add_signal_handler(signal.SIGCHLD, lambda _s: self.reap())

    def watch_exit(self, pid: int, callback: Callable[[int], None]) -> None:
        self.watched[pid] = callback
        self.reap()

    def reap(self) -> None:
        for pid in list(self.watched):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue
            if done:
                self.watched.pop(pid)(status)


class RecordingHost:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, bool, str | None, str]] = []

    def health(self, program: str, check: Check, result: Result) -> None:
        self.events.append((program, check.name, result.passed, check.action, result.message))

    def actions(self) -> list[tuple[str, str | None]]:
        return [(name, action) for _, name, _, action, _ in self.events if action]


@pytest.fixture
def loop() -> Iterator[Loop]:
    loop = Loop()
    yield loop
    loop.close()


def run_until(loop: Loop, condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        loop.run_once(0.05)


class Handler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.server.seen.append((self.path, dict(self.headers)))  # type: ignore[attr-defined]
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.status = 200  # type: ignore[attr-defined]
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def outcome(loop: Loop, start: Callable[[Callable[[bool, str], None]], object]) -> tuple[bool, str]:
    got: list[tuple[bool, str]] = []
    start(lambda passed, message: got.append((passed, message)))
    run_until(loop, lambda: bool(got))
    return got[0]


# -- one attempt -------------------------------------------------------------------------------------------


def test_tcp_check_passes_on_a_listening_port_and_fails_on_a_closed_one(loop: Loop) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert outcome(loop, lambda done: tcp_check(loop, "127.0.0.1", port, 2, done)) == (True, "connected")
    passed, message = outcome(loop, lambda done: tcp_check(loop, "127.0.0.1", free_port(), 2, done))
    assert not passed and message == "connect failed: connection refused"


def test_http_check_reads_the_status_and_sends_the_headers(loop: Loop, http_server) -> None:
    port = http_server.server_address[1]
    request = http_request("127.0.0.1", port, "/healthz?x=1", (Header("X-Probe", "yes"),))
    assert outcome(loop, lambda done: http_check(loop, "127.0.0.1", port, request, False, 2, done)) == (
        True, "HTTP 200 OK")
    path, headers = http_server.seen[-1]
    assert path == "/healthz?x=1" and headers["X-Probe"] == "yes" and headers["Host"] == f"127.0.0.1:{port}"
    http_server.status = 302
    assert outcome(loop, lambda done: http_check(loop, "127.0.0.1", port, request, False, 2, done))[0]
    http_server.status = 503
    assert outcome(loop, lambda done: http_check(loop, "127.0.0.1", port, request, False, 2, done)) == (
        False, "HTTP 503 Service Unavailable")


def test_a_server_that_never_answers_times_out(loop: Loop) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # accepted by the kernel, never answered
        port = listener.getsockname()[1]
        request = http_request("127.0.0.1", port, "/", ())
        started = time.monotonic()
        assert outcome(loop, lambda done: http_check(loop, "127.0.0.1", port, request, False, 0.3, done)) == (
            False, "timed out after 0.3s")
        assert time.monotonic() - started >= 0.3


def test_https_check_does_not_verify_the_certificate(loop: Loop, tmp_path) -> None:
    import ssl

    if subprocess.run(["openssl", "version"], capture_output=True).returncode != 0:
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=self"], check=True, capture_output=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.status, server.seen = 204, []  # type: ignore[attr-defined]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        request = http_request("127.0.0.1", port, "/", ())
        assert outcome(loop, lambda done: http_check(loop, "127.0.0.1", port, request, True, 5, done)) == (
            True, "HTTP 204 No Content")
    finally:
        server.shutdown()
        server.server_close()


# -- the runner --------------------------------------------------------------------------------------------


def program(**fields) -> Program:
    return Program(name="app", command=("true",), **fields)


def test_readiness_needs_success_threshold_and_is_lost_after_failure_threshold(loop: Loop, http_server) -> None:
    host = RecordingHost()
    runner = CheckRunner(loop, host, PidReaper(loop))
    port = http_server.server_address[1]
    probe = Probe("http", port=port, path="/ready", period_seconds=0.05, success_threshold=2, failure_threshold=2)
    runner.start(program(readiness=probe), pid=os.getpid())
    assert not runner.ready("app")
    run_until(loop, lambda: runner.ready("app"))
    assert [e[2] for e in host.events[:2]] == [True, True] and host.actions() == [("readiness", "ready")]
    http_server.status = 500
    run_until(loop, lambda: not runner.ready("app"))
    assert host.actions() == [("readiness", "ready"), ("readiness", "unready")]
    check = runner.checks_of("app")[0]
    assert check.failures == 2 and check.last_failure == "HTTP 500 Internal Server Error"
    runner.stop("app")
    runs = len(host.events)
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        loop.run_once(0.05)
    assert len(host.events) == runs  # nothing runs for a stopped program


def test_liveness_failure_asks_for_a_restart_after_failure_threshold_periods(loop: Loop) -> None:
    host = RecordingHost()
    runner = CheckRunner(loop, host, PidReaper(loop))
    probe = Probe("tcp", port=free_port(), period_seconds=0.1, failure_threshold=3)
    started = time.monotonic()
    runner.start(program(liveness=probe), pid=os.getpid())
    assert runner.ready("app")  # liveness is not readiness
    run_until(loop, lambda: host.actions() == [("liveness", "restart")])
    assert time.monotonic() - started >= 0.2  # three runs: at 0, 0.1 and 0.2 s
    assert [e[2] for e in host.events] == [False, False, False]


def test_startup_runs_alone_then_liveness_and_readiness_begin(loop: Loop, http_server) -> None:
    host = RecordingHost()
    runner = CheckRunner(loop, host, PidReaper(loop))
    port = http_server.server_address[1]
    fast = {"period_seconds": 0.05}
    runner.start(program(startup=Probe("tcp", port=port, **fast), readiness=Probe("http", port=port, **fast),
                         liveness=Probe("tcp", port=port, **fast)), pid=os.getpid())
    run_until(loop, lambda: runner.ready("app"))
    names = [e[1] for e in host.events]
    assert names[0] == "startup" and names.count("startup") == 1
    assert host.actions()[:2] == [("startup", "started"), ("readiness", "ready")]


def test_exec_check_runs_as_the_program_and_a_hanging_one_is_killed(loop: Loop, tmp_path) -> None:
    host = RecordingHost()
    runner = CheckRunner(loop, host, PidReaper(loop), pdeathsig=False)
    script = "import os,sys; print(os.getcwd(), os.environ['CHECK_ME']); sys.exit(int(sys.argv[1]))"
    base = program(working_dir=str(tmp_path))
    runner.start(base._replace(readiness=Probe("exec", command=(sys.executable, "-c", script, "0"),
                                                period_seconds=0.1)),
                 pid=os.getpid(), env={**os.environ, "CHECK_ME": "from-env"})
    run_until(loop, lambda: runner.ready("app"))
    assert host.events[0][4] == f"{tmp_path} from-env"
    runner.stop("app")
    marker = tmp_path / "hang.pid"
    hang = f"echo $$ > {marker}; exec sleep 60"  # sh: quick to start even on a loaded machine
    runner.start(base._replace(liveness=Probe("exec", command=("sh", "-c", hang), timeout_seconds=2,
                                               period_seconds=0.2, failure_threshold=1)), pid=os.getpid())
    run_until(loop, lambda: host.actions()[-1:] == [("liveness", "restart")])
    assert host.events[-1][4] == "timed out after 2s (killed)"
    pid = int(marker.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped: no process left
    assert runner.exec_running == 0


def test_exec_checks_beyond_the_cap_wait_for_a_slot(loop: Loop, tmp_path) -> None:
    host = RecordingHost()
    runner = CheckRunner(loop, host, PidReaper(loop), max_exec=2, pdeathsig=False)
    probe = Probe("exec", command=("sleep", "0.3"), period_seconds=60, timeout_seconds=5)
    for i in range(5):
        runner.start(Program(name=f"p{i}", command=("true",), readiness=probe), pid=100000 + i)
    peak = 0
    deadline = time.monotonic() + 20
    while len(host.events) < 5:
        peak = max(peak, runner.exec_running)
        assert runner.exec_running <= 2
        assert time.monotonic() < deadline
        loop.run_once(0.02)
    assert peak == 2 and all(e[2] for e in host.events)


def test_a_changed_check_is_replanned_and_an_unchanged_one_keeps_its_state(loop: Loop, http_server) -> None:
    host = RecordingHost()
    runner = CheckRunner(loop, host, PidReaper(loop))
    port = http_server.server_address[1]
    ready = Probe("http", port=port, period_seconds=0.05)
    first = program(readiness=ready, liveness=Probe("tcp", port=port, period_seconds=30))
    runner.start(first, pid=os.getpid())
    run_until(loop, lambda: runner.ready("app"))
    runner.update(first._replace(liveness=Probe("tcp", port=port, period_seconds=0.05)))
    assert runner.ready("app")  # readiness kept its state
    before = len([e for e in host.events if e[1] == "liveness"])
    run_until(loop, lambda: len([e for e in host.events if e[1] == "liveness"]) >= before + 2)


# -- sd_notify ---------------------------------------------------------------------------------------------


def test_parse() -> None:
    assert parse(b"READY=1\nSTATUS=all good = fine\n\nnoise") == {"READY": "1", "STATUS": "all good = fine"}


NOTIFIER = """
import os, socket, sys, time
address = os.environ["NOTIFY_SOCKET"]
if address.startswith("@"):
    address = "\\0" + address[1:]
def send(text):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(text.encode(), address)
    s.close()
for line in sys.stdin:
    if line.strip() == "fork":
        if os.fork() == 0:  # lives on a while: a sender already gone cannot be attributed (as in systemd)
            send("READY=1\\nSTATUS=from a child")
            time.sleep(3)
            os._exit(0)
    else:
        send(line.strip().replace("\\\\n", "\\n"))
    print("sent", flush=True)
"""


class Notifier:
    def __init__(self, address: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", NOTIFIER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env={**os.environ, "NOTIFY_SOCKET": address})

    def send(self, loop: Loop, text: str) -> None:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == "sent\n"
        loop.run_once(0.2)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def test_ready_status_reloading_over_the_socket_from_a_real_process(loop: Loop) -> None:
    host = RecordingHost()
    runner = CheckRunner(loop, host, PidReaper(loop))
    sock = NotifySocket(loop, runner.notified)
    assert sock.address.startswith("@progset/")
    notifier = Notifier(sock.address)
    try:
        runner.start(program(notify=True), pid=notifier.proc.pid)
        assert not runner.ready("app")
        notifier.send(loop, "STATUS=loading")
        run_until(loop, lambda: runner.checks_of("app")[0].status_text == "loading")
        assert not runner.ready("app")
        notifier.send(loop, "READY=1\\nSTATUS=serving")
        run_until(loop, lambda: runner.ready("app"))
        assert runner.checks_of("app")[0].status_text == "serving"
        notifier.send(loop, "RELOADING=1")
        run_until(loop, lambda: not runner.ready("app"))
        notifier.send(loop, "READY=1")
        run_until(loop, lambda: runner.ready("app"))
        assert host.actions() == [("notify", "ready"), ("notify", "unready"), ("notify", "ready")]
    finally:
        notifier.close()
        sock.close()


@pytest.mark.parametrize("access", ["main", "all"])
def test_a_child_may_notify_only_with_notify_access_all(loop: Loop, access: str) -> None:
    host = RecordingHost()
    runner = CheckRunner(loop, host, PidReaper(loop))
    sock = NotifySocket(loop, runner.notified)
    notifier = Notifier(sock.address)
    try:
        # The notifier is a child of this test in the test's process group: "all" finds it by ancestry.
        runner.start(program(notify=True, notify_access=access), pid=notifier.proc.pid)
        notifier.send(loop, "fork")
        for _ in range(5):
            loop.run_once(0.05)
        assert sock.received == 1
        assert runner.ready("app") is (access == "all")
    finally:
        notifier.close()
        sock.close()


def test_messages_of_other_processes_are_not_attributed(loop: Loop) -> None:
    runner = CheckRunner(loop, RecordingHost(), PidReaper(loop))
    sock = NotifySocket(loop, runner.notified)
    notifier = Notifier(sock.address)
    try:
        runner.start(program(notify=True, notify_access="all"), pid=4_000_000 - 7)
        notifier.send(loop, "READY=1")
        for _ in range(5):
            loop.run_once(0.05)
        assert sock.received == 1 and not runner.ready("app")
    finally:
        notifier.close()
        sock.close()


def test_watchdog_miss_asks_for_a_restart_and_pings_keep_it_alive(loop: Loop) -> None:
    host = RecordingHost()
    runner = CheckRunner(loop, host, PidReaper(loop))
    sock = NotifySocket(loop, runner.notified)
    notifier = Notifier(sock.address)
    try:
        runner.start(program(notify=True, watchdog_seconds=0.6), pid=notifier.proc.pid)
        for _ in range(4):
            notifier.send(loop, "WATCHDOG=1")
            time.sleep(0.2)
            loop.run_once(0)
        assert host.actions() == []
        run_until(loop, lambda: host.actions() == [("watchdog", "restart")])
        assert host.events[-1][4] == "no WATCHDOG=1 within 0.6s"
    finally:
        notifier.close()
        sock.close()
