"""The sd_notify receiver: one datagram socket, each message delivered with its sender's pid.

Programs started with ``notify`` get ``NOTIFY_SOCKET`` naming this socket and send systemd's
notification messages to it (``READY=1``, ``STATUS=...``, ``WATCHDOG=1``, newline-separated
``KEY=VALUE``). ``SO_PASSCRED`` makes the kernel attach the sender's real pid, uid and gid to every
datagram (it cannot be forged by the sender without privileges), so the caller can decide which program
a message belongs to; this module only receives and parses. The socket lives in the abstract
namespace (``@...``; systemd's libsystemd and HAProxy's sd_notify both accept it): no file to clean up,
no directory permissions for programs running as other users, and private to the pod's network
namespace. One socket for all programs, read when the loop says it is readable: no polling.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable

from .loop import Loop

MAX_MESSAGE = 4096  # systemd reads at most this much (NOTIFY_BUFFER_MAX is larger, but no client sends more)
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
Deliver = Callable[[int, dict[str, str]], None]  # (sender pid, fields)


def parse(data: bytes) -> dict[str, str]:
    """``b"READY=1\\nSTATUS=up"`` -> ``{"READY": "1", "STATUS": "up"}``; lines without ``=`` are ignored."""
    fields: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").split("\n"):
        key, sep, value = line.partition("=")
        if sep and key:
            fields[key] = value
    return fields


class NotifySocket:
    """Bound at ``address`` (the value of ``NOTIFY_SOCKET``); ``deliver(pid, fields)`` per message."""

    def __init__(self, loop: Loop, deliver: Deliver, name: str | None = None) -> None:
        self._loop = loop
        self._deliver = deliver
        self.address = name or f"@progset/{os.getpid()}/{os.urandom(4).hex()}/notify"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self._sock.bind("\0" + self.address[1:] if self.address.startswith("@") else self.address)
        self._cmsg_size = socket.CMSG_SPACE(_UCRED.size)
        loop.add_reader(self._sock.fileno(), self._readable)
        self.received = 0
        self.dropped = 0  # messages without credentials (cannot be attributed)

    def _readable(self) -> None:
        for _ in range(64):  # bounded per wake-up, so one chatty program cannot starve the loop
            try:
                data, ancdata, _flags, _addr = self._sock.recvmsg(MAX_MESSAGE, self._cmsg_size)
            except (BlockingIOError, InterruptedError):
                return
            pid = 0
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(payload) >= _UCRED.size:
                    pid = _UCRED.unpack_from(payload)[0]
            if pid <= 0:
                self.dropped += 1
                continue
            self.received += 1
            self._deliver(pid, parse(data))

    def close(self) -> None:
        if self._sock.fileno() >= 0:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
