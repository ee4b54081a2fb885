"""Rendering the chart with Helm's own SDK, validating objects, and evaluating RBAC rules.

The chart is rendered by ``helm_python`` (Helm v4's Go SDK behind a C ABI, bundled in the wheel), so
what is tested is exactly what ``helm template`` / ``helm install`` produce, values schema included.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "charts" / "progset"
EXAMPLES = REPO / "examples"
RELEASE = "progset"
NAMESPACE = "progset-system"
# The newest Kubernetes whose OpenAPI schemas kubernetes-validate ships (1.37 with kubernetes-validate 1.37).
KUBE_VERSION = kubernetes_validate.latest_version()
SUPERVISOR_LABEL = ("progset.io/supervisor", "true")


@functools.cache
def chart() -> helm_python.Chart:
    return helm_python.Chart.load(CHART_DIR)


def render(values: Mapping[str, Any] | None = None, *, namespace: str = NAMESPACE,
           release: str = RELEASE) -> dict[str, str]:
    """Template path -> rendered text, as ``helm template`` would print it."""
    return chart().render(dict(values) if values is not None else None, name=release, namespace=namespace,
                          is_install=True)


def objects(values: Mapping[str, Any] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders (NOTES.txt left out)."""
    found: list[dict[str, Any]] = []
    for path, text in sorted(render(values, **kwargs).items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        found.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return found


def notes(values: Mapping[str, Any] | None = None) -> str:
    return next(text for path, text in render(values).items() if path.endswith("NOTES.txt"))


def by_kind(objs: Iterable[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: Iterable[Mapping[str, Any]], kind: str) -> Mapping[str, Any]:
    (found,) = by_kind(objs, kind)
    return found


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


# --- validation ----------------------------------------------------------------------------------------

# prometheus-operator's CRDs are not in Kubernetes' OpenAPI and not available offline, so the monitor
# kinds and PrometheusRule are checked against the part of monitoring.coreos.com/v1 the chart uses, transcribed
# from the CRDs (strict: a misspelt field fails).
_DURATION = {"type": "string", "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?"
                                          "(([0-9]+)s)?(([0-9]+)ms)?)$"}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_METADATA = {"type": "object", "required": ["name", "namespace"],
             "properties": {"name": {"type": "string"}, "namespace": {"type": "string"},
                            "labels": _STRING_MAP, "annotations": _STRING_MAP}}
_SELECTOR = {"type": "object", "additionalProperties": False, "minProperties": 1,
             "properties": {"matchLabels": _STRING_MAP, "matchExpressions": {"type": "array"}}}
_NAMESPACE_SELECTOR = {"type": "object", "additionalProperties": False,
                       "properties": {"any": {"type": "boolean"},
                                      "matchNames": {"type": "array", "items": {"type": "string"}}}}
_ENDPOINT = {"type": "object", "additionalProperties": False, "required": ["port"],
             "properties": {"port": {"type": "string"}, "path": {"type": "string"}, "interval": _DURATION,
                            "scrapeTimeout": _DURATION, "scheme": {"enum": ["http", "https"]}}}


def _monitor_schema(kind: str, endpoints: str) -> dict[str, Any]:
    return {
        "type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": kind}, "metadata": _METADATA,
            "spec": {"type": "object", "additionalProperties": False, "required": ["selector", endpoints],
                     "properties": {"jobLabel": {"type": "string"}, "selector": _SELECTOR,
                                    "namespaceSelector": _NAMESPACE_SELECTOR,
                                    endpoints: {"type": "array", "minItems": 1, "items": _ENDPOINT}}},
        },
    }


_RULE = {"type": "object", "additionalProperties": False, "required": ["alert", "expr"],
         "properties": {"alert": {"type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"},
                        "expr": {"type": "string", "minLength": 1}, "for": _DURATION,
                        "labels": _STRING_MAP, "annotations": _STRING_MAP}}
