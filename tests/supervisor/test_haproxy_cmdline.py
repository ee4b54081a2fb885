"""The command line HAProxy users type, and what a running supervisor does with HAProxy configs.

Real supervisors, real programs, a real datagram socket standing in for systemd's NOTIFY_SOCKET.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import Supervisor, wait_until


def _run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "progset_supervisor", *argv], capture_output=True, text=True,
                          timeout=30, env={**os.environ, **(env or {})})


@pytest.fixture
def sups():
    started: list[Supervisor] = []
    yield started
    for sup in started:
        sup.kill()


ENV_CONFIG = """\
global
\tmaster-worker
\texpose-deprecated-directives
\tsetenv GREETING "hello world"
\tpresetenv PROGSET_TEST_KEPT from-config
\tunsetenv PROGSET_TEST_DROPPED
.notice "greeting is $GREETING"

program spoe_agent
\tcommand sh -c "echo \\"env: $GREETING|${PROGSET_TEST_KEPT}|${PROGSET_TEST_DROPPED-gone}|$HAPROXY_MWORKER\\";\
 echo cfgfiles=\\$HAPROXY_CFGFILES; exec sleep 1000"
"""


def test_global_env_reaches_programs_and_show_env_and_reload_replays_it(tmp_path: Path, sups) -> None:
    config = tmp_path / "haproxy.cfg"
    config.write_text(ENV_CONFIG)
    sock = tmp_path / "master.sock"
    sup = Supervisor(config, "-W", "-S", str(sock),
                     env={"PROGSET_TEST_KEPT": "from-env", "PROGSET_TEST_DROPPED": "x"})
    sups.append(sup)
    sup.out.wait_for(r"^spoe_agent \| env: hello world\|from-env\|gone\|1$")
    sup.out.wait_for(rf"^spoe_agent \| cfgfiles={config}$")  # HAProxy's HAPROXY_CFGFILES
    sup.wait_log(r"\[NOTICE\]   \(\d+\) : config : parsing \[.*haproxy.cfg:7\]: 'greeting is hello world'\.")
    from .cli_helpers import exchange

    assert exchange(str(sock), b"show env GREETING\n") == b"GREETING=hello world\n\n"
    assert exchange(str(sock), b"show env PROGSET_TEST_DROPPED\n") == b"Variable not found\n\n"
    assert b"spoe_agent" in exchange(str(sock), b"show proc\n")  # the name as written
    # without the setenv, a reload gives the programs the starting environment back
    without = ENV_CONFIG.replace('\tsetenv GREETING "hello world"\n', "")
    config.write_text(without.replace("$GREETING", "${GREETING-none}"))
    sup.wait_log(r"Loading success\.", count=2)
    sup.out.wait_for(r"^spoe_agent \| env: none\|from-env\|gone\|1$")
    assert exchange(str(sock), b"show env GREETING\n") == b"Variable not found\n\n"
    assert sup.stop() == 0


def test_ws_tells_systemd_ready_reloading_and_stopping(tmp_path: Path, sups) -> None:
    notify = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify))
    listener.settimeout(20)
    config = tmp_path / "haproxy.cfg"
    config.write_text("program p\n\tcommand sleep 1000\n")
    sup = Supervisor(config, "-Ws", "--no-watch", env={"NOTIFY_SOCKET": str(notify)})
    sups.append(sup)
    try:
        ready = listener.recv(4096).decode()
        assert ready == f"READY=1\nMAINPID={sup.pid}\nSTATUS=Ready.\n"
        os.kill(sup.pid, signal.SIGUSR2)
        reloading = listener.recv(4096).decode()
        assert reloading.startswith("RELOADING=1\nSTATUS=Reloading Configuration.\nMONOTONIC_USEC=")
        assert listener.recv(4096).decode().startswith("READY=1\n")
        config.write_text("program p\n\tfrobnicate\n")
        os.kill(sup.pid, signal.SIGHUP)
        assert listener.recv(4096).decode().startswith("RELOADING=1\n")
        assert listener.recv(4096).decode() == "READY=1\nSTATUS=Reload failed!\n"
        sup.proc.send_signal(signal.SIGTERM)
        assert listener.recv(4096).decode() == "STOPPING=1"
        assert sup.proc.wait(20) == 0
    finally:
        listener.close()


def test_w_db_and_q_are_accepted_d_sf_st_refused_clearly(tmp_path: Path) -> None:
    config = tmp_path / "haproxy.cfg"
    config.write_text("global\n\tmaster-worker\n.notice \"hi\"\nprogram p\n\tcommand sleep 1\n")
    checked = _run("-W", "-db", "-c", "-f", str(config))
    assert checked.returncode == 0 and checked.stdout.startswith("Configuration file is valid (1 programs")
    assert "config : parsing [" in checked.stderr  # the .notice
    quiet = _run("-W", "-q", "-c", "-f", str(config))
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""
    daemon = _run("-D", "-f", str(config))
    assert daemon.returncode == 1
    assert "-D (daemon mode) is not supported: progset stays in the foreground" in daemon.stderr
    for flag in ("-sf", "-st"):
        handover = _run("-W", "-f", str(config), flag, "123", "456")
        assert handover.returncode == 1
        assert f"{flag} hands HAProxy's listening sockets over from old processes" in handover.stderr
        assert "kill -USR2 <pid>" in handover.stderr
    bad = _run("-c", "--haproxy-version", "x.y", "-f", str(config))
    assert bad.returncode == 1 and "--haproxy-version: invalid HAProxy version 'x.y'" in bad.stderr


def test_diag_messages_only_with_dd(tmp_path: Path) -> None:
    config = tmp_path / "haproxy.cfg"
    config.write_text('.diag "deep detail"\nprogram p\n\tcommand sleep 1\n')
    assert "deep detail" not in _run("-c", "-f", str(config)).stderr
    assert "[DIAG]     (" in _run("-c", "-dD", "-f", str(config)).stderr


def test_several_f_start_every_program_and_watch_each_file(tmp_path: Path, sups) -> None:
    first = tmp_path / "haproxy.cfg"
    first.write_text("global\n\tsetenv WHO second-file\nprogram one\n\tcommand sleep 1000\n")
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    (conf_d / "two.cfg").write_text('program two\n\tcommand sh -c "echo I am $WHO; exec sleep 1000"\n')
    sup = Supervisor(first, "-f", str(conf_d))
    sups.append(sup)
    sup.wait_ready(2)
    sup.out.wait_for(r"^two \| I am second-file$")
    (conf_d / "three.cfg").write_text("program three\n\tcommand sleep 1000\n")
    sup.wait_log(r"New program 'three' \(\d+\) forked")
    wait_until(lambda: sup.proc.poll() is None)


def test_failed_reload_answers_with_haproxys_parsing_wording(tmp_path: Path, sups) -> None:
    from .cli_helpers import exchange

    config = tmp_path / "haproxy.cfg"
    config.write_text("program p\n\tcommand sleep 1000\n")
    sock = tmp_path / "master.sock"
    sup = Supervisor(config, "--no-watch", "-S", str(sock))
    sups.append(sup)
    sup.wait_ready(1)
    config.write_text("program p\n\tcommand sleep 1000\n\tfrobnicate\n")
    answer = exchange(str(sock), b"reload\n", timeout=30).decode()
    assert answer.startswith("Success=0\n--\n")
    assert f"config : parsing [{config}:3]: unknown keyword 'frobnicate' in 'program' section" in answer
    assert exchange(str(sock), b"prompt\n").decode() == "master[ReloadFailed]> "
