"""kopf wiring: which events reach the reconciler, registered into an explicit registry.

Handlers are registered into a registry passed in (not kopf's global default), so every operator
instance, in production or in a test, gets exactly one fresh set of handlers bound to its own
reconciler, client and metrics.

ConfigMaps are watched with ``on.event`` only: kopf's ``on.update``/``on.delete`` would make kopf
store its bookkeeping annotations (and a finalizer) on the very ConfigMaps we render, which would
then look like drift. ProgramSets need no finalizer either: their ConfigMaps carry a controller
ownerReference and the garbage collector removes them.
"""

from __future__ import annotations

from typing import Any

import kopf
import kubernetes.client

from .crd import GROUP, PLURAL, VERSION
from .kube import connection_info
from .reconciler import Reconciler, key_of
from .render import MANAGED_BY_LABEL, MANAGER


def register(registry: kopf.OperatorRegistry, reconciler: Reconciler,
             config: kubernetes.client.Configuration) -> None:
    """Register the operator's handlers into ``registry``."""

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(config)

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry)
    async def render_programset(body: kopf.Body, **_: Any) -> None:
        await reconciler.reconcile(dict(body))

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def programset_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        if event.get("type") == "DELETED":
            reconciler.forget(*key_of(dict(body)), uid=body.get("metadata", {}).get("uid"))

    @kopf.on.event("v1", "configmaps", labels={MANAGED_BY_LABEL: MANAGER}, registry=registry)
    async def configmap_drift(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        await reconciler.configmap_event(event.get("type"), dict(body))

    @kopf.on.probe(id="programsets", registry=registry)
    def programsets_probe(**_: Any) -> dict[str, int]:
        return reconciler.counts()
