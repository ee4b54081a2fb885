"""Every Master CLI command against a real supervisor, byte for byte: answers, levels, prompts, splitting."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from progset_supervisor import __version__
from progset_supervisor.cli.commands import FIXED_HELP

from .cli_helpers import CliSupervisor, Conn, exchange, program_pid, socket_dir
from .helpers import wait_until

CONFIG = """\
programs:
  - name: alpha
    command: [sleep, "3600"]
  - name: beta
    command: [sleep, "3600"]
  - name: talker
    command: [sh, -c, "for i in 1 2 3 4 5; do echo line$i; done; echo oops >&2; exec sleep 3600"]
"""
UPTIME = r"\d+d\d\dh\d\dm\d\ds"
HELP_LINES = [
    "  @!<pid>                                 : send a command to the <pid> process\n",
    "  @<relative pid>                         : send a command to the <relative pid> process\n",
    "  @master                                 : send a command to the master process\n",
    "  echo <text>                             : print text to the output\n",
    "  hard-reload                             : reload and restart every program, whatever its onReload\n",
    "  operator                                : lower the level of the current CLI session to operator\n",
    "  reload                                  : reload the configuration and apply it to the programs\n",
    "  restart <name>                          : stop a program, then start it again\n",
    "  show checks [<name>]                    : state, last result and last failure of the health checks\n",
    "  show cli level                          : display the level of the current CLI session\n",
    "  show cli sockets                        : dump list of cli sockets\n",
    "  show env [var]                          : dump environment variables known to the process\n",
    "  show info                               : report information about the supervisor\n",
    "  show logs <name> [<lines>]              : show the last output lines of a program\n",
    "  show proc                               : show processes status\n",
    "  show programs                           : state, ready, pid, restarts, last exit, check of every program\n",
    "  show startup-logs                       : report logs emitted during the last load or reload\n",
    "  show version                            : show version of the current process\n",
    "  signal <name> <signal>                  : send a signal (e.g. SIGHUP) to a program\n",
    "  start <name>                            : start a stopped program\n",
    "  stop <name>                             : stop a program; it stays stopped until 'start'\n",
    "  user                                    : lower the level of the current CLI session to user\n",
]
HELP = "The following commands are valid at this level:\n" + "".join(HELP_LINES) + FIXED_HELP + "\n"
OPERATOR_COMMANDS = ["show proc", "show env", "show env HOME", "show startup-logs", "show programs",
                     "show logs alpha", "start alpha", "stop alpha", "restart alpha", "signal alpha SIGHUP",
                     "reload", "hard-reload"]


@pytest.fixture(scope="module")
def sup() -> Iterator[CliSupervisor]:
    with socket_dir() as directory, CliSupervisor(
            directory, CONFIG, ["master.sock", "user.sock,level,user", "oper.sock,level,operator,mode,600"],
            programs=3) as supervisor:
        wait_until(lambda: "line5" in supervisor.text("show logs talker"))
        yield supervisor


def pid_of(sup: CliSupervisor, name: str) -> int:
    return sup.forked_pids(name)[-1]


def test_show_proc_exact_layout(sup: CliSupervisor) -> None:
    out = sup.text("show proc")
    expected = (
        re.escape(f"#{'<PID>':<14} {'<type>':<15} {'<reloads>':<15} {'<uptime>':<15} {'<version>':<15}\n")
        + re.escape(f"{sup.pid:<15} {'master':<15} {'0 [failed: 0]':<15} ") + UPTIME + " +"
        + re.escape(f" {__version__:<15}\n# workers\n# programs\n")
        + "".join(re.escape(f"{pid_of(sup, n):<15} {n:<15} {'0':<15} ") + UPTIME + re.escape(f"     {'-':<15}\n")
                  for n in ("alpha", "beta", "talker"))
        + "\n")
    assert re.fullmatch(expected, out), out


def test_show_proc_only_takes_debug(sup: CliSupervisor) -> None:
    assert sup.text("show proc debug").startswith("#<PID>")
    assert sup.text("show proc x") == "'show proc' only supports 'debug' as argument\n\n"


def test_help_exact(sup: CliSupervisor) -> None:
    assert sup.text("help") == HELP
    # HAProxy lists every command whatever the level: the check happens when a command runs.
    assert sup.text("help", sup.paths[1]) == HELP


def test_help_with_words(sup: CliSupervisor) -> None:
    assert sup.text("help show cli") == ("The following commands are valid at this level:\n" + HELP_LINES[9]
                                         + HELP_LINES[10] + FIXED_HELP + "\n")
    assert sup.text("help prompt") == "The following commands are valid at this level:\n" + FIXED_HELP + "\n"


def test_unknown_command_suggests(sup: CliSupervisor) -> None:
    out = sup.text("show prgrams")
    assert out.startswith("Unknown command: 'show', but maybe one of the following ones is a better match:\n"
                          "  show programs ")
    assert out.endswith(FIXED_HELP + "\n")
    out = sup.text("stpo alpha")
    assert out.startswith("Unknown command: 'stpo', but maybe one of the following ones is a better match:\n")
    assert HELP_LINES[20] in out


def test_blank_lines_answer_a_bare_newline_as_haproxy_3(sup: CliSupervisor) -> None:
    # HAProxy 3.2.0, verified: "\n\nshow cli level\n" -> "\n\nadmin\n\n" (2.6 printed its whole usage text)
    assert sup.cli(b"\n\nshow cli level\n") == b"\n\nadmin\n\n"
    assert sup.cli(b"prompt\n\n") == b"master> \nmaster> "


def test_simple_answers(sup: CliSupervisor) -> None:
    assert sup.text("show version") == f"{__version__}\n\n"
    assert sup.text("echo hello   world") == "hello world\n\n"
    assert sup.text("echo") == "\n\n"
    assert sup.text("show cli level") == "admin\n\n"
    assert sup.text("show cli level", sup.paths[1]) == "user\n\n"
    assert sup.text("show cli level", sup.paths[2]) == "operator\n\n"
    assert sup.text("show cli sockets") == ("# socket lvl processes\n"
                                            f"unix@{sup.paths[0]} admin all\n"
                                            f"unix@{sup.paths[1]} user all\n"
                                            f"unix@{sup.paths[2]} operator all\n\n")


def test_show_env(sup: CliSupervisor) -> None:
    addresses = ";".join(f"unix@{p}" for p in reversed(sup.paths))
    assert sup.text("show env HAPROXY_MASTER_CLI") == f"HAPROXY_MASTER_CLI={addresses}\n\n"
    assert sup.text("show env PROGSET_MASTER_CLI") == f"PROGSET_MASTER_CLI={addresses}\n\n"
    assert sup.text("show env NO_SUCH_VARIABLE_X") == "Variable not found\n\n"
    full = sup.text("show env")
    assert f"\nHAPROXY_MASTER_CLI={addresses}\n" in full and "\nHAPROXY_MWORKER=1\n" in full
    assert full.endswith("\n\n") and all("=" in line for line in full.splitlines()[:-1])


def test_programs_see_the_cli_addresses(sup: CliSupervisor) -> None:
    with open(f"/proc/{pid_of(sup, 'alpha')}/environ", "rb") as fh:
        environ = fh.read().split(b"\0")
    addresses = ";".join(f"unix@{p}" for p in reversed(sup.paths)).encode()
    assert b"HAPROXY_MASTER_CLI=" + addresses in environ and b"HAPROXY_MWORKER=1" in environ


def test_show_startup_logs(sup: CliSupervisor) -> None:
    out = sup.text("show startup-logs")
    lines = out.split("\n")
    assert out.endswith("Loading success.\n\n")
    assert all(re.fullmatch(r"\[(NOTICE|WARNING|ALERT)\] +\(\d+\) : .*", line) and line.index("(") == 11
               for line in lines[:-2]), out
    assert any(f"New program 'alpha' ({pid_of(sup, 'alpha')}) forked" in line for line in lines)


def test_show_programs(sup: CliSupervisor) -> None:
    out = sup.text("show programs")
    rows = out.split("\n")
    assert rows[0].split() == ["#<name>", "<state>", "<ready>", "<pid>", "<uptime>", "<restarts>", "<last-exit>",
                               "<backoff>", "<on-reload>", "<last-check>", "<reason>"]
    for row, name in zip(rows[1:4], ("alpha", "beta", "talker"), strict=True):
        fields = row.split()
        assert fields[:4] == [name, "RUNNING", "yes", str(pid_of(sup, name))]
        assert re.fullmatch(UPTIME, fields[4]) and fields[5:] == ["0", "-", "-", "restart", "-", "-"]
    assert rows[4:] == ["", ""]
    assert {row.index(row.split()[1]) for row in rows[:4]} == {len("#<name>") + 1}  # aligned columns


def test_show_logs(sup: CliSupervisor) -> None:
    assert sup.text("show logs talker 2") == "line5\n[stderr] oops\n\n"
    assert sup.text("show logs talker").startswith("line1\nline2\n")
    assert sup.text("show logs nosuch") == "No such program 'nosuch'.\n\n"
    assert sup.text("show logs talker x") == "'show logs' expects a positive number of lines (got 'x')\n\n"
    assert sup.text("show logs") == "Usage: show logs <name> [<lines>]\n\n"


def test_show_info(sup: CliSupervisor) -> None:
    info = dict(line.split(": ", 1) for line in sup.text("show info").splitlines() if line)
    assert info["Name"] == "progset-supervisor" and info["Version"] == __version__
    assert info["Pid"] == str(sup.pid) and info["Programs"] == "3" and info["Running"] == "3"
    assert info["Config"] == str(sup.config) and info["Config_hash"].startswith("sha256:")
    assert info["Maxconn"] == "100" and info["CurrConns"] == "1" and info["Reloads"] == "0"


def test_levels_user_socket(sup: CliSupervisor) -> None:
    user = sup.paths[1]
    for command in OPERATOR_COMMANDS:
        assert sup.text(command, user) == "Permission denied\n\n", command
    for command in ("show version", "echo x", "show cli level", "show info", "show cli sockets", "help"):
        assert not sup.text(command, user).startswith("Permission denied"), command
    assert sup.text("operator;echo never", user) == "Permission denied!\n"
    assert sup.text("expert-mode on;echo never", user) == "Permission denied!\n"
    assert sup.text("user;show cli level", user) == "user\n\n"


def test_levels_operator_socket(sup: CliSupervisor) -> None:
    oper = sup.paths[2]
    assert sup.text("show proc", oper).startswith("#<PID>")
    assert sup.text("show env HAPROXY_MWORKER", oper) == "HAPROXY_MWORKER=1\n\n"
    assert sup.text("operator;show cli level", oper) == "operator\n\n"
    assert sup.text("expert-mode on", oper) == "Permission denied!\n"
    assert sup.text("user;show proc;operator;echo never", oper) == "Permission denied\n\nPermission denied!\n"


def test_levels_only_go_down(sup: CliSupervisor) -> None:
    assert sup.text("operator;show cli level;show startup-logs").startswith("operator\n\n[NOTICE]")
    assert sup.text("user;show cli level;show proc") == "user\n\nPermission denied\n\n"


def test_socket_modes(sup: CliSupervisor) -> None:
    import os
    import stat

    assert stat.S_IMODE(os.stat(sup.paths[0]).st_mode) == 0o660
    assert stat.S_IMODE(os.stat(sup.paths[2]).st_mode) == 0o600


def test_semicolons_newlines_and_escapes(sup: CliSupervisor) -> None:
    assert sup.cli(b"show cli level;echo a\\;b;show version\necho c\\ d\n") == (
        f"admin\n\na;b\n\n{__version__}\n\nc d\n\n").encode()
    assert sup.cli(b"echo one;;echo two\n") == b"one\n\n\ntwo\n\n"
    assert sup.cli(b"echo crlf\r\n") == b"crlf\n\n"


def test_unterminated_last_command_runs_at_eof(sup: CliSupervisor) -> None:
    # HAProxy silently drops it; answering is friendlier for `printf 'show proc' | socat`.
    assert sup.cli(b"echo a\necho b") == b"a\n\nb\n\n"


def test_prompt_mode(sup: CliSupervisor) -> None:
    assert sup.cli(b"prompt\nshow cli level\n") == b"master> admin\n\nmaster> "
    assert sup.cli(b"prompt\nprompt\nshow cli level\n") == b"master> admin\n\n"
    assert sup.cli(b"prompt p\nprompt p\necho x\nprompt i\necho y\n") == b"master> master> x\n\nmaster> y\n\n"
    assert sup.cli(b"prompt\nexpert-mode on\nexperimental-mode on\nmcli-debug-mode on\nexpert-mode off\n") == (
        b"master> master(e)> master(xe)> master(xed)> master(xd)> ")
    assert sup.cli(b"prompt\noperator\nuser\n@master\n@\n") == b"master> " * 5
    out = sup.cli(b"prompt timed\necho t\nprompt timed\necho u\n").decode()
    assert re.fullmatch(r"\[0:00:\d\d:\d\d\] master> t\n\n\[0:00:\d\d:\d\d\] master> master> u\n\nmaster> ", out), out


def test_prompt_usage_is_a_session_error(sup: CliSupervisor) -> None:
    out = sup.cli(b"prompt help\necho never\n").decode()
    assert out == (  # HAProxy 3.2.0's text, byte for byte (2.6 toggled the prompt whatever the argument)
        "Usage: prompt [help | i | p | timed]*\n"
        "Changes the default prompt and interactive mode. Available options:\n"
        "  help    display this help\n"
        "  i       set to interactive mode only (no prompt, multi-command)\n"
        "  p       set to prompt+interactive mode (prompt + multi-command)\n"
        "  timed   toggle displaying the current date in the prompt\n"
        "Without any argument, toggles between i<->p.\n")
    assert sup.cli(b"prompt n\n").startswith(b"Usage: prompt")


def test_quit(sup: CliSupervisor) -> None:
    assert sup.cli(b"echo a;quit;echo never\necho never\n") == b"a\n\n"
    assert sup.cli(b"prompt\nquit\necho never\n") == b"master> master> "
    conn = Conn(sup.sock)
    conn.send("quit\n")
    assert conn.closed_by_peer()


def test_session_stays_open_until_eof(sup: CliSupervisor) -> None:
    conn = Conn(sup.sock)
    conn.send("show cli level\n")
    assert conn.read_until("\n\n") == b"admin\n\n"
    conn.send("operator\nshow cli level\n")
    assert conn.read_until("\n\n") == b"operator\n\n"
    conn.send("echo later\n")
    assert conn.read_until("\n\n") == b"later\n\n"
    conn.close()


def test_targets(sup: CliSupervisor) -> None:
    assert sup.cli(b"@master show cli level\n@0 echo x\n@ echo y\n@master\nshow version\n") == (
        f"admin\n\nx\n\ny\n\n{__version__}\n\n").encode()
    alpha = program_pid(sup, "alpha")
    for prefix in ("@1", f"@!{alpha}", f"@!{sup.pid}", "@@1", "@x", "@!"):
        assert sup.cli(f"{prefix} show info;echo never\necho never\n".encode()) == (
            f"Can't find the target PID matching the prefix '{prefix}'\n").encode(), prefix
    assert sup.cli(b"prompt\n@1\n") == b"master> Can't find the target PID matching the prefix '@1'\n"


def test_severity_output(sup: CliSupervisor) -> None:
    assert sup.cli(b"set severity-output number;echo hi;show cli level;stop nosuch;show version;show proc x\n") == (
        f"[6]: hi\n\n[6]: admin\n\n[3]: No such program 'nosuch'.\n\n[6]: {__version__}\n\n"
        "[3]: 'show proc' only supports 'debug' as argument\n\n").encode()
    assert sup.cli(b"set severity-output string;echo hi;stop nosuch;set severity-output none;echo plain\n") == (
        b"[info]: hi\n\n[err]: No such program 'nosuch'.\n\nplain\n\n")
    assert sup.cli(b"set severity-output loud\n") == b"one of 'none', 'number', 'string' is a required argument\n\n"


def test_program_control_errors(sup: CliSupervisor) -> None:
    assert sup.text("stop nosuch") == "No such program 'nosuch'.\n\n"
    assert sup.text("start") == "Usage: start <name>\n\n"
    assert sup.text("signal alpha") == "Usage: signal <name> <signal>\n\n"
    out = sup.text("signal alpha SIGBOGUS")
    assert out.startswith("Unknown signal 'SIGBOGUS'") and out.endswith("\n\n") and out.count("\n") == 2
    assert sup.text("signal nosuch SIGBOGUS").startswith("Unknown signal 'SIGBOGUS'")  # the signal is checked first
    pid = program_pid(sup, "alpha")
    assert sup.text("start alpha") == f"Program 'alpha' is already running (pid {pid}).\n\n"
    assert sup.text("signal alpha WINCH") == f"Sent SIGWINCH to program 'alpha' ({pid}).\n\n"


def test_stop_start_restart() -> None:
    with socket_dir() as directory, CliSupervisor(directory, CONFIG, programs=3) as sup:
        alpha = program_pid(sup, "alpha")
        assert sup.text("stop alpha;show programs").startswith(f"Program 'alpha' ({alpha}) stopped.\n\n#<name>")
        row = next(line for line in sup.text("show programs").splitlines() if line.startswith("alpha "))
        assert row.split()[1:7] == ["STOPPED", "no", "-", "-", "0", "SIGTERM"]
        assert "alpha" not in sup.text("show proc")
        assert sup.text("stop alpha") == "Program 'alpha' is not running (STOPPED).\n\n"
        out = sup.text("start alpha")
        new = program_pid(sup, "alpha")
        assert out == f"Program 'alpha' started (pid {new}).\n\n" and new != alpha
        beta = program_pid(sup, "beta")
        out = sup.text("restart beta")
        new_beta = program_pid(sup, "beta")
        assert out == f"Program 'beta' started (pid {new_beta}).\n\n" and new_beta != beta


def test_reload_answers_and_closes() -> None:
    with socket_dir() as directory, CliSupervisor(directory, CONFIG, programs=3) as sup:
        old = program_pid(sup, "alpha")
        out = sup.cli(b"reload\necho never\n").decode()
        lines = out.split("\n")
        assert lines[:2] == ["Success=1", "--"] and out.endswith("Loading success.\n\n")
        assert "never" not in out
        assert lines[2].endswith("Reloading progset on master CLI")
        assert any(f"Former program 'alpha' ({old}) exited with code 143 (Terminated)" in line for line in lines)
        assert all(re.fullmatch(r"\[(NOTICE|WARNING|ALERT)\] +\(\d+\) : .*", line) for line in lines[2:-2])
        assert re.search(re.escape(f"{sup.pid:<15} {'master':<15} {'1 [failed: 0]':<15} "), sup.text("show proc"))
        assert sup.text("show startup-logs") == "\n".join(lines[2:])
        hard = sup.cli(b"hard-reload\n").decode()
        assert hard.startswith("Success=1\n--\n") and "Reloading progset (hard-reload) on master CLI" in hard


def test_failed_reload_and_prompt() -> None:
    with socket_dir() as directory, CliSupervisor(directory, CONFIG, programs=3) as sup:
        sup.config.write_text("programs:\n  - name: Bad_Name\n    command: [sleep]\n")
        out = sup.cli(b"reload\n").decode()
        assert out.startswith("Success=0\n--\n") and "[ALERT]" in out and out.endswith("\n\n")
        assert re.search(re.escape(f"{'master':<15} {'2 [failed: 1]':<15}") + "|"
                         + re.escape(f"{'master':<15} {'1 [failed: 1]':<15}"), sup.text("show proc"))
        assert sup.cli(b"prompt\necho x\n") == b"master[ReloadFailed]> x\n\nmaster[ReloadFailed]> "
        sup.config.write_text(CONFIG)
        assert sup.cli(b"reload\n").startswith(b"Success=1\n--\n")
        assert sup.cli(b"prompt\n") == b"master> "


def test_reload_already_in_progress() -> None:
    slow = CONFIG + ("  - name: slow\n    command: [sh, -c, \"trap 'sleep 1.5; exit 0' TERM; echo trapped; "
                     "while :; do sleep 0.05; done\"]\n")
    with socket_dir() as directory, CliSupervisor(directory, slow, programs=4) as sup:
        sup.out.wait_for(r"^slow \| trapped$")  # a TERM before the trap is set would end it at once
        old = program_pid(sup, "slow")
        first = Conn(sup.sock)
        first.send("reload\n")
        sup.wait_log(r"Restarting program 'slow'")
        assert sup.cli(b"reload\n") == b"Success=0\n--\nAnother reload is still in progress.\n\n"
        # the replaced instance is still stopping: HAProxy's '# old programs' section, reloads 1 (the
        # other programs' old instances exit at once, but may not be reaped yet at the first look)
        only_slow_left = ("\n# old programs\n" + re.escape(f"{old:<15} {'slow':<15} {'1':<15} ") + UPTIME
                          + re.escape(f"     {'-':<15}\n") + "\n$")
        wait_until(lambda: re.search(only_slow_left, sup.text("show proc")) is not None)
        proc = sup.text("show proc")
        assert f"\n{old} " not in proc.split("# old programs")[0]
        assert sup.cli(b"echo still-serving\n") == b"still-serving\n\n"
        assert first.read_to_close().startswith(b"Success=1\n--\n")


def test_one_client_waiting_does_not_block_others() -> None:
    slow = ("programs:\n  - name: slow\n"
            "    command: [sh, -c, \"trap 'sleep 1; exit 0' TERM; echo trapped; while :; do sleep 0.05; done\"]\n")
    with socket_dir() as directory, CliSupervisor(directory, slow, programs=1) as sup:
        sup.out.wait_for(r"^slow \| trapped$")
        waiting = Conn(sup.sock)
        waiting.send("stop slow\necho after-stop\n")
        wait_until(lambda: "STOPPING" in exchange(sup.sock, b"show programs\n").decode())
        assert exchange(sup.sock, b"show cli level\n") == b"admin\n\n"
        out = waiting.read_until("after-stop\n\n")
        assert re.fullmatch(rb"Program 'slow' \(\d+\) stopped\.\n\nafter-stop\n\n", out)


def process_age(pid: int) -> float:
    """Seconds since ``pid`` started, from the kernel's own start time (what a correct uptime must show)."""
    import os

    with open(f"/proc/{pid}/stat") as fh:
        started = int(fh.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
    with open("/proc/uptime") as fh:
        return float(fh.read().split()[0]) - started


def seconds(text: str) -> int:
    days, hours, minutes, secs = map(int, re.fullmatch(r"(\d+)d(\d\d)h(\d\d)m(\d\d)s", text).groups())  # type: ignore[union-attr]
    return ((days * 24 + hours) * 60 + minutes) * 60 + secs


def test_uptimes_are_real(sup: CliSupervisor) -> None:
    import time

    time.sleep(max(0.0, 2.2 - process_age(sup.pid)))  # old enough for a wrong uptime to show
    pids = {"master": sup.pid, "alpha": pid_of(sup, "alpha"), "beta": pid_of(sup, "beta")}
    before = {name: process_age(pid) for name, pid in pids.items()}
    rows = {line.split()[1]: line.split() for line in sup.text("show proc").splitlines()[1:] if line[:1].isdigit()}
    after = {name: process_age(pid) for name, pid in pids.items()}
    shown = {"master": seconds(rows["master"][5]), "alpha": seconds(rows["alpha"][3]),
             "beta": seconds(rows["beta"][3])}
    for name in pids:
        # whole seconds, truncated; a loaded machine may delay the fork bookkeeping a little
        assert before[name] - 2.0 <= shown[name] <= after[name] + 0.5, (name, before, shown, after)
        assert shown[name] >= 1
