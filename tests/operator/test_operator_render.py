"""Rendering, hashing, ownership and the ConfigMap diff, without any API server."""

from __future__ import annotations

import copy

import pytest
import yaml

from progset_operator.render import (
    DATA_KEY,
    HASH_ANNOTATION,
    MANAGED_BY_LABEL,
    configmap_patch,
    conflict,
    problems_text,
    render,
)
from progset_supervisor.config import ConfigError, load_yaml_text

from .emulator import merge_patch

UID = "0b8a3c52-1111-2222-3333-444455556666"


def programset(spec: dict, name: str = "web", generation: int = 3) -> dict:
    return {"apiVersion": "progset.io/v1alpha1", "kind": "ProgramSet",
            "metadata": {"name": name, "namespace": "edge", "uid": UID, "generation": generation}, "spec": spec}


SPEC = {"programs": [
    {"name": "api", "command": ["/usr/bin/dataplaneapi", "--port", "5555"], "onReload": "keep"},
    {"name": "mirror", "command": ["/usr/bin/spoa-mirror"], "dependsOn": ["api"], "env": [{"name": "A", "value": "1"}]},
]}


def test_render_builds_the_owned_labelled_configmap() -> None:
    desired = render(programset(SPEC))
    meta = desired.body["metadata"]
    assert (meta["namespace"], meta["name"]) == ("edge", "web-programs")
    assert meta["labels"] == {MANAGED_BY_LABEL: "progset-operator", "progset.io/programset": "web"}
    assert meta["ownerReferences"] == [{"apiVersion": "progset.io/v1alpha1", "kind": "ProgramSet", "name": "web",
                                        "uid": UID, "controller": True, "blockOwnerDeletion": True}]
    assert list(desired.body["data"]) == [DATA_KEY]
    assert (desired.name, desired.programs, desired.owner_uid) == ("web-programs", 2, UID)


def test_rendered_document_is_what_the_supervisor_loads() -> None:
    desired = render(programset(SPEC))
    text = desired.body["data"][DATA_KEY]
    doc = yaml.safe_load(text)
    assert doc["kind"] == "RenderedProgramSet"
    assert doc["metadata"] == {"namespace": "edge", "name": "web", "generation": 3}
    assert doc["hash"] == desired.hash == desired.body["metadata"]["annotations"][HASH_ANNOTATION]
    config = load_yaml_text(text, "programs.json")
    assert config.hash == desired.hash
    assert config.by_name()["mirror"].depends_on == ("api",)
    assert doc["spec"]["programs"][0]["backoff"] == {"initialSeconds": 0.5, "maxSeconds": 30.0,
                                                     "resetAfterSeconds": 60.0}


def test_config_map_name_can_be_chosen() -> None:
    assert render(programset({**SPEC, "configMapName": "haproxy-programs"})).name == "haproxy-programs"


def test_hash_ignores_key_order_and_explicit_defaults_but_not_content() -> None:
    base = render(programset(SPEC)).hash
    reordered = {"programs": [dict(reversed(list(p.items()))) for p in SPEC["programs"]]}
    explicit = copy.deepcopy(SPEC)
    explicit["programs"][0].update({"restart": "on-failure", "stopSignal": "TERM", "critical": False})
    assert render(programset(reordered)).hash == base
    assert render(programset(explicit)).hash == base
    assert render(programset(SPEC, generation=9)).hash == base  # the hash is about content
    changed = copy.deepcopy(SPEC)
    changed["programs"][1]["command"].append("-v")
    assert render(programset(changed)).hash != base


def test_model_errors_surface_with_locations() -> None:
    cycle = {"programs": [{"name": "a", "command": ["x"], "dependsOn": ["b"]},
                          {"name": "b", "command": ["y"], "dependsOn": ["a"]}]}
    with pytest.raises(ConfigError) as caught:
        render(programset(cycle))
    assert "spec.programs[0].dependsOn: dependsOn cycle: a -> b -> a" in problems_text(caught.value)


def test_default_name_too_long_for_a_configmap_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"set spec\.configMapName"):
        render(programset(SPEC, name="x" * 250))


