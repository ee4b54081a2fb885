"""The one definition of a program: record types, defaults, validation and the canonical spec form.

Every loader (HAProxy syntax, ProgramSet manifest, rendered config) turns its input into a *spec*
dictionary with the camelCase keys of a ProgramSet ``spec`` and hands it to :func:`config_from_spec`.
Validation therefore happens in exactly one place, and the operator imports this module so that
what ``kubectl apply`` accepts and what the supervisor runs can never disagree.
"""

# No ``from __future__ import annotations`` here: typing.NamedTuple compiles every string annotation
# (about 0.1 ms a field), and this module is imported on the way to the first spawn.

import math
import re
import signal
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

from .errors import ConfigError, Problem
from .probes import DEPENDENCY_CONDITIONS, LEVELS, NOTIFY_ACCESS, Probe, probe_from_spec

API_VERSION = "progset.io/v1alpha1"
KIND = "ProgramSet"
RENDERED_KIND = "RenderedProgramSet"

RestartPolicy = Literal["always", "on-failure", "never"]
OnReload = Literal["restart", "keep", "signal"]
RESTART_POLICIES: tuple[str, ...] = ("always", "on-failure", "never")
ON_RELOAD_VALUES: tuple[str, ...] = ("restart", "keep", "signal")

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
NAME_MAX = 63
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CONFIG_MAP_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
CONFIG_MAP_NAME_MAX = 253
# The patterns are anchored for the CRD (Kubernetes' RE2, where $ is the end of the text) and used
# here with fullmatch: Python's $ also matches before a final newline, which let "api\n" through.
MAX_PROGRAMS = 2000
MAX_ARGS = 4096
MAX_SECONDS = 366 * 24 * 3600  # a year: any duration beyond is a typo, and timers must stay representable
MAX_ID = 2**32 - 2  # uid_t/gid_t; 2**32 - 1 is the kernel's "no change" value

DEFAULT_BACKOFF_INITIAL = 0.5
DEFAULT_BACKOFF_MAX = 30.0
DEFAULT_BACKOFF_RESET = 60.0
DEFAULT_STOP_SIGNAL = "SIGTERM"
DEFAULT_STOP_TIMEOUT = 10.0
DEFAULT_RELOAD_SIGNAL = "SIGHUP"

Path = tuple[str | int, ...]
Locator = Callable[[Path], str]

PROGRAM_KEYS = frozenset({
    "name", "command", "env", "workingDir", "umask", "user", "group", "restart", "backoff",
    "stopSignal", "stopTimeoutSeconds", "onReload", "reloadSignal", "critical", "dependsOn",
    "dependsOnCondition", "readiness", "liveness", "startup", "notify", "notifyAccess", "watchdogSeconds",
    "runtimeSocket", "output",
})
OUTPUT_MODES: tuple[str, ...] = ("prefixed", "raw", "json")
BACKOFF_KEYS = frozenset({"initialSeconds", "maxSeconds", "resetAfterSeconds"})
SPEC_KEYS = frozenset({"programs", "readyPrograms", "configMapName"})


def signal_names() -> list[str]:
    """Signal names a config may use (``SIGTERM`` form), without the real-time range."""
    return sorted(s.name for s in signal.Signals if not s.name.startswith("SIGRT"))


def parse_signal(value: object) -> signal.Signals:
    """Accept ``SIGTERM``, ``TERM``, ``term`` or a number; raise ValueError with the accepted names."""
    if isinstance(value, bool):
        raise ValueError(f"expected a signal name such as SIGTERM, got {value!r}")
    if isinstance(value, int):
        try:
            return signal.Signals(value)
        except ValueError:
            raise ValueError(f"{value} is not a signal number") from None
    if not isinstance(value, str):
        raise ValueError(f"expected a signal name such as SIGTERM, got {value!r}")
    text = value.strip().upper()
    if text.isdigit():
        return parse_signal(int(text))
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return signal.Signals[text]
    except KeyError:
        raise ValueError(f"unknown signal {value!r}; use a name such as SIGTERM, SIGHUP, SIGUSR1") from None


