"""Health checks of a program (readiness, liveness, startup) and sd_notify settings: records and validation.

The fields, defaults and meanings are Kubernetes' probes (``periodSeconds`` 10, ``timeoutSeconds`` 1,
``successThreshold`` 1, ``failureThreshold`` 3, ``initialDelaySeconds`` 0; 2xx/3xx is an HTTP
success), written per program. Two deliberate differences: seconds may be fractional (a supervisor
inside one pod can afford a 0.5 s period), and ``host`` must be an IP address, because resolving a
name would block the supervisor's one loop (the checks run inside the pod, where 127.0.0.1 reaches
the program; the default).

Kept apart from ``model`` so the program record stays readable; ``model`` calls
:func:`probe_from_spec` with its problem collector, which this module only knows as a protocol
(no import of ``model``: no cycle).
"""

# No ``from __future__ import annotations`` here: typing.NamedTuple compiles every string annotation.

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple, Protocol

ProbeKind = Literal["exec", "http", "tcp"]
PROBE_KINDS: tuple[str, ...] = ("exec", "http", "tcp")
LEVELS: tuple[str, ...] = ("readiness", "liveness", "startup")
SCHEMES: tuple[str, ...] = ("HTTP", "HTTPS")
NOTIFY_ACCESS: tuple[str, ...] = ("main", "all")
DEPENDENCY_CONDITIONS: tuple[str, ...] = ("started", "ready")

DEFAULT_PERIOD = 10.0
DEFAULT_TIMEOUT = 1.0
DEFAULT_SUCCESS_THRESHOLD = 1
DEFAULT_FAILURE_THRESHOLD = 3
DEFAULT_INITIAL_DELAY = 0.0
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PATH = "/"
MAX_THRESHOLD = 1_000_000
MAX_HEADERS = 64

TIMING_KEYS = ("initialDelaySeconds", "periodSeconds", "timeoutSeconds", "successThreshold", "failureThreshold")
PROBE_KEYS = frozenset({*PROBE_KINDS, *TIMING_KEYS})
KIND_KEYS: dict[str, frozenset[str]] = {
    "exec": frozenset({"command"}),
    "http": frozenset({"port", "path", "host", "scheme", "headers"}),
    "tcp": frozenset({"port", "host"}),
}
# What a user who knows Kubernetes' probes is likely to write.
KUBERNETES_NAMES = {"httpGet": "http", "tcpSocket": "tcp", "grpc": None, "httpHeaders": "headers",
                    "terminationGracePeriodSeconds": None}

Path = tuple[str | int, ...]


class Checker(Protocol):
    """The part of ``model._Checker`` used here (problem collector with typed readers)."""

    problems: list[Any]

    def fail(self, path: Path, message: str) -> None: ...

    def number(self, value: object, path: Path, *, minimum: float = 0.0, exclusive: bool = False) -> float | None:
        ...

    def string(self, value: object, path: Path, *, empty_ok: bool = False) -> str | None: ...

    def choice(self, value: object, path: Path, choices: Sequence[str]) -> str | None: ...

    def unknown_keys(self, mapping: Mapping[str, Any], allowed: frozenset[str], path: Path) -> None: ...


class Header(NamedTuple):
    name: str
    value: str


class Probe(NamedTuple):
    """One check of one program. Equality means "same check" (a reload keeps its state then)."""

    kind: ProbeKind
    command: tuple[str, ...] = ()  # exec
    port: int = 0  # http, tcp
    host: str = DEFAULT_HOST
    path: str = DEFAULT_PATH  # http
    scheme: str = "HTTP"
    headers: tuple[Header, ...] = ()
    initial_delay_seconds: float = DEFAULT_INITIAL_DELAY
    period_seconds: float = DEFAULT_PERIOD
    timeout_seconds: float = DEFAULT_TIMEOUT
    success_threshold: int = DEFAULT_SUCCESS_THRESHOLD
    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD

    def describe(self) -> str:
        """Short text for ``show checks``: ``http 127.0.0.1:8080/healthz``, ``exec pg_isready -q``."""
        if self.kind == "exec":
            return "exec " + " ".join(self.command)
        if self.kind == "tcp":
            return f"tcp {_hostport(self.host, self.port)}"
        scheme = "https://" if self.scheme == "HTTPS" else "http://"
        return f"http {scheme}{_hostport(self.host, self.port)}{self.path}"

    def to_spec(self) -> dict[str, Any]:
        action: dict[str, Any]
        if self.kind == "exec":
            action = {"command": list(self.command)}
        elif self.kind == "tcp":
            action = {"port": self.port, "host": self.host}
        else:
            action = {"port": self.port, "path": self.path, "host": self.host, "scheme": self.scheme,
                      "headers": [{"name": h.name, "value": h.value} for h in self.headers]}
        return {self.kind: action, "initialDelaySeconds": self.initial_delay_seconds,
                "periodSeconds": self.period_seconds, "timeoutSeconds": self.timeout_seconds,
                "successThreshold": self.success_threshold, "failureThreshold": self.failure_threshold}


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _port(check: Checker, value: object, path: Path) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        else:
            check.fail(path, f"expected a port number between 1 and 65535, got {value!r}")
            return None
    if not 1 <= value <= 65535:
        check.fail(path, f"port must be between 1 and 65535, got {value}")
        return None
    return value


def _threshold(check: Checker, value: object, path: Path) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        check.fail(path, f"expected a whole number of at least 1, got {value!r}")
        return None
    if not 1 <= value <= MAX_THRESHOLD:
        check.fail(path, f"must be between 1 and {MAX_THRESHOLD}, got {value}")
        return None
    return value


