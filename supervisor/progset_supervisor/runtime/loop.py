"""A small single-threaded event loop: file readiness, timers and signals.

Why not asyncio: importing it costs about 10 MB of resident memory (it pulls in ``ssl``) and the
supervisor needs only three things: wake up when a pipe or socket is readable, when a timer is due,
and when a signal arrives. ``selectors`` plus ``signal.set_wakeup_fd`` does that with no polling:
the loop sleeps in ``epoll_wait`` until the kernel has something for it.
"""

from __future__ import annotations

import heapq
import itertools
import os
import selectors
import signal
import time
from collections import deque
from collections.abc import Callable
from typing import Any

Callback = Callable[..., Any]


class Timer:
    """A scheduled callback; ``cancel()`` is O(1) (the heap entry is skipped when it comes up).

    A timer lets go of its callback and arguments once cancelled or run. Whoever keeps the Timer
    (a connection keeps its timeout) would otherwise form a reference cycle with it through a bound
    method (connection -> timer -> connection.close), which only the cyclic GC frees: with one
    cycle per HTTP connection, each holding its response body, the supervisor grew by hundreds of
    MB under scraping (issue 18). A cancelled timer also waits in the heap until its time comes.
    """

    __slots__ = ("args", "callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callback, args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.callback = _nothing
        self.args = ()

    def remaining(self, now: float | None = None) -> float:
        if self.cancelled:
            return 0.0
        return max(0.0, self.when - (time.monotonic() if now is None else now))


class Loop:
    """Readers, writers, timers and signal handlers dispatched from one ``select`` call."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._timers: list[tuple[float, int, Timer]] = []
        self._sequence = itertools.count()
        self._ready: deque[tuple[Callback, tuple[Any, ...]]] = deque()
        self._signal_handlers: dict[int, Callback] = {}
        self._stopping = False
        # A pipe, not a socketpair: the same wake-up without importing socket before programs start.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, (self._drain_wakeup, None))
        self._old_wakeup_fd: int | None = None

    # -- time -------------------------------------------------------------------------------------
    @staticmethod
    def time() -> float:
        return time.monotonic()

    def call_later(self, delay: float, callback: Callback, *args: Any) -> Timer:
        timer = Timer(self.time() + max(0.0, delay), callback, args)
        heapq.heappush(self._timers, (timer.when, next(self._sequence), timer))
        return timer

    def call_soon(self, callback: Callback, *args: Any) -> None:
        self._ready.append((callback, args))

    # -- file descriptors -------------------------------------------------------------------------
    def _set(self, fd: int, reader: Callback | bool | None, writer: Callback | bool | None) -> None:
        """Set the reader and/or writer of ``fd`` (``False``: keep the current one), with one lookup."""
        try:
            key = self._selector.get_key(fd)
            current_reader, current_writer = key.data
        except KeyError:
            key, current_reader, current_writer = None, None, None
        if reader is False:
            reader = current_reader
        if writer is False:
            writer = current_writer
        events = (selectors.EVENT_READ if reader else 0) | (selectors.EVENT_WRITE if writer else 0)
        if key is None:
            if events:
                self._selector.register(fd, events, (reader, writer))
        elif events:
            self._selector.modify(fd, events, (reader, writer))
        else:
            self._selector.unregister(key.fileobj)

    def _writer_of(self, fd: int) -> Callback | None:
        try:
            return self._selector.get_key(fd).data[1]
        except KeyError:
            return None

    def add_reader(self, fd: int, callback: Callback) -> None:
        self._set(fd, callback, False)

    def remove_reader(self, fd: int) -> None:
        self._set(fd, None, False)

    def add_writer(self, fd: int, callback: Callback) -> None:
        self._set(fd, False, callback)

    def remove_writer(self, fd: int) -> None:
        self._set(fd, False, None)

    # -- signals ----------------------------------------------------------------------------------
    def add_signal_handler(self, signum: int, callback: Callback) -> None:
        """Run ``callback(signum)`` from the loop (not from the signal handler) when ``signum`` arrives."""
        if self._old_wakeup_fd is None:
            self._old_wakeup_fd = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        self._signal_handlers[signum] = callback
        # The Python-level handler does nothing: the C handler already wrote the signal number to the
        # wakeup pipe, which wakes ``select`` and is dispatched in ``_drain_wakeup``.
        signal.signal(signum, _ignore_in_handler)

    def _drain_wakeup(self) -> None:
        try:
            data = os.read(self._wake_r, 4096)
        except (BlockingIOError, InterruptedError):
            return
        for signum in dict.fromkeys(data):  # coalesce repeats, keep arrival order
            handler = self._signal_handlers.get(signum)
            if handler is not None:
                handler(signum)

    # -- running ----------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stopping = True

    def run_once(self, max_wait: float | None = None) -> None:
        timeout: float | None = max_wait
        if self._ready:
            timeout = 0
        else:
            while self._timers and self._timers[0][2].cancelled:
                heapq.heappop(self._timers)
            if self._timers:
                due = max(0.0, self._timers[0][0] - self.time())
                timeout = due if timeout is None else min(timeout, due)
        for key, mask in self._selector.select(timeout):
            reader, writer = key.data
            if mask & selectors.EVENT_READ and reader is not None:
                reader()
            # The reader may have closed and unregistered this fd already.
            if mask & selectors.EVENT_WRITE and writer is not None and self._writer_of(key.fd) is writer:
                writer()
        now = self.time()
        while self._timers and self._timers[0][0] <= now:
            _, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                callback, args = timer.callback, timer.args
                timer.cancel()
                callback(*args)
        for _ in range(len(self._ready)):
            callback, args = self._ready.popleft()
            callback(*args)

    def run_forever(self) -> None:
        # A stop requested before the loop ran (a critical program that cannot start during the first
        # load) must still end it: resetting the flag here made the supervisor hang forever.
        while not self._stopping:
            self.run_once()

    def close(self) -> None:
        for signum in self._signal_handlers:
            signal.signal(signum, signal.SIG_DFL)
        if self._old_wakeup_fd is not None:
            signal.set_wakeup_fd(self._old_wakeup_fd)
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)


def _nothing(*args: Any) -> None:
    """What a cancelled or finished timer holds instead of its callback."""


def _ignore_in_handler(signum: int, frame: object) -> None:
    """Placeholder Python handler; the work happens in the loop."""

