"""The chart rendered by Helm's SDK: which objects, with which settings, valid for a current Kubernetes."""

from __future__ import annotations

import json
from typing import Any

import helm_python
import pytest
import yaml

from .helpers import (
    CHART_DIR,
    KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    by_kind,
    chart,
    objects,
    one,
    render,
    validate_object,
)

# Each optional feature switched on alone, then everything at once.
FEATURES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "watch-namespaces": {"watchNamespaces": ["team-a", "team-b"]},
    "watch-namespaces-no-scanning": {"watchNamespaces": ["team-a"], "rbac": {"kopfScanning": False}},
    "no-scanning": {"rbac": {"kopfScanning": False}},
    "service-monitor": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}},
    "pod-monitor": {"podMonitor": {"enabled": True}},
    "dashboard": {"dashboard": {"enabled": True, "annotations": {"grafana_folder": "progset"}}},
    "prometheus-rule": {"prometheusRule": {"enabled": True, "alertLabels": {"team": "edge"}}},
    "existing-service-account": {"serviceAccount": {"create": False, "name": "ops"}, "rbac": {"create": False}},
    "everything": {
        "watchNamespaces": ["team-a"], "serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True},
        "dashboard": {"enabled": True}, "prometheusRule": {"enabled": True}, "image": {"digest": "sha256:" + "ab" * 32},
        "operator": {"verbose": True, "extraArgs": ["--peering=x"], "extraEnv": [{"name": "TZ", "value": "UTC"}]},
        "imagePullSecrets": [{"name": "regcred"}], "podAnnotations": {"a": "b"}, "podLabels": {"team": "edge"},
        "commonLabels": {"cost-center": "42"}, "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "priorityClassName": "system-cluster-critical", "service": {"type": "NodePort", "port": 9999},
    },
}


