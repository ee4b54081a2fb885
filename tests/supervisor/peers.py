"""Peer programs the Master CLI tests compare with (HAProxy 2.6, socat): skip only when truly absent.

CI sets ``PROGSET_REQUIRE_PEERS=1`` (it installs Debian's haproxy and socat), so a missing binary fails
there instead of silently skipping the comparison.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .cli_helpers import exchange

HAPROXY_GLOBAL = """\
global
    master-worker
defaults
    mode tcp
    timeout connect 1s
    timeout client 1s
    timeout server 1s
frontend fe
    bind unix@{frontend}
"""


# An HAProxy run as a program under progset whose stats socket is its runtime CLI (a "worker" behind
# `@`): the Master CLI worker tests and bench/forward_bench.py. {dir} is where both sockets go.
HAPROXY_WORKER_CFG = """\
global
\tstats socket {dir}/stats.sock level admin
defaults
\tmode tcp
\ttimeout connect 1s
\ttimeout client 1s
\ttimeout server 1s
frontend fe
\tbind unix@{dir}/fe.sock
"""


def require(binary: str, package: str | None = None) -> str:
    """The path of an optional system binary: skip without it, or fail when CI demands every peer
    (``PROGSET_REQUIRE_PEERS=1``, set by ``.ci/run``, which installs them)."""
    path = shutil.which(binary)
    if path is None:
        hint = f" (Debian package '{package}')" if package else ""
        if os.environ.get("PROGSET_REQUIRE_PEERS") == "1":
            pytest.fail(f"{binary} is required (PROGSET_REQUIRE_PEERS=1) but not installed{hint}")
        pytest.skip(f"{binary} not installed{hint}")
    return path


def haproxy_config(directory: Path, programs: list[tuple[str, str]]) -> Path:
    """One file both HAProxy and progset load: progset ignores the non-program sections."""
    text = HAPROXY_GLOBAL.format(frontend=directory / "fe.sock")
    text += "".join(f"program {name}\n    command {command}\n" for name, command in programs)
    path = directory / "haproxy.cfg"
    path.write_text(text)
    return path


class HAProxy:
    """``haproxy -W -S sock -f cfg``: HAProxy's master-worker mode with its own Master CLI."""

    def __init__(self, config: Path, socket_path: Path, programs: int, *extra: str) -> None:
        self.sock = str(socket_path)
        self.proc = subprocess.Popen([require("haproxy"), "-W", "-S", self.sock, *extra, "-f", str(config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 15
        while True:
            try:
                out = exchange(self.sock, b"show proc\n", timeout=0.5).decode()
                if out.count("\n") >= 5 + programs and "# workers\n" in out and out.split("# workers\n")[1][:1] != "#":
                    return
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise AssertionError("HAProxy did not start: " + (self.proc.stderr.read().decode()
                                                                  if self.proc.stderr else ""))
            time.sleep(0.05)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
