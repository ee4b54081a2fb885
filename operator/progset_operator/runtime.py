"""Assembling one operator instance: options -> client, reconciler, metrics, kopf registry and settings.

The command line and the integration tests both go through :func:`build`, so the tests run the same
handlers with the same kopf settings as production; only the way kopf's tasks are started differs
(``kopf.run`` in the CLI, ``kopf.spawn_tasks`` inside a test's event loop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import kopf

from .crd import GROUP
from .handlers import register
from .identity import own_identity
from .kube import KubeClient, load_configuration
from .metrics import Metrics
from .reconciler import Reconciler
from .render import MANAGED_BY_LABEL, MANAGER
from .webhook import WebhookOptions, register_webhook

ANNOTATION_PREFIX = GROUP


@dataclass(frozen=True)
class Options:
    """What ``progset-operator run`` was asked to do."""

    namespaces: tuple[str, ...] = ()
    standalone: bool = False
    liveness: str | None = None
    metrics_port: int = 0
    metrics_address: str = "0.0.0.0"
    kubeconfig: str | None = None
    peering: str | None = None
    # Serve the sidecar injection webhook (and watch labelled pods); None: no webhook.
    webhook: WebhookOptions | None = None

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces


@dataclass
class Operator:
    """Everything one running operator is made of."""

    options: Options
    registry: kopf.OperatorRegistry
    settings: kopf.OperatorSettings
    reconciler: Reconciler
    metrics: Metrics
    client: KubeClient

    def kopf_kwargs(self) -> dict[str, Any]:
        """Arguments for ``kopf.run`` / ``kopf.spawn_tasks``."""
        kwargs: dict[str, Any] = {
            "registry": self.registry,
            "settings": self.settings,
            "standalone": self.options.standalone,
            "clusterwide": self.options.clusterwide,
            "namespaces": list(self.options.namespaces),
            "liveness_endpoint": self.options.liveness,
            # kopf's own default asks the passwd database and crashes under a uid without an entry.
            "identity": own_identity(),
        }
        if self.options.peering:
            kwargs["peering_name"] = self.options.peering
        return kwargs


def configure(settings: kopf.OperatorSettings, options: Options) -> None:
    """kopf settings: our own annotation prefix, server-side label filtering, peering mode."""
    settings.peering.standalone = options.standalone
    # Keep kopf's bookkeeping in annotations under our prefix, so the status stays exactly what the
    # CRD's status schema declares (kopf's default would also write status.kopf).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration")
    # Only our rendered ConfigMaps are of interest; a real API server filters them server-side.
    settings.watching.label_selectors["v1", "configmaps"] = f"{MANAGED_BY_LABEL}={MANAGER}"
    settings.posting.reporting_component = MANAGER
    settings.process.ultimate_exiting_timeout = 10


def build(options: Options) -> Operator:
    """A ready-to-run operator; reads the cluster configuration now, so a bad kubeconfig fails early."""
    config = load_configuration(options.kubeconfig)
    client = KubeClient(config)
    metrics = Metrics()
    reconciler = Reconciler(client, metrics)
    registry = kopf.OperatorRegistry()
    register(registry, reconciler, config)
    settings = kopf.OperatorSettings()
    configure(settings, options)
    if options.webhook is not None:
        register_webhook(registry, settings, client, metrics, options.webhook)
    return Operator(options=options, registry=registry, settings=settings, reconciler=reconciler,
                    metrics=metrics, client=client)