def _host(check: Checker, value: object, path: Path) -> str | None:
    text = check.string(value, path)
    if text is None:
        return None
    if text == "localhost":
        return DEFAULT_HOST
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        check.fail(path, f"host must be an IP address such as 127.0.0.1 or ::1, got {text!r}: names are not "
                   "resolved (that would block the supervisor); set a Host header with 'headers' if the "
                   "program needs one")
        return None


def probe_from_spec(raw: object, path: Path, check: Checker, level: str) -> Probe | None:
    """Validate one ``readiness``/``liveness``/``startup`` mapping; problems go to ``check``."""
    if not isinstance(raw, Mapping):
        check.fail(path, f"{level} must be a mapping with one of exec, http, tcp, got {raw!r}")
        return None
    for key in raw:
        if key in KUBERNETES_NAMES:
            ours = KUBERNETES_NAMES[key]
            check.fail((*path, str(key)), f"'{key}' is Kubernetes' name; progset writes '{ours}'" if ours
                       else f"'{key}' is not supported by progset checks (use exec, http or tcp)")
    check.unknown_keys({k: v for k, v in raw.items() if k not in KUBERNETES_NAMES}, PROBE_KEYS, path)
    kinds = [k for k in PROBE_KINDS if k in raw]
    if not kinds and any(k in KUBERNETES_NAMES for k in raw):
        return None  # already said
    if not kinds:
        check.fail(path, f"{level} needs exactly one of exec, http, tcp; got none")
        return None
    if len(kinds) > 1:
        check.fail(path, f"{level} needs exactly one of exec, http, tcp; got {' and '.join(kinds)}")
        return None
    kind = kinds[0]
    before = len(check.problems)
    action = raw[kind]
    apath = (*path, kind)
    fields: dict[str, Any] = {"kind": kind}
    if not isinstance(action, Mapping):
        check.fail(apath, f"{kind} must be a mapping of {', '.join(sorted(KIND_KEYS[kind]))}, got {action!r}")
        return None
    check.unknown_keys(action, KIND_KEYS[kind], apath)
    if kind == "exec":
        command = action.get("command")
        if isinstance(command, str):
            check.fail((*apath, "command"), "command must be a list of arguments, not a shell string; "
                       f"write [\"sh\", \"-c\", {command!r}] to use a shell")
        elif not isinstance(command, Sequence) or not command:
            check.fail((*apath, "command"), "exec needs a non-empty command list, e.g. [\"pg_isready\", \"-q\"]")
        else:
            args = [check.string(a, (*apath, "command", i), empty_ok=i > 0) for i, a in enumerate(command)]
            fields["command"] = tuple(a for a in args if a is not None)
    else:
        if "port" not in action:
            check.fail(apath, f"{kind} needs a port")
        else:
            fields["port"] = _port(check, action["port"], (*apath, "port"))
        if action.get("host") is not None:
            fields["host"] = _host(check, action["host"], (*apath, "host"))
    if kind == "http":
        if action.get("path") is not None:
            text = check.string(action["path"], (*apath, "path"))
            if text is not None and (not text.startswith("/") or any(c in text for c in " \r\n")):
                check.fail((*apath, "path"), f"path must start with '/' and contain no spaces, got {text!r}")
            fields["path"] = text
        if action.get("scheme") is not None:
            scheme = action["scheme"].upper() if isinstance(action["scheme"], str) else action["scheme"]
            fields["scheme"] = check.choice(scheme, (*apath, "scheme"), SCHEMES)
        headers = action.get("headers") or []
        if not isinstance(headers, Sequence) or isinstance(headers, str) or len(headers) > MAX_HEADERS:
            check.fail((*apath, "headers"), f"headers must be a list of at most {MAX_HEADERS} {{name, value}}")
        else:
            parsed = []
            for i, item in enumerate(headers):
                hpath = (*apath, "headers", i)
                if not isinstance(item, Mapping) or "name" not in item:
                    check.fail(hpath, "each header needs 'name' and 'value'")
                    continue
                check.unknown_keys(item, frozenset({"name", "value"}), hpath)
                name = check.string(item["name"], (*hpath, "name"))
                value = check.string(item.get("value", ""), (*hpath, "value"), empty_ok=True)
                if name is not None and (not name.isascii() or any(c in name for c in ":\r\n \t")):
                    check.fail((*hpath, "name"), f"invalid header name {name!r}")
                elif value is not None and any(c in value for c in "\r\n"):
                    check.fail((*hpath, "value"), "a header value must not contain a line break")
                elif name is not None and value is not None:
                    parsed.append(Header(name, value))
            fields["headers"] = tuple(parsed)
    for key, attr in (("initialDelaySeconds", "initial_delay_seconds"), ("periodSeconds", "period_seconds"),
                      ("timeoutSeconds", "timeout_seconds")):
        if raw.get(key) is not None:
            fields[attr] = check.number(raw[key], (*path, key), exclusive=key != "initialDelaySeconds")
    for key, attr in (("successThreshold", "success_threshold"), ("failureThreshold", "failure_threshold")):
        if raw.get(key) is not None:
            fields[attr] = _threshold(check, raw[key], (*path, key))
    if level != "readiness" and fields.get("success_threshold", 1) != 1:
        check.fail((*path, "successThreshold"), f"successThreshold must be 1 for {level} (as in Kubernetes): "
                   "one success proves the program alive")
    if len(check.problems) != before or any(v is None for v in fields.values()):
        return None
    return Probe(**fields)
