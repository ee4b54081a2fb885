"""Edge cases found in review, each run with the real operator against the emulated API server."""

from __future__ import annotations

import asyncio
import threading

import kmock

from .emulator import CONFIGMAP_DATA_MAX
from .fixtures import Cluster, cm_url, conditions, events, eventually, programset, ps_url, settled
from .test_operator_integration import HELLO


def _big(n: int, size: int) -> list[dict]:
    """``n`` programs that the CRD admits, each with one argument of ``size`` characters."""
    return [{"name": f"p{i}", "command": ["/bin/app", "x" * size]} for i in range(n)]


async def test_rendering_over_the_configmap_size_limit_is_a_clear_condition_not_a_retry_loop(
        operator, cluster: Cluster, emulator) -> None:
    # 3 x 400 kB of arguments: a ProgramSet the API server stores (its limit is ~1.5 MiB), but a
    # ConfigMap it refuses (data over 1 MiB).
    await cluster.create(programset("big", _big(3, 400_000)))
    ps = await eventually(lambda: settled(cluster, "big", 1))
    assert conditions(ps) == {"Valid": ("True", "Valid"), "Rendered": ("False", "TooLarge")}
    rendered = next(c for c in ps["status"]["conditions"] if c["type"] == "Rendered")
    assert str(CONFIGMAP_DATA_MAX) in rendered["message"]
    warning = await eventually(lambda: events(emulator, "TooLarge"))
    assert warning[0]["type"] == "Warning"

    await asyncio.sleep(0.3)  # not retried: only an edit of the spec can make it fit
    cm_writes = [r for r in cluster.writes() if r.resource == kmock.resource("v1/configmaps")]
    assert cm_writes == []
    assert cluster.configmap("big-programs") is None
    assert len([r for r in cluster.writes() if r.subresource == "status"]) == 1

    # Shrinking it renders, and Rendered flips back.
    await cluster.patch(ps_url("default", "big"), {"spec": {"programs": HELLO}})
    ps = await eventually(lambda: settled(cluster, "big", 2))
    assert conditions(ps) == {"Valid": ("True", "Valid"), "Rendered": ("True", "Rendered")}
    assert cluster.configmap("big-programs") is not None


async def test_programset_deleted_during_a_drift_repair_is_not_counted_again(operator, cluster: Cluster) -> None:
    """A drift repair reads the owner, the owner is deleted, then the repair finishes: nothing may stay."""
    await cluster.create(programset("web", HELLO))
    await eventually(lambda: settled(cluster, "web", 1))
    await eventually(lambda: operator.metrics.value("progset_operator_programsets", {"valid": "true"}) == 1)

    client = operator.client
    real_get = client.get
    fetched, release = threading.Event(), threading.Event()

    def slow_get(path: str):  # runs in a worker thread (the reconciler uses asyncio.to_thread)
        found = real_get(path)
        if "/programsets/" in path:  # only the drift handler reads a ProgramSet
            fetched.set()
            release.wait(5)
        return found

    client.get = slow_get  # type: ignore[method-assign]
    try:
        await cluster.patch(cm_url("default", "web-programs"), {"data": {"programs.json": "tampered"}})
        await eventually(fetched.is_set)
        await cluster.delete(ps_url("default", "web"))
        await eventually(lambda: operator.metrics.value("progset_operator_programsets", {"valid": "true"}) == 0)
    finally:
        release.set()
    # The repair goes on with the owner it read (harmless: the garbage collector removes what it writes).
    await eventually(lambda: operator.metrics.value("progset_operator_reconciles_total", {"result": "updated"}) == 1)
    await asyncio.sleep(0.1)
    assert operator.reconciler.counts() == {"valid": 0, "invalid": 0}
    assert operator.metrics.value("progset_operator_programsets", {"valid": "true"}) == 0
    assert ("default", "web") not in operator.reconciler._desired
