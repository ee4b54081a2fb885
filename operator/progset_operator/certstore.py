"""The self-signed webhook certificates in the cluster: kept in a Secret, published as the caBundle.

One :meth:`CertStore.sync` reads the Secret, renews what :func:`certs.ensure` says is due, writes the
Secret back (guarded by its resourceVersion, so two operators never overwrite each other's CA), puts
the CA bundle into every webhook of the MutatingWebhookConfiguration whose bundle differs, and only
then writes the serving pair to the directory kopf's WebhookServer reads (kopf re-reads the files
when they change). :func:`keep_fresh` repeats it when the next renewal is due, and at least hourly,
so a ``caBundle`` reset by someone else (a ``kubectl apply`` of the configuration) is put back.

The API requests are exactly these, and the chart's RBAC grants exactly them (README.md,
"Permissions"): get/create/patch of one Secret in the operator's namespace, get/patch of one
MutatingWebhookConfiguration.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from . import certs
from .kube import ApiError, KubeClient
from .metrics import Metrics

JSON_PATCH = "application/json-patch+json"
# Re-check at least this often (someone may have reset the caBundle); and no sooner than this.
MAX_SLEEP = 3600.0
MIN_SLEEP = 1.0
RETRY_SLEEP = 30.0
log = logging.getLogger("progset_operator.certstore")


def secret_path(namespace: str, name: str | None = None) -> str:
    path = f"/api/v1/namespaces/{quote(namespace)}/secrets"
    return f"{path}/{quote(name)}" if name else path


def webhook_config_path(name: str) -> str:
    return f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{quote(name)}"


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass
class CertStore:
    """Where the operator's own webhook certificates live, and what names they are for."""

    client: KubeClient
    namespace: str
    secret: str
    webhook_config: str
    service: str
    directory: Path
    metrics: Metrics
    lifetimes: certs.Lifetimes = field(default_factory=certs.Lifetimes)

    @property
    def certfile(self) -> Path:
        return self.directory / certs.TLS_CERT

    @property
    def keyfile(self) -> Path:
        return self.directory / certs.TLS_KEY

    def sync(self, now: datetime.datetime | None = None) -> certs.Bundle:
        """Renew what is due, publish the CA bundle, write the serving pair; the bundle in force."""
        now = now or now_utc()
        for _ in range(5):
            current = self.client.get(secret_path(self.namespace, self.secret))
            data = {k: base64.b64decode(v) for k, v in ((current or {}).get("data") or {}).items()}
            old = certs.Bundle.from_data(data)
            bundle = certs.ensure(old, self.service, certs.service_hostnames(self.service, self.namespace), now,
                                  self.lifetimes)
            if bundle == old:
                break
            try:
                self._write_secret(current, bundle)
            except ApiError as exc:
                if exc.status == 409:  # someone else wrote it first: take theirs
                    continue
                raise
            self.metrics.certificate_renewals.inc()
            log.info("webhook certificate for %s.%s.svc written to Secret %s/%s, valid until %s", self.service,
                     self.namespace, self.namespace, self.secret, bundle.serving().not_valid_after_utc)
            break
        else:
            raise ApiError(409, "Conflict", f"Secret {self.namespace}/{self.secret} kept changing under us")
        self.publish_ca_bundle(bundle.ca_cert)
        self._write_files(bundle)
        return bundle

    def _write_secret(self, current: dict[str, Any] | None, bundle: certs.Bundle) -> None:
        data = {k: base64.b64encode(v).decode() for k, v in bundle.data().items()}
        if current is None:
            self.client.create(secret_path(self.namespace), {
                "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": self.secret, "namespace": self.namespace,
                             "labels": {"app.kubernetes.io/managed-by": "progset-operator"}},
                "data": data})
            return
        version = current["metadata"].get("resourceVersion")
        self.client.merge_patch(secret_path(self.namespace, self.secret),
                                {"metadata": {"resourceVersion": version}, "data": data})

    def publish_ca_bundle(self, ca_cert: bytes) -> bool:
        """Put ``ca_cert`` into each webhook's clientConfig.caBundle; False when all had it already."""
        path = webhook_config_path(self.webhook_config)
        config = self.client.get(path)
        if config is None:
            log.warning("MutatingWebhookConfiguration %s does not exist: no caBundle to set (is the chart's "
                        "webhook.enabled false?)", self.webhook_config)
            return False
        wanted = base64.b64encode(ca_cert).decode()
        ops: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/resourceVersion",
                                      "value": config["metadata"].get("resourceVersion")}]
        for i, hook in enumerate(config.get("webhooks") or []):
            if (hook.get("clientConfig") or {}).get("caBundle") != wanted:
                ops.append({"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": wanted})
        if len(ops) == 1:
            return False
        self.client.request("PATCH", path, body=ops, content_type=JSON_PATCH)
        log.info("caBundle of MutatingWebhookConfiguration %s updated", self.webhook_config)
        return True

    def _write_files(self, bundle: certs.Bundle) -> None:
        """Write the serving pair atomically (kopf may read it at any moment); unchanged files are kept."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for target, content in ((self.keyfile, bundle.tls_key), (self.certfile, bundle.tls_cert),
                                (self.directory / certs.CA_CERT, bundle.ca_cert)):
            if target.exists() and target.read_bytes() == content:
                continue
            temporary = target.with_name(f".{target.name}.tmp")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as stream:
                stream.write(content)
            os.replace(temporary, target)


async def keep_fresh(store: CertStore, clock: Callable[[], datetime.datetime] = now_utc) -> None:
    """Sync, sleep until the next renewal is due (at most an hour), repeat; retry failures after 30 s."""
    while True:
        try:
            bundle = await asyncio.to_thread(store.sync, clock())
            delay = (certs.next_renewal(bundle, store.lifetimes) - clock()).total_seconds()
        except ApiError as exc:
            log.error("webhook certificates: %s; retrying in %.0f s", exc, RETRY_SLEEP)
            delay = RETRY_SLEEP
        await asyncio.sleep(min(max(delay, MIN_SLEEP), MAX_SLEEP))
