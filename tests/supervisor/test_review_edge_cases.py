"""Edge cases found in review: signals, commands and reloads at bad moments, with real processes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .cli_helpers import CliSupervisor, Conn, socket_dir
from .helpers import DEFAULT_TIMEOUT, pid_alive, program, programs_config, started, wait_until


@pytest.fixture
def run(tmp_path: Path):  # type: ignore[no-untyped-def]
    with started(tmp_path) as start:
        yield start


def exit_code(sup, timeout: float = DEFAULT_TIMEOUT) -> int:  # type: ignore[no-untyped-def]
    """The supervisor's exit code when it exits by itself (no signal sent)."""
    try:
        return sup.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError("supervisor did not exit by itself; last lines:\n"
                             + "\n".join(sup.err.lines[-20:])) from None


def test_critical_fatal_at_start_up_exits_and_starts_nothing_after_it(run) -> None:  # type: ignore[no-untyped-def]
    """A critical program that cannot start ends the supervisor during the first load: the stop asked
    for before the event loop ran must not be lost, and later programs must not be started anyway."""
    sup = run(programs_config(program("crit", "/nonexistent/program", critical=True),
                              program("after", "sleep", "3600")), "--no-watch")
    assert exit_code(sup) == 1
    assert sup.forked_pids("after") == []
    sup.wait_log(r"All programs exited\. Exiting\.\.\. \(1\)")


