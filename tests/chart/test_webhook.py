"""The chart's injection webhook (webhook.enabled): objects, wiring to the operator's flags, certificates, RBAC.

RBAC is checked as test_rbac.py checks the rest: the real operator runs with the chart's flags against
the emulated API server (self-signed certificates, labelled pods, an admission review) and every
request it makes must be allowed by the rendered rules, names included; every webhook rule must be used.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kmock
import pytest

from progset_operator import certs
from progset_operator.__main__ import options_from, parser
from progset_operator.webhook import PATH
from tests.operator import fixtures as operator_tests
from tests.operator.emulator import is_test_request, rbac_verb
from tests.operator.test_injection import app_pod
from tests.operator.test_injection_certs import create_configuration, webhook_configuration
from tests.operator.webhooks import admission_review, free_port, review, wait_listening

from .helpers import (
    CHART_DIR,
    KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    Request,
    allowed,
    by_kind,
    grants,
    objects,
    one,
    validate_object,
)

ON = {"webhook": {"enabled": True}}
CERT_MANAGER = {"webhook": {"enabled": True, "certManager": {"enabled": True}}}
MODES: dict[str, dict[str, Any]] = {
    "self-signed": ON,
    "self-signed-namespaced": {**ON, "watchNamespaces": ["team-a", "team-b"]},
    "cert-manager": CERT_MANAGER,
    "cert-manager-issuer": {"webhook": {"enabled": True, "failurePolicy": "Fail", "timeoutSeconds": 10,
                                        "certManager": {"enabled": True,
                                                        "issuerRef": {"kind": "ClusterIssuer", "name": "corp-ca"}},
                                        "namespaceSelector": {"matchExpressions": [
                                            {"key": "team", "operator": "In", "values": ["edge"]}]}}},
}

# cert-manager.io/v1 is not in Kubernetes' OpenAPI: the part the chart uses, transcribed from
# cert-manager's Issuer and Certificate CRDs (strict: a misspelt field fails).
_META = {"type": "object", "required": ["name", "namespace"]}
_ISSUER_REF = {"type": "object", "additionalProperties": False, "required": ["name"],
               "properties": {"name": {"type": "string"}, "kind": {"type": "string"}, "group": {"type": "string"}}}
CERT_MANAGER_SCHEMAS = {
    "Issuer": {"type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
               "properties": {"apiVersion": {"const": "cert-manager.io/v1"}, "kind": {"const": "Issuer"},
                              "metadata": _META,
                              "spec": {"type": "object", "additionalProperties": False, "minProperties": 1,
                                       "properties": {"selfSigned": {"type": "object"}, "ca": {"type": "object"}}}}},
    "Certificate": {
        "type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "cert-manager.io/v1"}, "kind": {"const": "Certificate"}, "metadata": _META,
            "spec": {"type": "object", "additionalProperties": False, "required": ["secretName", "issuerRef"],
                     "properties": {
                         "secretName": {"type": "string"}, "issuerRef": _ISSUER_REF,
                         "dnsNames": {"type": "array", "items": {"type": "string"}},
                         "duration": {"type": "string"}, "renewBefore": {"type": "string"},
                         "privateKey": {"type": "object", "additionalProperties": False, "properties": {
                             "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]}, "size": {"type": "integer"},
                             "rotationPolicy": {"enum": ["Never", "Always"]}}}}}}},
}


def validate(obj: dict[str, Any]) -> None:
    if obj["apiVersion"] == "cert-manager.io/v1":
        jsonschema.validate(obj, CERT_MANAGER_SCHEMAS[obj["kind"]])
    else:
        validate_object(obj)


def operator_container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("mode", MODES)
def test_every_object_is_valid_and_helm_lint_is_clean(mode: str) -> None:
    for obj in objects(MODES[mode]):
        validate(obj)
    report = helm_python.lint(CHART_DIR, MODES[mode], strict=True, namespace=NAMESPACE,
                              kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == [], report


def test_off_by_default() -> None:
    objs = objects()
    assert by_kind(objs, "MutatingWebhookConfiguration") == []
    assert "--webhook" not in operator_container(objs)["args"]


@pytest.mark.parametrize("mode", MODES)
def test_the_configuration_reaches_the_operators_webhook(mode: str) -> None:
    values = MODES[mode]
    objs = objects(values)
    container = operator_container(objs)
    hook = options_from(parser().parse_args(container["args"])).webhook
    assert hook is not None
    (config,) = by_kind(objs, "MutatingWebhookConfiguration")
    (webhook,) = config["webhooks"]
    assert webhook["failurePolicy"] == values["webhook"].get("failurePolicy", "Ignore") == hook.policy
    assert webhook["reinvocationPolicy"] == "IfNeeded" and webhook["sideEffects"] == "None"
    assert webhook["admissionReviewVersions"] == ["v1"]
    assert webhook["rules"] == [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                                 "resources": ["pods"], "scope": "Namespaced"}]
    assert webhook["objectSelector"] == {"matchExpressions": [{"key": "progset.io/programset", "operator": "Exists"}]}
    # The Service sends port 443 to the container's webhook port, where the operator listens.
    name = webhook["clientConfig"]["service"]["name"]
    service = next(s for s in by_kind(objs, "Service") if s["metadata"]["name"] == name)
    assert webhook["clientConfig"]["service"] == {"name": service["metadata"]["name"], "namespace": NAMESPACE,
                                                  "path": PATH, "port": 443}
    (port,) = service["spec"]["ports"]
    assert port["port"] == 443
    assert {"name": port["targetPort"], "containerPort": hook.port, "protocol": "TCP"} in container["ports"]
    assert service["spec"]["selector"] == one(objs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert hook.image == "ghcr.io/progset/progset-supervisor:0.1.0"
    if hook.self_signed:  # the operator patches exactly this configuration and names this Service
        assert (hook.config, hook.service, hook.namespace) == (config["metadata"]["name"],
                                                               service["metadata"]["name"], NAMESPACE)
        assert "cert-manager.io/inject-ca-from" not in (config["metadata"].get("annotations") or {})
        assert str(hook.cert_dir).startswith("/tmp/")  # the writable emptyDir
    else:
        (certificate,) = by_kind(objs, "Certificate")
        assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == \
            f"{NAMESPACE}/{certificate['metadata']['name']}"
        assert f"{service['metadata']['name']}.{NAMESPACE}.svc" in certificate["spec"]["dnsNames"]
        pod = one(objs, "Deployment")["spec"]["template"]["spec"]
        (volume,) = [v for v in pod["volumes"] if "secret" in v]
        assert volume["secret"]["secretName"] == certificate["spec"]["secretName"]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        assert mount["mountPath"] == str(hook.cert_dir) and mount["readOnly"] is True


def test_namespaces_opt_in_and_watch_namespaces_confine_the_webhook() -> None:
    (config,) = by_kind(objects(ON), "MutatingWebhookConfiguration")
    assert config["webhooks"][0]["namespaceSelector"] == {"matchLabels": {"progset.io/injection": "enabled"}}
    (config,) = by_kind(objects(MODES["self-signed-namespaced"]), "MutatingWebhookConfiguration")
    assert config["webhooks"][0]["namespaceSelector"] == {
        "matchLabels": {"progset.io/injection": "enabled"},
        "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a", "team-b"]}]}


def test_cert_manager_issuer_default_and_override() -> None:
    objs = objects(CERT_MANAGER)
    (issuer,) = by_kind(objs, "Issuer")
    assert issuer["spec"] == {"selfSigned": {}}
    assert one(objs, "Certificate")["spec"]["issuerRef"] == {"kind": "Issuer", "name": issuer["metadata"]["name"]}
    objs = objects(MODES["cert-manager-issuer"])
    assert by_kind(objs, "Issuer") == []
    assert one(objs, "Certificate")["spec"]["issuerRef"] == {"kind": "ClusterIssuer", "name": "corp-ca"}
    # No Secret or configuration permissions with cert-manager: it writes both.
    assert [r for r in by_kind(objs, "Role") + by_kind(objs, "ClusterRole")
            if any("secrets" in rule["resources"] for rule in r["rules"])] == []


@pytest.mark.parametrize(("values", "where"), [
    ({"webhook": {"enabled": True, "failurePolicy": "Sometimes"}}, "webhook.failurePolicy"),
    ({"webhook": {"enabled": True, "timeoutSeconds": 31}}, "webhook.timeoutSeconds"),
    ({"webhook": {"enabled": True, "port": 443}}, "webhook.port"),
    ({"webhook": {"enabled": True, "certManager": {"issuerRef": {"name": "x"}}}}, "webhook.certManager.issuerRef"),
    ({"webhook": {"enabled": True, "namespaceSelector": {"matchLabel": {}}}}, "webhook.namespaceSelector"),
])
def test_schema_rejects_wrong_webhook_values(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm_python.HelmValuesError) as error:
        objects(values)
    assert where.replace(".", "/") in str(error.value) or where in str(error.value)


# --- RBAC: the operator with the chart's webhook flags against the emulated API server -------------------

# Requests of the webhook mode, beyond those test_rbac.py documents for the operator.
WEBHOOK_USES = {("list", "", "pods"), ("watch", "", "pods"), ("create", "", "secrets"), ("get", "", "secrets"),
                ("patch", "", "secrets"), ("get", "admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
                ("patch", "admissionregistration.k8s.io", "mutatingwebhookconfigurations")}


def recorded(emu: kmock.KubernetesEmulator) -> set[Request]:
    found = set()
    for request in emu:
        if request.resource is None or not request.resource.plural or is_test_request(request):
            continue
        verb = rbac_verb(request)
        if verb is None:
            continue
        resource = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
        found.add(Request(verb, request.resource.group or "", resource, request.namespace,
                          request.name if verb not in ("list", "watch", "create") else None))
    return found


@pytest.mark.parametrize("mode", ["self-signed", "self-signed-namespaced"])
async def test_webhook_requests_are_allowed_and_every_webhook_rule_is_used(mode: str, emulator, kubeconfig,
                                                                          tmp_path: Path) -> None:
    values = MODES[mode]
    objs = objects(values)
    args = parser().parse_args(operator_container(objs)["args"])
    options = options_from(args)
    assert options.webhook is not None
    port = free_port()
    hook = type(options.webhook)(**{**options.webhook.__dict__, "port": port, "address": "127.0.0.1",
                                    "cert_dir": tmp_path / "certs"})
    options = type(options)(**{**options.__dict__, "webhook": hook})
    config = webhook_configuration()
    config["metadata"]["name"] = hook.config
    await create_configuration(emulator, config)
    served = list(options.namespaces) or ["default"]
    async with operator_tests.running(emulator, options):  # the first start creates the Secret
        await wait_listening(port)
        for ns in served:
            pod = app_pod()
            pod["metadata"]["namespace"] = ns
            async with emulator.post(f"/api/v1/namespaces/{ns}/pods", json=pod) as response:
                assert response.status < 300
            secret = emulator.objects[kmock.resource("v1/secrets"), NAMESPACE, hook.secret].raw
            ca = base64.b64decode(secret["data"][certs.CA_CERT])
            answer = await review(port, ca, admission_review(pod, namespace=ns),
                                  hostname=f"{hook.service}.{NAMESPACE}.svc")
            assert answer["response"]["allowed"] is True
        want = {Request("create", "", "events", ns) for ns in served}
        await operator_tests.eventually(lambda: want <= recorded(emulator), timeout=10)
    # The Secret emptied by hand: the next start renews it with a patch.
    async with emulator.patch(f"/api/v1/namespaces/{NAMESPACE}/secrets/{hook.secret}", json={"data": None},
                              headers={"Content-Type": "application/merge-patch+json"}) as response:
        assert response.status < 300
    async with operator_tests.running(emulator, options):
        await wait_listening(port)
        await operator_tests.eventually(lambda: Request("patch", "", "secrets", NAMESPACE, hook.secret)
                                        in recorded(emulator), timeout=10)
    used = recorded(emulator)
    granted = grants(objs, RELEASE, NAMESPACE)
    assert [str(r) for r in used if not allowed(granted, r)] == []
    made = {(r.verb, r.group, r.resource) for r in used}
    assert made >= WEBHOOK_USES
    webhook_rules = [o for o in objs if o["kind"] in ("Role", "ClusterRole")
                     and o["metadata"]["name"].endswith("-webhook")]
    for role in webhook_rules:
        for rule in role["rules"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert (verb, rule["apiGroups"][0], resource) in made, f"{verb} {resource} is never used"
    # The certificate permissions are exactly one Secret and one configuration (create cannot be named).
    for role in webhook_rules:
        for rule in role["rules"]:
            assert rule.get("resourceNames") or rule["verbs"] == ["create"], rule