class Backoff(NamedTuple):
    """Restart delays: immediate first restart, then ``initial`` x 2^n with jitter, capped at ``max``."""

    initial_seconds: float = DEFAULT_BACKOFF_INITIAL
    max_seconds: float = DEFAULT_BACKOFF_MAX
    reset_after_seconds: float = DEFAULT_BACKOFF_RESET


class EnvVar(NamedTuple):
    name: str
    value: str


class Program(NamedTuple):
    """One supervised program; equality of two Programs means "same definition" for reloads."""

    name: str
    command: tuple[str, ...]
    env: tuple[EnvVar, ...] = ()
    working_dir: str | None = None
    umask: int | None = None
    user: str | None = None
    group: str | None = None
    restart: RestartPolicy = "on-failure"
    backoff: Backoff = Backoff()
    stop_signal: str = DEFAULT_STOP_SIGNAL
    stop_timeout_seconds: float = DEFAULT_STOP_TIMEOUT
    on_reload: OnReload = "restart"
    reload_signal: str | None = None
    critical: bool = False
    depends_on: tuple[str, ...] = ()
    output: str | None = None  # "prefixed", "raw" or "json"; None: the supervisor's --output
    # Health (see ``probes``): checks run by the supervisor, and sd_notify readiness the program reports.
    depends_on_condition: tuple[tuple[str, str], ...] = ()  # (dependency, "started"|"ready"), explicit ones
    readiness: Probe | None = None
    liveness: Probe | None = None
    startup: Probe | None = None
    notify: bool = False
    notify_access: str = "main"
    watchdog_seconds: float = 0.0
    # The program's own CLI (HAProxy's stats socket): the Master CLI forwards '@1 <command>' to it.
    runtime_socket: str | None = None

    @property
    def effective_reload_signal(self) -> str:
        return self.reload_signal or DEFAULT_RELOAD_SIGNAL

    @property
    def has_readiness_source(self) -> bool:
        """Whether "running" and "ready" differ for this program: a readiness check or sd_notify."""
        return self.readiness is not None or self.notify

    def probes(self) -> tuple[tuple[str, Probe], ...]:
        """The configured checks as (level, probe), in LEVELS order."""
        return tuple((level, probe) for level, probe in zip(LEVELS, (self.readiness, self.liveness, self.startup),
                                                            strict=True) if probe is not None)

    def condition_for(self, dependency: str) -> str | None:
        """The explicit ``dependsOnCondition`` for ``dependency``; None: ready if it has a readiness source."""
        for name, condition in self.depends_on_condition:
            if name == dependency:
                return condition
        return None

    def definition(self) -> tuple[object, ...]:
        """What the running process was made from; a change here forces a restart on reload.

        ``onReload``, ``restart``, ``backoff``, stop settings, ``critical`` and ``dependsOn`` only steer
        how the supervisor treats the process, so changing them alone never bounces a running program
        (a user switching ``restart`` to ``keep`` must not restart the program they want to keep).
        Checks are not part of it either (a changed check is re-planned on the running process);
        ``notify`` and ``watchdogSeconds`` are, because they are the process's ``NOTIFY_SOCKET`` and
        ``WATCHDOG_USEC``, which it read at start.
        """
        return (self.command, self.env, self.working_dir, self.umask, self.user, self.group, self.notify,
                self.watchdog_seconds)

    def to_spec(self) -> dict[str, Any]:
        """The fully defaulted camelCase form, as the operator renders it."""
        spec: dict[str, Any] = {
            "name": self.name,
            "command": list(self.command),
            "env": [{"name": e.name, "value": e.value} for e in self.env],
            "restart": self.restart,
            "backoff": {
                "initialSeconds": self.backoff.initial_seconds,
                "maxSeconds": self.backoff.max_seconds,
                "resetAfterSeconds": self.backoff.reset_after_seconds,
            },
            "stopSignal": self.stop_signal,
            "stopTimeoutSeconds": self.stop_timeout_seconds,
            "onReload": self.on_reload,
            "critical": self.critical,
            "dependsOn": list(self.depends_on),
        }
        if self.working_dir is not None:
            spec["workingDir"] = self.working_dir
        if self.umask is not None:
            spec["umask"] = f"{self.umask:04o}"
        if self.user is not None:
            spec["user"] = self.user
        if self.group is not None:
            spec["group"] = self.group
        if self.on_reload == "signal":
            spec["reloadSignal"] = self.effective_reload_signal
        if self.output is not None:
            spec["output"] = self.output
        # The health fields are written only when set, so configs without them keep their hash.
        if self.depends_on_condition:
            spec["dependsOnCondition"] = dict(self.depends_on_condition)
        for level, probe in self.probes():
            spec[level] = probe.to_spec()
        if self.notify:
            spec["notify"] = True
            spec["notifyAccess"] = self.notify_access
            spec["watchdogSeconds"] = self.watchdog_seconds
        if self.runtime_socket is not None:
            spec["runtimeSocket"] = self.runtime_socket
        return spec


