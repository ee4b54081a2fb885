"""The CRD is generated from the model: the committed copy, its shape, and agreement with the model."""

from __future__ import annotations

import re
import string

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as hs

from progset_operator.__main__ import main
from progset_operator.crd import (
    CONFIG_MAP_NAME_MAX,
    CONFIG_MAP_NAME_PATTERN,
    CRD_MAX_DEPENDS_ON,
    CRD_MAX_PROGRAMS,
    UMASK_PATTERN,
    crd,
    crd_yaml,
)
from progset_supervisor.config import ConfigError, config_from_spec
from progset_supervisor.config.model import (
    ENV_NAME_RE,
    NAME_RE,
    ON_RELOAD_VALUES,
    RESTART_POLICIES,
    parse_umask,
    signal_names,
)

from .crdschema import admit, structural_schema
from .fixtures import REPO

COMMITTED = REPO / "charts" / "progset" / "crds" / "programsets.progset.io.yaml"


def program_schema() -> dict:
    return structural_schema()["properties"]["spec"]["properties"]["programs"]["items"]


def test_committed_crd_is_the_generated_one() -> None:
    assert COMMITTED.read_text() == crd_yaml(), "run `make crd` (progset-operator crd > " \
                                                "charts/progset/crds/programsets.progset.io.yaml)"


def test_crd_command_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crd"]) == 0
    assert capsys.readouterr().out == crd_yaml()


def test_crd_identity_scope_status_and_columns() -> None:
    doc = yaml.safe_load(crd_yaml())
    spec = doc["spec"]
    assert doc["metadata"]["name"] == "programsets.progset.io"
    assert (spec["group"], spec["scope"], spec["names"]["kind"]) == ("progset.io", "Namespaced", "ProgramSet")
    assert spec["names"]["shortNames"] == ["pset"]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Programs", "Rendered", "Hash", "Age"]


def test_schema_uses_the_model_constants() -> None:
    program = program_schema()["properties"]
    assert program["name"]["pattern"] == NAME_RE.pattern
    assert program["restart"]["enum"] == list(RESTART_POLICIES)
    assert program["onReload"]["enum"] == list(ON_RELOAD_VALUES)
    assert program["stopSignal"]["enum"] == program["reloadSignal"]["enum"] == signal_names()
    assert program["env"]["items"]["properties"]["name"]["pattern"] == ENV_NAME_RE.pattern


def test_schema_defaults_are_the_model_defaults() -> None:
    minimal = {"name": "a", "command": ["true"]}
    defaulted = admit({"apiVersion": "progset.io/v1alpha1", "kind": "ProgramSet", "metadata": {"name": "x"},
                       "spec": {"programs": [minimal]}}).defaulted["spec"]["programs"][0]
    model = config_from_spec({"programs": [minimal]}).to_spec()["programs"][0]
    for key in ("restart", "backoff", "stopSignal", "stopTimeoutSeconds", "onReload", "critical"):
        assert defaulted[key] == model[key], key


def test_every_list_and_name_a_cel_rule_walks_is_bounded() -> None:
    # The API server estimates a rule's cost from maxItems/maxLength and refuses unbounded ones.
    spec = structural_schema()["properties"]["spec"]
    assert spec["properties"]["programs"]["maxItems"] == CRD_MAX_PROGRAMS
    assert spec["properties"]["readyPrograms"]["maxItems"] == CRD_MAX_PROGRAMS
    assert program_schema()["properties"]["dependsOn"]["maxItems"] == CRD_MAX_DEPENDS_ON
    assert program_schema()["properties"]["name"]["maxLength"] == 63
    assert program_schema()["properties"]["dependsOn"]["items"]["maxLength"] == 63
    # Rough cost of the costliest rule (dependsOn targets): programs x dependsOn x programs comparisons of
    # <=63-character names, ~13 cost units each; the API server's per-rule limit is 10^7.
    assert CRD_MAX_PROGRAMS * CRD_MAX_DEPENDS_ON * CRD_MAX_PROGRAMS * 13 < 10**7


def model_accepts_umask(text: str) -> bool:
    try:
        parse_umask(text)
    except ValueError:
        return False
    return True


