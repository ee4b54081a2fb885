"""The webhook's self-signed certificates: generation, renewal, the Secret and the caBundle.

Pure rules first (certs.ensure with a moving clock), then the operator against the emulated API
server: it creates the Secret, patches the MutatingWebhookConfiguration's caBundle, serves a
certificate the API server would trust for the Service's name, and renews it before it expires.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
from pathlib import Path
from typing import Any

import kmock
from cryptography import x509

from progset_operator import certs
from progset_operator.runtime import Options
from progset_operator.webhook import PATH, WebhookOptions

from .fixtures import running
from .test_injection_webhook import template_pod
from .webhooks import admission_review, free_port, review, served_certificate, wait_listening

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
HOSTS = certs.service_hostnames("progset-webhook", "progset-system")
LIFETIMES = certs.Lifetimes()
SECRETS = "v1/secrets"
CONFIGS = "admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
CONFIG_NAME = "progset-system-progset"


def sans(cert: x509.Certificate) -> list[str]:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)


def test_a_new_bundle_is_a_ca_and_a_serving_certificate_for_the_service() -> None:
    bundle = certs.ensure(None, "progset-webhook", HOSTS, NOW, LIFETIMES)
    (ca,) = bundle.cas()
    serving = bundle.serving()
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert serving.issuer == ca.subject
    serving.verify_directly_issued_by(ca)
    assert sans(serving) == HOSTS and HOSTS[0] == "progset-webhook.progset-system.svc"
    assert serving.not_valid_after_utc == NOW + LIFETIMES.serving
    assert certs.Bundle.from_data(bundle.data()) == bundle
    assert certs.Bundle.from_data({**bundle.data(), "tls.crt": b"garbage"}) is None
    assert certs.next_renewal(bundle, LIFETIMES) == NOW + LIFETIMES.serving - LIFETIMES.renew_serving_before


def test_nothing_is_renewed_before_it_is_due() -> None:
    bundle = certs.ensure(None, "progset-webhook", HOSTS, NOW, LIFETIMES)
    due = certs.next_renewal(bundle, LIFETIMES)
    assert certs.ensure(bundle, "progset-webhook", HOSTS, due - datetime.timedelta(seconds=1), LIFETIMES) is bundle


def test_the_serving_certificate_is_renewed_by_the_same_ca() -> None:
    bundle = certs.ensure(None, "progset-webhook", HOSTS, NOW, LIFETIMES)
    later = certs.next_renewal(bundle, LIFETIMES)
    renewed = certs.ensure(bundle, "progset-webhook", HOSTS, later, LIFETIMES)
    assert renewed.ca_cert == bundle.ca_cert and renewed.ca_key == bundle.ca_key  # the caBundle stays
    assert renewed.tls_cert != bundle.tls_cert
    assert renewed.serving().not_valid_after_utc == later + LIFETIMES.serving
    # New Service names are a reason too.
    moved = certs.ensure(renewed, "progset-webhook", ["other.ns.svc"], later, LIFETIMES)
    assert sans(moved.serving()) == ["other.ns.svc"]


def test_a_ca_near_its_end_is_replaced_and_kept_in_the_bundle_until_it_expires() -> None:
    bundle = certs.ensure(None, "progset-webhook", HOSTS, NOW, LIFETIMES)
    (old_ca,) = bundle.cas()
    when = old_ca.not_valid_after_utc - LIFETIMES.renew_ca_before
    rotated = certs.ensure(bundle, "progset-webhook", HOSTS, when, LIFETIMES)
    new_ca, kept = rotated.cas()
    assert kept == old_ca and new_ca != old_ca
    rotated.serving().verify_directly_issued_by(new_ca)  # served only once the bundle holds the new CA
    assert rotated.ca_key != bundle.ca_key
    # Once the old CA has expired it leaves the bundle; the new one goes on.
    after = old_ca.not_valid_after_utc + datetime.timedelta(seconds=1)
    assert certs.next_renewal(rotated, LIFETIMES) <= old_ca.not_valid_after_utc
    pruned = certs.ensure(rotated, "progset-webhook", HOSTS, after, LIFETIMES)
    assert pruned.cas() == [new_ca]


# --- the operator against the emulated API server --------------------------------------------------------


def webhook_configuration(ca_bundle: str | None = None) -> dict[str, Any]:
    """The chart's MutatingWebhookConfiguration, as it is before the operator sets the caBundle."""
    client_config: dict[str, Any] = {"service": {"name": "progset-webhook", "namespace": "progset-system",
                                                 "path": PATH, "port": 443}}
    if ca_bundle:
        client_config["caBundle"] = ca_bundle
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": CONFIG_NAME},
            "webhooks": [{"name": "inject.progset.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                          "failurePolicy": "Ignore", "reinvocationPolicy": "IfNeeded",
                          "clientConfig": client_config,
                          "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                                     "resources": ["pods"], "scope": "Namespaced"}]}]}


def self_signed(tmp_path: Path, lifetimes: certs.Lifetimes = LIFETIMES, interval: float = 60.0) -> Options:
    hook = WebhookOptions(image="img", port=free_port(), address="127.0.0.1", cert_dir=tmp_path / "certs",
                          secret="progset-webhook-ca", namespace="progset-system", service="progset-webhook",
                          config=CONFIG_NAME, lifetimes=lifetimes, file_check_interval=interval)
    return Options(standalone=True, webhook=hook)


def stored(emu: kmock.KubernetesEmulator, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
    key = (kmock.resource(resource), namespace, name)
    if key not in emu.objects or emu.objects[key].deleted:
        return None
    return emu.objects[key].raw


def ca_bundle(emu: kmock.KubernetesEmulator) -> bytes:
    config = stored(emu, CONFIGS, None, CONFIG_NAME)
    assert config is not None
    return base64.b64decode(config["webhooks"][0]["clientConfig"].get("caBundle") or "")


def secret_bundle(emu: kmock.KubernetesEmulator) -> certs.Bundle | None:
    secret = stored(emu, SECRETS, "progset-system", "progset-webhook-ca")
    if secret is None:
        return None
    return certs.Bundle.from_data({k: base64.b64decode(v) for k, v in secret["data"].items()})


async def create_configuration(emu: kmock.KubernetesEmulator, body: dict[str, Any]) -> None:
    async with emu.post("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations", json=body) as resp:
        assert resp.status < 300, await resp.text()


async def test_the_operator_makes_its_ca_publishes_the_bundle_and_serves_with_it(emulator, kubeconfig,
                                                                                 tmp_path) -> None:
    await create_configuration(emulator, webhook_configuration())
    options = self_signed(tmp_path)
    async with running(emulator, options) as operator:
        port = options.webhook.port
        await wait_listening(port)
        bundle = secret_bundle(emulator)
        assert bundle is not None
        # The caBundle the API server will use is the Secret's CA; the served certificate chains to it.
        trusted = ca_bundle(emulator)
        assert trusted == bundle.ca_cert
        served = await served_certificate(port, trusted)
        assert served == bundle.serving()
        answer = await review(port, trusted, admission_review(template_pod(), namespace="team-b"))
        assert answer["response"]["allowed"] is True  # Ignore: annotated, as the ProgramSet does not exist
        assert operator.metrics.value("progset_operator_webhook_certificate_renewals_total") == 1
        secret = stored(emulator, SECRETS, "progset-system", "progset-webhook-ca")
        assert secret["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "progset-operator"}
    assert (tmp_path / "certs" / "tls.key").stat().st_mode & 0o077 == 0

    # A restart keeps the CA (no new caBundle, nothing written).
    revision = secret["metadata"]["resourceVersion"]
    async with running(emulator, options) as operator:
        await wait_listening(port)
        assert stored(emulator, SECRETS, "progset-system", "progset-webhook-ca")["metadata"]["resourceVersion"] \
            == revision
        assert operator.metrics.value("progset_operator_webhook_certificate_renewals_total") == 0


async def test_a_reset_ca_bundle_is_put_back(emulator, kubeconfig, tmp_path) -> None:
    """Someone re-applies the configuration with an old caBundle: the operator's next sync repairs it."""
    await create_configuration(emulator, webhook_configuration(ca_bundle=base64.b64encode(b"stale").decode()))
    options = self_signed(tmp_path)
    async with running(emulator, options):
        await wait_listening(options.webhook.port)
        bundle = secret_bundle(emulator)
        assert bundle is not None and ca_bundle(emulator) == bundle.ca_cert


async def test_the_serving_certificate_is_renewed_before_it_expires_and_served(emulator, kubeconfig,
                                                                              tmp_path) -> None:
    await create_configuration(emulator, webhook_configuration())
    short = certs.Lifetimes(serving=datetime.timedelta(minutes=5, seconds=4),
                            renew_serving_before=datetime.timedelta(minutes=5))
    options = self_signed(tmp_path, short, interval=0.2)
    async with running(emulator, options) as operator:
        port = options.webhook.port
        await wait_listening(port)
        first = secret_bundle(emulator)
        assert first is not None
        trusted = ca_bundle(emulator)
        assert await served_certificate(port, trusted) == first.serving()

        async def renewed_and_served() -> bool:
            current = secret_bundle(emulator)
            if current is None or current.tls_cert == first.tls_cert:
                return False
            try:
                return await served_certificate(port, trusted) == current.serving()
            except OSError:  # kopf restarts its server with the new files
                return False

        deadline = asyncio.get_running_loop().time() + 30
        while not await renewed_and_served():
            assert asyncio.get_running_loop().time() < deadline, "not renewed and served within 30 s"
            await asyncio.sleep(0.2)
        assert ca_bundle(emulator) == trusted  # the same CA: the caBundle did not have to change
        assert operator.metrics.value("progset_operator_webhook_certificate_renewals_total") >= 2
