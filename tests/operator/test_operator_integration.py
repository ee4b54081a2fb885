"""The real operator (kopf + our handlers) against kmock's emulated API server: the reconcile paths.

Assertions are on what the operator wrote (objects and requests), never on cluster-side effects the
emulator does not have (garbage collection, admission).
"""

from __future__ import annotations

import asyncio

import kmock
import yaml

from progset_operator.runtime import Options
from progset_supervisor.config import load_yaml_text

from .fixtures import Cluster, cm_url, conditions, events, eventually, programset, ps_url, running, settled

HELLO = [{"name": "hello", "command": ["echo", "hello, world"], "restart": "never"}]
API = [
    {"name": "api", "command": ["/usr/bin/dataplaneapi", "--port", "5555"], "onReload": "keep"},
    {"name": "mirror", "command": ["/usr/bin/spoa-mirror", "--runtime", "0"], "dependsOn": ["api"]},
]


async def test_create_renders_configmap_owned_labelled_and_hashed(operator, cluster: Cluster, emulator) -> None:
    created = await cluster.create(programset("web", HELLO))
    cm = await eventually(lambda: cluster.configmap("web-programs"))
    assert cm["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "progset-operator",
                                        "progset.io/programset": "web"}
    assert cm["metadata"]["ownerReferences"] == [{
        "apiVersion": "progset.io/v1alpha1", "kind": "ProgramSet", "name": "web",
        "uid": created["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
    text = cm["data"]["programs.json"]
    config = load_yaml_text(text, "programs.json")  # what the supervisor will read
    assert [(p.name, p.command) for p in config.programs] == [("hello", ("echo", "hello, world"))]
    assert cm["metadata"]["annotations"] == {"progset.io/config-hash": config.hash}
    assert yaml.safe_load(text)["metadata"] == {"namespace": "default", "name": "web", "generation": 1}

    ps = await eventually(lambda: settled(cluster, "web", 1))
    assert ps["status"]["configMap"] == "web-programs"
    assert ps["status"]["configHash"] == config.hash
    assert ps["status"]["programs"] == 1
    assert conditions(ps) == {"Valid": ("True", "Valid"), "Rendered": ("True", "Rendered")}
    assert all(c["lastTransitionTime"] and c["observedGeneration"] == 1 for c in ps["status"]["conditions"])
    await eventually(lambda: events(emulator, "ConfigMapCreated"))
    await eventually(lambda: operator.metrics.value("progset_operator_reconciles_total", {"result": "created"}) == 1)
    await eventually(lambda: operator.metrics.value("progset_operator_programsets", {"valid": "true"}) == 1)


async def test_update_patches_configmap_once_and_bumps_observed_generation(operator, cluster: Cluster) -> None:
    await cluster.create(programset("web", API))
    await eventually(lambda: settled(cluster, "web", 1))
    before = cluster.configmap("web-programs")
    mark = len(cluster.writes())

    changed = [dict(API[0]), {**API[1], "command": ["/usr/bin/spoa-mirror", "--runtime", "1"]}]
    await cluster.patch(ps_url("default", "web"), {"spec": {"programs": changed}})
    ps = await eventually(lambda: settled(cluster, "web", 2))

    after = cluster.configmap("web-programs")
    config = load_yaml_text(after["data"]["programs.json"], "programs.json")
    assert config.by_name()["mirror"].command == ("/usr/bin/spoa-mirror", "--runtime", "1")
    assert ps["status"]["configHash"] == config.hash != before["metadata"]["annotations"]["progset.io/config-hash"]
    assert after["metadata"]["uid"] == before["metadata"]["uid"]  # patched, not re-created
    cm_writes = [r for r in cluster.writes()[mark:] if r.resource == kmock.resource("v1/configmaps")]
    assert [(r.method, r.name) for r in cm_writes] == [("PATCH", "web-programs")]
    await eventually(lambda: operator.metrics.value("progset_operator_reconciles_total", {"result": "updated"}) == 1)


async def test_restart_resync_of_unchanged_programsets_writes_nothing(emulator, kubeconfig, cluster) -> None:
    async with running(emulator, Options(standalone=True)):
        for name in ("one", "two"):
            await cluster.create(programset(name, API))
        for name in ("one", "two"):
            await eventually(lambda n=name: settled(cluster, n, 1))
        await asyncio.sleep(0.1)  # let kopf finish its own bookkeeping patches
    mark = len(list(emulator))
    async with running(emulator, Options(standalone=True)) as second:
        await eventually(lambda: second.metrics.value("progset_operator_reconciles_total",
                                                      {"result": "unchanged"}) == 2)
        await asyncio.sleep(0.2)
    after = list(emulator)[mark:]
    writes = [(r.method, r.url.path) for r in after if r.method in ("POST", "PATCH", "PUT", "DELETE")]
    assert writes == []
    reads = [r for r in after if r.method == "GET" and r.resource == kmock.resource("v1/configmaps") and r.name]
    assert sorted(r.name for r in reads) == ["one-programs", "two-programs"]  # it did look


async def test_label_only_change_writes_neither_configmap_nor_status(operator, cluster: Cluster) -> None:
    await cluster.create(programset("web", HELLO))
    await eventually(lambda: settled(cluster, "web", 1))
    await asyncio.sleep(0.05)
    mark = len(cluster.writes())
    await cluster.patch(ps_url("default", "web"), {"metadata": {"labels": {"team": "edge"}}})
    await eventually(lambda: operator.metrics.value("progset_operator_reconciles_total", {"result": "unchanged"}))
    await asyncio.sleep(0.1)
    ours = [r for r in cluster.writes()[mark:] if r.headers.get("User-Agent") == "progset-operator"]
    assert ours == []


async def test_invalid_spec_reports_condition_event_and_keeps_old_configmap(operator, cluster, emulator) -> None:
    await cluster.create(programset("web", API))
    await eventually(lambda: settled(cluster, "web", 1))
    before = cluster.configmap("web-programs")
    mark = len(cluster.writes())

    cycle = [{**API[0], "dependsOn": ["mirror"]}, API[1]]  # passes the CRD, fails the model
    await cluster.patch(ps_url("default", "web"), {"spec": {"programs": cycle}})
    ps = await eventually(lambda: settled(cluster, "web", 2))

    assert conditions(ps) == {"Valid": ("False", "InvalidSpec"), "Rendered": ("False", "InvalidSpec")}
    valid = next(c for c in ps["status"]["conditions"] if c["type"] == "Valid")
    assert "dependsOn cycle: api -> mirror -> api" in valid["message"]
    rendered = next(c for c in ps["status"]["conditions"] if c["type"] == "Rendered")
    assert before["metadata"]["annotations"]["progset.io/config-hash"] in rendered["message"]
    assert ps["status"]["configHash"] == before["metadata"]["annotations"]["progset.io/config-hash"]
    warning = await eventually(lambda: events(emulator, "InvalidSpec"))
    assert warning[0]["type"] == "Warning" and "cycle" in warning[0]["message"]

    await asyncio.sleep(0.3)  # a retry storm would show up as more reconciles and status patches
    assert cluster.configmap("web-programs") == before
    await eventually(lambda: operator.metrics.value("progset_operator_reconciles_total", {"result": "invalid"}) == 1)
    cm_writes = [r for r in cluster.writes()[mark:] if r.resource == kmock.resource("v1/configmaps")]
    assert cm_writes == []
    status_writes = [r for r in cluster.writes()[mark:] if r.subresource == "status"]
    assert len(status_writes) == 1
    await eventually(lambda: operator.metrics.value("progset_operator_programsets", {"valid": "false"}) == 1)

    # Fixing the spec renders again and flips both conditions back.
    await cluster.patch(ps_url("default", "web"), {"spec": {"programs": API}})
    ps = await eventually(lambda: settled(cluster, "web", 3))
    assert conditions(ps) == {"Valid": ("True", "Valid"), "Rendered": ("True", "Rendered")}


async def test_invalid_spec_from_the_start_renders_nothing(operator, cluster: Cluster) -> None:
    bad = [{"name": "a", "command": ["true"], "dependsOn": ["nope"]}]
    await cluster.create(programset("bad", bad))
    ps = await eventually(lambda: settled(cluster, "bad", 1))
    assert conditions(ps) == {"Valid": ("False", "InvalidSpec"), "Rendered": ("False", "InvalidSpec")}
    assert "unknown program 'nope'" in ps["status"]["conditions"][0]["message"]
    assert "configMap" not in ps["status"]
    assert cluster.configmap("bad-programs") is None


async def test_deletion_leaves_configmap_to_the_garbage_collector(operator, cluster: Cluster) -> None:
    created = await cluster.create(programset("web", HELLO))
    await eventually(lambda: settled(cluster, "web", 1))
    await eventually(lambda: operator.metrics.value("progset_operator_programsets", {"valid": "true"}) == 1)
    await cluster.delete(ps_url("default", "web"))
    await eventually(lambda: operator.metrics.value("progset_operator_programsets", {"valid": "true"}) == 0)

    # No finalizer was needed: the ProgramSet is gone at once, and its ConfigMap names it as controller.
    assert cluster.programset("web") is None
    cm = cluster.configmap("web-programs")
    (ref,) = cm["metadata"]["ownerReferences"]
    assert ref["uid"] == created["metadata"]["uid"] and ref["controller"] is True
    assert "finalizers" not in created["metadata"]

    # The garbage collector's deletion of the ConfigMap is not "drift" to repair.
    mark = len(cluster.writes())
    await cluster.delete(cm_url("default", "web-programs"))
    await asyncio.sleep(0.2)
    assert cluster.configmap("web-programs") is None
    assert [r for r in cluster.writes()[mark:] if r.resource == kmock.resource("v1/configmaps")] == []
    assert ("default", "web") not in operator.reconciler._locks  # nothing of it stays in the operator either


async def test_config_map_name_override_and_rename_deletes_the_old_one(operator, cluster: Cluster) -> None:
    await cluster.create(programset("web", HELLO, configMapName="edge-programs"))
    await eventually(lambda: settled(cluster, "web", 1))
    assert cluster.configmap("edge-programs") is not None
    assert cluster.configmap("web-programs") is None

    await cluster.patch(ps_url("default", "web"), {"spec": {"configMapName": "edge-v2"}})
    ps = await eventually(lambda: settled(cluster, "web", 2))
    assert ps["status"]["configMap"] == "edge-v2"
    assert cluster.configmap("edge-v2") is not None
    assert cluster.configmap("edge-programs") is None


async def test_foreign_configmap_is_not_overwritten(operator, cluster: Cluster, emulator) -> None:
    theirs = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-programs", "namespace": "default"},
              "data": {"keep": "me"}}
    await cluster.create(theirs)
    await cluster.create(programset("web", HELLO))
    ps = await eventually(lambda: settled(cluster, "web", 1))
    assert conditions(ps) == {"Valid": ("True", "Valid"), "Rendered": ("False", "ConfigMapConflict")}
    assert "not managed by progset-operator" in ps["status"]["conditions"][1]["message"]
    assert cluster.configmap("web-programs")["data"] == {"keep": "me"}
    await eventually(lambda: events(emulator, "ConfigMapConflict"))
    await eventually(lambda: operator.metrics.value("progset_operator_reconciles_total", {"result": "conflict"}) == 1)


async def test_stale_owner_configmap_is_taken_over_by_the_new_incarnation(operator, cluster: Cluster) -> None:
    first = await cluster.create(programset("web", HELLO))
    await eventually(lambda: settled(cluster, "web", 1))
    await cluster.delete(ps_url("default", "web"))  # no garbage collector: the ConfigMap stays behind
    second = await cluster.create(programset("web", API))
    assert second["metadata"]["uid"] != first["metadata"]["uid"]
    ps = await eventually(lambda: settled(cluster, "web", 1) and cluster.programset("web")["status"].get("programs")
                          == 2 and cluster.programset("web"))
    cm = cluster.configmap("web-programs")
    assert [r["uid"] for r in cm["metadata"]["ownerReferences"]] == [second["metadata"]["uid"]]
    assert conditions(ps)["Rendered"] == ("True", "Rendered")


async def test_forbidden_configmap_access_is_reported_on_the_object(operator, cluster: Cluster, emulator) -> None:
    # As with a Role that lacks configmaps: every read of this ConfigMap answers 403.
    emulator["get", kmock.resource("v1/configmaps"), kmock.name("web-programs")] << 403 << {
        "kind": "Status", "code": 403, "reason": "Forbidden", "message": "configmaps is forbidden"}
    await cluster.create(programset("web", HELLO))
    ps = await eventually(lambda: settled(cluster, "web", 1))
    assert conditions(ps) == {"Valid": ("True", "Valid"), "Rendered": ("False", "ApiError")}
    assert "403 Forbidden: configmaps is forbidden" in ps["status"]["conditions"][1]["message"]
    await eventually(lambda: events(emulator, "ApiError"))
    await eventually(lambda: operator.metrics.value("progset_operator_reconciles_total", {"result": "error"}) == 1)
