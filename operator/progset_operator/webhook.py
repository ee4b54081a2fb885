"""kopf wiring of the injection webhook: the mutate handler, its HTTPS server, its certificates, the watcher.

The chart owns the MutatingWebhookConfiguration (namespaceSelector, objectSelector, failurePolicy),
so kopf's ``settings.admission.managed`` stays off and kopf only serves: ``POST /<handler id>`` on
``kopf.WebhookServer``, which re-reads its certificate files when they change. Those files come from
cert-manager (a mounted Secret) or from :class:`certstore.CertStore`, synced once before kopf starts
serving (a startup handler) and then by :func:`certstore.keep_fresh`.

The API server sends the pod's namespace in the AdmissionReview request, not always in the pod (a
ReplicaSet's pods arrive without ``metadata.namespace``); :class:`RequestNamespace` copies it into
the object before kopf sees it, so the handler and the JSONPatch base agree.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import kopf

from .admission import POLICIES, api_lookup, decide
from .inject import Defaults
from .kube import KubeClient
from .metrics import Metrics
from .render import PROGRAMSET_LABEL
from .uninjected import REASON, Uninjected

if TYPE_CHECKING:  # cryptography is imported only when the operator makes its own certificates
    from .certs import Lifetimes
    from .certstore import CertStore

HANDLER_ID = "progset-inject"
PATH = f"/{HANDLER_ID}"  # the MutatingWebhookConfiguration's clientConfig.service.path
DEFAULT_PORT = 9443


@dataclass(frozen=True)
class WebhookOptions:
    """``progset-operator run --webhook ...``: where to serve, with which certificates, what to inject."""

    image: str
    port: int = DEFAULT_PORT
    address: str = "0.0.0.0"
    policy: str = "Ignore"
    cert_dir: Path = Path("/tmp/progset-webhook")
    # Self-signed mode (all four set): the operator keeps its CA in this Secret and patches the caBundle.
    secret: str | None = None
    namespace: str | None = None
    service: str | None = None
    config: str | None = None
    file_check_interval: float = 60.0
    lifetimes: Lifetimes | None = None  # None: certs.Lifetimes() (5-year CA, 1-year serving certificate)

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"--webhook-failure-policy {self.policy!r}: expected one of {', '.join(POLICIES)}")
        managed = (self.secret, self.namespace, self.service, self.config)
        if any(managed) and not all(managed):
            raise ValueError("--webhook-secret, --webhook-namespace, --webhook-service and --webhook-config go "
                             "together (the operator's self-signed certificates); give all four, or none and "
                             "--webhook-cert-dir with certificates from cert-manager")

    @property
    def self_signed(self) -> bool:
        return self.secret is not None


class RequestNamespace:
    """A webhook server (kopf's protocol) that fills ``metadata.namespace`` from the request."""

    def __init__(self, inner: kopf.WebhookServer) -> None:
        self.inner = inner

    async def __call__(self, fn: Any) -> AsyncIterator[Any]:
        async def with_namespace(request: dict[str, Any], **kwargs: Any) -> Any:
            payload = request.get("request") or {}
            obj, namespace = payload.get("object"), payload.get("namespace")
            if isinstance(obj, dict) and namespace and not (obj.get("metadata") or {}).get("namespace"):
                obj.setdefault("metadata", {})["namespace"] = namespace
            return await fn(request, **kwargs)

        async with self.inner as server:
            async for client_config in server(with_namespace):
                yield client_config


def _replace_with(pod: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def transform(body: dict[str, Any]) -> None:
        body.clear()
        body.update(pod)
    return transform


def register_webhook(registry: kopf.OperatorRegistry, settings: kopf.OperatorSettings, client: KubeClient,
                     metrics: Metrics, options: WebhookOptions) -> CertStore | None:
    """Register the mutate handler, the uninjected-pod watcher and the certificate upkeep."""
    defaults = Defaults(image=options.image)
    lookup = api_lookup(client)
    store: CertStore | None = None
    if options.self_signed:
        from .certs import Lifetimes
        from .certstore import CertStore

        assert options.namespace and options.secret and options.config and options.service
        store = CertStore(client=client, namespace=options.namespace, secret=options.secret,
                          webhook_config=options.config, service=options.service, directory=options.cert_dir,
                          metrics=metrics, lifetimes=options.lifetimes or Lifetimes())
    settings.admission.server = RequestNamespace(kopf.WebhookServer(
        addr=options.address, port=options.port, certfile=options.cert_dir / "tls.crt",
        pkeyfile=options.cert_dir / "tls.key", file_check_interval=options.file_check_interval))
    # Only labelled pods are of interest; a real API server filters them server-side.
    settings.watching.label_selectors["v1", "pods"] = PROGRAMSET_LABEL
    upkeep: list[asyncio.Task[None]] = []

    @kopf.on.startup(registry=registry)
    async def webhook_certificates(**_: Any) -> None:
        if store is not None:
            from .certstore import keep_fresh

            await asyncio.to_thread(store.sync)  # the files exist before kopf starts serving
            upkeep.append(asyncio.create_task(keep_fresh(store), name="progset webhook certificates"))

    @kopf.on.cleanup(registry=registry)
    async def stop_upkeep(**_: Any) -> None:
        for task in upkeep:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @kopf.on.mutate("v1", "pods", id=HANDLER_ID, operations=["CREATE"], labels={PROGRAMSET_LABEL: kopf.PRESENT},
                    registry=registry)
    async def inject_pod(body: kopf.Body, patch: kopf.Patch, logger: Any, **_: Any) -> None:
        pod = dict(body)
        namespace = str((pod.get("metadata") or {}).get("namespace") or "default")
        decision = await asyncio.to_thread(decide, pod, namespace, lookup, defaults, options.policy)
        if decision.refused is not None:
            metrics.injections.labels(result="refused").inc()
            logger.warning(decision.refused)
            raise kopf.AdmissionError(decision.refused, code=400)
        assert decision.pod is not None
        if decision.injected:
            result = "injected"
        elif decision.pod != pod:
            result = "annotated"
            logger.warning("admitted without the progset sidecar: %s",
                           (decision.pod["metadata"].get("annotations") or {}))
        else:
            result = "unchanged"
        metrics.injections.labels(result=result).inc()
        if decision.pod != pod:
            patch.fns.append(_replace_with(decision.pod))

    uninjected = Uninjected(metrics)

    @kopf.on.event("v1", "pods", labels={PROGRAMSET_LABEL: kopf.PRESENT}, registry=registry)
    async def watch_pod(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        message = uninjected.observe(event.get("type"), dict(body))
        if message is not None:
            kopf.event(dict(body), type="Warning", reason=REASON, message=message)  # type: ignore[arg-type]

    return store