def test_critical_fatal_on_reload_stops_everything(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A reload adding a critical program that cannot start takes the supervisor down cleanly: the
    programs the same reload would restart or start are stopped, not started after the shutdown began."""
    sup = run(programs_config(program("db", "sleep", "3600"),
                              program("api", "sleep", "3600", dependsOn=["db"])), "--no-watch")
    sup.wait_ready(2)
    pids = sup.forked_pids("db") + sup.forked_pids("api")
    (tmp_path / "programs.yaml").write_text(programs_config(
        program("crit", "/nonexistent/program", critical=True),
        program("db", "sleep", "3600"),
        program("api", "sleep", "3600", dependsOn=["db"]),
        program("extra", "sleep", "3600")))
    sup.send(1)  # SIGHUP
    assert exit_code(sup) == 1
    assert sup.forked_pids("extra") == []
    assert not any(pid_alive(pid) for pid in pids)


SLOW_STOP = ("trap 'echo stopping; sleep 0.5; exit 0' TERM; echo up; while :; do sleep 0.05; done")


@pytest.mark.parametrize("change", ["same", "removed"])
def test_cli_stop_in_progress_survives_a_reload(tmp_path: Path, change: str) -> None:
    """``stop`` on the Master CLI while a reload comes in: the command still gets its answer, and the
    program stays stopped (a stopped program stays stopped across reloads until ``start``)."""
    with socket_dir() as sockets:
        config = programs_config(program("slow", "sh", "-c", SLOW_STOP), program("other", "sleep", "3600"))
        with CliSupervisor(tmp_path, config, (str(sockets / "m.sock"),), "--no-watch", programs=2) as sup:
            sup.out.wait_for(r"^slow \| up$")
            conn = Conn(sup.sock)
            conn.send("stop slow\n")
            sup.out.wait_for(r"^slow \| stopping$")
            if change == "removed":
                (tmp_path / "programs.yaml").write_text(programs_config(program("other", "sleep", "3600")))
            sup.send(1)  # SIGHUP while 'slow' is STOPPING
            answer = conn.read_until(b"\n\n").decode()
            conn.close()
            assert "stopped" in answer, answer
            sup.wait_log(r"Loading success\.", count=2)
            assert len(sup.forked_pids("slow")) == 1
            if change == "same":
                assert "STOPPED" in sup.text("show programs")


def test_config_directory_replaced_is_still_watched(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Tools that write a config by building a new directory and renaming it into place (or an
    operator recreating it) replace the watched directory's inode: later changes must still reload."""
    conf = tmp_path / "conf"
    conf.mkdir()
    sup = run(programs_config(program("a", "sleep", "3600")), name="conf/programs.yaml")
    sup.wait_ready(1)
    conf.rename(tmp_path / "conf.old")
    staged = tmp_path / "conf.new"
    staged.mkdir()
    (staged / "programs.yaml").write_text(programs_config(program("b", "sleep", "3600")))
    staged.rename(conf)
    sup.wait_log(r"New program 'b' \(\d+\) forked")
    (conf / "programs.yaml").write_text(programs_config(program("c", "sleep", "3600")))
    sup.wait_log(r"New program 'c' \(\d+\) forked")
    assert sup.stop() == 0


def test_shutdown_stops_what_an_exited_program_left_in_its_group(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A program that forks a background child and exits (EXITED, restart: never): SIGTERM to the
    supervisor stops every program's process group, so the child must not outlive the supervisor."""
    pidfile = tmp_path / "bg.pid"
    sup = run(programs_config(program("bg", "sh", "-c", f"sleep 300 & echo $! > {pidfile}; echo spawned",
                                      restart="never")), "--no-watch")
    sup.out.wait_for(r"^bg \| spawned$")
    sup.wait_log(r"Current program 'bg' \(\d+\) exited with code 0")
    background = int(pidfile.read_text())
    try:
        assert pid_alive(background)
        assert sup.stop() == 0
        wait_until(lambda: not pid_alive(background))
    finally:
        if pid_alive(background):
            os.kill(background, 9)


def test_program_exit_with_a_grandchild_flooding_the_pipe_does_not_block_the_loop(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The exit of a program whose background child keeps writing to the shared stdout pipe must be
    handled (and the supervisor must still answer SIGTERM): reading "until the pipe is empty" at the
    exit never ended while ``yes`` refilled it."""
    pidfile = tmp_path / "yes.pid"
    sup = run(programs_config(program("spew", "sh", "-c", f"yes & echo $! > {pidfile}; sleep 0.3; exit 1",
                                      restart="never"),
                              program("other", "sleep", "3600")), "--no-watch")
    try:
        sup.wait_log(r"Current program 'spew' \(\d+\) exited with code 1")
        assert sup.stop() == 0
    finally:
        if pidfile.exists() and pid_alive(int(pidfile.read_text())):
            os.kill(int(pidfile.read_text()), 9)


def test_cli_start_during_a_reload_restart_waits_for_the_old_process(tmp_path: Path) -> None:
    """A reload restarts a program only once its old process has exited (so the new one can bind the
    same port); ``start`` on the Master CLI in between must not fork a second process early."""
    with socket_dir() as sockets:
        config = programs_config(program("slow", "sh", "-c", SLOW_STOP))
        with CliSupervisor(tmp_path, config, (str(sockets / "m.sock"),), "--no-watch", programs=1) as sup:
            sup.out.wait_for(r"^slow \| up$")
            sup.send(1)  # SIGHUP: onReload restart
            sup.out.wait_for(r"^slow \| stopping$")
            answer = sup.text("start slow")
            assert "restarts once" in answer, answer
            sup.wait_log(r"New program 'slow' \(\d+\) forked", count=2)
            former = sup.err.matching(r"Former program 'slow'")
            assert former, "the old process must have exited before the new one was forked"
            lines = sup.err.lines
            first_fork = [i for i, line in enumerate(lines) if "New program 'slow'" in line][1]
            assert any("Former program 'slow'" in line for line in lines[:first_fork])
            assert len(sup.forked_pids("slow")) == 2


def test_shutdown_during_a_reload_restart_stops_dependencies_after_the_old_dependent(
        run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """SIGTERM while a reload is replacing a dependent: its old process still runs, so what it depends
    on must stop only after that process has exited (reverse dependency order)."""
    order = tmp_path / "order"
    api = (f"trap 'echo stopping; sleep 0.5; echo api-exit >> {order}; exit 0' TERM; echo up; "
           "while :; do sleep 0.05; done")
    db = f"trap 'echo db-term >> {order}; exit 0' TERM; echo up; while :; do sleep 0.05; done"
    sup = run(programs_config(program("db", "sh", "-c", db, onReload="keep"),
                              program("api", "sh", "-c", api, dependsOn=["db"])), "--no-watch")
    sup.out.wait_for(r"^db \| up$")
    sup.out.wait_for(r"^api \| up$")
    sup.send(1)  # SIGHUP: api is restarted, db kept
    sup.out.wait_for(r"^api \| stopping$")
    assert sup.stop() == 0
    assert order.read_text().split() == ["api-exit", "db-term"]


def state_of(sup: CliSupervisor, name: str) -> str:
    for row in sup.text("show programs").splitlines():
        fields = row.split()
        if fields and fields[0] == name:
            return fields[1]
    raise AssertionError(f"{name} not in show programs")


def test_immediate_restart_waits_for_dependencies(tmp_path: Path) -> None:
    """dependsOn holds for restarts too: the first restart after a run is immediate, but not while a
    program it depends on is down; it then waits in STARTING and starts once the dependency runs."""
    with socket_dir() as sockets:
        config = programs_config(
            program("db", "sh", "-c", "echo up; exec sleep 3600", restart="never"),
            program("api", "sh", "-c", "echo up; exec sleep 3600", dependsOn=["db"]))
        with CliSupervisor(tmp_path, config, (str(sockets / "m.sock"),), "--no-watch", programs=2) as sup:
            db = sup.forked_pids("db")[0]
            os.kill(db, 9)  # db ends for good (restart: never)
            sup.wait_log(rf"Current program 'db' \({db}\) exited")
            api = sup.forked_pids("api")[0]
            os.kill(api, 9)  # api crashes while db is down
            sup.wait_log(rf"Current program 'api' \({api}\) exited")
            assert state_of(sup, "api") == "STARTING"
            assert len(sup.forked_pids("api")) == 1
            sup.text("start db")
            sup.wait_log(r"New program 'api' \(\d+\) forked", count=2)
            assert state_of(sup, "api") == "RUNNING"