class Source(NamedTuple):
    """Where a rendered config came from (the ProgramSet object), for ``show info`` and metrics."""

    namespace: str = ""
    name: str = ""
    generation: int = 0

    def __str__(self) -> str:
        if not self.name:
            return ""
        return f"{self.namespace}/{self.name}@{self.generation}"


NO_SOURCE = Source()


class Config:
    """A validated configuration: programs in order plus supervisor-wide settings."""

    __slots__ = ("_hash", "config_map_name", "env_ops", "fingerprint", "messages", "no_programs_ok", "notes", "origin",
                 "programs",
                 "ready_programs", "source")

    def __init__(self, programs: tuple[Program, ...] = (), ready_programs: tuple[str, ...] | None = None,
                 config_map_name: str | None = None, source: Source = NO_SOURCE, origin: str = "") -> None:
        self.programs = programs
        self.ready_programs = ready_programs
        self.config_map_name = config_map_name
        self.source = source
        self.origin = origin
        # What ``load_path`` read to make this config (``loader.fingerprint``); empty otherwise.
        self.fingerprint = b""
        # The document says ``programs: []`` in so many words: no programs is meant, not a mistake
        # (an emptied ConfigMap, a comment-only file); see ``loader.load_path``.
        self.no_programs_ok = False
        self.notes: list[str] = []  # what loading skipped and the log should say (``loader.scan_directory``)
        # HAProxy syntax only: the .notice/.warning/.diag messages of the load (``haproxy.Message``), and
        # global's setenv/presetenv/resetenv/unsetenv in order (``environment.apply_env_ops``).
        self.messages: tuple[Any, ...] = ()
        self.env_ops: tuple[tuple[str, ...], ...] = ()
        self._hash: str | None = None

    def __repr__(self) -> str:
        return (f"Config(programs={self.programs!r}, ready_programs={self.ready_programs!r}, "
                f"config_map_name={self.config_map_name!r}, source={self.source!r}, origin={self.origin!r})")

    def by_name(self) -> dict[str, Program]:
        return {p.name: p for p in self.programs}

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"programs": [p.to_spec() for p in self.programs]}
        if self.ready_programs is not None:
            spec["readyPrograms"] = list(self.ready_programs)
        if self.config_map_name is not None:
            spec["configMapName"] = self.config_map_name
        return spec

    @property
    def hash(self) -> str:
        """Computed once, when first asked: ``show info``, ``/status`` and every scrape ask for it."""
        if self._hash is None:
            self._hash = spec_hash(self.to_spec())
        return self._hash

    def start_order(self) -> list[Program]:
        """Programs ordered so each starts after its ``dependsOn``; config order breaks ties."""
        return topological_order(self.programs)


def spec_hash(spec: Mapping[str, Any]) -> str:
    """Content hash of a defaulted spec: stable across key order and YAML formatting."""
    import json

    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + _sha256_hex(canonical.encode())[:16]


def _sha256_hex(data: bytes) -> str:
    """SHA-256 from CPython's built-in module when there is one: ``hashlib`` loads OpenSSL first
    (~4.5 ms measured, ~0.3 ms for the built-in), and a rendered config's hash is checked before
    any program starts. The digest is the same either way."""
    try:
        from _sha2 import sha256  # CPython 3.12 and later
    except ImportError:
        try:
            from _sha256 import sha256  # type: ignore[no-redef]  # CPython 3.11
        except ImportError:
            from hashlib import sha256  # type: ignore[assignment]  # other interpreters
    return sha256(data).hexdigest()


