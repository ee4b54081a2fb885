"""Tools of the chaos suite: stalled log pipes, timed probes, latency records.

Latency goals (100 ms for the CLI and ``/healthz``, the issue's numbers) are measured and recorded,
and asserted with a wide margin (:data:`LATENCY_MARGIN`): the machine running the suite may be
shared and loaded, while the failure these tests exist for is a loop that does not answer at all
(a frozen supervisor answers after the stall ends, tens of seconds later, or never).
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

GOAL_SECONDS = 0.1  # the goal for CLI and /healthz answers
LATENCY_MARGIN = 30  # asserted: every answer within GOAL_SECONDS x LATENCY_MARGIN (3 s); typical is ~2-20 ms
RECORD = os.environ.get("PROGSET_CHAOS_RECORD")  # a JSON-lines file to append measured latencies to


class StallablePipe:
    """A pipe for a child's stdout/stderr whose reader can be stopped (a stalled container runtime)."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self.flowing = threading.Event()
        self.data = bytearray()
        self.lock = threading.Condition()
        self.eof = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            self.flowing.wait()
            try:
                chunk = os.read(self.read_fd, 1 << 16)
            except OSError:
                chunk = b""
            with self.lock:
                if not chunk:
                    self.eof = True
                    self.lock.notify_all()
                    return
                self.data += chunk
                self.lock.notify_all()

    def stall(self) -> None:
        self.flowing.clear()

    def flow(self) -> None:
        self.flowing.set()

    def wait_for(self, needle: bytes, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.lock:
            while needle not in self.data:
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    return False
                self.lock.wait(left)
            return True

    def text(self) -> str:
        with self.lock:
            return self.data.decode("utf-8", "replace")

    def close(self) -> None:
        self.flow()
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


class Flood:
    """``count`` connections kept open to ``port``: each closed one is opened again at once;
    ``feed(sock, n)`` is called for each connection every ``interval`` seconds, ``n`` counting from 0
    per connection (None: idle)."""

    def __init__(self, address: int | str, count: int, feed: Callable[[socket.socket, int], None] | None = None,
                 interval: float = 0.5) -> None:
        """``address``: a TCP port on 127.0.0.1, or a Unix socket path."""
        self.address, self.count, self.feed, self.interval = address, count, feed, interval
        self.stop = threading.Event()
        self.opened = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _connect(self, selector: selectors.BaseSelector) -> None:
        unix = isinstance(self.address, str)
        sock = socket.socket(socket.AF_UNIX if unix else socket.AF_INET)
        sock.setblocking(False)
        try:
            if sock.connect_ex(self.address if unix else ("127.0.0.1", self.address)) not in (0, errno.EINPROGRESS):
                raise OSError("connect failed")
            selector.register(sock, selectors.EVENT_READ, [0])
            self.opened += 1
        except OSError:
            sock.close()

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        for _ in range(self.count):
            self._connect(selector)
        next_feed = time.monotonic() + self.interval
        while not self.stop.is_set():
            for key, _ in selector.select(0.05):
                sock = key.fileobj
                try:
                    data = sock.recv(4096)  # type: ignore[union-attr]
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:  # closed by the server: the flooder comes straight back
                    selector.unregister(sock)
                    sock.close()  # type: ignore[union-attr]
                    self._connect(selector)
            if self.feed is not None and time.monotonic() >= next_feed:
                next_feed += self.interval
                for key in list(selector.get_map().values()):
                    try:
                        self.feed(key.fileobj, key.data[0])  # type: ignore[arg-type]
                    except OSError:
                        pass
                    key.data[0] += 1
        for key in list(selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        selector.close()

    def __enter__(self) -> Flood:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def start_supervisor(config: Path, args: Sequence[str], stdout: int | None, stderr: int | None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "progset_supervisor", "-f", str(config), *args],
                            stdout=stdout, stderr=stderr, env=env, start_new_session=True)


def cli(path: str, command: str, timeout: float = 10.0) -> tuple[float, bytes]:
    """One Master CLI command over a fresh connection: (seconds until the whole answer, answer)."""
    began = time.monotonic()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(command.encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return time.monotonic() - began, b"".join(chunks)


def http_get(port: int, path: str, timeout: float = 10.0) -> tuple[float, int, bytes]:
    """One request on a fresh connection, as the kubelet probes: (seconds, status, body)."""
    began = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        reply = conn.getresponse()
        body = reply.read()
        return time.monotonic() - began, reply.status, body
    finally:
        conn.close()


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"count": len(ordered), "p50_ms": round(statistics.median(ordered) * 1000, 1),
            "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 1),
            "max_ms": round(ordered[-1] * 1000, 1)}


def record(test: str, **figures: object) -> None:
    """Print the figures (``pytest -s`` shows them) and append them to ``$PROGSET_CHAOS_RECORD`` if set."""
    line = json.dumps({"test": test, **figures})
    print(line)
    if RECORD:
        with open(RECORD, "a") as out:
            out.write(line + "\n")


def assert_latency(name: str, samples: list[float]) -> None:
    limit = GOAL_SECONDS * LATENCY_MARGIN
    slow = [round(s, 3) for s in samples if s > limit]
    assert not slow, f"{name}: {len(slow)} of {len(samples)} answers slower than {limit}s: {slow[:10]}"
