"""Loader for HAProxy syntax: the ``program`` sections of a haproxy.cfg, plus progset's extra keywords.

Every line is tokenized as HAProxy does (:mod:`.haproxy_tokens`), ``.if`` blocks are applied
(:mod:`.haproxy_cond`), and sections other than ``program`` are skipped, so an existing haproxy.cfg
can be pointed at directly. Each ``program`` section becomes one entry of a ProgramSet *spec*
dictionary, which :func:`config_from_spec` validates like any other loader's; a path -> line map
makes its errors name the line of the keyword that set the field.

Where HAProxy is silently lenient this loader refuses: a second ``command`` (HAProxy keeps the last
and leaks the first), a repeated ``user``/``group`` (HAProxy keeps the first and continues), any
setting given twice. Numeric ``user``/``group`` ids are accepted (HAProxy rejects them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from .errors import ConfigError, Problem
from .haproxy_cond import ConditionError, eval_condition
from .haproxy_tokens import TokenError, Tokens, tokenize
from .haproxy_version import DEFAULT_ENABLED, DISABLING_KEYWORDS, HAProxyTarget
from .model import Config, Path, _closest, config_from_spec
from .probes import LEVELS

SECTION_KEYWORDS = frozenset({
    "global", "defaults", "frontend", "backend", "listen", "peers", "resolvers", "userlist", "mailers",
    "program", "http-errors", "ring", "cache", "fcgi-app", "crt-store", "traces", "log-forward", "acme",
})
MESSAGE_DIRECTIVES = (".alert", ".warning", ".notice", ".diag")
ENV_KEYWORDS = ("setenv", "presetenv", "resetenv", "unsetenv")
# 'global' keywords that change how the rest is read (the environment, enabled()) or what programs get
GLOBAL_KEYWORDS = frozenset({*ENV_KEYWORDS, "expose-deprecated-directives", "ssl-server-verify", *DISABLING_KEYWORDS})


class _Keyword(NamedTuple):
    """How one program-section keyword is written and which spec field it fills."""

    min_args: int
    max_args: int | None
    usage: str
    field: str | None  # spec key it sets once; None for repeatable keywords (env, depends-on)


KEYWORDS: dict[str, _Keyword] = {
    "command": _Keyword(1, None, "command /usr/bin/app --flag", "command"),
    "user": _Keyword(1, 1, "user app  (a name or a numeric uid)", "user"),
    "group": _Keyword(1, 1, "group app  (a name or a numeric gid)", "group"),
    "option": _Keyword(1, 1, "[no] option start-on-reload", "onReload"),
    "restart": _Keyword(1, 1, "restart always|on-failure|never", "restart"),
    "on-reload": _Keyword(1, 1, "on-reload restart|keep|signal", "onReload"),
    "reload-signal": _Keyword(1, 1, "reload-signal SIGHUP", "reloadSignal"),
    "stop-signal": _Keyword(1, 1, "stop-signal SIGTERM", "stopSignal"),
    "stop-timeout": _Keyword(1, 1, "stop-timeout 10s", "stopTimeoutSeconds"),
    "backoff-initial": _Keyword(1, 1, "backoff-initial 500ms", "initialSeconds"),
    "backoff-max": _Keyword(1, 1, "backoff-max 30s", "maxSeconds"),
    "backoff-reset": _Keyword(1, 1, "backoff-reset 60s", "resetAfterSeconds"),
    "env": _Keyword(2, 2, "env NAME value", None),
    "directory": _Keyword(1, 1, "directory /srv/app", "workingDir"),
    "umask": _Keyword(1, 1, "umask 0022", "umask"),
    "critical": _Keyword(0, 0, "[no] critical", "critical"),
    "depends-on": _Keyword(1, None, "depends-on db cache", None),
    "runtime-socket": _Keyword(1, 1, "runtime-socket /run/haproxy/admin.sock", "runtimeSocket"),
    "output": _Keyword(1, 1, "output prefixed|raw|json", "output"),
    # Health (see probes.py): one check type keyword per level, its timings on '<level>-options'.
    "depends-on-condition": _Keyword(2, 2, "depends-on-condition db started|ready", None),
    "notify": _Keyword(0, 0, "[no] notify", "notify"),
    "notify-access": _Keyword(1, 1, "notify-access main|all", "notifyAccess"),
    "watchdog": _Keyword(1, 1, "watchdog 30s", "watchdogSeconds"),
}
for _level in LEVELS:
    KEYWORDS[f"{_level}-http"] = _Keyword(1, None, f"{_level}-http <port> [</path>] [host <ip>] [scheme http|https] "
                                          "[header <name> <value>]...", _level)
    KEYWORDS[f"{_level}-tcp"] = _Keyword(1, 3, f"{_level}-tcp <port> [host <ip>]", _level)
    KEYWORDS[f"{_level}-exec"] = _Keyword(1, None, f"{_level}-exec /usr/bin/check --flag", _level)
    KEYWORDS[f"{_level}-options"] = _Keyword(
        2, None, f"{_level}-options [initial-delay <time>] [period <time>] [timeout <time>] "
        "[success-threshold <n>] [failure-threshold <n>]", f"{_level} options")
NEGATABLE = ("option", "critical", "notify")
# The check keywords are listed once for all levels, not nine times.
KNOWN_KEYWORDS = ", ".join([*(k for k in KEYWORDS if not k.startswith(LEVELS)),
                            "readiness-|liveness-|startup- http|tcp|exec|options"])
BACKOFF_FIELDS = ("initialSeconds", "maxSeconds", "resetAfterSeconds")
# What a user who knows the ProgramSet YAML (or supervisord) is likely to type instead.
ALIASES = {
    "workingdir": "directory", "working-dir": "directory", "cwd": "directory", "chdir": "directory",
    "environment": "env", "setenv": "env", "stopsignal": "stop-signal", "stoptimeoutseconds": "stop-timeout",
    "stopwaitsecs": "stop-timeout", "onreload": "on-reload", "reloadsignal": "reload-signal",
    "dependson": "depends-on", "autorestart": "restart", "backoff": "backoff-initial",
}

_TIME = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(us|ms|s|m|h|d)?")
_TIME_DIVISOR = {"us": 1_000_000, "ms": 1_000}
_TIME_FACTOR = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str) -> float:
    """HAProxy-style time in seconds: ``10`` (seconds, unlike HAProxy's ms), ``500ms``, ``2m``, ``1.5s``."""
    match = _TIME.fullmatch(text)
    if not match:
        raise ValueError(f"invalid time '{text}': write seconds, or a number with a unit us, ms, s, m, h, d "
                         "(e.g. 500ms, 10s, 2m)")
    number, unit = match.groups()
    if unit in _TIME_DIVISOR:
        return float(number) / _TIME_DIVISOR[unit]
    return float(number) * _TIME_FACTOR[unit]


class _Program:
    """One ``program`` section being read: its spec entry and where each field was set."""

    def __init__(self, name: str, file: int, line: int) -> None:
        self.name = name
        self.file = file  # index into the reader's files
        self.line = line
        self.spec: dict[str, Any] = {}
        self.lines: dict[Path, int] = {}  # spec path inside the program -> line
        self.set_by: dict[str, tuple[str, int]] = {}  # field -> (keyword as written, line)
        self.command_tried = False  # a 'command' line was seen, even a rejected one: "lacks a command" is noise


class _Cond:
    """One open ``.if`` block."""

    def __init__(self, line: int, taking: bool, decided: bool) -> None:
        self.line = line
        self.taking = taking  # lines of the current branch are used
        self.decided = decided  # a branch was already taken (or the parent block is skipped): later ones are not
        self.seen_else = False


class Message(NamedTuple):
    """A ``.notice``/``.warning``/``.diag`` line, or a warning of the loader, to print once loaded."""

    level: str  # NOTICE, WARNING, DIAG
    text: str  # HAProxy's wording: "parsing [file:line]: 'text'."


class _Reader:
    """Reads HAProxy files in order as one configuration, collecting every problem instead of stopping.

    What HAProxy shares between the files of one load is shared here too: the environment that
    ``global``'s ``setenv``/``presetenv``/``resetenv``/``unsetenv`` change, the run-time options
    ``enabled()`` asks about, and the program names. A section or an ``.if`` block ends with its file.
    """

    def __init__(self, environ: Mapping[str, str], check_references: bool, target: HAProxyTarget) -> None:
        self.environ = dict(environ)  # changed by the env keywords of 'global', as HAProxy's own environment
        self.env_ops: list[tuple[str, ...]] = []
        self.target = target
        self.enabled = set(DEFAULT_ENABLED)
        self.deprecated_allowed = False
        self.check_references = check_references
        self.files: list[str] = []
        self.filename = ""
        self.file = -1
        self.problems: list[tuple[int, int, Problem]] = []  # (file, line, problem), sorted at the end
        self.flagged: set[tuple[int, int]] = set()  # lines whose own text was rejected: the model need not repeat it
        self.keyword_at: dict[tuple[int, int], str] = {}  # (file, line) -> program keyword as written there
        self.located: dict[str, tuple[int, int]] = {}  # location text handed to config_from_spec -> its line
        self.messages: list[Message] = []
        self.programs: list[_Program] = []  # kept sections, in spec order
        self.by_name: dict[str, _Program] = {}
        self.section: str | None = None  # keyword of the current section
        self.section_name = ""  # HAProxy's $.SECTION: the section's name, else its keyword
        self.section_line = 0
        self.current: _Program | None = None
        self.conds: list[_Cond] = []

    def where(self, line: int, file: int | None = None) -> str:
        return f"{self.files[self.file if file is None else file]}:{line}"

    def fail(self, line: int, message: str, *, about_line: bool = True, file: int | None = None) -> None:
        """Record a problem; ``about_line=False`` for a whole section, so other problems of its line still show."""
        file = self.file if file is None else file
        self.problems.append((file, line, Problem(self.where(line, file), message)))
        if about_line:
            self.flagged.add((file, line))

    def say(self, level: str, line: int, text: str) -> None:
        self.messages.append(Message(level, f"parsing [{self.where(line)}]: {text}"))

    # -- lines and directives -------------------------------------------------------------------

    def read(self, text: str, filename: str) -> None:
        """One file; HAProxy starts each file outside any section and ends its ``.if`` blocks with it."""
        self.files.append(filename)
        self.file = len(self.files) - 1
        self.filename = filename
        self.section, self.section_name, self.current, self.conds = None, "", None, []
        for number, raw in enumerate(text.split("\n"), start=1):
            pseudo = {".FILE": self.filename, ".LINE": str(number), ".SECTION": self.section_name}
            try:
                tokens = tokenize(raw, self.environ, pseudo)
            except TokenError as exc:
                self.fail(number, str(exc))
                if self.current is not None and raw.split(None, 1)[:1] == ["command"]:
                    self.current.command_tried = True
                continue
            if tokens.words:
                self.line(number, tokens)
        for cond in self.conds:
            self.fail(cond.line, "non-terminated '.if' block.")
        self.end_sections()

    def line(self, number: int, tokens: Tokens) -> None:
        words = list(tokens.words)
        if words[0] in (".if", ".elif", ".else", ".endif"):
            self.conditional(number, words)
            return
        if self.conds and not self.conds[-1].taking:
            return
        if words[0].startswith("."):
            self.directive(number, words)
            return
        prefix = ""
        if words[0] in ("no", "default") and len(words) > 1:
            prefix, words = words[0], words[1:]
        negated = prefix == "no"
        keyword = words[0]
        if keyword in SECTION_KEYWORDS:
            self.start_section(number, words, tokens)
        elif self.section is None:
            self.fail(number, f"'{' '.join(tokens.words[:2])}' appears before any section; start a section "
                      "first, e.g. 'program api'")
        elif self.current is not None:
            self.current.command_tried |= keyword == "command"
            if tokens.issues:
                self.fail(number, tokens.issues[0])
            elif prefix and (prefix == "default" or keyword not in NEGATABLE):
                self.fail(number, f"'{prefix} {keyword}' is not supported: only 'no option start-on-reload', "
                          "'no critical' and 'no notify' take a 'no' prefix")
            else:
                self.program_keyword(number, keyword, words[1:], negated)
        elif self.section == "global" and not prefix and keyword in GLOBAL_KEYWORDS:
            self.global_keyword(number, keyword, words[1:])
        elif keyword == "command" and not prefix:  # in a section progset skips
            self.fail(number, f"'command' is only valid in a 'program' section, but this line is in the "
                      f"'{self.section}' section started at line {self.section_line}; is a "
                      "'program <name>' line missing or misspelled?")

    def conditional(self, number: int, words: list[str]) -> None:
        directive, rest = words[0], words[1:]
        if directive in (".else", ".endif") and rest:
            self.fail(number, f"Unexpected argument '{rest[0]}' for '{directive}'.")
        if directive == ".if":
            if self.conds and not self.conds[-1].taking:
                self.conds.append(_Cond(number, taking=False, decided=True))
                return
            taking = self.evaluate(number, directive, rest)
            self.conds.append(_Cond(number, taking=taking, decided=taking))
            return
        if not self.conds:
            self.fail(number, f"lone '{directive}' with no matching '.if'.")
            return
        top = self.conds[-1]
        if directive == ".endif":
            self.conds.pop()
        elif top.seen_else:
            self.fail(number, f"'{directive}' after '.else' is not permitted (the '.if' is at line {top.line}).")
        elif directive == ".else":
            top.taking, top.decided, top.seen_else = not top.decided, True, True
        elif top.decided:
            top.taking = False
        else:
            top.taking = top.decided = self.evaluate(number, directive, rest)

    def evaluate(self, number: int, directive: str, words: list[str]) -> bool:
        text = " ".join(words)  # HAProxy re-joins the words into one expression
        try:
            return eval_condition(text, self.environ, self.target, enabled=self.enabled.__contains__,
                                  directive=directive)
        except ConditionError as exc:
            self.fail(number, f"{exc}: {directive} {text}")
            return False

    def directive(self, number: int, words: list[str]) -> None:
        if words[0] not in MESSAGE_DIRECTIVES:
            hint = _closest(words[0], [".if", ".elif", ".else", ".endif", *MESSAGE_DIRECTIVES])
            self.fail(number, f"unknown directive '{words[0]}'." + (f" Did you mean '{hint}'?" if hint else ""))
        elif len(words) > 2:
            self.fail(number, f"Unexpected argument '{words[2]}' for '{words[0]}'. Use quotes if the message "
                      "should contain spaces.")
        elif words[0] == ".alert":
            self.fail(number, f".alert: {words[1] if len(words) > 1 else ''}")
        else:
            self.say(words[0][1:].upper(), number, f"'{words[1] if len(words) > 1 else ''}'.")

    # -- global ---------------------------------------------------------------------------------

    def global_keyword(self, number: int, keyword: str, args: list[str]) -> None:
        """The few ``global`` keywords that change how the rest is read, or what programs inherit."""
        if keyword in ENV_KEYWORDS:
            self.env_keyword(number, keyword, args)
        elif keyword == "expose-deprecated-directives":
            self.deprecated_allowed = True
        elif keyword in DISABLING_KEYWORDS:
            self.enabled.discard(DISABLING_KEYWORDS[keyword])
        elif keyword == "ssl-server-verify" and args:
            (self.enabled.add if args[0] == "none" else self.enabled.discard)("SERVER-SSL-VERIFY-NONE")

    def env_keyword(self, number: int, keyword: str, args: list[str]) -> None:
        """HAProxy's ``cfg_parse_global_env_opts``: applied now, so later lines see the change."""
        if keyword in ("setenv", "presetenv"):
            allowed = 2 if self.target.at_least("3.1") else 3  # up to 3.0, a third word was silently ignored
            if len(args) > allowed:
                self.fail(number, f"'{keyword}' cannot handle unexpected argument '{args[allowed]}'.")
                return
            if not args or not args[0]:
                self.fail(number, f"'{keyword}' expects environment variable name.")
                return
            if len(args) < 2 or not args[1]:
                self.fail(number, f"'{keyword}' expects environment variable value for '{args[0]}'.")
                return
            if "=" in args[0]:
                self.fail(number, f"'{keyword}' failed on variable '{args[0]}' : Invalid argument.")
                return
            if keyword == "setenv" or args[0] not in self.environ:
                self.environ[args[0]] = args[1]
            self.env_ops.append((keyword, args[0], args[1]))
        elif keyword == "unsetenv":
            if not args:
                self.fail(number, "'unsetenv' expects at least one variable name.")
                return
            for name in args:
                self.environ.pop(name, None)
            self.env_ops.append((keyword, *args))
        else:  # resetenv: keep only the names given
            keep = set(args)
            for name in [n for n in self.environ if n not in keep]:
                del self.environ[name]
            self.env_ops.append((keyword, *args))

    # -- sections -------------------------------------------------------------------------------

    def start_section(self, number: int, words: list[str], tokens: Tokens) -> None:
        self.end_sections()
        self.section = words[0]
        self.section_name = words[1] if len(words) > 1 else words[0]
        self.section_line = number
        self.current = None
        if words[0] != "program":
            return
        name = words[1] if len(words) > 1 else ""
        keep = True
        if len(words) == 1:
            self.fail(number, "'program' expects a name, e.g. 'program api'")
            keep = False
        elif len(words) > 2:
            self.fail(number, f"'program' takes exactly one name, got {len(words) - 1} words; a name cannot "
                      "contain spaces")
            keep = False
        elif tokens.issues:
            self.fail(number, tokens.issues[0])
            keep = False
        elif name in self.by_name:
            first = self.by_name[name]
            self.fail(number, f"program section '{name}' already exists (first at "
                      f"{self.where(first.line, first.file)})")
            keep = False
        if keep and self.target.at_least("3.1") and not self.deprecated_allowed:
            # HAProxy 3.1+ refuses it; progset's job is to run it, so only -dD (diagnostics) mentions it
            self.say("DIAG", number, f"HAProxy {self.target.version} would refuse this 'program' section without "
                     "'expose-deprecated-directives' in 'global' before it; progset loads it.")
            self.deprecated_allowed = True  # once, as HAProxy reports it once
        self.current = _Program(name=name, file=self.file, line=number)  # a rejected section is still read
        if keep:
            self.current.spec["name"] = name
            self.by_name[name] = self.current
            self.programs.append(self.current)

    def end_sections(self) -> None:
        """The current program section ends (a new section, or its file ends): it must have a command."""
        program = self.current
        self.current = None
        if program is not None and program.name in self.by_name and self.by_name[program.name] is program \
                and "command" not in program.spec and not program.command_tried:
            self.fail(program.line, f"program section '{program.name}' lacks a command to launch; add a "
                      "'command <argv...>' line", about_line=False, file=program.file)

    # -- program keywords -----------------------------------------------------------------------

    def program_keyword(self, number: int, keyword: str, args: list[str], negated: bool) -> None:
        program = self.current
        assert program is not None
        spec = KEYWORDS.get(keyword)
        if spec is None:
            hint = ALIASES.get(keyword.lower()) or _closest(keyword, list(KEYWORDS))
            self.fail(number, f"unknown keyword '{keyword}' in 'program' section"
                      + (f"; did you mean '{hint}'?" if hint else f"; known keywords: {KNOWN_KEYWORDS}"))
            return
        if not spec.min_args <= len(args) <= (spec.max_args if spec.max_args is not None else len(args)):
            self.fail(number, _arity_message(keyword, spec, len(args)))
            return
        written = f"{'no ' if negated else ''}{keyword}"
        self.keyword_at[(self.file, number)] = written
        if keyword == "option":
            if args[0] != "start-on-reload":
                self.fail(number, f"unknown option '{args[0]}' in 'program' section; the only option is "
                          "'start-on-reload' (see also 'on-reload restart|keep|signal')")
                return
            written = self.keyword_at[(self.file, number)] = f"{written} start-on-reload"
        if spec.field is not None and not self.claim(program, spec.field, written, number):
            return
        handler = _HANDLERS.get(keyword, _set_field)
        try:
            handler(program, spec, args, number, negated)
        except ValueError as exc:
            self.fail(number, str(exc))

    def claim(self, program: _Program, key: str, written: str, number: int) -> bool:
        """Each setting is given once; the second one is an error naming the first."""
        first = program.set_by.get(key)
        if first is None:
            program.set_by[key] = (written, number)
            return True
        first_written, first_line = first
        if first_written == written:
            extra = "; a program has one command (HAProxy silently kept the last one)" if key == "command" else ""
            self.fail(number, f"'{written}' is already set for program '{program.name}' at "
                      f"{self.where(first_line)}{extra}")
        else:
            self.fail(number, f"'{written}' conflicts with '{first_written}' at {self.where(first_line)}: "
                      f"both set {key} of program '{program.name}'")
        return False

    # -- result ---------------------------------------------------------------------------------

    def locate(self, path: Path) -> str:
        """``file:line (keyword)`` of the keyword that set ``path`` (its program's line if none did)."""
        if len(path) < 2 or path[0] != "programs" or not isinstance(path[1], int) or path[1] >= len(self.programs):
            return self.files[0] if self.files else ""
        program = self.programs[path[1]]
        line = program.line
        for cut in range(len(path) - 2, 0, -1):
            if path[2:2 + cut] in program.lines:
                line = program.lines[path[2:2 + cut]]
                break
        keyword = self.keyword_at.get((program.file, line))
        where = self.where(line, program.file)
        location = f"{where} ({keyword})" if keyword else where
        self.located[location] = (program.file, line)
        return location

    def config(self) -> Config:
        # A missing command is already reported; a stand-in lets the model check everything else.
        spec = {"programs": [p.spec if "command" in p.spec else {**p.spec, "command": ["-"]} for p in self.programs]}
        config = None
        origin = self.files[0] if len(self.files) == 1 else ", ".join(self.files)
        try:
            config = config_from_spec(spec, self.locate, origin=origin, check_references=self.check_references,
                                      haproxy_names=True)
        except ConfigError as exc:
            for problem in exc.problems:
                file, line = self.located.get(problem.location, (0, 0))
                if (file, line) not in self.flagged:  # one report per line: ours is the more specific
                    self.problems.append((file, line, problem))
        if self.problems or config is None:
            self.problems.sort(key=lambda item: (item[0], item[1]))
            raise ConfigError([problem for _, _, problem in self.problems])
        config.messages = tuple(self.messages)
        config.env_ops = tuple(self.env_ops)
        return config


def _arity_message(keyword: str, spec: _Keyword, got: int) -> str:
    if spec.max_args == 0:
        expected = "no argument"
    elif spec.max_args is None:
        expected = f"at least {spec.min_args} argument{'s' if spec.min_args > 1 else ''}"
    elif spec.min_args == spec.max_args == 1:
        expected = "exactly one argument (quote it if it contains spaces)"
    else:
        expected = f"exactly {spec.min_args} arguments"
    if keyword == "command" and got == 0:
        return "'command' expects a command with optional arguments separated in words, e.g. " \
               "'command /usr/bin/app --flag'"
    return f"'{keyword}' expects {expected}, got {got}; usage: {spec.usage}"


def _set_field(program: _Program, spec: _Keyword, args: list[str], line: int, negated: bool) -> None:
    assert spec.field is not None
    program.spec[spec.field] = args[0]
    program.lines[(spec.field,)] = line


def _set_identity(program: _Program, spec: _Keyword, args: list[str], line: int, negated: bool) -> None:
    """``user``/``group``: a name must exist now, as HAProxy resolves it while reading the file (a numeric
    id need not: it is progset's addition for users that exist only as numbers, e.g. OpenShift's)."""
    name = args[0]
    if not name.isdigit():
        import grp
        import pwd

        try:
            pwd.getpwnam(name) if spec.field == "user" else grp.getgrnam(name)
        except KeyError:
            kind = "user" if spec.field == "user" else "group"
            raise ValueError(f"cannot find {kind} id for '{name}'; use a numeric id for a {kind} that has no entry "
                             "in this system's files") from None
    _set_field(program, spec, args, line, negated)


def _set_command(program: _Program, spec: _Keyword, args: list[str], line: int, negated: bool) -> None:
    program.spec["command"] = list(args)
    program.lines[("command",)] = line


def _set_option(program: _Program, spec: _Keyword, args: list[str], line: int, negated: bool) -> None:
    program.spec["onReload"] = "keep" if negated else "restart"
    program.lines[("onReload",)] = line


def _set_time(program: _Program, spec: _Keyword, args: list[str], line: int, negated: bool) -> None:
    assert spec.field is not None
    seconds = parse_time(args[0])
    if spec.field in BACKOFF_FIELDS:
        program.spec.setdefault("backoff", {})[spec.field] = seconds
        program.lines.setdefault(("backoff",), line)
        program.lines[("backoff", spec.field)] = line
    else:
        program.spec[spec.field] = seconds
        program.lines[(spec.field,)] = line


def _add_env(program: _Program, spec: _Keyword, args: list[str], line: int, negated: bool) -> None:
    env = program.spec.setdefault("env", [])
    program.lines.setdefault(("env",), line)
    program.lines[("env", len(env))] = line
    env.append({"name": args[0], "value": args[1]})


def _set_critical(program: _Program, spec: _Keyword, args: list[str], line: int, negated: bool) -> None:
    program.spec["critical"] = not negated
    program.lines[("critical",)] = line


def _add_depends(program: _Program, spec: _Keyword, args: list[str], line: int, negated: bool) -> None:
    depends = program.spec.setdefault("dependsOn", [])
    program.lines.setdefault(("dependsOn",), line)
    for name in args:
        program.lines[("dependsOn", len(depends))] = line
        depends.append(name)


def _set_notify(program: _Program, spec: _Keyword, args: list[str], line: int, negated: bool) -> None:
    program.spec["notify"] = not negated
    program.lines[("notify",)] = line


def _add_condition(program: _Program, spec: _Keyword, args: list[str], line: int, negated: bool) -> None:
    conditions = program.spec.setdefault("dependsOnCondition", {})
    program.lines.setdefault(("dependsOnCondition",), line)
    if args[0] in conditions:
        raise ValueError(f"the condition for '{args[0]}' is already set for program '{program.name}'")
    conditions[args[0]] = args[1]
    program.lines[("dependsOnCondition", args[0])] = line


def _set_probe(program: _Program, spec: _Keyword, args: list[str], line: int, negated: bool) -> None:
    """``<level>-http|tcp|exec``: the check's type and target; its timings come from ``<level>-options``."""
    assert spec.field is not None
    level, kind = spec.field, spec.usage.split(None, 1)[0].rsplit("-", 1)[1]
    probe = program.spec.setdefault(level, {})
    program.lines.setdefault((level,), line)
    program.lines[(level, kind)] = line
    if kind == "exec":
        probe[kind] = {"command": list(args)}
        return
    action: dict[str, Any] = {"port": args[0]}
    probe[kind] = action
    rest = args[1:]
    if kind == "http" and rest and rest[0].startswith("/"):
        action["path"], rest = rest[0], rest[1:]
    while rest:
        option = rest[0]
        if option == "host" and len(rest) >= 2:
            action["host"], rest = rest[1], rest[2:]
        elif option == "scheme" and kind == "http" and len(rest) >= 2:
            action["scheme"], rest = rest[1], rest[2:]
        elif option == "header" and kind == "http" and len(rest) >= 3:
            action.setdefault("headers", []).append({"name": rest[1], "value": rest[2]})
            rest = rest[3:]
        else:
            known = "host <ip>" + (", scheme http|https, header <name> <value>" if kind == "http" else "")
            raise ValueError(f"'{spec.usage.split(None, 1)[0]}': unexpected '{option}' (or its value is missing); "
                             f"options are {known}; usage: {spec.usage}")


_PROBE_OPTIONS = {"initial-delay": "initialDelaySeconds", "period": "periodSeconds", "timeout": "timeoutSeconds",
                  "success-threshold": "successThreshold", "failure-threshold": "failureThreshold"}


def _set_probe_options(program: _Program, spec: _Keyword, args: list[str], line: int, negated: bool) -> None:
    """``<level>-options period 5s timeout 1s failure-threshold 3``: Kubernetes' timing fields, kebab-case."""
    assert spec.field is not None
    level = spec.field.split()[0]
    probe = program.spec.setdefault(level, {})
    program.lines.setdefault((level,), line)
    if len(args) % 2:
        raise ValueError(f"'{level}-options' takes pairs of option and value; usage: {spec.usage}")
    for option, value in zip(args[::2], args[1::2], strict=True):
        key = _PROBE_OPTIONS.get(option)
        if key is None:
            hint = _closest(option, list(_PROBE_OPTIONS))
            raise ValueError(f"unknown '{level}-options' option '{option}'"
                             + (f"; did you mean '{hint}'?" if hint else f"; options: {', '.join(_PROBE_OPTIONS)}"))
        if key in probe:
            raise ValueError(f"'{option}' is given twice")
        if key.endswith("Threshold"):
            if not value.isdigit():
                raise ValueError(f"'{option}' expects a whole number of at least 1, got '{value}'")
            probe[key] = int(value)
        else:
            probe[key] = parse_time(value)
        program.lines[(level, key)] = line


_Handler = Callable[[_Program, _Keyword, list[str], int, bool], None]
_HANDLERS: dict[str, _Handler] = {
    "command": _set_command, "user": _set_identity, "group": _set_identity, "option": _set_option,
    "stop-timeout": _set_time, "backoff-initial": _set_time,
    "backoff-max": _set_time, "backoff-reset": _set_time, "env": _add_env, "critical": _set_critical,
    "depends-on": _add_depends, "notify": _set_notify, "watchdog": _set_time, "depends-on-condition": _add_condition,
    **{f"{level}-{kind}": _set_probe for level in LEVELS for kind in ("http", "tcp", "exec")},
    **{f"{level}-options": _set_probe_options for level in LEVELS},
}


def load_haproxy_files(files: Sequence[tuple[str, str]], environ: Mapping[str, str] | None = None, *,
                       check_references: bool = True, target: HAProxyTarget | None = None) -> Config:
    """Load the ``program`` sections of HAProxy files (``(filename, text)``, in order) as one configuration.

    ``environ`` feeds ``"${VAR}"`` and ``.if`` (``os.environ`` by default); ``global``'s environment
    keywords change it for the lines after them, and are kept in :attr:`Config.env_ops` so the programs
    get the same environment. ``target`` is the HAProxy version conditions are evaluated as.
    Raises :class:`ConfigError` listing every problem found, each located as ``file:line``.
    ``check_references=False`` lets ``depends-on`` name programs of other files (see ``load_paths``).
    """
    reader = _Reader(os.environ if environ is None else environ, check_references, target or HAProxyTarget())
    for filename, text in files:
        reader.read(text, filename)
    return reader.config()


def load_haproxy_text(text: str, filename: str, environ: Mapping[str, str] | None = None, *,
                      check_references: bool = True, target: HAProxyTarget | None = None) -> Config:
    """One file's :func:`load_haproxy_files`."""
    return load_haproxy_files([(filename, text)], environ, check_references=check_references, target=target)