def topological_order(programs: Sequence[Program]) -> list[Program]:
    """Kahn's algorithm in O(n + edges); assumes the graph was validated acyclic."""
    index = {p.name: i for i, p in enumerate(programs)}
    remaining = {p.name: len([d for d in p.depends_on if d in index]) for p in programs}
    dependents: dict[str, list[str]] = {p.name: [] for p in programs}
    for p in programs:
        for dep in p.depends_on:
            if dep in dependents:
                dependents[dep].append(p.name)
    import heapq

    ready = [index[n] for n, count in remaining.items() if count == 0]
    heapq.heapify(ready)
    order: list[Program] = []
    while ready:
        program = programs[heapq.heappop(ready)]
        order.append(program)
        for child in dependents[program.name]:
            remaining[child] -= 1
            if remaining[child] == 0:
                heapq.heappush(ready, index[child])
    return order


def path_text(path: Path) -> str:
    """``("programs", 1, "command")`` -> ``spec.programs[1].command``."""
    text = "spec"
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


class _Checker:
    """Collects problems while reading a spec dict so one run reports every mistake."""

    def __init__(self, locate: Locator) -> None:
        self.locate = locate
        self.problems: list[Problem] = []

    def fail(self, path: Path, message: str) -> None:
        self.problems.append(Problem(self.locate(path), message))

    def number(self, value: object, path: Path, *, minimum: float = 0.0, exclusive: bool = False) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.fail(path, f"expected a number of seconds, got {value!r}")
            return None
        if value < minimum or (exclusive and value == minimum):
            self.fail(path, f"must be {'greater than' if exclusive else 'at least'} {minimum:g}, got {value!r}")
            return None
        if value > MAX_SECONDS:
            self.fail(path, f"must be at most {MAX_SECONDS} seconds (a year), got {value!r}")
            return None
        return float(value)

    def string(self, value: object, path: Path, *, empty_ok: bool = False, numeric_ok: bool = False) -> str | None:
        """A string; an int only where a numeric id is meant (``numeric_ok``: user, group), as the CRD says.

        Elsewhere ``8080`` for an env value or an argument is refused, as the API server refuses it
        in a pod spec: YAML turned what looked like text into a number (``010`` is 8, ``1e3`` 1000.0).
        """
        if isinstance(value, bool) or not isinstance(value, str | int) or (isinstance(value, int) and not numeric_ok):
            hint = f"; quote it: \"{value}\"" if isinstance(value, int | float) and not isinstance(value, bool) else ""
            self.fail(path, f"expected a string, got {value!r}{hint}")
            return None
        text = str(value)
        if not text and not empty_ok:
            self.fail(path, "must not be empty")
            return None
        if "\x00" in text:  # exec and the C library end strings there: it could never mean what it says
            self.fail(path, "must not contain a NUL byte")
            return None
        return text

    def choice(self, value: object, path: Path, choices: Sequence[str]) -> str | None:
        if value not in choices:
            self.fail(path, f"must be one of {', '.join(choices)}; got {value!r}")
            return None
        return str(value)

    def signal(self, value: object, path: Path) -> str | None:
        try:
            return parse_signal(value).name
        except ValueError as exc:
            self.fail(path, str(exc))
            return None

    def unknown_keys(self, mapping: Mapping[str, Any], allowed: frozenset[str], path: Path) -> None:
        for key in mapping:
            if key not in allowed:
                hint = _closest(str(key), allowed)
                extra = f"; did you mean '{hint}'?" if hint else f"; known fields: {', '.join(sorted(allowed))}"
                self.fail((*path, str(key)), f"unknown field '{key}'{extra}")


def _closest(word: str, candidates: frozenset[str] | Sequence[str]) -> str | None:
    import difflib

    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    if not matches:
        lowered = {c.lower(): c for c in candidates}
        return lowered.get(word.lower().replace("-", "").replace("_", ""))
    return matches[0]


# The umask forms the CRD accepts (crd.py builds its pattern from this): "022", "0022", "00022", "0o022".
UMASK_RE = re.compile(r"0{0,2}[0-7]{1,3}|0o0?[0-7]{1,3}")


