"""The ``progset-supervisor`` command line: one table of options, read by argparse or a fast path.

argparse is the definition of the command line (help, error messages, abbreviations, ``-fX``), but
building its parser and parsing cost 6-11 ms here (its gettext lookups and regexes), plus ~3 ms to
import, all before the first program can start. So a plain argv made only of the table's options,
spelled out (``-f X``, ``--log-lines 10``, ``--metrics-address=off``), is read by a small loop over
the same table; anything else (``-h``, ``-v``, a bad value, an abbreviation, a missing ``-f``) goes
to argparse, which answers exactly as before. Tests check that both agree on every plain argv.

HAProxy's own flags are accepted so a systemd unit or an entrypoint written for ``haproxy -W`` runs
unchanged (``-W``, ``-Ws``, ``-db``, ``-q``, ``-dD``, several ``-f``); the ones that cannot mean anything
here (``-D``, ``-sf``, ``-st``) are read too, so that ``__main__`` can refuse them with a clear reason.
"""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, NamedTuple

from . import __version__

if TYPE_CHECKING:
    import argparse

PROG = "progset-supervisor"


class Option(NamedTuple):
    flags: tuple[str, ...]
    dest: str
    help: str
    kind: type | None = str  # str, int or float: the value's type; None: a flag without a value
    default: Any = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    append: bool = False  # repeatable, values collected in a list
    required: bool = False
    nargs: str | None = None  # argparse's nargs (only -sf/-st: HAProxy takes several pids); argparse reads those


OPTIONS: tuple[Option, ...] = (
    Option(("-f",), "config", "config file (HAProxy syntax, ProgramSet or rendered document in YAML or JSON) or a "
           "directory of them (a mounted ConfigMap); repeatable, read in order as one configuration, as HAProxy "
           "does; changes are watched and reloaded (without -f: $PROGSET_CONFIG, which the images set to "
           "/etc/progset)", default=[], metavar="CONFIG", append=True, required=True),
    Option(("-S",), "sockets", "Master CLI socket, e.g. /var/run/progset/master.sock,mode,660,level,operator "
           "(repeatable)", default=[], metavar="PATH[,OPTION,VALUE]...", append=True),
    Option(("-p",), "pidfile", "write the supervisor's pid here", metavar="PIDFILE"),
    Option(("--metrics-address",), "metrics_address", "HTTP address for /metrics, /healthz, /readyz, /status; "
           "'off' disables it (default %(default)s)", default="0.0.0.0:9127", metavar="HOST:PORT"),
    Option(("--log-format",), "log_format", "format of program output and supervisor messages "
           "(default %(default)s)", default="text", choices=("text", "json")),
    Option(("--health-address",), "health_address", "a second HTTP listener with only /healthz and /readyz, for "
           "the kubelet's probes, with connections of its own (default %(default)s)", default="off",
           metavar="HOST:PORT"),
    Option(("--output",), "output", "how program output lines are written: 'prefixed' (name | line), 'raw' (the "
           "line as is, HAProxy's behaviour) or 'json'; a program's own 'output' wins (default: json with "
           "--log-format json, prefixed otherwise)", choices=("prefixed", "raw", "json")),
    Option(("--allow-no-programs",), "allow_no_programs", "accept a configuration without programs (otherwise "
           "refused unless it says 'programs: []')", kind=None, default=False),
    Option(("--log-lines",), "log_lines", "lines of output kept per program for 'show logs' (default %(default)s)",
           kind=int, default=1000, metavar="N"),
    Option(("--no-watch",), "no_watch", "do not reload when the config changes on disk", kind=None, default=False),
    Option(("--cli-maxconn",), "cli_maxconn", "maximum concurrent Master CLI connections (default %(default)s)",
           kind=int, default=100, metavar="N"),
    Option(("--cli-timeout",), "cli_timeout", "idle timeout of Master CLI connections (default %(default)s)",
           kind=float, default=60.0, metavar="SECONDS"),
    Option(("-c",), "check", "check the config and exit (as haproxy -c)", kind=None, default=False),
    Option(("--strict",), "strict", "with -c: also fail when a program cannot start on this machine (missing "
           "executable, user, group or working directory), which -c otherwise only warns about",
           kind=None, default=False),
    Option(("--haproxy-version",), "haproxy_version", "HAProxy version whose answers '.if' conditions get "
           "(version_atleast, strstr...) (default %(default)s)", default="3.2", metavar="X.Y[.Z]"),
    Option(("-q",), "quiet", "quiet: only alerts (as haproxy -q)", kind=None, default=False),
    Option(("-dD",), "diag", "also print '.diag' messages and other diagnostics (as haproxy -dD)", kind=None,
           default=False),
    Option(("-W",), "master_worker", "accepted for HAProxy compatibility: progset is always a master",
           kind=None, default=False),
    Option(("-Ws",), "systemd", "as -W, and tell systemd when programs run (READY=1 to $NOTIFY_SOCKET)",
           kind=None, default=False),
    Option(("-db",), "foreground", "accepted for HAProxy compatibility: progset never goes to the background",
           kind=None, default=False),
    Option(("-D",), "daemon", "HAProxy's daemon mode: refused, progset stays in the foreground", kind=None,
           default=False),
    Option(("-sf",), "soft_finish", "HAProxy's hand-over to a new process: refused, reload progset instead",
           default=None, metavar="PID", nargs="+"),
    Option(("-st",), "terminate", "HAProxy's hand-over to a new process: refused, reload progset instead",
           default=None, metavar="PID", nargs="+"),
)
_BY_FLAG = {flag: option for option in OPTIONS for flag in option.flags}