def test_problems_text_is_one_bounded_line() -> None:
    error = ConfigError(["a: " + "x" * 600, "b: " + "y" * 600])
    text = problems_text(error)
    assert len(text) == 1000 and text.endswith("...") and "\n" not in text


# --- ownership -------------------------------------------------------------------------------------


def cm(refs: list[dict] | None = None, labels: dict | None = None) -> dict:
    return {"metadata": {"name": "web-programs", "namespace": "edge", "ownerReferences": refs or [],
                         "labels": labels or {}}, "data": {}}


def test_ownership_decisions() -> None:
    desired = render(programset(SPEC))
    ours = desired.body["metadata"]["ownerReferences"][0]
    assert conflict(cm([ours]), desired) is None
    stale = {**ours, "uid": "an-older-incarnation"}
    assert conflict(cm([stale]), desired) is None  # same ProgramSet name, deleted and re-created
    orphan = cm(labels={MANAGED_BY_LABEL: "progset-operator"})
    assert conflict(orphan, desired) is None  # orphaned with --cascade=orphan: adopt it
    other = {**ours, "name": "another", "uid": "u2"}
    assert "controlled by ProgramSet another" in conflict(cm([other]), desired)
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "u3", "controller": True}
    assert "controlled by Deployment web" in conflict(cm([deployment]), desired)
    assert "not managed by progset-operator" in conflict(cm(), desired)


# --- diff ------------------------------------------------------------------------------------------


def test_nothing_to_write_when_equal_even_with_extra_foreign_metadata() -> None:
    desired = render(programset(SPEC))
    actual = copy.deepcopy(desired.body)
    actual["metadata"].update({"uid": "x", "resourceVersion": "7", "creationTimestamp": "2026-01-01T00:00:00Z"})
    actual["metadata"]["labels"]["team"] = "edge"
    actual["metadata"]["annotations"]["note"] = "hi"
    actual["metadata"]["ownerReferences"].append({"apiVersion": "v1", "kind": "Secret", "name": "s", "uid": "s1"})
    assert configmap_patch(actual, desired) is None


@pytest.mark.parametrize("tamper", [
    lambda b: b["data"].update({DATA_KEY: "programs: []\n"}),
    lambda b: b["data"].update({"extra.yaml": "x"}),
    lambda b: b["data"].clear(),
    lambda b: b.update({"binaryData": {"blob": "AA=="}}),
    lambda b: b["metadata"]["labels"].pop(MANAGED_BY_LABEL),
    lambda b: b["metadata"]["annotations"].update({HASH_ANNOTATION: "sha256:forged"}),
    lambda b: b["metadata"].pop("annotations"),
    lambda b: b["metadata"]["ownerReferences"].pop(0),
    lambda b: b["metadata"]["ownerReferences"][0].update({"uid": "an-older-incarnation"}),
], ids=["data", "extra-key", "no-data", "binary", "label", "annotation", "no-annotations", "no-owner",
        "stale-owner"])
def test_every_kind_of_drift_yields_a_patch_that_repairs_it(tamper) -> None:
    desired = render(programset(SPEC))
    actual = copy.deepcopy(desired.body)
    actual["metadata"]["labels"]["team"] = "edge"
    actual["metadata"]["ownerReferences"].append({"apiVersion": "v1", "kind": "Secret", "name": "s", "uid": "s1"})
    tamper(actual)
    patch = configmap_patch(actual, desired)
    assert patch is not None
    repaired = merge_patch(actual, patch)
    assert configmap_patch(repaired, desired) is None
    assert repaired["data"] == desired.body["data"] and "binaryData" not in repaired
    assert repaired["metadata"]["labels"]["team"] == "edge"  # not ours: kept
    assert {"apiVersion": "v1", "kind": "Secret", "name": "s", "uid": "s1"} in repaired["metadata"]["ownerReferences"]
    assert [r for r in repaired["metadata"]["ownerReferences"] if r.get("controller")] == \
        desired.body["metadata"]["ownerReferences"]
