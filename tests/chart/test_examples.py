"""Every example manifest is valid (Kubernetes' schemas, the ProgramSet CRD), and the workload is wired right."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from progset_supervisor.__main__ import parse_args
from progset_supervisor.cli.levels import Level
from progset_supervisor.cli.sockets import parse_spec

from .helpers import CHART_DIR, EXAMPLES, REPO, objects, one, programset_schema, validate_object, yaml_documents

MANIFESTS = sorted(EXAMPLES.glob("*.yaml"))  # examples/invalid/ holds the manifests meant to be rejected
WORKLOAD = EXAMPLES / "workload-deployment.yaml"
# A CRD's openAPIV3Schema is OpenAPI 3.0, whose keywords are JSON Schema draft 4's (boolean exclusiveMinimum).
SCHEMA_VALIDATOR = jsonschema.Draft4Validator


def documents(kind: str | None = None, *, exclude: str | None = None) -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in MANIFESTS for doc in yaml_documents(path)
            if (kind is None or doc.get("kind") == kind) and (exclude is None or doc.get("kind") != exclude)]


def workload() -> dict[str, Any]:
    (deployment,) = [d for d in yaml_documents(WORKLOAD) if d["kind"] == "Deployment"]
    return deployment


def pod() -> dict[str, Any]:
    return workload()["spec"]["template"]["spec"]


def all_containers() -> list[dict[str, Any]]:
    return [*pod().get("initContainers", []), *pod()["containers"]]


def supervisor() -> dict[str, Any]:
    """The agreed pod shape: a native sidecar, the initContainers entry named ``progset``."""
    (container,) = [c for c in pod()["initContainers"] if c["name"] == "progset"]
    return container


def test_kubernetes_manifests_are_valid() -> None:
    docs = documents(exclude="ProgramSet")
    assert {doc["kind"] for _, doc in docs} >= {"Deployment", "ConfigMap"}
    for path, doc in docs:
        try:
            validate_object(doc)
        except Exception as exc:
            raise AssertionError(f"{path.name}: {doc['kind']} {doc['metadata']['name']}: {exc}") from exc


def test_programset_examples_match_the_crd_schema() -> None:
    docs = documents("ProgramSet")
    assert len(docs) >= 3
    schema = programset_schema()
    for path, doc in docs:
        errors = [e.message for e in SCHEMA_VALIDATOR(schema).iter_errors(doc)]
        assert errors == [], path.name


def test_crd_schema_check_is_not_vacuous() -> None:
    path, doc = documents("ProgramSet")[0]
    broken = {**doc, "spec": {**doc["spec"], "programs": [{**doc["spec"]["programs"][0], "restart": "sometimes"}]}}
    assert list(SCHEMA_VALIDATOR(programset_schema()).iter_errors(broken)), path.name


def test_workload_runs_the_supervisor_with_the_documented_command_line() -> None:
    args = parse_args(supervisor()["args"])
    assert args.config == ["/etc/progset"]
    (socket,) = args.sockets
    spec = parse_spec(socket)
    assert (spec.path, spec.mode, spec.level) == ("/var/run/progset/master.sock", 0o660, Level.OPERATOR)


def test_workload_mounts_the_configmap_as_a_directory_never_subpath() -> None:
    volumes = {v["name"]: v for v in pod()["volumes"]}
    (mount,) = [m for m in supervisor()["volumeMounts"] if m["mountPath"] == "/etc/progset"]
    assert "configMap" in volumes[mount["name"]]
    for container in all_containers():
        assert all("subPath" not in m and "subPathExpr" not in m for m in container["volumeMounts"]), container["name"]


def test_workload_mounts_the_configmap_an_example_programset_renders() -> None:
    volumes = {v["name"]: v for v in pod()["volumes"]}
    (mount,) = [m for m in supervisor()["volumeMounts"] if m["mountPath"] == "/etc/progset"]
    name = volumes[mount["name"]]["configMap"]["name"]
    rendered = {doc["spec"].get("configMapName") or f"{doc['metadata']['name']}-programs": doc
                for _, doc in documents("ProgramSet")}
    assert name in rendered, f"no example ProgramSet renders ConfigMap {name}"
    # The pod runs as the user its programs ask for, so the supervisor needs no privilege to switch.
    context = pod()["securityContext"]
    for program in rendered[name]["spec"]["programs"]:
        if "user" in program:
            assert program["user"] == context["runAsUser"], program["name"]
        if "group" in program:
            assert program["group"] == context["runAsGroup"], program["name"]
        if "workingDir" in program:  # an emptyDir there, since the root filesystem is read-only
            assert program["workingDir"] in {m["mountPath"] for m in supervisor()["volumeMounts"]}


def test_workload_shares_the_socket_directory_with_every_container() -> None:
    volumes = {v["name"]: v for v in pod()["volumes"]}
    for container in all_containers():
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/var/run/progset"]
        assert "emptyDir" in volumes[mount["name"]] and not mount.get("readOnly"), container["name"]
        if container["name"] != "progset":  # clients find the socket through HAProxy's variable
            assert {"name": "HAPROXY_MASTER_CLI", "value": "unix@/var/run/progset/master.sock"} in container["env"]
    assert len(all_containers()) >= 2
    # The socket is mode 660: every container must share the supervisor's group.
    assert pod()["securityContext"]["runAsGroup"] == pod()["securityContext"]["fsGroup"]
    assert all("runAsGroup" not in c.get("securityContext", {}) for c in all_containers())


def test_workload_runs_the_supervisor_as_a_native_sidecar() -> None:
    """Started before the app (which waits for its startupProbe on /readyz), stopped after it."""
    container = supervisor()
    assert container["restartPolicy"] == "Always"
    assert container["startupProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert all(c["name"] != "progset" for c in pod()["containers"])


def test_workload_probes_metrics_port_and_label() -> None:
    container = supervisor()
    assert {"name": "metrics", "containerPort": 9127} in container["ports"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    labels = workload()["spec"]["template"]["metadata"]["labels"]
    assert labels["progset.io/supervisor"] == "true"
    programsets = {doc["metadata"]["name"] for _, doc in documents("ProgramSet")}
    assert labels["progset.io/programset"] in programsets


def test_chart_pod_monitor_selects_the_workload_pod() -> None:
    monitor = one(objects({"podMonitor": {"enabled": True}}), "PodMonitor")
    labels = workload()["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ports = {p["name"] for c in all_containers() for p in c.get("ports", [])}
    assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= ports


def test_workload_containers_are_locked_down() -> None:
    assert pod()["securityContext"]["runAsNonRoot"] is True
    assert pod()["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in all_containers():
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
        assert container["resources"]["limits"]["memory"]


@pytest.mark.parametrize("doc", ["examples/README.md", "README.md", "charts/progset/templates/NOTES.txt"])
def test_files_the_docs_mention_exist(doc: str) -> None:
    text = (REPO / doc).read_text()
    mentioned = set(re.findall(r"\b(examples/[\w./-]+\.(?:yaml|cfg|md)|charts/progset[\w./-]*|docs/[\w.-]+\.md)", text))
    mentioned |= {f"examples/{name}" for name in re.findall(r"`([\w-]+\.(?:yaml|cfg))`", text)
                  if (EXAMPLES / name).exists() or name.startswith(("programset-", "workload-", "haproxy-"))}
    assert mentioned or doc.endswith("NOTES.txt")
    missing = sorted(m for m in mentioned if not (REPO / m.rstrip("/.")).exists())
    assert missing == []
    assert CHART_DIR.exists()
