"""progsetctl against a real supervisor: one-shot output and exit codes, stdin, interactive mode on a pty."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from progset_supervisor import __version__

from .cli_helpers import SLEEPERS, CliSupervisor, socket_dir
from .helpers import DEFAULT_TIMEOUT


@pytest.fixture(scope="module")
def sup() -> Iterator[CliSupervisor]:
    with socket_dir() as directory, CliSupervisor(directory, SLEEPERS, ["master.sock", "user.sock,level,user"],
                                                  programs=2) as supervisor:
        yield supervisor


def ctl(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "progset_supervisor.ctl", *args], input=stdin, capture_output=True,
                          text=True, timeout=DEFAULT_TIMEOUT, env={**os.environ, **(env or {})})


def test_one_shot_prints_the_answer(sup: CliSupervisor) -> None:
    result = ctl("-S", sup.sock, "show", "proc")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout == sup.text("show proc")[:-1]  # without the protocol's closing blank line


def test_several_commands_and_exit_status(sup: CliSupervisor) -> None:
    result = ctl("-S", sup.sock, "show cli level; show version")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"admin\n{__version__}\n", "")
    result = ctl("-S", sup.sock, "stop nosuch; echo after")
    assert (result.returncode, result.stdout, result.stderr) == (1, "after\n", "No such program 'nosuch'.\n")


@pytest.mark.parametrize(("command", "stderr_start"), [
    ("show prgrams", "Unknown command: 'show'"),
    ("@1 show info", "Can't find the target PID matching the prefix '@1'"),
    ("show proc x", "'show proc' only supports 'debug' as argument"),
])
def test_errors_exit_non_zero(sup: CliSupervisor, command: str, stderr_start: str) -> None:
    result = ctl("-S", sup.sock, command)
    assert result.returncode == 1 and result.stderr.startswith(stderr_start), result


def test_levels_through_progsetctl(sup: CliSupervisor) -> None:
    result = ctl("-S", sup.paths[1], "show proc")
    assert (result.returncode, result.stderr) == (1, "Permission denied\n")
    result = ctl("-S", sup.sock, "user; show proc")
    assert (result.returncode, result.stderr) == (1, "Permission denied\n")
    result = ctl("-S", sup.paths[1], "operator")
    assert (result.returncode, result.stderr) == (1, "Permission denied!\n")


def test_show_logs_with_blank_lines_is_not_cut(tmp_path: Path) -> None:
    config = "programs:\n  - name: gappy\n    command: [sh, -c, \"echo a; echo; echo b; exec sleep 3600\"]\n"
    with socket_dir() as directory, CliSupervisor(directory, config, programs=1) as supervisor:
        deadline = time.monotonic() + DEFAULT_TIMEOUT
        while "b\n" not in supervisor.text("show logs gappy") and time.monotonic() < deadline:
            time.sleep(0.02)
        result = ctl("-S", supervisor.sock, "show logs gappy; show cli level")
        assert (result.returncode, result.stdout) == (0, "a\n\nb\nadmin\n")


def test_reload_through_progsetctl() -> None:
    with socket_dir() as directory, CliSupervisor(directory, SLEEPERS, programs=2) as supervisor:
        result = ctl("-S", supervisor.sock, "reload")
        assert result.returncode == 0 and result.stdout.startswith("Success=1\n--\n")
        assert result.stdout.endswith("Loading success.\n")
        supervisor.config.write_text("programs: [{name: BAD, command: [x]}]\n")
        result = ctl("-S", supervisor.sock, "reload")
        assert result.returncode == 1 and result.stderr.startswith("Success=0\n--\n")


def test_commands_from_stdin(sup: CliSupervisor) -> None:
    result = ctl("-S", sup.sock, stdin="show cli level\necho hi\n")
    assert (result.returncode, result.stdout) == (0, "admin\nhi\n")


def test_socket_from_the_environment(sup: CliSupervisor) -> None:
    result = ctl("show", "cli", "level", env={"PROGSET_MASTER_CLI": f"unix@/nonexistent.sock;unix@{sup.paths[1]}"})
    assert (result.returncode, result.stdout) == (0, "user\n")


def test_unreachable_socket() -> None:
    result = ctl("-S", "/nonexistent/master.sock", "show proc")
    assert result.returncode == 2
    assert result.stderr == "progsetctl: cannot connect to /nonexistent/master.sock: No such file or directory\n"


class Pty:
    """progsetctl on a pseudo-terminal, driven like a person at a keyboard."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child
            os.environ.update(env)
            os.execv(sys.executable, [sys.executable, "-m", "progset_supervisor.ctl", *args])
        self.output = b""

    def expect(self, text: bytes, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"timed out waiting for {text!r}; screen so far: {self.output!r}")
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                data = b""
            if not data:
                raise AssertionError(f"progsetctl exited waiting for {text!r}; screen: {self.output!r}")
            self.output += data
        index = self.output.index(text) + len(text)
        seen, self.output = self.output[:index], self.output[index:]
        return seen

    def type(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\r")

    def wait(self) -> int:
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


def test_interactive_session_with_history(sup: CliSupervisor, tmp_path: Path) -> None:
    history = tmp_path / "history"
    term = Pty("-S", sup.sock, env={"PROGSETCTL_HISTORY": str(history), "TERM": "dumb"})
    term.expect(b"master> ")
    term.type("show cli level")
    assert term.expect(b"master> ").endswith(b"admin\r\n\r\nmaster> ")
    term.type("user")
    term.expect(b"master> ")
    term.type("show proc")  # the level sticks for the session, as with socat
    assert b"Permission denied\r\n" in term.expect(b"master> ")
    term.type("prompt timed")
    term.expect(b"] master> ")
    term.type("@1")  # a session error closes the connection; the next line gets a fresh session
    assert b"Can't find the target PID matching the prefix '@1'" in term.expect(b"> ")
    term.type("show cli level")
    assert term.expect(b"master> ").endswith(b"admin\r\n\r\nmaster> ")
    term.type("quit")
    assert term.wait() == 0
    assert history.read_text().splitlines()[-3:] == ["@1", "show cli level", "quit"]
    term = Pty("-S", sup.sock, env={"PROGSETCTL_HISTORY": str(history), "TERM": "dumb"})
    term.expect(b"master> ")
    os.write(term.fd, b"\x04")  # Ctrl-D leaves
    assert term.wait() == 0


@pytest.mark.parametrize("form", ["unix@{}", "{}", "{},mode,660,level,admin", "unix@{},level,admin"])
def test_socket_in_every_form_the_supervisor_writes(sup: CliSupervisor, form: str) -> None:
    result = ctl("-S", form.format(sup.sock), "show", "cli", "level")
    assert (result.returncode, result.stdout, result.stderr) == (0, "admin\n", "")


def test_version_and_help() -> None:
    result = ctl("--version")
    assert (result.returncode, result.stdout) == (0, f"progsetctl {__version__}\n")
    result = ctl("--help")
    examples = result.stdout.split("examples:\n", 1)[1].splitlines()
    assert [line.split()[:2] for line in examples[:2]] == [["progsetctl", "show"], ["progsetctl", "'stop"]]
    assert " | progsetctl" not in result.stdout.replace("printf 'show info\\n' | progsetctl", "")


def test_interactive_says_which_level_a_reopened_session_has(sup: CliSupervisor, tmp_path: Path) -> None:
    term = Pty("-S", sup.sock, env={"PROGSETCTL_HISTORY": str(tmp_path / "h"), "TERM": "dumb"})
    term.expect(b"master> ")
    term.type("user")
    term.expect(b"master> ")
    term.type("operator")  # raising the level is refused and HAProxy closes the session
    screen = term.expect(b"master> ")
    assert b"Permission denied!" in screen
    assert (b"progsetctl: the supervisor closed the session; a new one is open at level admin (the socket's "
            b"level: 'operator'/'user' given before do not carry over)") in screen
    term.type("show cli level")
    assert term.expect(b"master> ").endswith(b"admin\r\n\r\nmaster> ")
    term.type("quit")
    assert term.wait() == 0


def test_tab_completes_commands_program_names_and_signals(sup: CliSupervisor, tmp_path: Path) -> None:
    term = Pty("-S", sup.sock, env={"PROGSETCTL_HISTORY": str(tmp_path / "h"), "TERM": "dumb"})
    term.expect(b"master> ")
    os.write(term.fd, b"sig\t")
    term.expect(b"signal ")
    os.write(term.fd, b"al\t")  # program names come from the supervisor's 'show programs'
    term.expect(b"alpha ")
    os.write(term.fd, b"SIGCON\t")  # SIGCONT: harmless to the shared sleepers
    term.expect(b"SIGCONT ")
    os.write(term.fd, b"\r")
    assert b"Sent SIGCONT to program 'alpha'" in term.expect(b"master> ")
    os.write(term.fd, b"show star\t")  # several words
    term.expect(b"startup-logs ")
    os.write(term.fd, b"\x15")  # Ctrl-U clears the line
    os.write(term.fd, b"show logs be\t")
    term.expect(b"beta ")
    os.write(term.fd, b"\x15quit\r")
    assert term.wait() == 0
