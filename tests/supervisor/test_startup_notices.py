"""What the supervisor says at start-up about its listeners, and how it refuses one it cannot bind."""

from __future__ import annotations

import socket
from pathlib import Path

from .cli_helpers import SLEEPERS, socket_dir
from .helpers import PROJECT, Supervisor, http_get, wait_until, write_config


def test_a_taken_metrics_port_names_the_flag_and_leaves_no_socket_behind(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    address = f"127.0.0.1:{taken.getsockname()[1]}"
    with socket_dir() as directory:
        sock = directory / "master.sock"
        sup = Supervisor(write_config(tmp_path, SLEEPERS), "-S", str(sock), metrics=address)
        assert sup.proc.wait(15) == 1
        sup.stop()
        alerts = [line for line in sup.err.lines if "[ALERT]" in line]
        assert alerts and alerts[-1].endswith(
            f"Cannot start: --metrics-address {address}: Address already in use (another process listens there: "
            "choose another address with --metrics-address, or --metrics-address off)"), sup.err.lines
        assert [p.name for p in directory.iterdir() if ".sock" in p.name] == []  # nor a temporary name
    taken.close()


def test_start_up_says_there_is_no_master_cli_and_where_metrics_listen(tmp_path: Path) -> None:
    sup = Supervisor(write_config(tmp_path, SLEEPERS), metrics="0.0.0.0:0")
    try:
        sup.wait_log(r"No Master CLI: no -S socket was given \(e\.g\. -S /var/run/progset/master\.sock\)")
        sup.wait_log(r"HTTP endpoints on http://0\.0\.0\.0:\d+ ")
        sup.wait_log(r"--metrics-address 0\.0\.0\.0:0 listens on every interface \(the default, for a pod's probes "
                     r"and scrapes\); outside a container use --metrics-address 127\.0\.0\.1:9127 to keep it local")
    finally:
        assert sup.stop() == 0
    local = Supervisor(write_config(tmp_path, SLEEPERS), metrics="127.0.0.1:0")
    try:
        local.wait_ready(2)
        assert not local.err.matching("listens on every interface")
    finally:
        assert local.stop() == 0


def test_a_clean_exit_is_a_notice_and_a_failure_an_alert(tmp_path: Path) -> None:
    config = write_config(tmp_path, """programs:
  - name: once
    command: [sh, -c, "exit 0"]
    restart: never
  - name: broken
    command: [sh, -c, "exit 3"]
    restart: never
""")
    sup = Supervisor(config)
    try:
        sup.wait_log(r"\[NOTICE\]   \(\d+\) : Current program 'once' \(\d+\) exited with code 0 \(Exit\)")
        sup.wait_log(r"\[ALERT\]    \(\d+\) : Current program 'broken' \(\d+\) exited with code 3 \(Exit\)")
    finally:
        sup.stop()


def test_the_bundled_example_is_ready_while_its_programs_run() -> None:
    """`make run`'s example: no ALERT for `hello`'s clean exit, and /readyz 200 once all run."""
    sup = Supervisor(PROJECT / "examples/haproxy-programs.cfg", metrics="127.0.0.1:0")
    try:
        port = int(sup.wait_log(r"HTTP endpoints on http://127\.0\.0\.1:(\d+)")[0].group(1))
        sup.out.wait_for(r"flaky \| flaky: will crash in 20s")
        sup.wait_log(r"\[NOTICE\]   \(\d+\) : Current program 'hello' \(\d+\) exited with code 0")
        wait_until(lambda: http_get(port, "/readyz").status == 200)
        assert not sup.err.matching(r"\[ALERT\]")
    finally:
        sup.stop()


def test_log_timestamps_start_every_text_line_with_the_utc_time(tmp_path: Path) -> None:
    config = write_config(tmp_path, 'programs:\n  - name: talker\n    command: [sh, -c, "echo hi; exec sleep 3600"]\n')
    stamp = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "
    sup = Supervisor(config, "--log-timestamps")
    try:
        sup.wait_log(stamp + r"\[NOTICE\]   \(\d+\) : New program 'talker' \(\d+\) forked$")
        sup.out.wait_for(stamp + r"talker \| hi$")
    finally:
        assert sup.stop() == 0
    plain = Supervisor(config)
    try:
        plain.wait_log(r"^\[NOTICE\]   \(\d+\) : New program 'talker'")
        plain.out.wait_for(r"^talker \| hi$")
    finally:
        assert plain.stop() == 0


def test_a_second_ctrl_c_kills_programs_that_ignore_the_stop(tmp_path: Path) -> None:
    import signal

    config = write_config(tmp_path, """programs:
  - name: stubborn
    command: [sh, -c, "trap '' TERM INT; echo up; while :; do sleep 1; done"]
    stopTimeoutSeconds: 600
""")
    sup = Supervisor(config)
    try:
        sup.out.wait_for(r"stubborn \| up")
        sup.send(signal.SIGINT)
        sup.wait_log(r"Exiting Master process\.\.\. \(SIGINT\)")
        sup.send(signal.SIGINT)
        sup.wait_log(r"SIGINT received again while stopping: sending SIGKILL to 1 program process group\(s\)")
        assert sup.proc.wait(15) == 0  # long before the 600 s stop timeout
    finally:
        sup.kill()
