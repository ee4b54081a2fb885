"""Pure pieces of the Master CLI: splitting, words, the fuzzy matcher, formats, ``-S`` parsing."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from progset_supervisor.cli import commands
from progset_supervisor.cli.fuzzy import candidates
from progset_supervisor.cli.levels import Level
from progset_supervisor.cli.protocol import find_command_end, split_commands, split_words
from progset_supervisor.cli.render import prompt_clock, uptime
from progset_supervisor.cli.sockets import parse_spec


@pytest.mark.parametrize(("data", "end"), [
    (b"show proc\n", 9), (b"a;b\n", 1), (b"a\\;b\n", 4), (b"a\\\\;b", 3), (b"abc", -1), (b"a\\", -1), (b"", -1),
])
def test_command_end_honours_escapes(data: bytes, end: int) -> None:
    assert find_command_end(data) == end


def test_split_commands_skips_blank_ones_and_keeps_escapes() -> None:
    assert split_commands(b"show proc; echo a\\;b;;\n  \nquit") == [b"show proc", b" echo a\\;b", b"quit"]


@pytest.mark.parametrize(("command", "words"), [
    (b"show  proc", ["show", "proc"]),
    (b"\tshow\tversion ", ["show", "version"]),
    (b"echo a\\ b c\\;d", ["echo", "a b", "c;d"]),
    (b"echo \\\\x", ["echo", "\\x"]),
    (b"", []),
    (b"   ", []),
])
def test_words(command: bytes, words: list[str]) -> None:
    assert split_words(command) == words


def test_words_keep_arbitrary_bytes() -> None:
    words = split_words(b"echo \xff\xfe\x00")
    assert words[1].encode("utf-8", "surrogateescape") == b"\xff\xfe\x00"


@dataclass(frozen=True)
class Kw:
    words: tuple[str, ...]
    usage: str | None


# HAProxy 2.6's master command table (help, prompt and quit have no usage of their own).
HAPROXY_26 = [Kw(("help",), None), Kw(("prompt",), None), Kw(("quit",), None),
              Kw(("show", "cli", "sockets"), "show cli sockets"), Kw(("show", "cli", "level"), "show cli level"),
              Kw(("show", "version"), "show version"), Kw(("operator",), "operator"), Kw(("user",), "user"),
              Kw(("@<relative pid>",), "@<relative pid>"), Kw(("@!<pid>",), "@!<pid>"),
              Kw(("@master",), "@master"), Kw(("show", "proc"), "show proc"), Kw(("reload",), "reload")]


def test_fuzzy_matches_haproxy_26_for_an_unknown_word() -> None:
    # Verified on Debian's haproxy 2.6.12: 'foo' suggests exactly these five.
    _, chosen = candidates(HAPROXY_26, ["foo"])
    assert sorted(k.usage for k in chosen) == ["@!<pid>", "@master", "operator", "reload", "user"]


def test_fuzzy_keeps_the_matching_prefix() -> None:
    length, chosen = candidates(HAPROXY_26, ["show", "env", "HOME"])
    assert length == 1
    assert sorted(k.usage for k in chosen) == ["show cli level", "show cli sockets", "show proc", "show version"]


def test_fuzzy_finds_a_typo() -> None:
    _, chosen = candidates(commands.COMMANDS, ["show", "prgrams"])
    assert chosen[0].usage == "show programs"


def test_help_prefix_lists_only_that_family() -> None:
    text = commands.usage(["help", "show", "cli"], is_help=True).text
    assert text == ("The following commands are valid at this level:\n"
                    "  show cli level                          : display the level of the current CLI session\n"
                    "  show cli sockets                        : dump list of cli sockets\n" + commands.FIXED_HELP)


def test_every_help_line_has_haproxy_columns() -> None:
    for command in commands.COMMANDS:
        if command.usage:
            line = command.help_line
            assert line.startswith("  ") and line[42:44] == ": ", line


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0d00h00m00s"), (19, "0d00h00m19s"), (-5, "0d00h00m00s"), (12 * 86400 + 3 * 3600 + 7 * 60 + 55, "12d03h07m55s"),
])
def test_uptime_format(seconds: float, text: str) -> None:
    assert uptime(seconds) == text


def test_prompt_clock() -> None:
    assert prompt_clock(4) == "[0:00:00:04] "
    assert prompt_clock(86400 + 3661) == "[1:01:01:01] "


def test_socket_spec_defaults_and_options() -> None:
    spec = parse_spec("/run/p/master.sock")
    assert (spec.path, spec.mode, spec.level, spec.uid, spec.gid) == ("/run/p/master.sock", 0o660, Level.ADMIN,
                                                                       None, None)
    spec = parse_spec("unix@/run/p/u.sock,mode,600,level,user,uid,1000,gid,2000")
    assert (spec.path, spec.mode, spec.level, spec.uid, spec.gid) == ("/run/p/u.sock", 0o600, Level.USER, 1000, 2000)
    assert spec.address == "unix@/run/p/u.sock"


@pytest.mark.parametrize(("text", "message"), [
    ("/a.sock,levle,user", "unknown keyword 'levle'. Did you mean 'level' maybe ?"),
    ("/a.sock,level,root", "'level' only supports 'user', 'operator', and 'admin' (got 'root')"),
    ("/a.sock,mode,999", "'mode' expects an octal number"),
    ("/a.sock,mode", "option 'mode' expects a value"),
    ("/a.sock,uid,x", "'uid' expects a number"),
    ("ipv4@127.0.0.1:9999", "only Unix socket paths are supported"),
    ("127.0.0.1:9999", "only Unix socket paths are supported"),
    (",mode,600", "missing socket path"),
])
def test_socket_spec_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_spec(text)
