"""Limits HAProxy's master CLI lacks: connection cap, idle timeout, line length, hostile or slow clients.

Every test checks the same two things from the outside: the abusive client is dealt with (a clear
answer, or closed), and the supervisor keeps serving others and supervising programs meanwhile.
"""

from __future__ import annotations

import random
import re
import socket
import threading
import time

from .cli_helpers import CliSupervisor, Conn, connect, exchange, fd_count, read_all, socket_dir
from .helpers import wait_until

CRASHY = """\
programs:
  - name: steady
    command: [sleep, "3600"]
  - name: crasher
    command: [sh, -c, "sleep 0.05; exit 1"]
    restart: always
    backoff: {initialSeconds: 0.02, maxSeconds: 0.05, resetAfterSeconds: 60}
"""


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return int(next(line for line in fh if line.startswith("VmRSS:")).split()[1])


def restarts(sup: CliSupervisor) -> int:
    row = next(line for line in sup.text("show programs").splitlines() if line.startswith("crasher "))
    return int(row.split()[5])  # <restarts>


def quick(sup: CliSupervisor) -> float:
    """Round trip of a trivial command: how responsive the supervisor's loop is right now."""
    start = time.monotonic()
    assert exchange(sup.sock, b"echo ping\n", timeout=5) == b"ping\n\n"
    return time.monotonic() - start


def test_connection_limit() -> None:
    with socket_dir() as directory, CliSupervisor(directory, CRASHY, ["master.sock"], "--cli-maxconn", "5",
                                                  programs=2) as sup:
        conns = [Conn(sup.sock) for _ in range(5)]
        for conn in conns:
            conn.send("echo in\n")
            assert conn.read_until("\n\n") == b"in\n\n"
        # The refusal is written on accept; sending first could race with the server's close (EPIPE).
        refused = connect(sup.sock)
        assert read_all(refused) == b"Too many connections to the master CLI (limit 5); try again later.\n"
        refused.close()
        conns.pop().close()
        wait_until(lambda: exchange(sup.sock, b"echo again\n") == b"again\n\n")
        for conn in conns:
            conn.close()


def test_idle_clients_are_closed() -> None:
    with socket_dir() as directory, CliSupervisor(directory, CRASHY, ["master.sock"], "--cli-timeout", "0.4",
                                                  programs=2) as sup:
        idle = Conn(sup.sock)
        busy = Conn(sup.sock)
        started = time.monotonic()
        for _ in range(6):  # activity keeps a client alive past the timeout
            busy.send("echo x\n")
            assert busy.read_until("\n\n") == b"x\n\n"
            time.sleep(0.1)
        assert idle.closed_by_peer(timeout=3)
        assert time.monotonic() - started > 0.3  # not before its idle timeout
        busy.send("echo still\n")
        assert busy.read_until("\n\n") == b"still\n\n"


def test_line_length_limit_and_huge_lines() -> None:
    with socket_dir() as directory, CliSupervisor(directory, CRASHY, ["master.sock"], programs=2) as sup:
        before = rss_kb(sup.pid)
        sock = connect(sup.sock)
        received: list[bytes] = []
        reader = threading.Thread(target=lambda: received.append(read_all(sock)))
        reader.start()
        payload = b"x" * (10 * 1024 * 1024)  # 10 MB, no newline
        try:
            sock.sendall(payload)
        except OSError:
            pass  # the supervisor closed on us: expected
        reader.join(10)
        sock.close()
        assert received[0] == (b"Command line too long: more than 65536 bytes without a newline or ';'. "
                               b"Closing the connection.\n\n")
        assert quick(sup) < 0.5
        assert rss_kb(sup.pid) - before < 8 * 1024
        # Just under the limit is fine.
        assert exchange(sup.sock, b"echo " + b"y" * 60000 + b"\n") == b"y" * 60000 + b"\n\n"


def test_binary_garbage() -> None:
    rng = random.Random(1234)
    with socket_dir() as directory, CliSupervisor(directory, CRASHY, ["master.sock"], programs=2) as sup:
        for _ in range(3):
            garbage = rng.randbytes(150_000).replace(b"@", b"a")
            out = exchange(sup.sock, garbage, timeout=20)
            assert out.count(b"Unknown command") > 10 or out.startswith(b"Command line too long")
        assert exchange(sup.sock, b"\x00\xff\xfe\n\x1b[2J;\r\n").startswith(b"Unknown command")
        assert sup.text("show cli level") == "admin\n\n"
        assert sup.proc.poll() is None


