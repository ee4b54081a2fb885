"""The ProgramSet CustomResourceDefinition, generated from the supervisor's config model.

Types, enums, defaults, limits and the name pattern all come from ``progset_supervisor.config.model``
so ``kubectl apply`` rejects, up front, what the supervisor would reject later. The CEL rules
(``x-kubernetes-validations``) cover what a structural schema cannot say: unique program names,
``reloadSignal`` only with ``onReload: signal``, ``dependsOn``/``readyPrograms`` naming real programs.
What neither can say (a ``dependsOn`` cycle) is left to the operator, which reports it as a condition.

The committed copy lives at ``charts/progset/crds/programsets.progset.io.yaml``; a test regenerates it
and fails on any difference, so edit this module, then run ``progset-operator crd``.
"""

from __future__ import annotations

from typing import Any

import yaml

from progset_supervisor.config.model import (
    API_VERSION,
    CONFIG_MAP_NAME_MAX,
    CONFIG_MAP_NAME_RE,
    ENV_NAME_RE,
    KIND,
    MAX_ARGS,
    NAME_MAX,
    NAME_RE,
    ON_RELOAD_VALUES,
    OUTPUT_MODES,
    RESTART_POLICIES,
    UMASK_RE,
    Program,
    signal_names,
)
from progset_supervisor.config.probes import (
    DEPENDENCY_CONDITIONS,
    LEVELS,
    MAX_HEADERS,
    MAX_THRESHOLD,
    NOTIFY_ACCESS,
    SCHEMES,
    Probe,
)

from .status import RENDERED, VALID

GROUP, VERSION = API_VERSION.split("/")
PLURAL = "programsets"
SINGULAR = "programset"
SHORT_NAMES = ("pset",)
CRD_NAME = f"{PLURAL}.{GROUP}"

# The CEL rules below compare every program with every other one (and with each dependsOn entry).
# The API server refuses a CRD whose *estimated* rule cost, computed from maxItems and maxLength,
# exceeds its budget (about 10^7 per rule); with the model's own MAX_PROGRAMS (2000) the uniqueness
# rule alone estimates at ~5*10^7. These bounds keep every rule under ~4*10^6 while staying far above
# what one pod runs. The model itself (used by `progset-supervisor -f`) keeps its wider limits.
CRD_MAX_PROGRAMS = 128
CRD_MAX_DEPENDS_ON = 16
# Kubernetes' own limit for object names (DNS subdomain), which a ConfigMap name must satisfy.
CONFIG_MAP_NAME_PATTERN = CONFIG_MAP_NAME_RE.pattern
# What `parse_umask` accepts as a string and keeps within 0..0777: "022", "0022", "00022", "0o022".
UMASK_PATTERN = f"^({UMASK_RE.pattern})$"

_MODEL_DEFAULTS: dict[str, Any] = Program(name="defaults", command=("true",)).to_spec()


def _name_schema(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description, "pattern": NAME_RE.pattern, "maxLength": NAME_MAX}


def _names_schema(description: str, max_items: int, item_description: str) -> dict[str, Any]:
    """A set of program names (``dependsOn``, ``readyPrograms``), bounded for the CEL cost estimate."""
    return {"type": "array", "description": description, "maxItems": max_items, "x-kubernetes-list-type": "set",
            "items": _name_schema(item_description)}


def _signal_schema(description: str, default: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "description": description, "enum": signal_names()}
    if default is not None:
        schema["default"] = default
    return schema


def _id_schema(what: str) -> dict[str, Any]:
    # `user: 1000` is an integer in YAML; the model accepts a name or a numeric id. The API server
    # allows exactly this anyOf shape next to x-kubernetes-int-or-string (no further constraints).
    return {
        "description": f"{what} name or numeric id to run as (initgroups for names); default: the supervisor's.",
        "x-kubernetes-int-or-string": True,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
    }


def _backoff_schema() -> dict[str, Any]:
    defaults = _MODEL_DEFAULTS["backoff"]

    def seconds(key: str, description: str) -> dict[str, Any]:
        return {"type": "number", "description": description, "minimum": 0, "exclusiveMinimum": True,
                "default": defaults[key]}

    return {
        "type": "object",
        "description": "Restart delays: the first restart after a run is immediate; each further failure within "
                       "resetAfterSeconds of the previous start waits initialSeconds x 2^n (with jitter), "
                       "up to maxSeconds.",
        "default": {},
        "properties": {
            "initialSeconds": seconds("initialSeconds", "First delay of the exponential backoff."),
            "maxSeconds": seconds("maxSeconds", "Upper bound of the backoff delay."),
            "resetAfterSeconds": seconds("resetAfterSeconds",
                                         "A run longer than this resets the backoff."),
        },
        "x-kubernetes-validations": [{
            "rule": "!has(self.initialSeconds) || !has(self.maxSeconds) || self.maxSeconds >= self.initialSeconds",
            "message": "maxSeconds must be at least initialSeconds",
        }],
    }


