"""What a program that cannot start tells, and a reload that would break a working program (issue 17
defects 7 and 8): the reason is in ``show programs``; a new definition that cannot start leaves the
running process alone, counts the reload as failed and is tried again on the next reload."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from .cli_helpers import CliSupervisor, socket_dir
from .helpers import HTTP_LINE, pid_alive, program, programs_config


def row(sup: CliSupervisor, name: str) -> str:
    return next(line for line in sup.text("show programs").splitlines() if line.split()[:1] == [name])


def column(sup: CliSupervisor, name: str, title: str) -> str:
    lines = sup.text("show programs").splitlines()
    index = lines[0].lstrip("#").split().index(f"<{title}>")
    return next(line.split()[index] for line in lines if line.split()[:1] == [name])


def test_show_programs_says_why_a_program_is_fatal(tmp_path: Path) -> None:
    config = programs_config(program("agent", "/usr/local/bin/agent-v2-nosuch"), program("ok", "sleep", "3600"))
    with socket_dir() as sockets, \
            CliSupervisor(tmp_path, config, (str(sockets / "m.sock"),), "--no-watch", programs=1) as sup:
        line = row(sup, "agent")
        assert line.split()[1] == "FATAL"
        assert line.endswith("cannot execute /usr/local/bin/agent-v2-nosuch: no such file")


def test_a_reload_keeps_a_working_program_when_its_new_definition_cannot_start(tmp_path: Path) -> None:
    good = programs_config(program("api", "sleep", "3600"), program("other", "sleep", "3601"))
    broken = programs_config(program("api", "/usr/local/bin/api-v2-nosuch"), program("other", "sleep", "3601"))
    with socket_dir() as sockets, CliSupervisor(tmp_path, good, (str(sockets / "m.sock"),), "--no-watch",
                                                "--metrics-address", "127.0.0.1:0", programs=2) as sup:
        port = int(sup.wait_log(HTTP_LINE)[0].group(1))
        api = sup.forked_pids("api")[0]
        (tmp_path / "programs.yaml").write_text(broken)
        answer = sup.text("reload")
        assert answer.startswith("Success=0\n--\n")
        assert "Program 'api': the new definition cannot start (cannot execute /usr/local/bin/api-v2-nosuch: " \
               "no such file); keeping the running process" in answer
        assert pid_alive(api) and sup.forked_pids("api") == [api]
        line = row(sup, "api")
        assert line.split()[:2] == ["api", "RUNNING"] and column(sup, "api", "pid") == str(api)
        assert line.endswith("new definition cannot start: cannot execute /usr/local/bin/api-v2-nosuch: no such file")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10) as reply:
            status = json.load(reply)
        assert status["reloads"]["failure"] == 1
        (api_status,) = [p for p in status["programs"] if p["name"] == "api"]
        assert api_status["pid"] == api and "api-v2-nosuch" in api_status["reload_error"]
        assert "[failed: 1]" in sup.text("show proc").splitlines()[1]
        # the same file again: still failing, still running (tried again, not forgotten)
        assert sup.text("reload").startswith("Success=0\n")
        assert pid_alive(api)
        # fixed: the next reload applies it
        (tmp_path / "programs.yaml").write_text(good.replace("3600", "3599"))
        assert sup.text("reload").startswith("Success=1\n")
        sup.wait_log(r"New program 'api' \(\d+\) forked", count=2)
        assert row(sup, "api").split()[1] == "RUNNING" and row(sup, "api").endswith(" -")
