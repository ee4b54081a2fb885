"""values.yaml is documented key by key, and values.schema.json rejects wrong values before Helm renders."""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python
import jsonschema
import pytest

from .helpers import CHART_DIR, REPO, chart, render

SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text())

# (values, the JSON path Helm names in its error)
WRONG: list[tuple[dict[str, Any], str]] = [
    ({"watchNamespaces": "team-a"}, "/watchNamespaces"),  # a string where a list is expected
    ({"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0"),  # not a namespace name
    ({"watchNamespaces": ["a", "a"]}, "/watchNamespaces"),  # twice the same
    ({"image": {"tag": 1.2}}, "/image/tag"),  # YAML number: `--set image.tag=1.2` without --set-string
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"image": {"digest": "latest"}}, "/image/digest"),
    ({"serviceMonitor": {"enabled": "yes"}}, "/serviceMonitor/enabled"),
    ({"podMonitor": {"interval": "often"}}, "/podMonitor/interval"),
    ({"service": {"port": "http"}}, "/service/port"),
    ({"service": {"port": 70000}}, "/service/port"),
    ({"service": {"type": "ExternalName"}}, "/service/type"),
    ({"operator": {"logFormat": "xml"}}, "/operator/logFormat"),
    ({"operator": {"extraArgs": "--verbose"}}, "/operator/extraArgs"),
    ({"rbac": {"create": "true"}}, "/rbac/create"),
    ({"resources": {"limits": {"memory": "lots"}}}, "/resources/limits/memory"),
    ({"livenessProbe": {"periodSeconds": 0}}, "/livenessProbe/periodSeconds"),
    ({"dashboard": {"labels": {"grafana_dashboard": 1}}}, "/dashboard/labels/grafana_dashboard"),
    ({"replicaCount": 2}, "replicaCount"),  # not a value of this chart: a typo or a wrong assumption
    ({"serviceMonitor": {"enable": True}}, "enable"),  # misspelt key
]


def test_defaults_satisfy_the_schema() -> None:
    chart().validate_schema(chart().values)
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.validate(chart().values, SCHEMA)


@pytest.mark.parametrize(("values", "where"), WRONG, ids=[w for _, w in WRONG])
def test_schema_rejects_wrong_values(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm_python.HelmValuesError) as error:
        render(values)
    assert where in str(error.value)
    # The same verdict from an independent validator, on the merged values Helm would use.
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(chart().merge_values(values), SCHEMA)


def test_parent_chart_globals_are_accepted() -> None:
    render({"global": {"imageRegistry": "registry.example"}})


def leaf_keys(values: Any, prefix: str = "") -> list[str]:
    if not isinstance(values, dict) or not values:
        return [prefix]
    keys: list[str] = []
    for key, value in values.items():
        keys.extend(leaf_keys(value, f"{prefix}.{key}" if prefix else key))
    return keys


def test_every_value_is_in_the_schema() -> None:
    for key in leaf_keys(chart().values):
        node = SCHEMA
        for part in key.split("."):
            if "properties" not in node:  # a map (labels) or a Kubernetes object passed through (securityContext)
                assert node.get("type") == "object", key
                break
            assert part in node["properties"], f"{key} is not in values.schema.json"
            node = node["properties"][part]


def test_values_yaml_is_documented_line_by_line() -> None:
    """Every value has a ``# --`` comment right above it, or sits in a block documented as a whole."""
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    key_line = re.compile(r"^(\s*)[A-Za-z_][\w.-]*:")

    def documented(index: int) -> bool:
        indent = len(key_line.match(lines[index]).group(1))  # type: ignore[union-attr]
        comment = index - 1
        while comment >= 0 and lines[comment].strip().startswith("#") and not lines[comment].strip().startswith("# --"):
            comment -= 1  # continuation lines of a comment
        if comment >= 0 and comment < index and lines[comment].strip().startswith("# --"):
            return True
        for back in range(index - 1, -1, -1):  # the enclosing key, if documented, covers this one
            above = key_line.match(lines[back])
            if above and len(above.group(1)) < indent:
                return documented(back)
        return False

    values = [i for i, line in enumerate(lines) if key_line.match(line) and not line.rstrip().endswith(":")]
    assert len(values) > 40
    assert [lines[i].strip() for i in values if not documented(i)] == []


def test_docs_values_table_lists_every_value_with_its_default() -> None:
    table = {}
    text = (REPO / "README.md").read_text()
    section = text[text.index("\n## Installing progset with Helm\n"):]
    section = section[section.index("\n### Values\n"):]
    section = section[:section.index("\n### ", 1)]
    for line in section.splitlines():
        match = re.match(r"^\| `([\w.]+)` \| `(.*)` \| .+ \|$", line)
        if match:
            table[match.group(1)] = match.group(2)
    for key in leaf_keys(chart().values):
        documented = [k for k in table if key == k or key.startswith(k + ".")]
        assert documented, f"{key} is missing from the values table in README.md"
        node = chart().values
        for part in documented[0].split("."):
            node = node[part]
        if table[documented[0]] != "see values.yaml":
            assert json.loads(table[documented[0]]) == node, documented[0]
    assert set(table) <= {k for key in leaf_keys(chart().values) for k in [key] + [
        ".".join(key.split(".")[:n]) for n in range(1, key.count(".") + 1)]}