_PROBE_DEFAULTS: dict[str, Any] = Probe(kind="tcp", port=1).to_spec()
_LEVEL_MEANING = {
    "readiness": "Until it passes (successThreshold times in a row) the program is not ready: dependents with "
                 "condition ready wait, /readyz fails. Failing again only marks it not ready.",
    "liveness": "failureThreshold failures in a row restart the program through its backoff (reason liveness).",
    "startup": "Runs first; liveness and readiness start once it passed. failureThreshold failures in a row "
               "restart the program (reason startup).",
}


def _probe_schema(level: str) -> dict[str, Any]:
    """One check (Kubernetes' probe fields and defaults, with progset's exec/http/tcp names)."""
    def port() -> dict[str, Any]:  # fresh dicts: a shared one would be dumped as a YAML anchor
        return {"type": "integer", "minimum": 1, "maximum": 65535, "description": "TCP port on host."}

    def host() -> dict[str, Any]:
        return {"type": "string", "default": _PROBE_DEFAULTS["tcp"]["host"], "maxLength": 45,
                "description": "IP address to connect to (names are not resolved); default 127.0.0.1."}

    def seconds(key: str, description: str, exclusive: bool = True) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "number", "minimum": 0, "default": _PROBE_DEFAULTS[key],
                                  "description": description}
        if exclusive:
            schema["exclusiveMinimum"] = True
        return schema

    def threshold(key: str, description: str) -> dict[str, Any]:
        return {"type": "integer", "minimum": 1, "maximum": MAX_THRESHOLD, "default": _PROBE_DEFAULTS[key],
                "description": description}

    rules = [{"rule": "(has(self.exec) ? 1 : 0) + (has(self.http) ? 1 : 0) + (has(self.tcp) ? 1 : 0) == 1",
              "message": "a check needs exactly one of exec, http, tcp"}]
    if level != "readiness":
        rules.append({"rule": "!has(self.successThreshold) || self.successThreshold == 1",
                      "message": "successThreshold must be 1 for liveness and startup checks"})
    return {
        "type": "object",
        "description": f"{level.capitalize()} check. {_LEVEL_MEANING[level]}",
        "properties": {
            "exec": {"type": "object", "required": ["command"], "description": "Run a command as the program's "
                     "user, environment and working directory; exit code 0 is a success.",
                     "properties": {"command": {"type": "array", "minItems": 1, "maxItems": MAX_ARGS,
                                                "items": {"type": "string"}}}},
            "http": {"type": "object", "required": ["port"], "description": "HTTP GET; a 2xx or 3xx status is "
                     "a success.", "properties": {
                         "port": port(), "host": host(),
                         "path": {"type": "string", "pattern": "^/[^ \\r\\n]*$", "default": "/"},
                         "scheme": {"type": "string", "enum": list(SCHEMES), "default": "HTTP"},
                         "headers": {"type": "array", "maxItems": MAX_HEADERS, "items": {
                             "type": "object", "required": ["name"],
                             "properties": {"name": {"type": "string", "pattern": "^[!-9;-~]+$"},
                                            "value": {"type": "string", "default": ""}}}}}},
            "tcp": {"type": "object", "required": ["port"], "description": "TCP connect; an accepted "
                    "connection is a success.", "properties": {"port": port(), "host": host()}},
            "initialDelaySeconds": seconds("initialDelaySeconds", "Wait after the start before the first check.",
                                           exclusive=False),
            "periodSeconds": seconds("periodSeconds", "Time between checks."),
            "timeoutSeconds": seconds("timeoutSeconds", "A check that takes longer fails (exec: killed)."),
            "successThreshold": threshold("successThreshold", "Successes in a row to pass."),
            "failureThreshold": threshold("failureThreshold", "Failures in a row to fail."),
        },
        "x-kubernetes-validations": rules,
    }


