"""Master CLI test tools on top of :mod:`helpers`: a supervisor with sockets, and raw socket clients.

Clients speak raw bytes over ``AF_UNIX`` so tests see exactly what socat or a tool would see. Socket
paths live in a short directory under /tmp because ``sun_path`` holds only 107 bytes and pytest's
``tmp_path`` names can be longer than that.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .helpers import DEFAULT_TIMEOUT, Supervisor, write_config

SLEEPERS = """\
programs:
  - name: alpha
    command: [sleep, "3600"]
  - name: beta
    command: [sleep, "3600"]
"""


@contextmanager
def socket_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pscli", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class CliSupervisor(Supervisor):
    """A supervisor started with ``-S`` sockets; ``sockets[0]`` is the admin one by default."""

    def __init__(self, directory: Path, config_text: str, sockets: Sequence[str] = ("master.sock",),
                 *args: str, programs: int = 0, env: dict[str, str] | None = None,
                 config_name: str = "programs.yaml") -> None:
        config = write_config(directory, config_text, config_name)
        self.directory = directory
        specs = [s if s.startswith("/") else str(directory / s) for s in sockets]
        self.paths = [spec.split(",", 1)[0] for spec in specs]
        flags = [item for spec in specs for item in ("-S", spec)]
        super().__init__(config, *flags, *args, env=env)
        self.wait_ready(programs)

    @property
    def sock(self) -> str:
        return self.paths[0]

    def cli(self, data: bytes | str, path: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        return exchange(path or self.sock, data, timeout)

    def text(self, command: str, path: str | None = None) -> str:
        return self.cli(command + "\n", path).decode()

    def __enter__(self) -> CliSupervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.stop()


def connect(path: str, timeout: float = DEFAULT_TIMEOUT) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(path)
    return sock


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def exchange(path: str, data: bytes | str, timeout: float = DEFAULT_TIMEOUT) -> bytes:
    """Send everything, half-close (as ``echo ... | socat`` does), read until the server closes."""
    if isinstance(data, str):
        data = data.encode()
    with connect(path, timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        return read_all(sock)


class Conn:
    """A persistent client for interactive exchanges (prompt mode, levels that stick)."""

    def __init__(self, path: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.sock = connect(path, timeout)
        self.buffer = b""

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def read_until(self, marker: bytes | str, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """Everything up to and including ``marker``."""
        if isinstance(marker, str):
            marker = marker.encode()
        deadline = time.monotonic() + timeout
        while marker not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {marker!r}; got {self.buffer!r}")
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError(f"connection closed waiting for {marker!r}; got {self.buffer!r}")
            self.buffer += data
        index = self.buffer.index(marker) + len(marker)
        out, self.buffer = self.buffer[:index], self.buffer[index:]
        return out

    def read_to_close(self) -> bytes:
        out = self.buffer + read_all(self.sock)
        self.buffer = b""
        return out

    def closed_by_peer(self, timeout: float = DEFAULT_TIMEOUT) -> bool:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


def program_pid(sup: CliSupervisor, name: str) -> int:
    for line in sup.text("show proc").splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[1] == name and fields[0].isdigit():
            return int(fields[0])
    raise AssertionError(f"{name} not in show proc")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))
