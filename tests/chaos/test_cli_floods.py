"""Issue 15.5: slow or greedy clients of one Master CLI socket cannot lock out another.

The ``level,user`` socket (shared with application containers) is flooded with idle connections and
with clients trickling one byte at a time, re-opened as soon as they are closed. The admin socket
answers throughout, the user socket's trickling clients are closed by the deadline (bytes do not
extend it), and programs keep being restarted.
"""

from __future__ import annotations

import socket
import time

import pytest

from ..supervisor.cli_helpers import CliSupervisor, socket_dir
from .tools import Flood, assert_latency, cli, record, summary

CONFIG = """\
programs:
  - name: steady
    command: [sleep, "3600"]
  - name: crasher
    command: [sh, -c, "sleep 0.2; exit 1"]
    restart: always
    backoff: {initialSeconds: 0.1, maxSeconds: 0.2}
"""
USER_MAXCONN = 20
FLOOD_SECONDS = 8.0


def trickle(sock: socket.socket, n: int) -> None:
    sock.send(b"s")  # "sssss...": never a newline


def restarts(answer: bytes) -> int:
    lines = answer.decode().splitlines()
    column = lines[0].lstrip("#").split().index("<restarts>")  # the columns grow with features
    row = next(line for line in lines if line.startswith("crasher "))
    return int(row.split()[column])


@pytest.mark.parametrize(("kind", "feed"), [("idle", None), ("trickle", trickle)])
def test_admin_socket_answers_while_the_user_socket_is_flooded(kind: str, feed) -> None:  # type: ignore[no-untyped-def]
    with socket_dir() as directory, CliSupervisor(
            directory, CONFIG, ["admin.sock", f"user.sock,level,user,maxconn,{USER_MAXCONN}"],
            "--cli-timeout", "2", programs=2) as sup:
        admin, user = sup.paths
        with Flood(user, 100, feed, interval=0.2) as flood:
            time.sleep(1)
            _, first = cli(admin, "show programs")
            refused = 0
            times = []
            began = time.monotonic()
            while time.monotonic() - began < FLOOD_SECONDS:
                took, answer = cli(admin, "show programs")
                assert answer.startswith(b"#<name>") and b"steady" in answer, answer
                times.append(took)
                try:
                    _, answer = cli(user, "show cli level", timeout=2)
                    refused += answer.startswith(b"Too many connections to the master CLI (limit 20)")
                except OSError:
                    refused += 1
                time.sleep(0.2)
            _, last = cli(admin, "show programs")
            opened = flood.opened
        record(f"cli_{kind}_flood_of_user_socket", connections=100, connections_opened=opened,
               user_socket_refusals=refused, admin=summary(times))
        assert refused > 0  # the flood did fill the user socket: its own limit, not the admin one's
        assert restarts(last) > restarts(first)  # supervision went on
        if kind == "trickle":
            assert opened > 100  # tricklers were closed by the deadline and came back
        assert_latency("admin socket under a user-socket flood", times)
