"""Whole-tree ownership of a program's processes, with real processes (issue 17 defects 1-3, issue 15
item 4): argv exactly as written, leftovers of the process group and processes that left it (setsid)
stopped before a restart, at ``stop`` and at shutdown, and nothing surviving a SIGKILLed supervisor
that is not PID 1 (the guardian process)."""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path
from typing import Any

import pytest

from .cli_helpers import CliSupervisor, socket_dir
from .helpers import program, programs_config, started, wait_until


@pytest.fixture
def start(tmp_path: Path) -> Any:
    with started(tmp_path) as start:
        yield start


def token() -> str:
    """A sleep duration no other test uses, to find exactly our processes in /proc."""
    return f"{random.randint(1000, 9999)}.{random.randint(100000, 999999)}"


def with_arg(arg: str) -> list[int]:
    """Live (not zombie) processes whose argv contains ``arg``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
        except OSError:
            continue
        if arg.encode() in argv:
            found.append(int(entry))
    return found


def test_argv_is_exactly_as_written_outside_pid_1(start: Any) -> None:
    """Defect 1: ``sleep N`` ran as ``/usr/bin/sleep N`` (setpriv needed a resolved path)."""
    duration = token()
    sup = start(programs_config(program("s", "sleep", duration)))
    sup.wait_ready(1)
    pid = sup.forked_pids("s")[0]

    def cmdline() -> bytes:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read()
    wait_until(lambda: cmdline() != b"")  # this kernel may show it empty for an instant right after exec
    assert cmdline() == b"sleep\0" + duration.encode() + b"\0"
    assert sup.stop() == 0


def test_leftovers_do_not_pile_up_across_restarts_and_go_at_shutdown(start: Any) -> None:
    """Defect 2: ``sleep & ...; exit 1`` with restart: always left one orphan per run, and they
    survived the supervisor. The group's rest and a process that left it (setsid) go before each
    restart."""
    in_group, left_group = token(), token()
    sup = start(programs_config(program("leaky", "sh", "-c", f"sleep {in_group} & setsid sleep {left_group} & "
                                        "sleep 0.3; exit 1", restart="always",
                                        backoff={"initialSeconds": 0.05, "maxSeconds": 0.1})))
    sup.wait_log(r"New program 'leaky' \(\d+\) forked", count=5)
    assert len(with_arg(in_group)) <= 1 and len(with_arg(left_group)) <= 1
    assert sup.stop() == 0
    wait_until(lambda: not with_arg(in_group) and not with_arg(left_group))


def test_setsid_grandchildren_go_with_stop_and_restart_commands(tmp_path: Path) -> None:
    """Issue 15 item 4: a daemonising child (setsid) survived ``stop`` and restarts."""
    daemon = token()
    with socket_dir() as sockets:
        config = programs_config(program("d", "sh", "-c", f"setsid sh -c 'exec sleep {daemon}' & exec sleep 3600"))
        with CliSupervisor(tmp_path, config, (str(sockets / "m.sock"),), "--no-watch", programs=1) as sup:
            wait_until(lambda: len(with_arg(daemon)) == 1)
            first = with_arg(daemon)
            assert "stopped" in sup.text("stop d")
            wait_until(lambda: not with_arg(daemon))
            assert "started" in sup.text("start d")
            wait_until(lambda: len(with_arg(daemon)) == 1)
            second = with_arg(daemon)
            assert second != first
            assert "started" in sup.text("restart d")
            wait_until(lambda: len(with_arg(daemon)) == 1 and with_arg(daemon) != second)


def test_a_sigkilled_supervisor_takes_the_whole_tree_down(start: Any) -> None:
    """Defect 3: only the direct child had the parent-death signal; its children, and a grandchild
    that called setsid, outlived a SIGKILLed supervisor that was not PID 1."""
    main, child, daemon = token(), token(), token()
    sup = start(programs_config(program("t", "sh", "-c", f"sleep {child} & setsid sleep {daemon} & "
                                        f"exec sleep {main}")))
    sup.wait_ready(1)
    wait_until(lambda: all(with_arg(t) for t in (main, child, daemon)))
    os.kill(sup.pid, signal.SIGKILL)
    sup.proc.wait()
    wait_until(lambda: not any(with_arg(t) for t in (main, child, daemon)), timeout=10)


# -- stop order (defect 4) -------------------------------------------------------------------------------
SLOW_TO_STOP = "trap 'sleep 0.4; exit 0' TERM; echo ready; while :; do sleep 0.05; done"


def exit_order(sup: Any, kind: str) -> list[str]:
    return [m.group(1) for m in sup.err.matching(rf"{kind} program '(\w+)' \(\d+\) exited")]


def test_a_reload_stops_dependents_before_what_they_depend_on(start: Any, tmp_path: Path) -> None:
    """Defect 4: a reload restarting db and api (api dependsOn db) stopped both at once. api takes
    0.4 s to stop and db stops at once: only lanes make db's old process exit after api's."""
    def config(tag: str) -> str:
        return programs_config(program("db", "sh", "-c", f"echo {tag}; exec sleep 3600"),
                               program("api", "sh", "-c", SLOW_TO_STOP, tag, dependsOn=["db"]))
    sup = start(config("v1"))
    sup.wait_ready(2)
    sup.out.wait_for(r"^api \| ready$")
    (tmp_path / "programs.yaml").write_text(config("v2"))
    sup.send(signal.SIGHUP)
    sup.wait_log(r"Loading success\.", count=2)
    assert exit_order(sup, "Former") == ["api", "db"]
    db_new = sup.forked_pids("db")[1]
    api_new = sup.forked_pids("api")[1]
    assert api_new > db_new  # api started again after db
    assert sup.stop() == 0


def test_stop_of_a_dependency_stops_its_dependents_first_and_start_brings_them_back(tmp_path: Path) -> None:
    """Defect 4: ``stop db`` left api (dependsOn db) running. Now api stops first and waits in
    STARTING; ``start db`` starts it again once db runs."""
    with socket_dir() as sockets:
        config = programs_config(program("db", "sleep", "3600"),
                                 program("api", "sh", "-c", SLOW_TO_STOP, dependsOn=["db"]))
        with CliSupervisor(tmp_path, config, (str(sockets / "m.sock"),), "--no-watch", programs=2) as sup:
            sup.out.wait_for(r"^api \| ready$")
            answer = sup.text("stop db")
            assert answer.startswith("Program 'db' (")
            assert "stopped (and its dependents api, until it runs again)." in answer
            assert exit_order(sup, "Current") == ["api", "db"]
            assert "STARTING" in sup.text("show programs").split("\napi")[1].split("\n")[0]
            assert "started" in sup.text("start db")
            sup.wait_log(r"New program 'api' \(\d+\) forked", count=2)
