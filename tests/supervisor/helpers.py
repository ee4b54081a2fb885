"""Start a real ``progset-supervisor`` process for tests and wait on what it says.

Waiting is event-driven: reader threads collect the supervisor's stdout/stderr lines and wake
waiters through a condition variable, so tests wait exactly as long as the supervisor needs and no
longer (timeouts are only safety nets against hangs).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[2]
DEFAULT_TIMEOUT = 15.0


class Lines:
    """Lines of one stream, appended by a reader thread, awaited by tests."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.closed = False

    def feed(self, stream) -> None:  # type: ignore[no-untyped-def]
        for raw in stream:
            with self.cond:
                self.lines.append(raw.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def wait_for(self, pattern: str, *, count: int = 1, start: int = 0,
                 timeout: float = DEFAULT_TIMEOUT) -> list[re.Match[str]]:
        """Block until ``pattern`` has matched ``count`` lines (from index ``start``); return the matches."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [m for line in self.lines[start:] if (m := regex.search(line))]
                if len(found) >= count:
                    return found[:count]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.closed:
                    tail = "\n".join(self.lines[-40:])
                    why = "stream closed" if self.closed else "timed out"
                    raise AssertionError(f"{why} waiting for {count} x {pattern!r}; last lines:\n{tail}")
                self.cond.wait(remaining)

    def matching(self, pattern: str) -> list[re.Match[str]]:
        regex = re.compile(pattern)
        with self.cond:
            return [m for line in self.lines if (m := regex.search(line))]

    def __len__(self) -> int:
        with self.cond:
            return len(self.lines)


class Supervisor:
    """A ``python -m progset_supervisor`` child with its output captured line by line."""

    def __init__(self, config: Path, *args: str, env: dict[str, str] | None = None,
                 prefix: Sequence[str] = (), metrics: str = "off", pass_fds: Sequence[int] = (),
                 python: str = sys.executable, cwd: Path | None = None) -> None:
        self.config = config
        cmd = [*prefix, python, "-m", "progset_supervisor", "-f", str(config),
               "--metrics-address", metrics, *args]
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     errors="replace", env=full_env, start_new_session=True, pass_fds=pass_fds,
                                     cwd=cwd)
        self.out = Lines()
        self.err = Lines()
        self._threads = [threading.Thread(target=self.out.feed, args=(self.proc.stdout,), daemon=True),
                         threading.Thread(target=self.err.feed, args=(self.proc.stderr,), daemon=True)]
        for thread in self._threads:
            thread.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_log(self, pattern: str, **kwargs) -> list[re.Match[str]]:  # type: ignore[no-untyped-def]
        return self.err.wait_for(pattern, **kwargs)

    def wait_ready(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Until the first load finished and ``count`` programs were forked."""
        self.wait_log(r"Loading success\.", timeout=timeout)
        if count:
            self.wait_log(r"New program '.*' \(\d+\) forked", count=count, timeout=timeout)

    def forked_pids(self, name: str) -> list[int]:
        return [int(m.group(1)) for m in self.err.matching(rf"New program '{re.escape(name)}' \((\d+)\) forked")]

    def send(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = DEFAULT_TIMEOUT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError("supervisor did not exit after " + signal.Signals(signum).name) from None
        for thread in self._threads:
            thread.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until(predicate: Callable[[], bool], timeout: float = DEFAULT_TIMEOUT, interval: float = 0.02) -> None:
    """Bounded wait for a condition the kernel gives no event for (e.g. another process's death)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within timeout")
        time.sleep(interval)


def write_config(directory: Path, text: str, name: str = "programs.yaml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def program(name: str, *command: str, **fields: Any) -> dict[str, Any]:
    """One program of :func:`programs_config`; ``fields`` are ProgramSet keys (``restart``, ``backoff``...)."""
    return {"name": name, "command": list(command), **fields}


def programs_config(*items: dict[str, Any]) -> str:
    """A bare ``programs:`` config in JSON (which is YAML): no quoting of shell snippets to get wrong."""
    return json.dumps({"programs": list(items)}, indent=1)


@contextlib.contextmanager
def started(directory: Path) -> Iterator[Callable[..., Supervisor]]:
    """``start(config_text, *args, **kwargs)`` writes the config and starts a supervisor on it; whatever
    is still running at the end is killed, so a failing test leaves no process behind."""
    sups: list[Supervisor] = []

    def start(config_text: str, *args: str, name: str = "programs.yaml", **kwargs: Any) -> Supervisor:
        sup = Supervisor(write_config(directory, config_text, name), *args, **kwargs)
        sups.append(sup)
        return sup

    try:
        yield start
    finally:
        for sup in sups:
            sup.kill()


# -- HTTP endpoints (/metrics, /healthz, /readyz, /status) ----------------------------------------------
HTTP_LINE = r"HTTP endpoints on http://\S+:(\d+) "


def http_port(sup: Supervisor) -> int:
    """The port of a supervisor started with ``metrics="127.0.0.1:0"`` (it logs the one it bound)."""
    return int(sup.wait_log(HTTP_LINE)[0].group(1))


@dataclass(frozen=True)
class HttpReply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http_get(port: int, path: str, *, method: str = "GET", headers: dict[str, str] | None = None,
             timeout: float = 5.0) -> HttpReply:
    """One real HTTP request to 127.0.0.1:``port``; any status is returned, not raised."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        reply = conn.getresponse()
        return HttpReply(reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read())
    finally:
        conn.close()


class Scrape:
    """One ``/metrics`` scrape, parsed with prometheus_client's own text parser."""

    def __init__(self, text: str) -> None:
        from prometheus_client.parser import text_string_to_metric_families

        self.text = text
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        self.types: dict[str, str] = {}
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    @property
    def names(self) -> set[str]:
        return {name for name, _ in self.samples}

    def get(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def series(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        return {labels: value for (n, labels), value in self.samples.items() if n == name}


def scrape(port: int) -> Scrape:
    reply = http_get(port, "/metrics")
    assert reply.status == 200, reply
    return Scrape(reply.body.decode())


def scrape_until(port: int, predicate: Callable[[Scrape], bool], timeout: float = DEFAULT_TIMEOUT) -> Scrape:
    """Scrape until ``predicate`` holds (bounded retries; state changes have no event a client can wait on)."""
    deadline = time.monotonic() + timeout
    while True:
        result = scrape(port)
        if predicate(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError("metrics never matched; last scrape:\n" + result.text[-3000:])
        time.sleep(0.05)