@given(hs.text(alphabet="0o1234567 89x", max_size=7))
def test_umask_pattern_accepts_exactly_what_the_model_accepts(text: str) -> None:
    if text != text.strip():
        return  # the model strips whitespace; the CRD wants the clean form
    assert bool(re.fullmatch(UMASK_PATTERN, text)) == model_accepts_umask(text)


def model_accepts_configmap_name(name: str) -> bool:
    try:
        config_from_spec({"programs": [], "configMapName": name})
    except ConfigError:
        return False
    return True


@given(hs.one_of(hs.text(alphabet=string.ascii_lowercase + string.digits + ".-_A", max_size=12),
                 hs.integers(250, 256).map(lambda n: "a" * n)))
def test_configmap_name_pattern_accepts_exactly_what_the_model_accepts(name: str) -> None:
    crd_ok = bool(re.fullmatch(CONFIG_MAP_NAME_PATTERN, name)) and len(name) <= CONFIG_MAP_NAME_MAX
    assert crd_ok == model_accepts_configmap_name(name)


NAMES = hs.from_regex(r"[a-z][a-z0-9-]{0,8}[a-z0-9]", fullmatch=True)
ARGS = hs.text(alphabet=string.ascii_letters + string.digits + " -=/$\"'", max_size=12)


@hs.composite
def specs(draw: hs.DrawFn) -> dict:
    """A random spec the model accepts, within the CRD's limits."""
    names = draw(hs.lists(NAMES, min_size=1, max_size=4, unique=True))
    programs = []
    for i, name in enumerate(names):
        program: dict = {"name": name, "command": [draw(ARGS.filter(bool)), *draw(hs.lists(ARGS, max_size=3))]}
        if draw(hs.booleans()):
            env = draw(hs.lists(hs.from_regex(r"[A-Z_][A-Z0-9_]{0,6}", fullmatch=True), max_size=3, unique=True))
            program["env"] = [{"name": e, "value": draw(ARGS)} for e in env]
        if draw(hs.booleans()):
            program["umask"] = f"{draw(hs.integers(0, 0o777)):04o}"
        if draw(hs.booleans()):
            program["user"] = draw(hs.one_of(hs.integers(0, 65535), NAMES))
        program["restart"] = draw(hs.sampled_from(RESTART_POLICIES))
        initial = draw(hs.floats(0.01, 10))
        program["backoff"] = {"initialSeconds": initial, "maxSeconds": initial + draw(hs.floats(0, 100)),
                              "resetAfterSeconds": draw(hs.floats(0.01, 600))}
        program["stopSignal"] = draw(hs.sampled_from(signal_names()))
        program["onReload"] = draw(hs.sampled_from(ON_RELOAD_VALUES))
        if program["onReload"] == "signal" and draw(hs.booleans()):
            program["reloadSignal"] = draw(hs.sampled_from(signal_names()))
        program["dependsOn"] = draw(hs.lists(hs.sampled_from(names[:i]), unique=True, max_size=3)) if i else []
        programs.append(program)
    spec: dict = {"programs": programs}
    if draw(hs.booleans()):
        spec["readyPrograms"] = draw(hs.lists(hs.sampled_from(names), unique=True, max_size=len(names)))
    return spec


@settings(max_examples=20)  # celpy needs ~10 ms per rule evaluation
@given(specs())
def test_whatever_the_model_renders_the_crd_admits(spec: dict) -> None:
    canonical = config_from_spec(spec).to_spec()  # what the operator writes and a user may copy
    for candidate in (spec, canonical):
        verdict = admit({"apiVersion": "progset.io/v1alpha1", "kind": "ProgramSet", "metadata": {"name": "p"},
                         "spec": candidate})
        assert verdict.accepted, verdict.schema_errors + verdict.cel_errors
        assert config_from_spec(verdict.defaulted["spec"]).to_spec() == canonical


def test_crd_object_is_plain_data() -> None:
    # The chart ships it as a static file; no templating, no anchors.
    text = crd_yaml()
    assert "{{" not in text and "&" not in re.sub(r"'[^']*'|\"[^\"]*\"", "", text).replace("&&", "")
    assert yaml.safe_load(text) == crd()