def kinds(objs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((o["kind"], o["metadata"]["name"]) for o in objs)


def container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    (operator,) = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return operator


@pytest.mark.parametrize("feature", FEATURES)
def test_every_rendered_object_is_valid_kubernetes(feature: str) -> None:
    objs = objects(FEATURES[feature])
    assert objs
    for obj in objs:
        validate_object(obj)
        namespace = obj["metadata"].get("namespace")
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert namespace, f"{obj['kind']} {obj['metadata']['name']} has no namespace"


def test_the_crd_is_valid_kubernetes_and_shipped_in_crds() -> None:
    (crd,) = chart().crds
    assert crd["filename"].endswith("crds/programsets.progset.io.yaml")
    validate_object(yaml.safe_load(crd["data"]))


def test_defaults_render_the_operator_its_account_cluster_rbac_and_metrics_service() -> None:
    objs = objects()
    assert kinds(objs) == [
        ("ClusterRole", f"{NAMESPACE}-{RELEASE}"), ("ClusterRoleBinding", f"{NAMESPACE}-{RELEASE}"),
        ("Deployment", RELEASE), ("Service", f"{RELEASE}-metrics"), ("ServiceAccount", RELEASE),
    ]


@pytest.mark.parametrize(("values", "kind"), [
    ({"serviceMonitor": {"enabled": True}}, "ServiceMonitor"),
    ({"podMonitor": {"enabled": True}}, "PodMonitor"),
    ({"dashboard": {"enabled": True}}, "ConfigMap"),
])
def test_optional_objects_only_when_enabled(values: dict[str, Any], kind: str) -> None:
    assert by_kind(objects(), kind) == []
    assert len(by_kind(objects(values), kind)) == 1


def test_operator_pod_is_locked_down() -> None:
    pod = one(objects(), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert isinstance(pod["securityContext"]["runAsUser"], int) and pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (operator,) = pod["containers"]
    sc = operator["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert operator["resources"]["requests"] and operator["resources"]["limits"]["memory"]
    # The one writable place is an emptyDir.
    assert operator["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"][0]["emptyDir"]


def test_operator_args_probes_and_ports_match_the_operator_command_line() -> None:
    from progset_operator.__main__ import options_from, parser

    deployment = one(objects(), "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    operator = container(objects())
    options = options_from(parser().parse_args(operator["args"]))
    assert options.clusterwide and options.standalone
    assert options.metrics_port == 9128
    assert options.liveness == "http://0.0.0.0:8080/healthz"
    ports = {p["name"]: p["containerPort"] for p in operator["ports"]}
    assert ports == {"metrics": 9128, "health": 8080}
    for probe in ("livenessProbe", "readinessProbe"):
        assert operator[probe]["httpGet"] == {"path": "/healthz", "port": "health"}

    namespaced = container(objects({"watchNamespaces": ["team-a", "team-b"]}))
    options = options_from(parser().parse_args(namespaced["args"]))
    assert options.namespaces == ("team-a", "team-b") and not options.clusterwide


def test_ports_follow_the_values() -> None:
    objs = objects({"operator": {"metricsPort": 9000, "healthPort": 9001}, "service": {"port": 80}})
    operator = container(objs)
    assert "--metrics-port=9000" in operator["args"]
    assert "--liveness=http://0.0.0.0:9001/healthz" in operator["args"]
    assert {p["name"]: p["containerPort"] for p in operator["ports"]} == {"metrics": 9000, "health": 9001}
    (port,) = one(objs, "Service")["spec"]["ports"]
    assert port == {"name": "metrics", "port": 80, "targetPort": "metrics", "protocol": "TCP"}


def test_image_reference_tag_default_and_digest() -> None:
    assert container(objects())["image"] == "ghcr.io/progset/progset-operator:0.1.0"
    assert container(objects({"image": {"tag": "dev"}}))["image"] == "ghcr.io/progset/progset-operator:dev"
    digest = "sha256:" + "0" * 64
    assert container(objects({"image": {"digest": digest}}))["image"] == f"ghcr.io/progset/progset-operator@{digest}"


def test_metrics_service_selects_exactly_the_operator_pod() -> None:
    objs = objects()
    service = one(objs, "Service")
    pod_labels = one(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert one(objs, "Deployment")["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]


def test_service_monitor_scrapes_the_metrics_service() -> None:
    objs = objects({"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}, "interval": "1m"}})
    monitor, service = one(objs, "ServiceMonitor"), one(objs, "Service")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    assert endpoint["interval"] == "1m"


def test_pod_monitor_scrapes_supervisor_pods_on_their_metrics_port() -> None:
    monitor = one(objects({"podMonitor": {"enabled": True}}), "PodMonitor")
    assert monitor["spec"]["selector"] == {"matchLabels": {"progset.io/supervisor": "true"}}
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")

    scoped = one(objects({"podMonitor": {"enabled": True}, "watchNamespaces": ["team-a"]}), "PodMonitor")
    assert scoped["spec"]["namespaceSelector"] == {"matchNames": ["team-a"]}
    chosen = one(objects({"podMonitor": {"enabled": True, "namespaces": ["x", "y"]}, "watchNamespaces": ["team-a"]}),
                 "PodMonitor")
    assert chosen["spec"]["namespaceSelector"] == {"matchNames": ["x", "y"]}


def test_dashboard_configmap_carries_the_dashboard_for_grafanas_sidecar() -> None:
    cm = one(objects({"dashboard": {"enabled": True}}), "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    (key,) = cm["data"]
    shipped = (CHART_DIR / "dashboards" / "progset.json").read_text()
    assert json.loads(cm["data"][key]) == json.loads(shipped)
    # Never mistaken for a rendered ProgramSet ConfigMap by the operator's label selector.
    assert cm["metadata"]["labels"]["app.kubernetes.io/managed-by"] != "progset-operator"


def test_existing_service_account_is_used_and_required() -> None:
    objs = objects(FEATURES["existing-service-account"])
    assert by_kind(objs, "ServiceAccount") == []
    assert [o for o in objs if "Role" in o["kind"]] == []
    assert one(objs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops"
    with pytest.raises(helm_python.HelmRenderError, match=r"serviceAccount\.name is required"):
        render({"serviceAccount": {"create": False}})


def test_everything_on_passes_the_extras_through() -> None:
    objs = objects(FEATURES["everything"])
    pod = one(objs, "Deployment")["spec"]["template"]
    assert pod["metadata"]["labels"]["team"] == "edge" and pod["metadata"]["annotations"] == {"a": "b"}
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
    operator = pod["spec"]["containers"][0]
    assert operator["args"][-2:] == ["--verbose", "--peering=x"]
    assert {"name": "TZ", "value": "UTC"} in operator["env"]
    assert all(o["metadata"]["labels"]["cost-center"] == "42" for o in objs)


def test_names_fit_and_follow_overrides() -> None:
    long = "r" * 53  # Helm's longest release name
    everything = {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}, "dashboard": {"enabled": True},
                  "prometheusRule": {"enabled": True}}
    names = [o["metadata"]["name"] for o in objects(everything, release=long) if not o["kind"].startswith("Cluster")]
    assert len(names) == 7 and all(len(name) <= 63 and long[:40] in name for name in names), names
    assert one(objects({"fullnameOverride": "ops"}), "Deployment")["metadata"]["name"] == "ops"
    assert one(objects(release="progset-prod"), "Deployment")["metadata"]["name"] == "progset-prod"


def test_notes_tell_what_to_do_next() -> None:
    text = render()["progset/templates/NOTES.txt"]
    assert f"kubectl -n {NAMESPACE} rollout status deployment/{RELEASE}" in text
    assert "examples/workload-deployment.yaml" in text
    assert "subPath" in text and "crds/" in text
    assert "team-a, team-b" in render({"watchNamespaces": ["team-a", "team-b"]})["progset/templates/NOTES.txt"]


@pytest.mark.parametrize("feature", FEATURES)
def test_helm_lint_is_clean(feature: str) -> None:
    report = helm_python.lint(CHART_DIR, FEATURES[feature], strict=True, namespace=NAMESPACE,
                              kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report

