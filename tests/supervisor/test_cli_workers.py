"""Workers behind ``@``: a real HAProxy (Debian's 2.6, ``-db``, with a ``stats socket``) runs as a program
that declares its runtime socket, and the Master CLI forwards to it as HAProxy's master forwards to its
workers: ``echo '@1 show info' | socat master.sock -`` works again."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator

import pytest

from .cli_helpers import CliSupervisor, socket_dir
from .helpers import wait_until
from .peers import HAPROXY_WORKER_CFG, require

PROGRAMS = """\
global
\tmaster-worker
\texpose-deprecated-directives

program haproxy
\tcommand {haproxy} -db -f {dir}/haproxy.cfg
\truntime-socket {dir}/stats.sock
\tno option start-on-reload

program plain
\tcommand sleep 3600

program ghost
\tcommand sleep 3600
\truntime-socket unix@{dir}/nobody-listens.sock
"""


@pytest.fixture(scope="module")
def sup() -> Iterator[CliSupervisor]:
    haproxy = require("haproxy")
    with socket_dir() as directory:
        (directory / "haproxy.cfg").write_text(HAPROXY_WORKER_CFG.format(dir=directory))
        with CliSupervisor(directory, PROGRAMS.format(dir=directory, haproxy=haproxy),
                           ["master.sock", "user.sock,level,user", "operator.sock,level,operator"],
                           programs=3, config_name="progset.cfg") as started:
            wait_until(lambda: (directory / "stats.sock").exists())
            yield started


def pids(sup: CliSupervisor) -> dict[str, int]:
    rows = sup.text("show proc").splitlines()
    return {row.split()[1]: int(row.split()[0]) for row in rows if row and row[0].isdigit()}


def test_show_proc_lists_programs_with_a_runtime_socket_as_workers(sup: CliSupervisor) -> None:
    lines = sup.text("show proc").split("\n")
    assert lines[2] == "# workers"
    assert re.fullmatch(r"\d+ +haproxy +0 +0d00h00m\d\ds +- +", lines[3]) and len(lines[3]) == 79
    assert re.fullmatch(r"\d+ +ghost +0 +\S+ +- +", lines[4])
    assert lines[5] == "# programs" and lines[6].split()[1] == "plain" and lines[7:] == ["", ""]


def test_at_one_show_info_reaches_haproxy(sup: CliSupervisor) -> None:
    info = sup.text("@1 show info")
    assert info.startswith("Name: HAProxy\nVersion: 2.6")
    assert f"\nPid: {pids(sup)['haproxy']}\n" in info
    assert info.endswith("\n\n")


def test_at_bang_pid_and_unknown_targets(sup: CliSupervisor) -> None:
    processes = pids(sup)
    assert sup.text(f"@!{processes['haproxy']} show cli level") == "admin\n\n"
    # a program without a runtime socket has no CLI, as in HAProxy
    assert sup.text(f"@!{processes['plain']} show cli level") == (
        f"Can't find the target PID matching the prefix '@!{processes['plain']}'\n")
    assert sup.text("@3 show info") == "Can't find the target PID matching the prefix '@3'\n"
    assert sup.text("@2 show info") == "Can't connect to the target CLI!\n"  # 'ghost': nothing listens
    assert sup.text("@master show cli level") == "admin\n\n"


def test_default_target_and_prompt(sup: CliSupervisor) -> None:
    pid = pids(sup)["haproxy"]
    out = sup.cli("prompt\n@1\nshow cli level\nshow version\n@\nshow cli level\n").decode()
    # '@1' alone: the worker answers (its own version), the prompt shows its pid; '@' goes back to the master
    assert out.startswith(f"master> {pid}> admin\n\n{pid}> 2.6") and out.endswith(f"{pid}> master> admin\n\nmaster> ")


def test_session_level_is_applied_to_the_worker(sup: CliSupervisor) -> None:
    assert sup.text("@1 show cli level", sup.paths[1]) == "user\n\n"
    assert sup.text("@1 show cli level", sup.paths[2]) == "operator\n\n"
    assert sup.cli("@@1 show cli level\n", sup.paths[1]) == b"user\n\n"  # '@@' too (HAProxy's 2026 fix)
    denied = sup.text("@1 disable frontend fe", sup.paths[1])
    assert "Permission denied" in denied


def test_bidirectional_at_at(sup: CliSupervisor) -> None:
    assert sup.cli("@@1 show cli level\n") == b"admin\n\n"
    assert sup.cli("@@1\nshow cli level\n") == b"admin\n\n"  # alone: the next line goes to the worker
    # with the prompt on, the worker's own interactive mode (HAProxy 2.6 prints '> ')
    assert sup.cli("prompt\n@@1\nshow cli level\nquit\n").startswith(b"master> \n> admin\n\n> ")


def test_show_proc_debug_columns(sup: CliSupervisor) -> None:
    lines = sup.text("show proc debug").split("\n")
    assert lines[0].endswith("\t\t <ipc_fd[0]>     <ipc_fd[1]>    ")
    assert lines[1].endswith("\t\t -1              -1             ")
    assert lines[3].endswith("\t\t -1              -1             ")  # a worker row
    assert "\t" not in lines[6]  # program rows have no ipc columns, as in HAProxy 3.1+


def test_forwarding_keeps_the_master_responsive_and_a_dead_worker_is_refused(sup: CliSupervisor) -> None:
    pid = pids(sup)["haproxy"]
    assert sup.text("show cli level") == "admin\n\n"
    os.kill(pid, signal.SIGSTOP)  # accepts (kernel backlog) but never answers
    try:
        from .cli_helpers import connect

        stuck = connect(sup.sock)
        stuck.sendall(b"@1 show info\n")
        assert sup.text("show cli level") == "admin\n\n"  # other clients are served meanwhile
        stuck.close()
    finally:
        os.kill(pid, signal.SIGCONT)
    assert sup.text("@1 show cli level") == "admin\n\n"


def test_no_programs_header_without_programs_as_haproxy_3_1(sup: CliSupervisor) -> None:
    assert sup.text("stop plain").startswith("Program 'plain'")
    try:
        out = sup.text("show proc")
        assert "# workers\n" in out and "# programs" not in out  # 2.6-3.0 printed an empty '# programs'
    finally:
        assert sup.text("start plain").startswith("Program 'plain' started")
