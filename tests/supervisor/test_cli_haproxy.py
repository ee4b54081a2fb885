"""Side by side with HAProxy 2.6 (Debian) started with the same config file: the layouts must match.

Both load one ``haproxy.cfg`` with ``program`` sections. HAProxy's answers are the reference for
``show proc`` and ``help`` layout and for the byte-exact answers both versions share. Known, deliberate
differences: progset has no worker row under ``# workers``, its version string is its own, and its help
lists more commands (with 3.x wording for ``prompt``).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import pytest

from .cli_helpers import CliSupervisor, exchange, socket_dir
from .helpers import DEFAULT_TIMEOUT
from .peers import HAProxy, haproxy_config, require

PROGRAMS = [("alpha", "sleep 3600"), ("beta-with-a-long-name", "sleep 3600"), ("gamma", "sleep 3600")]
FIELDS = re.compile(r"(\S+ +)(\S+ +)(\S+(?: \[failed: \d+\])? +)(\S+ +)(\S+ *)")


def relayout(line: str) -> str:
    """The row printed again with HAProxy's ``%-15s %-15s %-15s %-15s %-15s``; equal if the layout is."""
    match = FIELDS.fullmatch(line)
    assert match, f"not a show proc row: {line!r}"
    return " ".join(f"{field.strip():<15}" for field in match.groups())


class Pair:
    def __init__(self, progset: CliSupervisor, haproxy: HAProxy) -> None:
        self.progset = progset
        self.haproxy = haproxy

    def both(self, data: bytes, *, user: bool = False) -> tuple[bytes, bytes]:
        ours = self.progset.paths[1] if user else self.progset.sock
        theirs = self.haproxy.sock.replace("haproxy.sock", "haproxy-user.sock") if user else self.haproxy.sock
        return exchange(ours, data), exchange(theirs, data)


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    require("haproxy")
    with socket_dir() as directory:
        config = haproxy_config(directory, PROGRAMS)
        haproxy = HAProxy(config, directory / "haproxy.sock", len(PROGRAMS),
                          "-S", f"{directory / 'haproxy-user.sock'},level,user")
        try:
            progset = CliSupervisor(directory, config.read_text(), ["progset.sock", "user.sock,level,user"],
                                    programs=len(PROGRAMS), config_name="progset.cfg")
            try:
                yield Pair(progset, haproxy)
            finally:
                progset.stop()
        finally:
            haproxy.close()


def sections(text: str) -> list[str]:
    """The shape of a ``show proc`` answer: header, rows as (type or name, reloads, version) and sections."""
    shape = []
    for line in text.split("\n"):
        if line.startswith("#") or not line:
            shape.append(line)
            continue
        assert relayout(line) == line, f"not in HAProxy's column layout: {line!r}"
        kind = line.split()[1]
        shape.append("row " + ("master" if kind == "master" else "worker" if kind == "worker" else kind))
    return shape


def test_show_proc_layout_matches_haproxy(pair: Pair) -> None:
    ours, theirs = (b.decode() for b in pair.both(b"show proc\n"))
    assert ours.split("\n")[0] == theirs.split("\n")[0]  # the header, byte for byte
    expected = [s for s in sections(theirs) if s != "row worker"]  # progset has no worker processes
    assert sections(ours) == expected
    rows_ours = {m.group(2).strip(): m for m in map(FIELDS.fullmatch, ours.split("\n")) if m}
    rows_theirs = {m.group(2).strip(): m for m in map(FIELDS.fullmatch, theirs.split("\n")) if m}
    for name, _ in PROGRAMS:
        # reloads, version column ('-', padded) and the name column are identical; pids and uptimes differ
        assert rows_ours[name].group(2) == rows_theirs[name].group(2)
        assert rows_ours[name].group(3) == rows_theirs[name].group(3)
        assert rows_ours[name].group(5) == rows_theirs[name].group(5) == "-" + " " * 14
        assert re.fullmatch(r"\d+d\d\dh\d\dm\d\ds +", rows_ours[name].group(4))
    assert rows_ours["master"].group(3) == rows_theirs["master"].group(3) == "0 [failed: 0]   "
    assert ours.endswith("\n\n") and theirs.endswith("\n\n")


def help_lines(text: str) -> tuple[str, list[str], list[str]]:
    lines = text.split("\n")
    assert lines[-2:] == ["", ""], "an answer ends with a blank line"
    body = lines[1:-2]
    for line in body:
        assert line.startswith("  ") and line[42:44] == ": ", f"not HAProxy's two-column layout: {line!r}"
    return lines[0], body[:-3], body[-3:]


def test_help_layout_matches_haproxy(pair: Pair) -> None:
    ours, theirs = (b.decode() for b in pair.both(b"help\n"))
    head_ours, commands_ours, fixed_ours = help_lines(ours)
    head_theirs, commands_theirs, fixed_theirs = help_lines(theirs)
    assert head_ours == head_theirs == "The following commands are valid at this level:"
    assert commands_ours == sorted(commands_ours) and commands_theirs == sorted(commands_theirs)
    assert [line[:44] for line in fixed_ours] == [
        "  help [<command>]                        : ", "  prompt [help | n | i | p | timed ]*     : ",
        "  quit                                    : "]
    assert fixed_ours[0] == fixed_theirs[0] and fixed_ours[2] == fixed_theirs[2]
    ours_by_usage = {line[:42].strip(): line for line in commands_ours}
    for line in commands_theirs:
        usage = line[:42].strip()
        assert usage in ours_by_usage, f"HAProxy's '{usage}' is missing"
        if usage != "reload":  # HAProxy says 'reload haproxy'
            assert ours_by_usage[usage] == line


@pytest.mark.parametrize("data", [
    b"show cli level\n",
    b"operator\nshow cli level\n",
    b"user\nshow cli level\n",
    b"prompt\nshow cli level\n",
    b"prompt\nprompt\nshow cli level\n",
    b"prompt\n@master\n@0 show cli level\n@\n",
    b"show cli level;@2 show cli level;show cli level\n",
    b"@!1 show cli level\n",
    b"user\noperator\nshow cli level\n",
    b"prompt\nquit\nshow cli level\n",
])
def test_byte_identical_answers(pair: Pair, data: bytes) -> None:
    ours, theirs = pair.both(data)
    assert ours == theirs


@pytest.mark.parametrize("data", [b"reload\n", b"show cli level\n", b"operator\n", b"user\nshow cli level\n"])
def test_byte_identical_answers_on_user_sockets(pair: Pair, data: bytes) -> None:
    ours, theirs = pair.both(data, user=True)
    assert ours == theirs


def test_socat_one_shot_and_interactive(pair: Pair) -> None:
    socat = require("socat")
    sock = pair.progset.sock
    one_shot = subprocess.run([socat, "-t5", sock, "-"], input=b"show proc\n", capture_output=True,
                              timeout=DEFAULT_TIMEOUT)
    assert one_shot.returncode == 0 and one_shot.stdout.startswith(b"#<PID>") and one_shot.stdout.endswith(b"\n\n")
    session = subprocess.run([socat, "-t5", "-", sock], input=b"prompt\nshow cli level\necho a\\;b;quit\n",
                             capture_output=True, timeout=DEFAULT_TIMEOUT)
    assert session.stdout == b"master> admin\n\nmaster> a;b\n\nmaster> master> "
    reload = subprocess.run([socat, "-t30", sock, "-"], input=b"reload\n", capture_output=True,
                            timeout=DEFAULT_TIMEOUT)
    assert reload.stdout.startswith(b"Success=1\n--\n") and reload.stdout.endswith(b"Loading success.\n\n")
