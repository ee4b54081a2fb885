"""Test helpers for the injection webhook: AdmissionReview requests as the API server sends them, over HTTPS.

The API server POSTs ``admission.k8s.io/v1`` AdmissionReview objects to
``https://<service>.<namespace>.svc:<port><path>`` and trusts only the configuration's caBundle, checking
the certificate against that DNS name. :func:`review` does the same against the operator listening on
127.0.0.1 (``server_hostname`` is the Service name, so a certificate for the wrong name fails).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import socket
import ssl
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import jsonpatch
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from progset_operator.webhook import PATH

SERVICE_HOST = "progset-webhook.progset-system.svc"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_test_certificates(directory: Path, hostname: str = SERVICE_HOST) -> bytes:
    """A CA and a serving certificate for ``hostname`` (as cert-manager would mount them); the CA PEM."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    return ca.public_bytes(serialization.Encoding.PEM)


def admission_review(pod: dict[str, Any], namespace: str = "default", operation: str = "CREATE") -> dict[str, Any]:
    """An AdmissionReview v1 request for a pod, shaped as kube-apiserver sends it."""
    gvk = {"group": "", "version": "v1", "kind": "Pod"}
    gvr = {"group": "", "version": "v1", "resource": "pods"}
    return {
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()), "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "name": (pod.get("metadata") or {}).get("name", ""), "namespace": namespace, "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller",
                         "uid": str(uuid.uuid4()), "groups": ["system:serviceaccounts", "system:authenticated"]},
            "object": pod, "oldObject": None, "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def client_context(ca_pem: bytes) -> ssl.SSLContext:
    """Trust exactly ``ca_pem``, as the API server trusts the caBundle."""
    context = ssl.create_default_context(cadata=ca_pem.decode())
    context.check_hostname = True
    return context


async def review(port: int, ca_pem: bytes, request: dict[str, Any], hostname: str = SERVICE_HOST,
                 path: str = PATH) -> dict[str, Any]:
    """POST one AdmissionReview and return the AdmissionReview response (checked for its v1 shape)."""
    async with aiohttp.ClientSession() as session, session.post(
            f"https://127.0.0.1:{port}{path}", json=request, ssl=client_context(ca_pem),
            server_hostname=hostname, timeout=aiohttp.ClientTimeout(total=30)) as response:
        assert response.status == 200, await response.text()
        answer = await response.json()
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == request["request"]["uid"]
    assert isinstance(answer["response"]["allowed"], bool)
    return answer


def patched(request: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """The object after the API server applied the response's JSONPatch (the object itself when none)."""
    obj = request["request"]["object"]
    response = answer["response"]
    if "patch" not in response:
        return obj
    assert response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"]))
    return jsonpatch.apply_patch(obj, ops)


async def wait_listening(port: int, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"the webhook never listened on port {port}") from None
            await asyncio.sleep(0.05)


async def served_certificate(port: int, ca_pem: bytes, hostname: str = SERVICE_HOST) -> x509.Certificate:
    """The certificate the webhook presents (verified against ``ca_pem`` and ``hostname``)."""
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(ca_pem),
                                              server_hostname=hostname)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        await writer.wait_closed()
    return x509.load_der_x509_certificate(der)
