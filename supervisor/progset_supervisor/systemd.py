"""``-Ws``: tell systemd (``Type=notify``) when the programs run, reload and stop, as HAProxy's master does.

The messages are HAProxy 3.2's: ``READY=1``, ``MAINPID=`` and ``STATUS=Ready.`` once the first load
succeeded, ``RELOADING=1`` with ``MONOTONIC_USEC`` when a reload starts, ``READY=1`` again when it
ends (``STATUS=Reload failed!`` if the new config did not load: sd_notify has no failure signal),
``STOPPING=1`` at shutdown. Without ``NOTIFY_SOCKET`` (not started by systemd) nothing is sent.

The supervisor's own log lines mark those moments (``Loading success.``, ``Reloading progset``...),
so the notifier listens to the log rather than adding hooks to the master.
"""

from __future__ import annotations

import os
import socket
import time

from .runtime.log import Logger

READY_MARK = " : Loading success."
RELOAD_MARK = " : Reloading progset"
FAILED_MARK = " : Failed to load the new configuration"
STOP_MARK = " : Exiting Master process"


def notify(message: str, address: str | None = None) -> bool:
    """Send one datagram to ``$NOTIFY_SOCKET`` (``@name`` is an abstract socket); False if there is none."""
    address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    target = "\0" + address[1:] if address.startswith("@") else address
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto(message.encode(), target)
        except OSError:
            return False
    return True


class SystemdNotifier:
    """Turns the supervisor's log lines into sd_notify messages."""

    def __init__(self, address: str) -> None:
        self.address = address

    @classmethod
    def attach(cls, log: Logger) -> SystemdNotifier | None:
        address = os.environ.get("NOTIFY_SOCKET", "")
        if not address:
            return None
        notifier = cls(address)
        log.listeners.append(notifier.on_line)
        return notifier

    def on_line(self, line: str) -> None:
        if line.endswith(READY_MARK):
            notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=Ready.\n", self.address)
        elif RELOAD_MARK in line:
            usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            notify(f"RELOADING=1\nSTATUS=Reloading Configuration.\nMONOTONIC_USEC={usec}\n", self.address)
        elif FAILED_MARK in line:
            notify("READY=1\nSTATUS=Reload failed!\n", self.address)
        elif STOP_MARK in line:
            notify("STOPPING=1", self.address)
