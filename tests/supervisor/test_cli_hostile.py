"""Master CLI against slow, greedy or curious clients (issue 15, items 5 and 6).

Per-socket connection limits, a deadline that trickled bytes do not extend, ``show env`` that keeps
values of secrets to admins, sockets created without a name another user could swap, and
``show programs`` with no programs at all.
"""

from __future__ import annotations

import os
import socket
import stat
import time

import pytest

from progset_supervisor.cli.commands import REDACTED
from progset_supervisor.cli.sockets import parse_spec

from .cli_helpers import SLEEPERS, CliSupervisor, Conn, connect, read_all, socket_dir


def test_maxconn_is_a_socket_option() -> None:
    assert parse_spec("/x.sock,level,user,maxconn,3").maxconn == 3
    assert parse_spec("/x.sock").maxconn is None
    with pytest.raises(ValueError, match=r"-S '/x.sock,maxconn,0': 'maxconn' must be at least 1"):
        parse_spec("/x.sock,maxconn,0")
    with pytest.raises(ValueError, match=r"'maxconn' expects a number \(got 'many'\)"):
        parse_spec("/x.sock,maxconn,many")


def test_a_full_user_socket_leaves_the_admin_socket_alone() -> None:
    with socket_dir() as directory, CliSupervisor(
            directory, SLEEPERS, ["admin.sock", "user.sock,level,user,maxconn,4"], "--cli-maxconn", "6",
            programs=2) as sup:
        admin, user = sup.paths
        held = [Conn(user) for _ in range(4)]
        for conn in held:
            conn.send("echo held\n")
            assert conn.read_until("\n\n") == b"held\n\n"
        refused = connect(user)
        assert read_all(refused) == b"Too many connections to the master CLI (limit 4); try again later.\n"
        refused.close()
        # The admin socket has its own 6, untouched by the user socket's 4.
        admins = [Conn(admin) for _ in range(6)]
        for conn in admins:
            conn.send("show cli level\n")
            assert conn.read_until("\n\n") == b"admin\n\n"
        for conn in held + admins:
            conn.close()


def test_trickling_bytes_does_not_extend_the_deadline() -> None:
    """One byte every 0.1 s never completes a line: closed after --cli-timeout, not kept forever."""
    with socket_dir() as directory, CliSupervisor(directory, SLEEPERS, ["master.sock"], "--cli-timeout", "1",
                                                  programs=2) as sup:
        trickler = connect(sup.sock)
        began = time.monotonic()
        closed_after = None
        while time.monotonic() - began < 15:
            try:
                trickler.send(b"x")
            except (BrokenPipeError, ConnectionResetError):
                closed_after = time.monotonic() - began
                break
            time.sleep(0.1)
        trickler.close()
        assert closed_after is not None, "a trickling client was never closed"
        assert closed_after >= 0.9  # not before its deadline
        # Someone who completes commands in time is served as before.
        conn = Conn(sup.sock)
        for _ in range(3):
            conn.send("echo alive\n")
            assert conn.read_until("\n\n") == b"alive\n\n"
        conn.close()


def test_show_env_redacts_values_below_admin() -> None:
    env = {"DB_PASSWORD": "hunter2", "LANG": "C.UTF-8"}
    with socket_dir() as directory, CliSupervisor(
            directory, SLEEPERS, ["admin.sock", "oper.sock,level,operator"], programs=2, env=env) as sup:
        admin, oper = sup.paths
        assert sup.text("show env DB_PASSWORD", admin) == "DB_PASSWORD=hunter2\n\n"
        assert sup.text("show env DB_PASSWORD", oper) == f"DB_PASSWORD={REDACTED}\n\n"
        assert sup.text("show env LANG", oper) == "LANG=C.UTF-8\n\n"
        assert sup.text("show env HAPROXY_MASTER_CLI", oper).startswith("HAPROXY_MASTER_CLI=unix@")
        everything = sup.text("show env", oper)
        assert "hunter2" not in everything and f"DB_PASSWORD={REDACTED}\n" in everything
        assert "DB_PASSWORD=hunter2\n" in sup.text("show env", admin)


def test_socket_mode_and_no_leftovers_whatever_the_umask() -> None:
    """Born with its mode (no chmod by name), via a private directory that is gone afterwards."""
    with socket_dir() as directory:
        old = os.umask(0)
        try:
            sup = CliSupervisor(directory, SLEEPERS, ["master.sock,mode,600"], programs=2)
        finally:
            os.umask(old)
        with sup:
            info = os.lstat(sup.sock)
            assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
            assert sorted(os.listdir(directory)) == ["master.sock", "programs.yaml"]
            assert sup.text("echo ok") == "ok\n\n"


def test_show_programs_with_no_programs() -> None:
    with socket_dir() as directory, CliSupervisor(directory, "programs: []\n", ["master.sock"]) as sup:
        answer = sup.text("show programs")
        assert answer.startswith("#<name> <state> ")
        assert answer.count("\n") == 2  # the header, then the blank line ending the answer
        # show checks shares the table layout: with nothing to list it answers its header too (its own
        # width computation used to raise TypeError here and empty the answer).
        checks = sup.text("show checks")
        assert checks.startswith("#<program> <check> ")
        assert checks.count("\n") == 2


def test_a_trickled_line_counts_from_its_first_byte_even_between_commands() -> None:
    with socket_dir() as directory, CliSupervisor(directory, SLEEPERS, ["master.sock"], "--cli-timeout", "1",
                                                  programs=2) as sup:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(sup.sock)
        sock.sendall(b"echo one\n")
        assert sock.recv(100) == b"one\n\n"
        began = time.monotonic()
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            while time.monotonic() - began < 15:
                sock.send(b"e")
                time.sleep(0.1)
        sock.close()
