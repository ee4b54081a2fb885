"""Master CLI listeners: accept clients on every ``-S`` socket, enforce the connection limit.

HAProxy's master proxy allows 10 connections and never times them out, so a few stuck clients lock
everybody out (a known outage cause). Here the limit is per socket (``--cli-maxconn``, default 100,
or ``maxconn`` in the ``-S`` spec), so a flood of one socket (a ``user``-level one open to every
container) never locks out another (the ``admin`` one); a client that neither completes a command
nor reads its answer within ``--cli-timeout`` seconds is closed (trickling bytes does not count as
progress); and a client over the limit is told so and closed at once instead of hanging in the
listen backlog.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from ..runtime.acceptor import Acceptor
from .session import Session
from .sockets import SocketSpec, bind, parse_spec, unlink_if_ours

if TYPE_CHECKING:
    from ..core.master import Master
    from ..runtime.loop import Timer

ACCEPT_BATCH = 64
EMFILE_PAUSE = 0.5


class Listener:
    """One bound Master CLI socket and what accepts on it."""

    __slots__ = ("acceptor", "inode", "sessions", "sock", "spec")

    def __init__(self, spec: SocketSpec, sock: socket.socket, inode: int) -> None:
        self.spec = spec
        self.sock = sock
        self.inode = inode
        self.acceptor: Acceptor | None = None
        self.sessions = 0  # open clients of this socket, against its own limit


class CliServer:
    def __init__(self, master: Master, specs: list[SocketSpec], *, maxconn: int = 100,
                 idle_timeout: float = 60.0) -> None:
        if maxconn < 1:
            raise ValueError(f"--cli-maxconn must be at least 1 (got {maxconn})")
        if idle_timeout <= 0:
            raise ValueError(f"--cli-timeout must be positive (got {idle_timeout:g})")
        self.master = master
        self.specs = specs
        self.maxconn = maxconn
        self.idle_timeout = idle_timeout
        self.sessions: set[Session] = set()
        self._listener_of: dict[Session, Listener] = {}  # for each client, the socket whose limit it counts in
        self.listeners: list[Listener] = []
        self.sweep_interval = min(1.0, max(0.05, idle_timeout / 4))
        self._sweep_timer: Timer | None = None
        try:
            for spec in specs:
                sock, inode = bind(spec)
                listener = Listener(spec, sock, inode)
                self.listeners.append(listener)
                listener.acceptor = Acceptor(
                    master.loop, sock, lambda conn, listener=listener: self._new_client(conn, listener),
                    lambda exc, pause, spec=spec: self._paused(spec, exc, pause), batch=ACCEPT_BATCH,
                    pause=EMFILE_PAUSE)
        except BaseException:
            self.close()
            raise
        for spec in specs:
            master.log.notice(f"Master CLI listening on {spec.address} (level {spec.level.label}, "
                              f"mode {spec.mode:04o})")

    @property
    def addresses(self) -> str:
        """``HAPROXY_MASTER_CLI``'s value: listeners in reverse order of the ``-S`` flags, as HAProxy lists them."""
        return ";".join(spec.address for spec in reversed(self.specs))

    def limit(self, spec: SocketSpec) -> int:
        return spec.maxconn if spec.maxconn is not None else self.maxconn

    def _new_client(self, conn: socket.socket, listener: Listener) -> None:
        try:
            limit = self.limit(listener.spec)
            if listener.sessions >= limit:
                self._reject(conn, limit)
                return
            session = Session(self, conn, listener.spec)
            listener.sessions += 1
            self.sessions.add(session)
            self._listener_of[session] = listener
            self._arm_sweep()
        except Exception as exc:  # never let one connection take the loop down
            self.master.log.alert(f"Master CLI: cannot serve a new connection: {exc}")
            conn.close()

    def _arm_sweep(self) -> None:
        if self._sweep_timer is None and self.sessions:
            self._sweep_timer = self.master.loop.call_later(self.sweep_interval, self._sweep)

    def _sweep(self) -> None:
        """Idle timeout for every client; runs only while there are clients, so an idle supervisor sleeps."""
        self._sweep_timer = None
        now = self.master.loop.time()
        for session in list(self.sessions):
            try:
                session.check_idle(now)
            except Exception as exc:
                self.master.log.alert(f"Master CLI: error while checking an idle client: {exc}")
                session.close()
        self._arm_sweep()

    def _paused(self, spec: SocketSpec, exc: OSError, pause: float) -> None:
        self.master.log.warning(f"Master CLI: cannot accept on {spec.address}: {exc.strerror}; "
                                f"pausing for {pause}s")

    def _reject(self, conn: socket.socket, limit: int) -> None:
        try:
            conn.send(f"Too many connections to the master CLI (limit {limit}); try again later.\n"
                      .encode())
        except OSError:
            pass
        conn.close()

    def forget(self, session: Session) -> None:
        self.sessions.discard(session)
        listener = self._listener_of.pop(session, None)
        if listener is not None:
            listener.sessions -= 1

    def close(self) -> None:
        """Stop listening, remove our socket files, disconnect every client."""
        for listener in self.listeners:
            if listener.acceptor is not None:
                listener.acceptor.close()
            listener.sock.close()
            unlink_if_ours(listener.spec.path, listener.inode)
        self.listeners = []
        for session in list(self.sessions):
            session.close()
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None


def start_cli(master: Master, specs: list[str], *, maxconn: int = 100, idle_timeout: float = 60.0) -> CliServer:
    """Bind every ``-S`` socket and export their addresses to the programs (``HAPROXY_MASTER_CLI``)."""
    parsed = [parse_spec(text) for text in specs]
    paths = [spec.path for spec in parsed]
    duplicates = sorted({p for p in paths if paths.count(p) > 1})
    if duplicates:
        raise ValueError(f"-S: the same socket path is given more than once: {', '.join(duplicates)}")
    server = CliServer(master, parsed, maxconn=maxconn, idle_timeout=idle_timeout)
    master.base_env["HAPROXY_MASTER_CLI"] = server.addresses
    master.base_env["PROGSET_MASTER_CLI"] = server.addresses
    return server
