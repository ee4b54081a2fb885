"""Sidecar injection as a pure function: the pod shape, the annotations, idempotence, the three outcomes.

The webhook over HTTPS is in test_injection_webhook.py; `progset-operator inject -f` at the end here.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from progset_operator.admission import Decision, decide
from progset_operator.inject import (
    ERROR_ANNOTATION,
    Defaults,
    InjectionError,
    has_sidecar,
    inject,
)

from .podsecurity import restricted_violations

KUBE_VERSION = kubernetes_validate.latest_version()
DEFAULTS = Defaults(image="registry.example/progset-supervisor:1.0")
REPO = Path(__file__).resolve().parents[2]


def app_pod(**annotations: str) -> dict[str, Any]:
    """A restricted-profile pod with two app containers, labelled for ProgramSet 'edge'."""
    hardened = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "default", "labels": {"progset.io/programset": "edge"},
                     "annotations": dict(annotations)},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {"name": "haproxy", "image": "haproxy:3.0", "securityContext": dict(hardened),
                 "env": [{"name": "MODE", "value": "edge"}]},
                {"name": "app", "image": "app:1", "securityContext": copy.deepcopy(hardened)},
            ],
        },
    }


def validate(pod: dict[str, Any]) -> None:
    kubernetes_validate.validate(pod, KUBE_VERSION, strict=True)


def sidecar(pod: dict[str, Any]) -> dict[str, Any]:
    (found,) = [c for key in ("initContainers", "containers") for c in pod["spec"].get(key) or []
                if c["name"] == "progset"]
    return found


def test_the_agreed_native_sidecar_shape() -> None:
    pod = inject(app_pod(), "edge-programs", DEFAULTS)
    validate(pod)
    assert restricted_violations(pod) == []
    first = pod["spec"]["initContainers"][0]
    assert first is sidecar(pod)
    assert first["restartPolicy"] == "Always"
    assert first["image"] == DEFAULTS.image
    assert first["args"] == ["-f", "/etc/progset", "-S", "/var/run/progset/master.sock,mode,660,level,operator"]
    assert first["ports"] == [{"name": "metrics", "containerPort": 9127, "protocol": "TCP"}]
    assert first["startupProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert first["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    mounts = {m["mountPath"]: m for m in first["volumeMounts"]}
    assert mounts["/etc/progset"] == {"name": "progset-config", "mountPath": "/etc/progset", "readOnly": True}
    assert "subPath" not in json.dumps(pod)
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["progset-config"] == {"name": "progset-config", "configMap": {"name": "edge-programs"}}
    assert "emptyDir" in volumes["progset-run"]
    for container in pod["spec"]["containers"]:
        assert {"name": "progset-run", "mountPath": "/var/run/progset"} in container["volumeMounts"]
        assert {"name": "HAPROXY_MASTER_CLI", "value": "unix@/var/run/progset/master.sock"} in container["env"]
    assert pod["spec"]["containers"][0]["env"][0] == {"name": "MODE", "value": "edge"}  # theirs kept, first
    assert pod["metadata"]["labels"] == {"progset.io/programset": "edge", "progset.io/supervisor": "true"}
    # The pod's user and group are inherited (not repeated), so the app containers can open the socket.
    context = first["securityContext"]
    assert "runAsUser" not in context and "runAsGroup" not in context
    assert context["readOnlyRootFilesystem"] is True


def test_identity_comes_from_the_app_container_when_the_pod_names_none() -> None:
    pod = app_pod()
    pod["spec"]["securityContext"] = {}
    for container in pod["spec"]["containers"]:
        container["securityContext"].update(runAsNonRoot=True, runAsUser=1234, runAsGroup=5678,
                                            seccompProfile={"type": "RuntimeDefault"})
    wired = inject(pod, "edge-programs", DEFAULTS)
    context = sidecar(wired)["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"]) == (1234, 5678)
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert restricted_violations(wired) == []
    validate(wired)


def test_a_root_pod_still_gets_a_non_root_sidecar() -> None:
    pod = app_pod()
    pod["spec"]["securityContext"] = {"runAsUser": 0}
    context = sidecar(inject(pod, "edge-programs", DEFAULTS))["securityContext"]
    assert context["runAsUser"] == 65532 and context["runAsNonRoot"] is True


def test_injection_is_idempotent() -> None:
    once = inject(app_pod(), "edge-programs", DEFAULTS)
    assert has_sidecar(once["spec"])
    assert inject(once, "edge-programs", DEFAULTS) == once
    assert inject(once, "other-programs", Defaults(image="other")) == once


def test_annotations_choose_image_sockets_resources_and_mode() -> None:
    pod = inject(app_pod(**{"progset.io/image": "mirror.example/ps:2",
                            "progset.io/socket-containers": "haproxy",
                            "progset.io/resources": '{"requests": {"cpu": "10m", "memory": 32}}'}),
                 "edge-programs", DEFAULTS)
    validate(pod)
    assert sidecar(pod)["image"] == "mirror.example/ps:2"
    assert sidecar(pod)["resources"] == {"requests": {"cpu": "10m", "memory": "32"}}
    haproxy, app = pod["spec"]["containers"]
    assert any(m["name"] == "progset-run" for m in haproxy["volumeMounts"])
    assert "volumeMounts" not in app and "env" not in app

    main = inject(app_pod(**{"progset.io/mode": "main", "progset.io/socket-containers": ""}), "edge-programs",
                  DEFAULTS)
    validate(main)
    assert restricted_violations(main) == []
    assert "initContainers" not in main["spec"]
    last = main["spec"]["containers"][-1]
    assert last["name"] == "progset" and "restartPolicy" not in last
    assert last["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert all("volumeMounts" not in c for c in main["spec"]["containers"][:-1])


def test_the_sidecar_comes_before_existing_init_containers_which_may_get_the_socket() -> None:
    pod = app_pod(**{"progset.io/socket-containers": "migrate, app"})
    pod["spec"]["initContainers"] = [{"name": "migrate", "image": "app:1",
                                      "securityContext": {"allowPrivilegeEscalation": False,
                                                          "capabilities": {"drop": ["ALL"]}}}]
    wired = inject(pod, "edge-programs", DEFAULTS)
    assert [c["name"] for c in wired["spec"]["initContainers"]] == ["progset", "migrate"]
    assert any(m["name"] == "progset-run" for m in wired["spec"]["initContainers"][1]["volumeMounts"])
    validate(wired)


@pytest.mark.parametrize(("annotations", "message"), [
    ({"progset.io/mode": "sidekick"}, "annotation progset.io/mode: 'sidekick' is not one of sidecar, main"),
    ({"progset.io/socket-containers": "nginx"}, "annotation progset.io/socket-containers: the pod has no "
                                               "container named 'nginx'"),
    ({"progset.io/socket-containers": "Bad Name"}, "is not a comma-separated list of container names"),
    ({"progset.io/resources": "{cpu: 1}"}, "annotation progset.io/resources: not JSON"),
    ({"progset.io/resources": '{"requests": {"cpu": "lots"}}'}, "requests.cpu: 'lots' is not a Kubernetes quantity"),
    ({"progset.io/resources": '{"request": {}}'}, "expected an object with 'requests' and/or 'limits'"),
    ({"progset.io/image": "two words"}, "annotation progset.io/image: 'two words' is not an image reference"),
])
def test_bad_annotations_are_named(annotations: dict[str, str], message: str) -> None:
    with pytest.raises(InjectionError) as error:
        inject(app_pod(**annotations), "edge-programs", DEFAULTS)
    assert message in str(error.value)


def test_name_clashes_are_refused_not_merged() -> None:
    pod = app_pod()
    pod["spec"]["volumes"] = [{"name": "progset-run", "emptyDir": {}}]
    with pytest.raises(InjectionError, match="already has a volume named 'progset-run'"):
        inject(pod, "edge-programs", DEFAULTS)
    pod = app_pod()
    pod["spec"]["containers"][1]["volumeMounts"] = [{"name": "mine", "mountPath": "/var/run/progset/"}]
    with pytest.raises(InjectionError, match=r"spec.containers\[1\]: already mounts 'mine' at /var/run/progset"):
        inject(pod, "edge-programs", DEFAULTS)


# --- the decision shared by the webhook and `inject -f` -------------------------------------------------


def lookup_edge(namespace: str, name: str) -> str | None:
    return f"{name}-rendered" if (namespace, name) == ("default", "edge") else None


def test_decide_injects_with_the_programsets_configmap() -> None:
    decision = decide(app_pod(), "default", lookup_edge, DEFAULTS, "Fail")
    assert decision.injected and decision.pod is not None
    assert {"name": "progset-config", "configMap": {"name": "edge-rendered"}} in decision.pod["spec"]["volumes"]


def test_decide_missing_programset_is_refused_under_fail_and_annotated_under_ignore() -> None:
    refused = decide(app_pod(), "team-a", lookup_edge, DEFAULTS, "Fail")
    assert refused == Decision(pod=None, refused="progset: cannot wire this pod: ProgramSet team-a/edge (label "
                                                 "progset.io/programset) does not exist: create it first, or fix "
                                                 "the label")
    ignored = decide(app_pod(), "team-a", lookup_edge, DEFAULTS, "Ignore")
    assert ignored.pod is not None and not ignored.injected
    assert ignored.pod["metadata"]["annotations"][ERROR_ANNOTATION].startswith("ProgramSet team-a/edge")
    assert ignored.pod["spec"] == app_pod()["spec"]


def test_decide_leaves_unlabelled_and_wired_pods_alone() -> None:
    unlabelled = app_pod()
    del unlabelled["metadata"]["labels"]
    assert decide(unlabelled, "default", lookup_edge, DEFAULTS) == Decision(pod=unlabelled)
    wired = inject(app_pod(), "x", DEFAULTS)
    assert decide(wired, "team-a", lookup_edge, DEFAULTS, "Fail") == Decision(pod=wired)


def test_the_restricted_checker_catches_what_it_should() -> None:
    pod = app_pod()
    pod["spec"]["containers"][0]["securityContext"] = {"privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}}
    pod["spec"]["securityContext"] = {"runAsUser": 0}
    pod["spec"]["volumes"] = [{"name": "host", "hostPath": {"path": "/"}}]
    pod["spec"]["hostNetwork"] = True
    found = "\n".join(restricted_violations(pod))
    for control in ("Privileged Containers", "Capabilities", "Running as Non-root user", "HostPath Volumes",
                    "Host Namespaces", "Volume Types", "Privilege Escalation", "Seccomp", "Running as Non-root:"):
        assert control in found


# --- progset-operator inject -f ---------------------------------------------------------------------------


def run_inject(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "progset_operator", "inject", *args], input=stdin,
                          capture_output=True, text=True, timeout=60, cwd=REPO)


def deployment(template_labels: dict[str, str]) -> dict[str, Any]:
    pod = app_pod()
    pod["metadata"] = {"labels": template_labels}
    del pod["apiVersion"], pod["kind"]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": pod}}


def test_inject_cli_wires_templates_with_programsets_from_the_files(tmp_path: Path) -> None:
    programset = {"apiVersion": "progset.io/v1alpha1", "kind": "ProgramSet",
                  "metadata": {"name": "edge", "namespace": "shop"},
                  "spec": {"configMapName": "edge-config", "programs": [{"name": "a", "command": ["/bin/a"]}]}}
    (tmp_path / "ps.yaml").write_text(yaml.safe_dump(programset))
    other = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}
    text = yaml.safe_dump_all([deployment({"app": "web", "progset.io/programset": "edge"}), other])
    result = run_inject("-f", str(tmp_path / "ps.yaml"), "-f", "-", stdin=text)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    docs = list(yaml.safe_load_all(result.stdout))
    assert [d["kind"] for d in docs] == ["ProgramSet", "Deployment", "Service"]
    assert docs[2] == other
    validate(docs[1])
    template = docs[1]["spec"]["template"]
    assert {"name": "progset-config", "configMap": {"name": "edge-config"}} in template["spec"]["volumes"]
    assert restricted_violations(template) == []
    # Its own output goes through unchanged: a render step can run twice.
    again = run_inject("-f", "-", stdin=result.stdout)
    assert list(yaml.safe_load_all(again.stdout)) == docs


def test_inject_cli_names_the_document_it_refuses(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    bad = deployment({"app": "web", "progset.io/programset": "edge"})
    bad["spec"]["template"]["metadata"]["annotations"] = {"progset.io/mode": "both"}
    path.write_text(yaml.safe_dump_all([{"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "c"}}, bad]))
    result = run_inject("-f", str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    note, error = result.stderr.splitlines()
    assert note.startswith("progset-operator inject: note: ProgramSet shop/edge is not among the files given: "
                           "assuming ConfigMap edge-programs")
    assert error == (f"progset-operator inject: {path}, document 2 (Deployment web): progset: cannot wire this "
                     "pod: annotation progset.io/mode: 'both' is not one of sidecar, main")
    missing = run_inject("-f", str(tmp_path / "nope.yaml"))
    assert (missing.returncode, missing.stderr) == (1, f"progset-operator inject: {tmp_path / 'nope.yaml'}: "
                                                       "No such file or directory\n")


def test_the_readme_shows_the_real_inject_output() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("\n## Wire a pod in one line\n"):]
    command = "$ progset-operator inject -f examples/inject-deployment.yaml\n"
    shown = section[section.index(command) + len(command):section.index("```", section.index(command))]
    result = run_inject("-f", "examples/inject-deployment.yaml")
    assert result.returncode == 0
    assert shown == result.stderr + result.stdout


def test_inject_cli_finds_pod_templates_in_every_workload_kind_and_in_lists() -> None:
    template = deployment({"progset.io/programset": "edge"})["spec"]["template"]
    cronjob = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
               "spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": copy.deepcopy(template)}}}}
    statefulset = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
                   "spec": {"serviceName": "db", "selector": {"matchLabels": {"a": "b"}},
                            "template": copy.deepcopy(template)}}
    listed = {"apiVersion": "v1", "kind": "List", "items": [cronjob, statefulset]}
    result = run_inject("-n", "ops", "-f", "-", stdin=yaml.safe_dump(listed))
    assert result.returncode == 0, result.stderr
    (out,) = yaml.safe_load_all(result.stdout)
    for item in out["items"]:
        validate(item)
    wired = [out["items"][0]["spec"]["jobTemplate"]["spec"]["template"], out["items"][1]["spec"]["template"]]
    assert all(t["spec"]["initContainers"][0]["name"] == "progset" for t in wired)
    assert "ProgramSet ops/edge is not among the files given" in result.stderr  # -n names their namespace
