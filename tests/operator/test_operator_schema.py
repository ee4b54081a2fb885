"""Every example manifest against the CRD (JSON Schema + CEL, as the API server would) and the model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from progset_supervisor.config import ConfigError, config_from_spec, load_path

from .crdschema import admit
from .fixtures import REPO

EXAMPLES = sorted((REPO / "examples").glob("programset-*.yaml"))
INVALID = sorted((REPO / "examples" / "invalid").glob("*.yaml"))
EXPECT = re.compile(r"^# expect: (schema|cel|model): (.+)$", re.MULTILINE)


def manifest(path: Path) -> dict:
    (doc,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return doc


def test_there_are_examples_of_both_kinds() -> None:
    assert len(EXAMPLES) >= 3
    assert len(INVALID) >= 15


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_admitted_and_loads_in_the_supervisor(path: Path) -> None:
    verdict = admit(manifest(path))
    assert verdict.accepted, verdict.schema_errors + verdict.cel_errors
    load_path(path)  # `progset-supervisor -f` reads the very same file


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_crd_defaults_mean_what_the_model_defaults_mean(path: Path) -> None:
    raw = manifest(path)["spec"]
    defaulted = admit(manifest(path)).defaulted["spec"]
    assert defaulted != raw  # the schema did fill something in
    assert config_from_spec(defaulted).to_spec() == config_from_spec(raw).to_spec()


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_example_is_rejected_where_it_says(path: Path) -> None:
    match = EXPECT.search(path.read_text())
    assert match, f"{path.name} needs a '# expect: schema|cel|model: <message>' line"
    layer, message = match.groups()
    verdict = admit(manifest(path))
    if layer == "schema":
        assert any(message in e for e in verdict.schema_errors), verdict.schema_errors
    elif layer == "cel":
        assert not verdict.schema_errors, verdict.schema_errors
        assert any(message in e for e in verdict.cel_errors), verdict.cel_errors
    else:  # the CRD cannot tell; the operator's model does (Valid=False)
        assert verdict.accepted, verdict.schema_errors + verdict.cel_errors
        with pytest.raises(ConfigError, match=re.escape(message)):
            config_from_spec(verdict.defaulted["spec"])


def test_each_cel_rule_is_exercised_by_an_invalid_example() -> None:
    from .crdschema import structural_schema

    def rules(node: dict) -> list[str]:
        found = [r["message"] for r in node.get("x-kubernetes-validations", [])]
        for sub in node.get("properties", {}).values():
            found += rules(sub)
        if "items" in node:
            found += rules(node["items"])
        return found

    expected = {m.group(2) for p in INVALID if (m := EXPECT.search(p.read_text())) and m.group(1) == "cel"}
    assert set(rules(structural_schema())) == expected


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_the_model_refuses_what_the_crd_refuses(path: Path) -> None:
    """``progset-supervisor -c -f`` must not call valid a manifest ``kubectl apply`` would refuse (issue 17
    defect 5: a bare-number umask and a spec without programs passed the model)."""
    with pytest.raises(ConfigError):
        load_path(path)


def test_a_bare_number_umask_is_refused_with_the_reason(tmp_path: Path) -> None:
    manifest = tmp_path / "umask.yaml"
    manifest.write_text("apiVersion: progset.io/v1alpha1\nkind: ProgramSet\nmetadata: {name: u}\n"
                        "spec:\n  programs:\n  - name: a\n    command: [sleep, '1']\n    umask: 77\n")
    with pytest.raises(ConfigError) as info:
        load_path(manifest)
    assert "umask.yaml:8 (spec.programs[0].umask): expected an octal string such as \"0077\", got the number 77" \
        in str(info.value.problems[0])
