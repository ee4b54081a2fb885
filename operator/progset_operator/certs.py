"""The webhook's self-signed certificates: a CA, a serving certificate, and when to renew each. Pure.

Used when cert-manager is not (chart value ``webhook.certManager.enabled: false``): the operator keeps
the CA and the serving certificate in a Secret (certstore.py) and puts the CA bundle into the
MutatingWebhookConfiguration's ``caBundle`` itself.

Rotation never leaves the API server without a CA it trusts for the certificate being served: a new
CA is added to the bundle next to the old one (which stays until it expires), and the bundle is
published before the serving certificate signed by the new CA is used.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT, CA_KEY, TLS_CERT, TLS_KEY = "ca.crt", "ca.key", "tls.crt", "tls.key"
KEYS = (CA_CERT, CA_KEY, TLS_CERT, TLS_KEY)
# Tolerated clock skew between the operator and the API server.
BACKDATE = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class Lifetimes:
    """How long certificates live and how early they are replaced."""

    ca: datetime.timedelta = datetime.timedelta(days=5 * 365)
    serving: datetime.timedelta = datetime.timedelta(days=365)
    renew_ca_before: datetime.timedelta = datetime.timedelta(days=365)
    renew_serving_before: datetime.timedelta = datetime.timedelta(days=30)


@dataclass(frozen=True)
class Bundle:
    """What the Secret holds: the CA bundle (current CA first), the CA key, the serving pair (PEM)."""

    ca_cert: bytes
    ca_key: bytes
    tls_cert: bytes
    tls_key: bytes

    def data(self) -> dict[str, bytes]:
        return {CA_CERT: self.ca_cert, CA_KEY: self.ca_key, TLS_CERT: self.tls_cert, TLS_KEY: self.tls_key}

    @classmethod
    def from_data(cls, data: Mapping[str, bytes]) -> Bundle | None:
        """The bundle in a Secret's decoded data, or None when a key is missing or does not parse."""
        if any(not data.get(key) for key in KEYS):
            return None
        bundle = cls(data[CA_CERT], data[CA_KEY], data[TLS_CERT], data[TLS_KEY])
        try:
            bundle.cas()
            bundle.serving()
            serialization.load_pem_private_key(bundle.ca_key, None)
            serialization.load_pem_private_key(bundle.tls_key, None)
        except ValueError:
            return None
        return bundle

    def cas(self) -> list[x509.Certificate]:
        return x509.load_pem_x509_certificates(self.ca_cert)

    def serving(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.tls_cert)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def new_ca(name: str, now: datetime.datetime, lifetimes: Lifetimes) -> tuple[bytes, bytes]:
    """A self-signed CA (certificate, key) that may sign serving certificates only."""
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA {now:%Y-%m-%dT%H:%M:%SZ}")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(now + lifetimes.ca)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return _pem(cert), _pem_key(key)


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def new_serving(ca_cert: bytes, ca_key: bytes, hostnames: Sequence[str], now: datetime.datetime,
                lifetimes: Lifetimes) -> tuple[bytes, bytes]:
    """A serving certificate for ``hostnames`` signed by the CA (the first certificate of ``ca_cert``)."""
    issuer = x509.load_pem_x509_certificates(ca_cert)[0]
    signer = serialization.load_pem_private_key(ca_key, None)
    assert isinstance(signer, ec.EllipticCurvePrivateKey)
    key = _key()
    not_after = min(now + lifetimes.serving, issuer.not_valid_after_utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
            .issuer_name(issuer.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([_san(h) for h in hostnames]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
            .sign(signer, hashes.SHA256()))
    return _pem(cert), _pem_key(key)


def service_hostnames(service: str, namespace: str) -> list[str]:
    """The names the API server may use for a webhook Service (it uses ``<svc>.<ns>.svc``)."""
    return [f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local", f"{service}.{namespace}",
            service]


def _sans(cert: x509.Certificate) -> list[str]:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n.value) for n in names]


def ensure(bundle: Bundle | None, name: str, hostnames: Sequence[str], now: datetime.datetime,
           lifetimes: Lifetimes) -> Bundle:
    """The bundle to keep: ``bundle`` itself when nothing is due, else a renewed one.

    Due: no (readable) bundle; the CA within ``renew_ca_before`` of its end (a new CA joins the
    bundle); the serving certificate within ``renew_serving_before`` of its end, not signed by the
    current CA, or not naming ``hostnames``. CAs past their end leave the bundle.
    """
    if bundle is None:
        ca_cert, ca_key = new_ca(name, now, lifetimes)
        return Bundle(ca_cert, ca_key, *new_serving(ca_cert, ca_key, hostnames, now, lifetimes))
    cas = bundle.cas()
    if cas[0].not_valid_after_utc - lifetimes.renew_ca_before <= now:
        ca_cert, ca_key = new_ca(name, now, lifetimes)
        still_valid = b"".join(_pem(c) for c in cas if c.not_valid_after_utc > now)
        bundle = replace(bundle, ca_cert=ca_cert + still_valid, ca_key=ca_key, tls_cert=b"", tls_key=b"")
    else:
        kept = [cas[0], *(c for c in cas[1:] if c.not_valid_after_utc > now)]
        if len(kept) != len(cas):
            bundle = replace(bundle, ca_cert=b"".join(_pem(c) for c in kept))
    if not bundle.tls_cert or _serving_due(bundle, hostnames, now, lifetimes):
        bundle = replace(bundle, **dict(zip(("tls_cert", "tls_key"),
                                            new_serving(bundle.ca_cert, bundle.ca_key, hostnames, now, lifetimes),
                                            strict=True)))
    return bundle


def _serving_due(bundle: Bundle, hostnames: Sequence[str], now: datetime.datetime, lifetimes: Lifetimes) -> bool:
    serving, current = bundle.serving(), bundle.cas()[0]
    return (serving.not_valid_after_utc - lifetimes.renew_serving_before <= now
            or serving.issuer != current.subject
            or sorted(_sans(serving)) != sorted(hostnames))


def next_renewal(bundle: Bundle, lifetimes: Lifetimes) -> datetime.datetime:
    """When :func:`ensure` will next have something to do."""
    current = bundle.cas()[0]
    return min(current.not_valid_after_utc - lifetimes.renew_ca_before,
               bundle.serving().not_valid_after_utc - lifetimes.renew_serving_before,
               *(c.not_valid_after_utc for c in bundle.cas()[1:]))