_PROMETHEUS_RULE = {
    "type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "PrometheusRule"},
        "metadata": _METADATA,
        "spec": {"type": "object", "additionalProperties": False, "required": ["groups"],
                 "properties": {"groups": {"type": "array", "minItems": 1, "items": {
                     "type": "object", "additionalProperties": False, "required": ["name", "rules"],
                     "properties": {"name": {"type": "string", "minLength": 1}, "interval": _DURATION,
                                    "rules": {"type": "array", "minItems": 1, "items": _RULE}}}}}},
    },
}

MONITOR_SCHEMAS = {"ServiceMonitor": _monitor_schema("ServiceMonitor", "endpoints"),
                   "PodMonitor": _monitor_schema("PodMonitor", "podMetricsEndpoints"),
                   "PrometheusRule": _PROMETHEUS_RULE}


def validate_object(obj: Mapping[str, Any]) -> None:
    """Kubernetes' OpenAPI schema of the object's kind (strict: unknown fields fail), or the monitor schema."""
    if obj.get("apiVersion") == "monitoring.coreos.com/v1":
        jsonschema.validate(dict(obj), MONITOR_SCHEMAS[obj["kind"]])
        return
    kubernetes_validate.validate(dict(obj), KUBE_VERSION, strict=True)


@functools.cache
def crd() -> dict[str, Any]:
    (doc,) = yaml_documents(CHART_DIR / "crds" / "programsets.progset.io.yaml")
    return doc


def programset_schema() -> dict[str, Any]:
    (version,) = [v for v in crd()["spec"]["versions"] if v["name"] == "v1alpha1"]
    return json.loads(json.dumps(version["schema"]["openAPIV3Schema"]))


# --- RBAC ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One API request as RBAC sees it; ``namespace`` None for cluster-level (all-namespace) requests."""

    verb: str
    group: str
    resource: str  # plural, or plural/subresource
    namespace: str | None
    name: str | None = None  # the object's name, for rules limited by resourceNames

    def __str__(self) -> str:
        where = f"in {self.namespace}" if self.namespace else "cluster-wide"
        return f"{self.verb} {self.resource}{'.' + self.group if self.group else ''} {where}"


@dataclass(frozen=True)
class Grant:
    """One policy rule bound to a ServiceAccount, limited to ``namespace`` (None: everywhere)."""

    namespace: str | None
    rule: Mapping[str, Any]

    def allows(self, request: Request) -> bool:
        if self.namespace is not None and request.namespace != self.namespace:
            return False
        rule = self.rule
        names = rule.get("resourceNames")
        return (request.group in rule.get("apiGroups", []) and request.resource in rule.get("resources", [])
                and request.verb in rule.get("verbs", []) and (not names or request.name in names))


def grants(objs: Iterable[Mapping[str, Any]], account: str, account_namespace: str) -> list[Grant]:
    """The rules the chart's bindings give the ServiceAccount, with the scope each one applies in."""
    objs = list(objs)
    roles = {(o["metadata"].get("namespace"), o["kind"], o["metadata"]["name"]): o.get("rules") or []
             for o in objs if o["kind"] in ("Role", "ClusterRole")}
    found: list[Grant] = []
    for binding in objs:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any(s.get("kind") == "ServiceAccount" and s.get("name") == account
                   and s.get("namespace") == account_namespace for s in binding.get("subjects") or []):
            continue
        ref = binding["roleRef"]
        scope = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else None
        key = (scope if ref["kind"] == "Role" else None, ref["kind"], ref["name"])
        assert key in roles, f"{binding['kind']} {binding['metadata']['name']} refers to a missing {key}"
        found.extend(Grant(scope, rule) for rule in roles[key])
    return found


def allowed(grants_: Iterable[Grant], request: Request) -> bool:
    return any(g.allows(request) for g in grants_)


def parse_usage(verb: str, resource: str, namespace: str | None) -> Request:
    """A request from the operator tests' spelling ``plural[.group][/subresource]``."""
    name, _, sub = resource.partition("/")
    plural, _, group = name.partition(".")
    return Request(verb, group, f"{plural}/{sub}" if sub else plural, namespace)