def _health_properties() -> dict[str, Any]:
    return {
        **{level: _probe_schema(level) for level in LEVELS},
        "notify": {"type": "boolean", "description": "Give the program NOTIFY_SOCKET (systemd's sd_notify): it "
                   "is ready when it sends READY=1."},
        "notifyAccess": {"type": "string", "enum": list(NOTIFY_ACCESS), "description": "Who may notify: the "
                         "main process only (main, the default) or any process of the program (all)."},
        "watchdogSeconds": {"type": "number", "minimum": 0, "description": "With notify: WATCHDOG_USEC for "
                            "the program; no WATCHDOG=1 within it counts as a liveness failure. 0: none."},
        "dependsOnCondition": {"type": "object", "maxProperties": CRD_MAX_DEPENDS_ON,
                               "additionalProperties": {"type": "string", "enum": list(DEPENDENCY_CONDITIONS)},
                               "description": "Per dependency: wait until it is started or ready. Default: "
                                              "ready when it has a readiness check or notify, else started."},
    }


def program_schema() -> dict[str, Any]:
    """The schema of one entry of ``spec.programs``."""
    return {
        "type": "object",
        "description": "One supervised program. Its name is its identity across reloads.",
        "required": ["name", "command"],
        "properties": {
            "name": _name_schema("Program name: lower-case letters, digits and '-' (a DNS label)."),
            "command": {
                "type": "array",
                "description": "argv list, never a shell string; write [\"sh\", \"-c\", \"...\"] to use a shell.",
                "minItems": 1,
                "maxItems": MAX_ARGS,
                "items": {"type": "string"},
            },
            "env": {
                "type": "array",
                "description": "Variables added to the supervisor's environment for this program.",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "pattern": ENV_NAME_RE.pattern},
                        "value": {"type": "string", "default": ""},
                    },
                },
            },
            "workingDir": {"type": "string", "minLength": 1,
                           "description": "Working directory; default: the supervisor's."},
            "umask": {"type": "string", "pattern": UMASK_PATTERN,
                      "description": "Octal umask as a quoted string, e.g. \"0022\"; default: the supervisor's."},
            "user": _id_schema("User"),
            "group": _id_schema("Group"),
            "restart": {"type": "string", "enum": list(RESTART_POLICIES), "default": _MODEL_DEFAULTS["restart"],
                        "description": "When to restart the program after it exits."},
            "backoff": _backoff_schema(),
            "stopSignal": _signal_schema("Signal for a graceful stop; SIGKILL to the process group follows "
                                         "after stopTimeoutSeconds.", _MODEL_DEFAULTS["stopSignal"]),
            "stopTimeoutSeconds": {"type": "number", "minimum": 0, "default": _MODEL_DEFAULTS["stopTimeoutSeconds"],
                                   "description": "Grace period between stopSignal and SIGKILL."},
            "onReload": {"type": "string", "enum": list(ON_RELOAD_VALUES), "default": _MODEL_DEFAULTS["onReload"],
                         "description": "What a reload does to this program: restart it (HAProxy's option "
                                        "start-on-reload), keep it running unless its definition changed, or "
                                        "send it reloadSignal."},
            "reloadSignal": _signal_schema("Signal sent on reload when onReload is signal (default SIGHUP)."),
            "critical": {"type": "boolean", "default": _MODEL_DEFAULTS["critical"],
                         "description": "When it ends for good, the supervisor stops everything and exits."},
            "output": {"type": "string", "enum": list(OUTPUT_MODES),
                       "description": "How this program's output lines are written: prefixed (name | line), raw "
                                      "(as is, HAProxy's way) or json; default: the supervisor's --output."},
            "runtimeSocket": {"type": "string", "minLength": 1, "maxLength": 4096,
                              "description": "The program's own CLI socket (HAProxy's stats socket): /path, "
                                             "unix@/path, host:port, ipv4@host:port, ipv6@[addr]:port or abns@name. "
                                             "The Master CLI lists the program under '# workers' and forwards "
                                             "'@1 <command>' to it."},
            "dependsOn": _names_schema("Programs that must be running before this one starts; stopped in "
                                       "reverse order.", CRD_MAX_DEPENDS_ON,
                                       "Name of another program of this ProgramSet."),
            **_health_properties(),
        },
        "x-kubernetes-validations": [
            {"rule": "(!has(self.notifyAccess) && !has(self.watchdogSeconds)) || (has(self.notify) && self.notify)",
             "message": "notifyAccess and watchdogSeconds only apply with notify: true"},
            {"rule": "!has(self.dependsOnCondition) || self.dependsOnCondition.all(k, has(self.dependsOn) && "
                     "k in self.dependsOn)", "message": "dependsOnCondition must name programs of dependsOn"},
            {"rule": "!has(self.reloadSignal) || (has(self.onReload) && self.onReload == 'signal')",
             "message": "reloadSignal only applies with onReload: signal"},
            {"rule": "!has(self.dependsOn) || !(self.name in self.dependsOn)",
             "message": "a program cannot depend on itself"},
            {"rule": "size(self.command[0]) > 0", "message": "command[0] (the executable) must not be empty"},
        ],
    }


