"""``-S`` sockets on disk: options, parent directories, stale and live sockets, cleanup, bad specs."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys

from .cli_helpers import SLEEPERS, CliSupervisor, exchange, socket_dir
from .helpers import write_config


def run_failing(config: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "progset_supervisor", "-f", config, "--metrics-address", "off",
                           *args], capture_output=True, text=True, timeout=20)


def test_parent_directory_is_created_and_socket_removed_at_exit() -> None:
    with socket_dir() as directory:
        path = directory / "a" / "b" / "master.sock"
        sup = CliSupervisor(directory, SLEEPERS, [f"{path},mode,640,uid,65534,gid,65534"], programs=2)
        info = os.stat(path)
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o640
        if os.geteuid() == 0:
            assert (info.st_uid, info.st_gid) == (65534, 65534)
        assert exchange(str(path), b"show cli level\n") == b"admin\n\n"
        assert sup.stop() == 0
        assert not path.exists()
        assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_stale_socket_is_replaced() -> None:
    with socket_dir() as directory:
        path = directory / "master.sock"
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(str(path))
        stale.close()  # the file stays, nobody listens: what a SIGKILLed supervisor leaves
        with CliSupervisor(directory, SLEEPERS, ["master.sock"], programs=2) as sup:
            assert sup.text("show cli level") == "admin\n\n"


def test_live_socket_is_refused_and_left_alone() -> None:
    with socket_dir() as directory, CliSupervisor(directory, SLEEPERS, ["master.sock"], programs=2) as first:
        config = write_config(directory, SLEEPERS, "second.yaml")
        result = run_failing(str(config), "-S", first.sock)
        assert result.returncode == 1
        assert f"Master CLI socket {first.sock} is in use by a running process" in result.stderr
        assert "New program" not in result.stderr  # refused before any program started
        assert first.text("show cli level") == "admin\n\n"


def test_non_socket_file_is_not_replaced() -> None:
    with socket_dir() as directory:
        path = directory / "master.sock"
        path.write_text("precious")
        config = write_config(directory, SLEEPERS)
        result = run_failing(str(config), "-S", str(path))
        assert result.returncode == 1 and "exists and is not a socket" in result.stderr
        assert path.read_text() == "precious"


def test_bad_specs_fail_at_start() -> None:
    with socket_dir() as directory:
        config = str(write_config(directory, SLEEPERS))
        for spec, message in ((f"{directory}/m.sock,levle,user", "unknown keyword 'levle'"),
                              (f"{directory}/m.sock,level,root", "'level' only supports"),
                              ("127.0.0.1:9999", "only Unix socket paths are supported")):
            result = run_failing(config, "-S", spec)
            assert result.returncode == 1 and message in result.stderr, result.stderr
        twice = f"{directory}/m.sock"
        result = run_failing(config, "-S", twice, "-S", twice)
        assert result.returncode == 1 and "more than once" in result.stderr
        result = run_failing(config, "-S", f"{directory}/m.sock", "--cli-maxconn", "0")
        assert result.returncode == 1 and "--cli-maxconn must be at least 1" in result.stderr
        assert not (directory / "m.sock").exists()
