"""The injection webhook served by the real operator over HTTPS, as the API server calls it.

The operator runs against the emulated API server (fixtures.py) with ``--webhook`` and certificates
from a directory (as cert-manager mounts them); each test posts AdmissionReview v1 requests like
kube-apiserver does and applies the JSONPatch it gets back.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes_validate
import pytest

from progset_operator.runtime import Options
from progset_operator.webhook import WebhookOptions

from .fixtures import events, eventually, programset, running
from .podsecurity import restricted_violations
from .test_injection import app_pod
from .webhooks import admission_review, free_port, patched, review, wait_listening, write_test_certificates

KUBE_VERSION = kubernetes_validate.latest_version()
IMAGE = "registry.example/progset-supervisor:1.0"
HELLO = [{"name": "hello", "command": ["echo", "hello"]}]


def webhook_options(tmp_path: Path, policy: str = "Ignore") -> tuple[Options, bytes]:
    ca = write_test_certificates(tmp_path / "certs")
    hook = WebhookOptions(image=IMAGE, port=free_port(), address="127.0.0.1", policy=policy,
                          cert_dir=tmp_path / "certs")
    return Options(standalone=True, webhook=hook), ca


def template_pod(**annotations: str) -> dict[str, Any]:
    """A pod as a ReplicaSet controller creates it: generateName, and no namespace in the object."""
    pod = app_pod(**annotations)
    del pod["metadata"]["name"], pod["metadata"]["namespace"]
    pod["metadata"]["generateName"] = "web-7d9f-"
    return pod


async def test_pod_create_is_wired_and_the_reinvocation_changes_nothing(emulator, kubeconfig, cluster,
                                                                         tmp_path) -> None:
    options, ca = webhook_options(tmp_path)
    await cluster.create(programset("edge", HELLO, configMapName="edge-config"))
    async with running(emulator, options) as operator:
        port = options.webhook.port
        await wait_listening(port)
        request = admission_review(template_pod(), namespace="default")
        answer = await review(port, ca, request)
        assert answer["response"]["allowed"] is True
        pod = patched(request, answer)
        # What the API server then stores: valid, restricted, wired to the ProgramSet's ConfigMap.
        kubernetes_validate.validate({**pod, "metadata": {**pod["metadata"], "name": "web-7d9f-x1"}}, KUBE_VERSION,
                                     strict=True)
        assert restricted_violations(pod) == []
        assert [c["name"] for c in pod["spec"]["initContainers"]] == ["progset"]
        assert pod["spec"]["initContainers"][0]["image"] == IMAGE
        assert {"name": "progset-config", "configMap": {"name": "edge-config"}} in pod["spec"]["volumes"]
        assert pod["metadata"]["labels"]["progset.io/supervisor"] == "true"
        assert "namespace" not in pod["metadata"]  # the patch adds only the wiring

        # reinvocationPolicy: IfNeeded calls the webhook again with the mutated pod: no second sidecar.
        again_request = admission_review(copy.deepcopy(pod), namespace="default")
        again = await review(port, ca, again_request)
        assert again["response"]["allowed"] is True and "patch" not in again["response"]
        assert patched(again_request, again) == pod
        assert operator.metrics.value("progset_operator_injections_total", {"result": "injected"}) == 1
        assert operator.metrics.value("progset_operator_injections_total", {"result": "unchanged"}) == 1


@pytest.mark.parametrize("policy", ["Fail", "Ignore"])
async def test_missing_programset_is_refused_or_annotated(emulator, kubeconfig, tmp_path, policy: str) -> None:
    options, ca = webhook_options(tmp_path, policy)
    async with running(emulator, options) as operator:
        await wait_listening(options.webhook.port)
        request = admission_review(template_pod(), namespace="team-a")
        answer = await review(options.webhook.port, ca, request)
    response = answer["response"]
    if policy == "Fail":
        assert response["allowed"] is False and "patch" not in response
        assert response["status"]["message"] == ("progset: cannot wire this pod: ProgramSet team-a/edge (label "
                                                 "progset.io/programset) does not exist: create it first, or fix "
                                                 "the label")
        assert operator.metrics.value("progset_operator_injections_total", {"result": "refused"}) == 1
    else:
        assert response["allowed"] is True
        pod = patched(request, answer)
        assert pod["metadata"]["annotations"]["progset.io/injection-error"].startswith(
            "ProgramSet team-a/edge (label progset.io/programset) does not exist")
        assert pod["spec"] == request["request"]["object"]["spec"]  # nothing else changed
        assert operator.metrics.value("progset_operator_injections_total", {"result": "annotated"}) == 1


async def test_bad_annotation_is_refused_with_its_name_under_fail(emulator, kubeconfig, cluster, tmp_path) -> None:
    options, ca = webhook_options(tmp_path, "Fail")
    await cluster.create(programset("edge", HELLO))
    async with running(emulator, options):
        await wait_listening(options.webhook.port)
        answer = await review(options.webhook.port, ca,
                              admission_review(template_pod(**{"progset.io/socket-containers": "nginx"})))
    assert answer["response"]["allowed"] is False
    assert answer["response"]["status"]["message"] == ("progset: cannot wire this pod: annotation "
                                                       "progset.io/socket-containers: the pod has no container "
                                                       "named 'nginx'")


async def test_a_pod_wired_by_hand_and_an_unlabelled_pod_are_left_alone(emulator, kubeconfig, cluster,
                                                                          tmp_path) -> None:
    options, ca = webhook_options(tmp_path, "Fail")
    async with running(emulator, options):
        await wait_listening(options.webhook.port)
        by_hand = template_pod()
        by_hand["spec"]["containers"].append({"name": "progset", "image": "mine"})
        unlabelled = template_pod()
        del unlabelled["metadata"]["labels"]
        for pod in (by_hand, unlabelled):  # the ProgramSet does not even exist: not asked
            answer = await review(options.webhook.port, ca, admission_review(pod))
            assert answer["response"]["allowed"] is True and "patch" not in answer["response"]


async def test_a_certificate_for_another_name_is_not_trusted(emulator, kubeconfig, tmp_path) -> None:
    options, ca = webhook_options(tmp_path)
    async with running(emulator, options):
        await wait_listening(options.webhook.port)
        with pytest.raises(aiohttp.ClientConnectorCertificateError, match="Hostname mismatch"):
            await review(options.webhook.port, ca, admission_review(template_pod()),
                         hostname="other.progset-system.svc")


async def test_labelled_pods_admitted_without_the_sidecar_are_reported_once(emulator, kubeconfig, tmp_path) -> None:
    options, _ = webhook_options(tmp_path)
    async with running(emulator, options) as operator:
        bare = app_pod()
        wired = app_pod()
        wired["metadata"]["name"] = "web-2"
        wired["spec"]["initContainers"] = [{"name": "progset", "image": IMAGE, "restartPolicy": "Always"}]
        unlabelled = app_pod()
        unlabelled["metadata"].update(name="web-3", labels={})
        for pod in (bare, wired, unlabelled):
            async with emulator.post("/api/v1/namespaces/default/pods", json=pod) as response:
                assert response.status < 300
        found = await eventually(lambda: events(emulator, "NotInjected"), timeout=10)
        (event,) = found
        assert event["type"] == "Warning"
        assert event["involvedObject"]["kind"] == "Pod" and event["involvedObject"]["name"] == "web-1"
        assert "asks for ProgramSet 'edge'" in event["message"]
        assert operator.metrics.value("progset_operator_uninjected_pods") == 1
        assert operator.metrics.value("progset_operator_uninjected_pods_seen_total") == 1
        # A change to the pod is no second episode; its deletion clears the gauge.
        async with emulator.patch("/api/v1/namespaces/default/pods/web-1", json={"metadata": {"labels": {"x": "y"}}},
                                  headers={"Content-Type": "application/merge-patch+json"}) as response:
            assert response.status < 300
        async with emulator.delete("/api/v1/namespaces/default/pods/web-1") as response:
            assert response.status < 300
        await eventually(lambda: operator.metrics.value("progset_operator_uninjected_pods") == 0, timeout=10)
        assert len(events(emulator, "NotInjected")) == 1
        assert operator.metrics.value("progset_operator_uninjected_pods_seen_total") == 1
