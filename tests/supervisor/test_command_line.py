"""progset-supervisor's command line: the fast path must read every plain argv exactly as argparse does,
and leave everything else (help, errors, abbreviations) to argparse."""

from __future__ import annotations

import subprocess
import sys

import pytest

from progset_supervisor.cmdline import build_parser, fast_parse, parse_args

PLAIN = [
    ["-f", "/etc/progset"],
    ["-f", "a.cfg", "-S", "/run/m.sock", "-S", "/run/o.sock,mode,600,level,operator", "-p", "/run/p.pid"],
    ["--metrics-address", "off", "-f", "x.yaml", "--log-format", "json", "--log-lines", "20", "--no-watch"],
    ["-f", "x", "--cli-maxconn", "3", "--cli-timeout", "2.5", "-c"],
    ["-f", "x", "--metrics-address=127.0.0.1:0", "--log-lines=0", "--log-format=text", "--cli-timeout=1e2"],
    ["-f", "first", "-f", "second", "--log-lines", "5", "--log-lines", "6"],  # the last one wins
    ["-c", "-f", "x", "-c", "--no-watch", "--no-watch"],
    ["-f", "x", "--metrics-address="],
]

OTHER = [
    [],  # -f is required
    ["-S", "/run/m.sock"],
    ["-f"],  # no value
    ["-fconfig.yaml"],  # argparse's attached short value
    ["-f", "x", "--log-format", "xml"],
    ["-f", "x", "--log-lines", "ten"],
    ["-f", "x", "--cli-timeout", "-1"],  # a value that looks like an option
    ["-f", "x", "--metrics", "off"],  # an abbreviation
    ["-f", "x", "stray"],
    ["-f", "x", "--no-watch=yes"],
    ["-h"],
    ["--version"],
    ["-f", "x", "--", "-c"],
]


@pytest.mark.parametrize("argv", PLAIN, ids=" ".join)
def test_fast_path_reads_plain_argv_as_argparse_does(argv: list[str]) -> None:
    fast = fast_parse(argv)
    assert fast is not None, "a plain argv must not need argparse"
    assert vars(fast) == vars(build_parser().parse_args(argv))


@pytest.mark.parametrize("argv", OTHER, ids=lambda argv: " ".join(argv) or "(empty)")
def test_everything_else_is_left_to_argparse(argv: list[str]) -> None:
    assert fast_parse(argv) is None
    try:
        expected = vars(build_parser().parse_args(argv))
    except SystemExit as exc:
        expected = {"exit": exc.code}
    try:
        got = vars(parse_args(argv))
    except SystemExit as exc:
        got = {"exit": exc.code}
    assert got == expected


def test_help_version_and_errors_come_from_argparse() -> None:
    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "progset_supervisor", *argv], capture_output=True, text=True,
                              timeout=30)

    help_ = run("--help")
    assert help_.returncode == 0 and help_.stdout.startswith("usage: progset-supervisor [-h] -f CONFIG")
    assert "--metrics-address HOST:PORT" in help_.stdout and "(default 0.0.0.0:9127)" in help_.stdout
    version = run("-v")
    assert version.returncode == 0 and version.stdout.startswith("progset-supervisor ")
    bad = run("--log-format", "xml", "-f", "x")
    assert bad.returncode == 2
    assert "progset-supervisor: error: argument --log-format: invalid choice: 'xml'" in bad.stderr
    missing = run("--no-watch")
    assert missing.returncode == 2 and "the following arguments are required: -f" in missing.stderr


def test_a_plain_start_does_not_import_argparse() -> None:
    code = ("import sys; from progset_supervisor.__main__ import parse_args; "
            "parse_args(['-f', 'x', '-S', 's', '--metrics-address', 'off']); print('argparse' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30)
    assert out.stdout.strip() == "False"
