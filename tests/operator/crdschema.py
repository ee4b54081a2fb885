"""Checking manifests against the CRD the way the API server would, without an API server.

The API server defaults a custom resource from its structural schema, validates it (with kubectl's
default ``fieldValidation=Strict``, unknown fields are errors), then evaluates the CEL rules. Here:
defaults are applied by walking the schema, the schema is translated to JSON Schema for
``jsonschema`` (OpenAPI's boolean ``exclusiveMinimum``, ``x-kubernetes-int-or-string``, list types
``set``/``map``), and the rules are run by ``celpy`` (PyPI ``cel-python``).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import celpy
import jsonschema

from progset_operator.crd import crd

SCHEMA_KEYS = ("type", "enum", "pattern", "minLength", "maxLength", "minItems", "maxItems", "minimum", "maximum",
               "required", "maxProperties")


def structural_schema() -> dict[str, Any]:
    return crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def to_jsonschema(node: Mapping[str, Any]) -> dict[str, Any]:
    """Translate one structural-schema node (recursively) into JSON Schema draft 2020-12."""
    out: dict[str, Any] = {key: copy.deepcopy(node[key]) for key in SCHEMA_KEYS if key in node}
    if node.get("exclusiveMinimum") is True:  # OpenAPI 3.0: a flag on `minimum`
        out["exclusiveMinimum"] = out.pop("minimum")
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
    if "anyOf" in node:
        out["anyOf"] = [to_jsonschema(branch) for branch in node["anyOf"]]
    if "properties" in node:
        out["properties"] = {name: to_jsonschema(sub) for name, sub in node["properties"].items()}
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(node.get("additionalProperties"), Mapping):  # a map: {key: value schema}
        out["additionalProperties"] = to_jsonschema(node["additionalProperties"])
    if "items" in node:
        out["items"] = to_jsonschema(node["items"])
    list_type = node.get("x-kubernetes-list-type")
    if list_type == "set":
        out["uniqueItems"] = True
    elif list_type == "map":
        out["x-list-map-keys"] = list(node["x-kubernetes-list-map-keys"])
    return out


def _list_map_keys(validator: Any, keys: list[str], instance: Any, schema: Any) -> Iterator[jsonschema.ValidationError]:
    if not isinstance(instance, list):
        return
    seen: set[tuple[Any, ...]] = set()
    for item in instance:
        if not isinstance(item, Mapping):
            continue
        key = tuple(item.get(k) for k in keys)
        if key in seen:
            yield jsonschema.ValidationError(f"Duplicate value: {dict(zip(keys, key, strict=True))}")
        seen.add(key)


Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"x-list-map-keys": _list_map_keys})


def apply_defaults(value: Any, node: Mapping[str, Any]) -> Any:
    """Structural defaulting: absent properties with a ``default`` get it, then nested defaults apply."""
    if isinstance(value, dict) and "properties" in node:
        for name, sub in node["properties"].items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(value[name], sub)
    elif isinstance(value, list) and "items" in node:
        return [apply_defaults(item, node["items"]) for item in value]
    return value


_CEL = celpy.Environment()
_PROGRAMS: dict[str, Any] = {}


def _program(rule: str) -> Any:
    if rule not in _PROGRAMS:
        _PROGRAMS[rule] = _CEL.program(_CEL.compile(rule))
    return _PROGRAMS[rule]


def typed(value: Any, node: Mapping[str, Any]) -> Any:
    """The value as the API server hands it to CEL: ``type: number`` is always a double there."""
    if node.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, Mapping) and "properties" in node:
        return {k: typed(v, node["properties"].get(k, {})) for k, v in value.items()}
    if isinstance(value, list) and "items" in node:
        return [typed(v, node["items"]) for v in value]
    return value


def cel_failures(value: Any, node: Mapping[str, Any], path: str = "") -> list[tuple[str, str]]:
    """(path, message) of every ``x-kubernetes-validations`` rule that does not hold."""
    failures: list[tuple[str, str]] = []
    if value is None:
        return failures
    for rule in node.get("x-kubernetes-validations", []):
        try:
            result = _program(rule["rule"]).evaluate({"self": celpy.json_to_cel(typed(value, node))})
        except celpy.CELEvalError as exc:
            failures.append((path, f"{rule['message']} (evaluation error: {exc.args[0]})"))
            continue
        if not bool(result):
            failures.append((path, rule["message"]))
    if isinstance(value, Mapping):
        for name, sub in node.get("properties", {}).items():
            if name in value:
                failures += cel_failures(value[name], sub, f"{path}.{name}")
    elif isinstance(value, list) and "items" in node:
        for i, item in enumerate(value):
            failures += cel_failures(item, node["items"], f"{path}[{i}]")
    return failures


@dataclass
class Verdict:
    """What the API server would say about a manifest."""

    defaulted: dict[str, Any]
    schema_errors: list[str] = field(default_factory=list)
    cel_errors: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return not self.schema_errors and not self.cel_errors


@functools.cache
def _schema_and_validator() -> tuple[dict[str, Any], Any]:
    schema = structural_schema()
    return schema, Validator(to_jsonschema(schema))


def admit(manifest: Mapping[str, Any]) -> Verdict:
    """Default, validate and run the CEL rules on one ProgramSet manifest."""
    schema, validator = _schema_and_validator()
    defaulted = apply_defaults(copy.deepcopy(dict(manifest)), schema)
    verdict = Verdict(defaulted)
    for error in validator.iter_errors(defaulted):
        where = ".".join(str(p) for p in error.absolute_path)
        verdict.schema_errors.append(f"{where}: {error.message}")
    if not verdict.schema_errors:  # the API server runs the rules on well-typed objects only
        verdict.cel_errors = [f"{where or '<root>'}: {message}" for where, message in cel_failures(defaulted, schema)]
    return verdict