def test_clients_that_vanish() -> None:
    with socket_dir() as directory, CliSupervisor(directory, CRASHY, ["master.sock"], programs=2) as sup:
        baseline = fd_count(sup.pid)
        for _ in range(50):
            sock = connect(sup.sock)
            sock.sendall(b"show proc\n" * 200 + b"show programs\n")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.close()  # RST while answers are still being written
        half = connect(sup.sock)
        half.shutdown(socket.SHUT_RDWR)
        half.close()
        assert quick(sup) < 0.5
        wait_until(lambda: fd_count(sup.pid) <= baseline)


def test_slow_reader_is_backpressured_not_buffered() -> None:
    with socket_dir() as directory, CliSupervisor(directory, CRASHY, ["master.sock"], "--cli-timeout", "1",
                                                  programs=2) as sup:
        before = rss_kb(sup.pid)
        slow = connect(sup.sock)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sent = 0
        slow.settimeout(0.5)
        try:
            while sent < 50 * 1024 * 1024:  # never read: the supervisor must stop reading from us
                slow.sendall(b"show proc\n" * 1000)
                sent += 10_000
        except TimeoutError:
            pass
        assert sent < 20 * 1024 * 1024
        assert max(quick(sup) for _ in range(5)) < 0.5
        assert rss_kb(sup.pid) - before < 16 * 1024
        # A client that reads nothing for longer than the timeout is dropped. (One that reads keeps its
        # commands running, so it is making progress: it must not start reading before the deadline.)
        time.sleep(1.5)
        slow.settimeout(5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if not slow.recv(1 << 20):
                    break
            except (ConnectionResetError, TimeoutError):
                break
        else:
            raise AssertionError("slow client was never closed")
        slow.close()


def test_200_clients_while_programs_crash_and_restart() -> None:
    with socket_dir() as directory, CliSupervisor(directory, CRASHY, ["master.sock"], "--cli-maxconn", "250",
                                                  programs=2) as sup:
        wait_until(lambda: restarts(sup) >= 3)
        baseline = fd_count(sup.pid)
        first = restarts(sup)
        for _ in range(3):
            socks = [connect(sup.sock) for _ in range(200)]
            for sock in socks:
                sock.sendall(b"show proc;show programs\nshow info\n")
            for sock in socks:
                sock.shutdown(socket.SHUT_WR)
            answers = [read_all(sock).decode() for sock in socks]
            for sock in socks:
                sock.close()
            for answer in answers:
                parts = answer.split("\n\n")
                assert parts[0].startswith("#<PID>") and "\n# programs\n" in parts[0], answer
                assert parts[1].startswith("#<name>") and "\ncrasher " in parts[1], answer
                assert re.search(r"^CurrConns: \d+$", parts[2], re.M) and parts[3:] == [""], answer
            assert max(int(re.search(r"^CurrConns: (\d+)$", a, re.M).group(1)) for a in answers) > 100
        assert restarts(sup) > first  # supervision went on meanwhile
        wait_until(lambda: fd_count(sup.pid) <= baseline + 2)


def test_floods_do_not_starve_supervision() -> None:
    with socket_dir() as directory, CliSupervisor(directory, CRASHY, ["master.sock"], programs=2) as sup:
        wait_until(lambda: restarts(sup) >= 3)
        stop = threading.Event()

        def flood() -> None:
            while not stop.is_set():
                try:
                    exchange(sup.sock, b"show proc;show programs;help\n" * 300, timeout=10)
                except OSError:
                    return

        threads = [threading.Thread(target=flood) for _ in range(8)]
        first = restarts(sup)
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        worst = max(quick(sup) for _ in range(5))
        stop.set()
        for thread in threads:
            thread.join(15)
        during = restarts(sup) - first
        # The crasher restarts about every 0.1 s; a flood may slow the loop but never stall it.
        assert during >= 5, during
        assert worst < 1.0, worst