def parse_umask(value: object) -> int:
    """An octal string (``"0022"``, ``"022"``, ``"0o022"``), exactly what the CRD accepts.

    Numbers are refused: YAML reads ``umask: 77`` as the decimal 77 (mode 0115) and ``umask: 0022`` as
    18, so a number never means what was written.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(f"expected an octal string such as \"0077\", got the number {value!r}: YAML reads "
                         f"an unquoted umask as a number (77 is decimal, 0077 is 63); quote it")
    if not isinstance(value, str) or not UMASK_RE.fullmatch(value.strip()):
        raise ValueError(f"expected an octal string such as \"0022\", got {value!r}")
    return int(value.strip().removeprefix("0o"), 8)


def kubernetes_name(name: str) -> str:
    """The name a program written in HAProxy syntax gets where a Kubernetes name is needed (a ProgramSet):
    lower case, every run of other characters than letters and digits becomes one ``-``, at most
    :data:`NAME_MAX` characters (``spoe_agent`` -> ``spoe-agent``, ``Mirror.V2`` -> ``mirror-v2``)."""
    mapped = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:NAME_MAX].strip("-")
    return mapped or "program"


def _valid_name(name: object, haproxy_names: bool) -> bool:
    if not isinstance(name, str):
        return False
    if haproxy_names:  # HAProxy takes any word; only what cannot be printed on one line is refused
        return bool(name) and name.isprintable() and not any(c.isspace() for c in name)
    return len(name) <= NAME_MAX and bool(NAME_RE.fullmatch(name))


def _program_from_spec(raw: object, path: Path, check: _Checker, haproxy_names: bool = False) -> Program | None:
    if not isinstance(raw, Mapping):
        check.fail(path, f"each program must be a mapping with at least name and command, got {raw!r}")
        return None
    before = len(check.problems)
    check.unknown_keys(raw, PROGRAM_KEYS, path)

    name = raw.get("name")
    if name is None:
        check.fail(path, "missing 'name'")
    elif haproxy_names and not _valid_name(name, True):
        check.fail((*path, "name"), f"invalid program name {name!r}: a name is one word of printable characters")
    elif not _valid_name(name, haproxy_names):
        hint = f" (e.g. '{kubernetes_name(name)}')" if isinstance(name, str) else ""
        check.fail((*path, "name"), f"invalid program name {name!r}: use lower-case letters, digits and '-', "
                   f"starting and ending with a letter or digit, at most {NAME_MAX} characters{hint}")

    command = raw.get("command")
    argv: tuple[str, ...] = ()
    if command is None:
        check.fail(path, "missing 'command' (an argv list such as [\"/usr/bin/app\", \"--flag\"])")
    elif isinstance(command, str):
        check.fail((*path, "command"), "command must be a list of arguments, not a shell string; "
                   f"write [\"sh\", \"-c\", {command!r}] to use a shell")
    elif not isinstance(command, Sequence) or not command:
        check.fail((*path, "command"), "command must be a non-empty list of arguments")
    elif len(command) > MAX_ARGS:
        check.fail((*path, "command"), f"too many arguments ({len(command)} > {MAX_ARGS})")
    else:
        args = [check.string(a, (*path, "command", i), empty_ok=i > 0) for i, a in enumerate(command)]
        if all(a is not None for a in args):
            argv = tuple(a for a in args if a is not None)

    env: list[EnvVar] = []
    raw_env = raw.get("env", [])
    if raw_env is None:
        raw_env = []
    if isinstance(raw_env, Mapping):
        check.fail((*path, "env"), "env must be a list of {name, value} entries (as in a pod spec), not a "
                   "mapping; write '- {name: NAME, value: \"VALUE\"}' for each variable")
    elif not isinstance(raw_env, Sequence) or isinstance(raw_env, str):
        check.fail((*path, "env"), "env must be a list of {name, value}")
    else:
        seen_env: set[str] = set()
        for i, item in enumerate(raw_env):
            ipath = (*path, "env", i)
            if not isinstance(item, Mapping) or "name" not in item:
                check.fail(ipath, "each env entry needs 'name' and 'value'")
                continue
            check.unknown_keys(item, frozenset({"name", "value"}), ipath)
            env_name = item["name"]
            if not isinstance(env_name, str) or not ENV_NAME_RE.fullmatch(env_name):
                check.fail((*ipath, "name"), f"invalid environment variable name {env_name!r}")
                continue
            if env_name in seen_env:
                check.fail((*ipath, "name"), f"environment variable {env_name!r} is set twice")
            seen_env.add(env_name)
            value = item.get("value", "")
            text = check.string("" if value is None else value, (*ipath, "value"), empty_ok=True)
            if text is not None:
                env.append(EnvVar(env_name, text))

    working_dir = raw.get("workingDir")
    if working_dir is not None:
        working_dir = check.string(working_dir, (*path, "workingDir"))
    umask = None
    if raw.get("umask") is not None:
        try:
            umask = parse_umask(raw["umask"])
        except ValueError as exc:
            check.fail((*path, "umask"), str(exc))
    ids: dict[str, str | None] = {}
    for key in ("user", "group"):
        value = raw.get(key)
        ids[key] = None if value is None else check.string(value, (*path, key), numeric_ok=True)
        if ids[key] is not None and ids[key].isdigit() and int(ids[key]) > MAX_ID:  # type: ignore[union-attr]
            check.fail((*path, key), f"numeric {key} id must be at most {MAX_ID}, got {ids[key]}")
            ids[key] = None

    restart = check.choice(raw.get("restart", "on-failure"), (*path, "restart"), RESTART_POLICIES)
    backoff = Backoff()
    raw_backoff = raw.get("backoff")
    if raw_backoff is not None:
        if not isinstance(raw_backoff, Mapping):
            check.fail((*path, "backoff"), "backoff must be a mapping of initialSeconds, maxSeconds, "
                       "resetAfterSeconds")
        else:
            check.unknown_keys(raw_backoff, BACKOFF_KEYS, (*path, "backoff"))
            bpath = (*path, "backoff")
            initial = check.number(raw_backoff.get("initialSeconds", DEFAULT_BACKOFF_INITIAL),
                                   (*bpath, "initialSeconds"), exclusive=True)
            maximum = check.number(raw_backoff.get("maxSeconds", DEFAULT_BACKOFF_MAX), (*bpath, "maxSeconds"),
                                   exclusive=True)
            reset = check.number(raw_backoff.get("resetAfterSeconds", DEFAULT_BACKOFF_RESET),
                                 (*bpath, "resetAfterSeconds"), exclusive=True)
            if initial is not None and maximum is not None and maximum < initial:
                check.fail((*bpath, "maxSeconds"), f"maxSeconds ({maximum:g}) must be at least "
                           f"initialSeconds ({initial:g})")
            if None not in (initial, maximum, reset):
                backoff = Backoff(initial, maximum, reset)  # type: ignore[arg-type]

    stop_signal = check.signal(raw.get("stopSignal", DEFAULT_STOP_SIGNAL), (*path, "stopSignal"))
    stop_timeout = check.number(raw.get("stopTimeoutSeconds", DEFAULT_STOP_TIMEOUT), (*path, "stopTimeoutSeconds"))
    on_reload = check.choice(raw.get("onReload", "restart"), (*path, "onReload"), ON_RELOAD_VALUES)
    reload_signal = None
    if raw.get("reloadSignal") is not None:
        if on_reload != "signal":
            check.fail((*path, "reloadSignal"), "reloadSignal only applies with onReload: signal; "
                       "remove it or set onReload: signal")
        reload_signal = check.signal(raw["reloadSignal"], (*path, "reloadSignal"))
    elif on_reload == "signal":
        reload_signal = DEFAULT_RELOAD_SIGNAL  # canonical: to_spec() writes it, so a reload must read the same
    critical = raw.get("critical", False)
    if not isinstance(critical, bool):
        check.fail((*path, "critical"), f"expected true or false, got {critical!r}")
    depends: list[str] = []
    raw_depends = raw.get("dependsOn", []) or []
    if not isinstance(raw_depends, Sequence) or isinstance(raw_depends, str):
        check.fail((*path, "dependsOn"), "dependsOn must be a list of program names")
    else:
        for i, dep in enumerate(raw_depends):
            if not isinstance(dep, str):
                check.fail((*path, "dependsOn", i), f"expected a program name, got {dep!r}")
            else:
                depends.append(dep)

    output = raw.get("output")
    if output is not None:
        output = check.choice(output, (*path, "output"), OUTPUT_MODES)
    health = _health_from_spec(raw, path, check, depends)
    runtime_socket = raw.get("runtimeSocket")
    if runtime_socket is not None:
        from .runtime_socket import parse_socket_address

        try:
            parse_socket_address(runtime_socket)
        except ValueError as exc:
            check.fail((*path, "runtimeSocket"), str(exc))

    if len(check.problems) != before:
        return None
    return Program(
        name=name,  # type: ignore[arg-type]
        command=argv,
        env=tuple(env),
        working_dir=working_dir,
        umask=umask,
        user=ids["user"],
        group=ids["group"],
        restart=restart,  # type: ignore[arg-type]
        backoff=backoff,
        stop_signal=stop_signal,  # type: ignore[arg-type]
        stop_timeout_seconds=stop_timeout,  # type: ignore[arg-type]
        on_reload=on_reload,  # type: ignore[arg-type]
        reload_signal=reload_signal,
        critical=bool(critical),
        depends_on=tuple(depends),
        output=output,
        runtime_socket=runtime_socket,
        **health,
    )


def _health_from_spec(raw: Mapping[str, Any], path: Path, check: _Checker, depends: list[str]) -> dict[str, Any]:
    """The checks, sd_notify settings and dependency conditions of one program (see ``probes``)."""
    health: dict[str, Any] = {}
    for level in LEVELS:
        if raw.get(level) is not None:
            health[level] = probe_from_spec(raw[level], (*path, level), check, level)
    notify = raw.get("notify", False)
    if not isinstance(notify, bool):
        check.fail((*path, "notify"), f"expected true or false, got {notify!r}")
    health["notify"] = notify is True
    for key in ("notifyAccess", "watchdogSeconds"):
        if raw.get(key) is not None and notify is not True:
            check.fail((*path, key), f"{key} only applies with notify: true (the program reports over "
                       "NOTIFY_SOCKET); set notify: true or remove it")
    if raw.get("notifyAccess") is not None:
        health["notify_access"] = check.choice(raw["notifyAccess"], (*path, "notifyAccess"), NOTIFY_ACCESS)
    if raw.get("watchdogSeconds") is not None:
        health["watchdog_seconds"] = check.number(raw["watchdogSeconds"], (*path, "watchdogSeconds"))
    conditions = raw.get("dependsOnCondition")
    if conditions is not None:
        cpath = (*path, "dependsOnCondition")
        if not isinstance(conditions, Mapping):
            check.fail(cpath, "dependsOnCondition must map dependency names to started or ready, "
                       "e.g. {db: started}")
        else:
            pairs = []
            for name, condition in conditions.items():
                if name not in depends:
                    check.fail((*cpath, str(name)), f"dependsOnCondition names '{name}', which is not in "
                               "dependsOn; add it there")
                value = check.choice(condition, (*cpath, str(name)), DEPENDENCY_CONDITIONS)
                if value is not None:
                    pairs.append((str(name), value))
            health["depends_on_condition"] = tuple(sorted(pairs))
    return health


def _check_graph(programs: Sequence[Program], paths: Mapping[str, Path], check: _Checker) -> None:
    """Unknown ``dependsOn`` names and cycles, reported together with every other problem (one ``-c``
    run shows them all). ``paths`` names every entry, also those with errors of their own, so a
    dependency on a program that has a typo elsewhere is not reported as unknown."""
    names = set(paths)
    for p in programs:
        for i, dep in enumerate(p.depends_on):
            if dep == p.name:
                check.fail((*paths[p.name], "dependsOn", i), f"program '{p.name}' cannot depend on itself")
            elif dep not in names:
                hint = _closest(dep, sorted(names))
                extra = f"; did you mean '{hint}'?" if hint else ""
                check.fail((*paths[p.name], "dependsOn", i), f"'{p.name}' depends on unknown program '{dep}'{extra}")
    acyclic = [p._replace(depends_on=tuple(d for d in p.depends_on if d != p.name)) for p in programs]
    ordered = topological_order(acyclic)
    if len(ordered) != len(acyclic):
        placed = {p.name for p in ordered}
        stuck = {p.name: p.depends_on for p in acyclic if p.name not in placed}
        cycle = _find_cycle(stuck)
        check.fail((*paths[cycle[0]], "dependsOn"), "dependsOn cycle: " + " -> ".join([*cycle, cycle[0]]))


def _find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str]:
    """One cycle among the nodes that Kahn's algorithm could not place (all of them lie on or behind one)."""
    start = next(iter(graph))
    seen: list[str] = []
    node = start
    while node not in seen:
        seen.append(node)
        node = next(d for d in graph[node] if d in graph)
    return seen[seen.index(node):]