def build_parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog=PROG, description="Run and supervise programs (HAProxy program sections or a ProgramSet) in a pod.")
    for option in OPTIONS:
        kwargs: dict[str, Any] = {"dest": option.dest, "help": option.help}
        if option.kind is None:
            kwargs["action"] = "store_true"
        else:
            kwargs.update(default=option.default, metavar=option.metavar)
            if option.kind is not str:
                kwargs["type"] = option.kind
            if option.choices is not None:
                kwargs["choices"] = option.choices
            if option.append:
                kwargs["action"] = "append"
            if option.required:
                kwargs["required"] = True
            if option.nargs is not None:
                kwargs["nargs"] = option.nargs
        parser.add_argument(*option.flags, **kwargs)
    parser.add_argument("-v", "--version", action="version", version=f"{PROG} {__version__}")
    return parser


def fast_parse(argv: list[str]) -> SimpleNamespace | None:
    """What argparse would return for ``argv``, or None when only argparse can tell (see the docstring)."""
    values = {o.dest: (list(o.default) if o.append else o.default) for o in OPTIONS}
    seen: set[str] = set()
    i = 0
    while i < len(argv):
        arg = argv[i]
        option = _BY_FLAG.get(arg)
        if option is not None and option.nargs is not None:
            return None  # several values: argparse's job
        if option is not None and option.kind is None:
            values[option.dest] = True
            i += 1
            continue
        if option is not None:
            if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                return None  # missing value, or argparse's rules for values that look like options
            text = argv[i + 1]
            i += 2
        else:
            flag, equals, text = arg.partition("=")
            option = _BY_FLAG.get(flag)
            if not (equals and flag.startswith("--") and option is not None and option.kind is not None):
                return None
            i += 1
        try:
            value = option.kind(text) if option.kind is not str else text
        except ValueError:
            return None
        if option.choices is not None and value not in option.choices:
            return None
        if option.append:
            values[option.dest].append(value)
        else:
            values[option.dest] = value
        seen.add(option.dest)
    if any(o.required and o.dest not in seen for o in OPTIONS):
        return None
    return SimpleNamespace(**values)


CONFIG_ENV = "PROGSET_CONFIG"


def with_default_config(args: list[str]) -> list[str]:
    """``-f $PROGSET_CONFIG`` first when no ``-f`` is given: the images set it, so ``docker run IMAGE
    --some-flag`` (which replaces the image's default command) keeps the config instead of failing."""
    default = os.environ.get(CONFIG_ENV)
    if default and not any(arg.startswith("-f") and not arg.startswith("--") for arg in args):
        return ["-f", default, *args]
    return args


def parse_args(argv: list[str] | None = None) -> SimpleNamespace | argparse.Namespace:
    args = with_default_config(sys.argv[1:] if argv is None else argv)
    return fast_parse(args) or build_parser().parse_args(args)
