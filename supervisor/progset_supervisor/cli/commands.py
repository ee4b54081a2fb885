"""The command table: words, usage and help text, minimum level, and what each command does.

Levels follow HAProxy's master (``show proc``, ``show env``, ``show startup-logs`` and reloads need
operator); the commands HAProxy never had (``show programs``, ``show logs``, ``start``/``stop``/
``restart``/``signal``) act on or reveal programs, so they need operator too. Session-level commands
(``prompt``, ``quit``, ``operator``, ``user``, ``@`` prefixes, the mode toggles) live in
:mod:`.session`; they are listed here only so ``help`` and the unknown-command matcher see them, as in
HAProxy.

A handler returns a :class:`Reply` at once, or ``None`` after arranging for ``ctx.finish(reply)`` to be
called later (stop, restart and reload wait for processes); the session holds further commands of
that client until then, so answers always come back in order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol

from ..core import control
from ..core.control import CommandError
from . import render
from .levels import Level

if TYPE_CHECKING:
    from ..core.master import Master
    from .sockets import SocketSpec

ERR = 3  # syslog severities, as printed by 'set severity-output'
INFO = 6
HELP_WIDTH = 40
DEFAULT_LOG_LINES = 100
FIXED_HELP = (
    "  help [<command>]                        : list matching or all commands\n"
    "  prompt [help | n | i | p | timed ]*     : toggle interactive mode with prompt\n"
    "  quit                                    : disconnect\n"
)


class Reply(NamedTuple):
    """One answer. ``severity`` is None for dumps (tables, logs) and set for messages, like HAProxy's
    ``cli_msg``/``cli_err``, so ``set severity-output`` prefixes exactly what HAProxy would prefix."""

    text: str
    severity: int | None = None
    close: bool = False

    @classmethod
    def info(cls, text: str) -> Reply:
        return cls(text if text.endswith("\n") else text + "\n", INFO)

    @classmethod
    def error(cls, text: str) -> Reply:
        return cls(text if text.endswith("\n") else text + "\n", ERR)

    @classmethod
    def dump(cls, text: str) -> Reply:
        return cls(text)


class Context(Protocol):
    """What a handler may use: the master, the server's limits, the session's level, and ``finish``."""

    master: Master
    level: Level

    def finish(self, reply: Reply) -> None: ...
    def sockets(self) -> list[SocketSpec]: ...
    def connections(self) -> tuple[int, int]: ...


Handler = Callable[[Context, list[str]], "Reply | None"]


class Command(NamedTuple):
    words: tuple[str, ...]
    usage: str | None
    help: str
    level: Level
    run: Handler | None = None  # None: handled by the session itself (prefixes, prompt, levels)

    @property
    def help_line(self) -> str:
        return f"  {self.usage:<{HELP_WIDTH}}: {self.help}\n" if self.usage else ""


# -- handlers ---------------------------------------------------------------------------------------
def _echo(ctx: Context, args: list[str]) -> Reply:
    return Reply.info(" ".join(args[1:]) + "\n")


def _show_cli_level(ctx: Context, args: list[str]) -> Reply:
    return Reply.info(ctx.level.label + "\n")


def _show_cli_sockets(ctx: Context, args: list[str]) -> Reply:
    lines = ["# socket lvl processes\n"]
    lines += [f"{spec.address} {spec.level.label} all\n" for spec in ctx.sockets()]
    return Reply.dump("".join(lines))


def _show_version(ctx: Context, args: list[str]) -> Reply:
    return Reply.info(ctx.master.version + "\n")  # a message (cli_msg LOG_INFO), as in HAProxy 3.x


# What ``show env`` shows below admin level: in a pod, the environment holds Secrets injected as
# variables, and the ``operator`` socket is shared with every container of the pod. Names are always
# shown; values only for these (the supervisor's own and the usual non-secret ones).
PUBLIC_ENV = frozenset({"PATH", "HOME", "HOSTNAME", "LANG", "LANGUAGE", "TZ", "PWD", "SHLVL", "TERM", "USER",
                        "LOGNAME", "SHELL"})
PUBLIC_ENV_PREFIXES = ("HAPROXY_", "PROGSET_", "LC_")
REDACTED = "<redacted: admin level only>"


def env_value(level: Level, name: str, value: str) -> str:
    """``value`` as ``show env`` may show it at ``level`` (see :data:`PUBLIC_ENV`)."""
    if level >= Level.ADMIN or name in PUBLIC_ENV or name.startswith(PUBLIC_ENV_PREFIXES):
        return value
    return REDACTED


def _show_env(ctx: Context, args: list[str]) -> Reply:
    env = ctx.master.base_env
    if len(args) > 2:
        name = args[2]
        if name not in env:
            return Reply.error("Variable not found\n")
        return Reply.dump(f"{name}={env_value(ctx.level, name, env[name])}\n")
    return Reply.dump("".join(f"{key}={env_value(ctx.level, key, value)}\n" for key, value in env.items()))


def _show_proc(ctx: Context, args: list[str]) -> Reply:
    if len(args) > 2 and args[2] != "debug":
        return Reply.error("'show proc' only supports 'debug' as argument\n")
    return Reply.dump(render.show_proc(ctx.master, debug=len(args) > 2))


def _show_startup_logs(ctx: Context, args: list[str]) -> Reply:
    return Reply.dump("".join(line + "\n" for line in ctx.master.log.startup))


def _show_programs(ctx: Context, args: list[str]) -> Reply:
    return Reply.dump(render.show_programs(ctx.master))


def _show_checks(ctx: Context, args: list[str]) -> Reply:
    name = args[2] if len(args) > 2 and args[2] else None
    if name is not None and name not in ctx.master.programs:
        return Reply.error(f"No such program '{name}'.\n")
    return Reply.dump(render.show_checks(ctx.master, name))


def _show_info(ctx: Context, args: list[str]) -> Reply:
    current, limit = ctx.connections()
    return Reply.dump(render.show_info(ctx.master, current, limit))


def _name(args: list[str], index: int, usage: str) -> str | Reply:
    if len(args) <= index or not args[index]:
        return Reply.error(f"Usage: {usage}\n")
    return args[index]


def _show_logs(ctx: Context, args: list[str]) -> Reply:
    name = _name(args, 2, "show logs <name> [<lines>]")
    if isinstance(name, Reply):
        return name
    try:
        supervised = control.get(ctx.master, name)
    except CommandError as exc:
        return Reply.error(str(exc) + "\n")
    count = DEFAULT_LOG_LINES
    if len(args) > 3:
        if not args[3].isdigit() or int(args[3]) <= 0:
            return Reply.error(f"'show logs' expects a positive number of lines (got '{args[3]}')\n")
        count = int(args[3])
    return Reply.dump("".join(line + "\n" for line in supervised.ring.tail(count)))


def _guard(action: Callable[[], Reply | None]) -> Reply | None:
    """Run a control action; its CommandError becomes a one-line error answer."""
    try:
        return action()
    except CommandError as exc:
        return Reply.error(str(exc) + "\n")


def _start(ctx: Context, args: list[str]) -> Reply | None:
    name = _name(args, 1, "start <name>")
    if isinstance(name, Reply):
        return name
    return _guard(lambda: Reply.info(control.start(ctx.master, name)))


def _done_callback(ctx: Context) -> Callable[[str], None]:
    return lambda message: ctx.finish(Reply.info(message))


def _stop(ctx: Context, args: list[str]) -> Reply | None:
    name = _name(args, 1, "stop <name>")
    if isinstance(name, Reply):
        return name
    return _guard(lambda: control.stop(ctx.master, name, _done_callback(ctx)))


def _restart(ctx: Context, args: list[str]) -> Reply | None:
    name = _name(args, 1, "restart <name>")
    if isinstance(name, Reply):
        return name
    return _guard(lambda: control.restart(ctx.master, name, _done_callback(ctx)))


def _signal(ctx: Context, args: list[str]) -> Reply | None:
    if len(args) < 3:
        return Reply.error("Usage: signal <name> <signal>\n")
    return _guard(lambda: Reply.info(control.send_signal(ctx.master, args[1], args[2])))


def reload_answer(success: bool, lines: list[str]) -> Reply:
    """``Success=1|0``, ``--`` when there are log lines, the lines; the connection closes after it."""
    text = f"Success={1 if success else 0}\n"
    if lines:
        text += "--\n" + "".join(line + "\n" for line in lines)
    return Reply(text, None, close=True)


def _reload(hard: bool) -> Handler:
    def run(ctx: Context, args: list[str]) -> Reply | None:
        def done(success: bool, lines: list[str]) -> None:
            ctx.finish(reload_answer(success, lines))  # also when called at once: the session keeps it

        if ctx.master.reload(hard=hard, origin="master CLI", done=done):
            return None
        return reload_answer(False, ["Another reload is still in progress."])
    return run


# -- the table --------------------------------------------------------------------------------------
COMMANDS: tuple[Command, ...] = (
    Command(("help",), None, "", Level.USER),
    Command(("prompt",), None, "", Level.USER),
    Command(("quit",), None, "", Level.USER),
    Command(("@<relative pid>",), "@<relative pid>", "send a command to the <relative pid> process", Level.USER),
    Command(("@!<pid>",), "@!<pid>", "send a command to the <pid> process", Level.USER),
    Command(("@master",), "@master", "send a command to the master process", Level.USER),
    Command(("operator",), "operator", "lower the level of the current CLI session to operator", Level.USER),
    Command(("user",), "user", "lower the level of the current CLI session to user", Level.USER),
    Command(("expert-mode",), None, "", Level.ADMIN),
    Command(("experimental-mode",), None, "", Level.ADMIN),
    Command(("mcli-debug-mode",), None, "", Level.ADMIN),
    Command(("set", "severity-output"), None, "", Level.USER),
    Command(("echo",), "echo <text>", "print text to the output", Level.USER, _echo),
    Command(("show", "cli", "level"), "show cli level", "display the level of the current CLI session", Level.USER,
            _show_cli_level),
    Command(("show", "cli", "sockets"), "show cli sockets", "dump list of cli sockets", Level.USER,
            _show_cli_sockets),
    Command(("show", "version"), "show version", "show version of the current process", Level.USER, _show_version),
    Command(("show", "env"), "show env [var]", "dump environment variables known to the process", Level.OPERATOR,
            _show_env),
    Command(("show", "proc"), "show proc", "show processes status", Level.OPERATOR, _show_proc),
    Command(("show", "startup-logs"), "show startup-logs", "report logs emitted during the last load or reload",
            Level.OPERATOR, _show_startup_logs),
    Command(("show", "info"), "show info", "report information about the supervisor", Level.USER, _show_info),
    Command(("show", "programs"), "show programs", "state, ready, pid, restarts, last exit, check of every program",
            Level.OPERATOR, _show_programs),
    Command(("show", "checks"), "show checks [<name>]", "state, last result and last failure of the health checks",
            Level.OPERATOR, _show_checks),
    Command(("show", "logs"), "show logs <name> [<lines>]", "show the last output lines of a program",
            Level.OPERATOR, _show_logs),
    Command(("start",), "start <name>", "start a stopped program", Level.OPERATOR, _start),
    Command(("stop",), "stop <name>", "stop a program; it stays stopped until 'start'", Level.OPERATOR, _stop),
    Command(("restart",), "restart <name>", "stop a program, then start it again", Level.OPERATOR, _restart),
    Command(("signal",), "signal <name> <signal>", "send a signal (e.g. SIGHUP) to a program", Level.OPERATOR,
            _signal),
    Command(("reload",), "reload", "reload the configuration and apply it to the programs", Level.OPERATOR,
            _reload(False)),
    Command(("hard-reload",), "hard-reload", "reload and restart every program, whatever its onReload",
            Level.OPERATOR, _reload(True)),
)


_BY_WORDS: dict[tuple[str, ...], Command] = {command.words: command for command in COMMANDS}
_MOST_WORDS = max(len(command.words) for command in COMMANDS)


def find(args: list[str]) -> Command | None:
    """The command whose words start ``args`` (the most specific one wins): a dict lookup per prefix
    length, longest first, rather than a scan of the table for every command a client sends."""
    for n in range(min(len(args), _MOST_WORDS), 0, -1):
        command = _BY_WORDS.get(tuple(args[:n]))
        if command is not None:
            return command
    return None


def usage(args: list[str], *, is_help: bool) -> Reply:
    """HAProxy's ``cli_gen_usage_msg``: the ``help`` listing, or the unknown-command suggestions."""
    from .fuzzy import candidates

    words = args[1:] if is_help else args
    length, chosen = candidates(COMMANDS, words)
    if is_help:
        head = "The following commands are valid at this level:\n"
    elif not length and not (words and words[0]):
        head = "Unknown command. Please enter one of the following commands only:\n"
    else:
        head = f"Unknown command: '{words[0]}', but maybe one of the following ones is a better match:\n"
    lines = sorted(command.help_line for command in chosen if command.usage)
    return Reply.info(head + "".join(lines) + FIXED_HELP)