def config_from_spec(spec: object, locate: Locator | None = None, *, origin: str = "",
                     source: Source | None = None, check_references: bool = True,
                     haproxy_names: bool = False) -> Config:
    """Validate a ProgramSet ``spec`` mapping and build a :class:`Config`, or raise :class:`ConfigError`.

    ``locate`` turns a path inside the spec into a location text (file:line when the loader knows
    lines); by default the path itself is shown (``spec.programs[1].command``).
    ``check_references=False`` skips the checks that need the other programs (``dependsOn`` targets
    and cycles, ``readyPrograms`` names): for one file of a directory, whose merge is checked instead.
    ``haproxy_names=True`` accepts program names as HAProxy does (any word: ``spoe_agent``, ``Mirror.V2``)
    instead of the Kubernetes names a ProgramSet needs (see :func:`kubernetes_name`).
    """
    check = _Checker(locate or path_text)
    if not isinstance(spec, Mapping):
        raise ConfigError(Problem(check.locate(()), "spec must be a mapping with a 'programs' list"))
    check.unknown_keys(spec, SPEC_KEYS, ())
    raw_programs = spec.get("programs")
    programs: list[Program] = []
    paths: dict[str, Path] = {}
    if "programs" not in spec:  # the CRD requires it: a ProgramSet without its list is a mistake
        check.fail(("programs",), "required: the list of programs (write 'programs: []' for none)")
    if raw_programs is None:
        raw_programs = []
    if not isinstance(raw_programs, Sequence) or isinstance(raw_programs, str):
        check.fail(("programs",), "programs must be a list")
        raw_programs = []
    if len(raw_programs) > MAX_PROGRAMS:
        check.fail(("programs",), f"too many programs ({len(raw_programs)} > {MAX_PROGRAMS})")
    for i, raw in enumerate(raw_programs):
        program = _program_from_spec(raw, ("programs", i), check, haproxy_names)
        name = raw.get("name") if isinstance(raw, Mapping) else None
        if isinstance(name, str) and name in paths:
            # Reported even when this entry has other errors, so one run shows every mistake.
            first = check.locate(paths[name])
            check.fail(("programs", i, "name"), f"duplicate program name '{name}' (first defined at {first})")
            continue
        if isinstance(name, str):
            paths[name] = ("programs", i)
        if program is not None:
            programs.append(program)
    if check_references:
        _check_graph(programs, paths, check)

    ready = spec.get("readyPrograms")
    ready_names: tuple[str, ...] | None = None
    if ready is not None:
        if not isinstance(ready, Sequence) or isinstance(ready, str):
            check.fail(("readyPrograms",), "readyPrograms must be a list of program names")
        else:
            for i, name in enumerate(ready):
                if not isinstance(name, str):
                    check.fail(("readyPrograms", i), f"expected a program name, got {name!r}")
                elif check_references and name not in paths:
                    check.fail(("readyPrograms", i), f"readyPrograms names unknown program {name!r}")
            ready_names = tuple(str(n) for n in ready)
    cm_name = spec.get("configMapName")
    if cm_name is not None and (not isinstance(cm_name, str) or not CONFIG_MAP_NAME_RE.fullmatch(cm_name)
                                or len(cm_name) > CONFIG_MAP_NAME_MAX):
        check.fail(("configMapName",), f"invalid ConfigMap name {cm_name!r}")
        cm_name = None
    if check.problems:
        raise ConfigError(check.problems)
    return Config(programs=tuple(programs), ready_programs=ready_names, config_map_name=cm_name,
                  source=source or Source(), origin=origin)