def spec_schema() -> dict[str, Any]:
    """The schema of ``spec``, with the cross-program CEL rules."""
    return {
        "type": "object",
        "description": "The programs one progset-supervisor runs, rendered into a ConfigMap by progset-operator.",
        "required": ["programs"],
        "properties": {
            "programs": {"type": "array", "maxItems": CRD_MAX_PROGRAMS, "items": program_schema(),
                         "description": "Programs in start order (dependsOn refines it)."},
            "readyPrograms": _names_schema("Programs that must be running for the supervisor's /readyz; "
                                           "default: every program except those with restart: never.",
                                           CRD_MAX_PROGRAMS, "Name of a program of this ProgramSet."),
            "configMapName": {"type": "string", "pattern": CONFIG_MAP_NAME_PATTERN, "maxLength": CONFIG_MAP_NAME_MAX,
                              "description": "Name of the rendered ConfigMap; default: <name>-programs."},
        },
        "x-kubernetes-validations": [
            {"rule": "self.programs.all(p, self.programs.exists_one(q, q.name == p.name))",
             "message": "program names must be unique"},
            {"rule": "self.programs.all(p, !has(p.dependsOn) || "
                     "p.dependsOn.all(d, self.programs.exists(q, q.name == d)))",
             "message": "dependsOn must name programs of this ProgramSet"},
            {"rule": "!has(self.readyPrograms) || "
                     "self.readyPrograms.all(r, self.programs.exists(p, p.name == r))",
             "message": "readyPrograms must name programs of this ProgramSet"},
        ],
    }


def status_schema() -> dict[str, Any]:
    """What the operator reports; mirrors ``progset_operator.status``."""
    condition = {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": {"type": "string"},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string"},
            "message": {"type": "string"},
            "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
        },
    }
    return {
        "type": "object",
        "description": "Observed state, written by progset-operator.",
        "properties": {
            "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0,
                                   "description": "The generation the status describes."},
            "configMap": {"type": "string", "description": "Name of the rendered ConfigMap."},
            "configHash": {"type": "string", "description": "Content hash of the rendered programs."},
            "programs": {"type": "integer", "minimum": 0, "description": "Number of rendered programs."},
            "conditions": {"type": "array", "items": condition, "x-kubernetes-list-type": "map",
                           "x-kubernetes-list-map-keys": ["type"],
                           "description": "Valid (the spec passed the model) and Rendered (the ConfigMap "
                                          "holds the current spec)."},
        },
    }


def _condition_status(condition_type: str) -> str:
    return f'.status.conditions[?(@.type=="{condition_type}")].status'


def printer_columns() -> list[dict[str, Any]]:
    return [
        {"name": "Programs", "type": "integer", "jsonPath": ".status.programs"},
        {"name": "Rendered", "type": "string", "jsonPath": _condition_status(RENDERED)},
        {"name": "Hash", "type": "string", "jsonPath": ".status.configHash"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {"name": "ConfigMap", "type": "string", "jsonPath": ".status.configMap", "priority": 1},
        {"name": "Valid", "type": "string", "jsonPath": _condition_status(VALID), "priority": 1},
    ]


def openapi_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "A set of programs for progset-supervisor, HAProxy's program sections as a resource.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema(),
            "status": status_schema(),
        },
    }


def crd() -> dict[str, Any]:
    """The whole CustomResourceDefinition object."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {"app.kubernetes.io/name": "progset", "app.kubernetes.io/part-of": "progset"},
        },
        "spec": {
            "group": GROUP,
            "names": {"kind": KIND, "listKind": f"{KIND}List", "plural": PLURAL, "singular": SINGULAR,
                      "shortNames": list(SHORT_NAMES), "categories": ["progset"]},
            "scope": "Namespaced",
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": printer_columns(),
                "schema": {"openAPIV3Schema": openapi_schema()},
            }],
        },
    }


HEADER = ("# Generated by `progset-operator crd` from progset_supervisor.config.model; do not edit.\n"
          "# Regenerate with `make crd` (a test fails when this file and the generator disagree).\n")


def crd_yaml() -> str:
    """The CRD as the YAML document committed under ``charts/progset/crds/``."""
    return HEADER + yaml.safe_dump(crd(), sort_keys=False, default_flow_style=False, width=120)
