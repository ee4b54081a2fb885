"""Accepting connections on a listening socket from the event loop, for the Master CLI and HTTP.

Both servers need the same two protections: accept in bounded batches (one flood cannot monopolise a
loop turn that also reaps and restarts programs), and back off when the process is out of file
descriptors or memory (the listener stays readable, so without a pause the loop would spin on it).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable

from .loop import Loop, Timer

RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class Acceptor:
    """Calls ``on_connection(sock)`` with each new non-blocking connection; ``on_pause(exc, seconds)``
    when accepting stops for ``pause`` seconds for lack of resources."""

    def __init__(self, loop: Loop, listener: socket.socket, on_connection: Callable[[socket.socket], None],
                 on_pause: Callable[[OSError, float], None], *, batch: int = 64, pause: float = 0.5) -> None:
        self.loop = loop
        self.listener = listener
        self.fd = listener.fileno()
        self.on_connection = on_connection
        self.on_pause = on_pause
        self.batch = batch
        self.pause = pause
        self._resume_timer: Timer | None = None
        listener.setblocking(False)
        loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        for _ in range(self.batch):
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in RESOURCE_ERRNOS:
                    self.loop.remove_reader(self.fd)
                    self._resume_timer = self.loop.call_later(self.pause, self._resume)
                    self.on_pause(exc, self.pause)
                return
            conn.setblocking(False)
            self.on_connection(conn)

    def _resume(self) -> None:
        self._resume_timer = None
        self.loop.add_reader(self.fd, self._readable)

    def close(self) -> None:
        """Stop accepting (the caller closes the socket)."""
        if self._resume_timer is not None:
            self._resume_timer.cancel()
            self._resume_timer = None
        self.loop.remove_reader(self.fd)
