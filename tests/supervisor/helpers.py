"""Start a real ``progset-supervisor`` process for tests and wait on what it says.

Waiting is event-driven: reader threads collect the supervisor's stdout/stderr lines and wake
waiters through a condition variable, so tests wait exactly as long as the supervisor needs and no
longer (timeouts are only safety nets against hangs).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
DEFAULT_TIMEOUT = 15.0


class Lines:
    """Lines of one stream, appended by a reader thread, awaited by tests."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.cond = threading.Condition()

    def feed(self, stream) -> None:  # type: ignore[no-untyped-def]
        for raw in stream:
            with self.cond:
                self.lines.append(raw.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
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
                if remaining <= 0:
                    tail = "\n".join(self.lines[-40:])
                    raise AssertionError(f"timed out waiting for {count} x {pattern!r}; last lines:\n{tail}")
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
                 prefix: Sequence[str] = (), metrics: str = "off") -> None:
        self.config = config
        cmd = [*prefix, sys.executable, "-m", "progset_supervisor", "-f", str(config),
               "--metrics-address", metrics, *args]
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     errors="replace", env=full_env, start_new_session=True)
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

    def signal(self, signum: int) -> None:
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
