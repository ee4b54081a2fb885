"""Someone edits or deletes a rendered ConfigMap: the operator puts it back, and only what it owns."""

from __future__ import annotations

import asyncio

import kmock

from progset_supervisor.config import load_yaml_text

from .fixtures import Cluster, cm_url, eventually, programset, ps_url, settled

PROGRAMS = [{"name": "api", "command": ["/usr/bin/dataplaneapi"], "onReload": "keep"}]


async def rendered(cluster: Cluster, name: str = "web") -> dict:
    await cluster.create(programset(name, PROGRAMS))
    await eventually(lambda: settled(cluster, name, 1))
    return cluster.configmap(f"{name}-programs")


async def test_edited_data_is_restored(operator, cluster: Cluster) -> None:
    good = await rendered(cluster)
    await cluster.patch(cm_url("default", "web-programs"),
                        {"data": {"programs.json": "programs: [{name: evil, command: [sh]}]\n"}})
    restored = await eventually(lambda: cluster.configmap("web-programs")["data"] == good["data"]
                                and cluster.configmap("web-programs"))
    assert [p.name for p in load_yaml_text(restored["data"]["programs.json"], "x.yaml").programs] == ["api"]
    await eventually(lambda: operator.metrics.value("progset_operator_configmap_repairs_total") == 1)


async def test_added_key_and_stripped_label_are_repaired_but_foreign_labels_stay(operator, cluster) -> None:
    await rendered(cluster)
    await cluster.patch(cm_url("default", "web-programs"), {
        "data": {"extra.yaml": "x"},
        "metadata": {"labels": {"progset.io/programset": None, "team": "edge"},
                     "annotations": {"progset.io/config-hash": "sha256:forged"}},
    })
    cm = await eventually(lambda: "extra.yaml" not in cluster.configmap("web-programs")["data"]
                          and cluster.configmap("web-programs"))
    assert set(cm["data"]) == {"programs.json"}
    assert cm["metadata"]["labels"]["progset.io/programset"] == "web"
    assert cm["metadata"]["labels"]["team"] == "edge"  # not ours: left alone
    assert cm["metadata"]["annotations"]["progset.io/config-hash"] != "sha256:forged"


async def test_deleted_configmap_is_recreated(operator, cluster: Cluster) -> None:
    good = await rendered(cluster)
    await cluster.delete(cm_url("default", "web-programs"))
    back = await eventually(lambda: cluster.configmap("web-programs"))
    assert back["data"] == good["data"]
    assert back["metadata"]["uid"] != good["metadata"]["uid"]
    assert back["metadata"]["ownerReferences"] == good["metadata"]["ownerReferences"]


async def test_unrelated_edit_causes_no_write(operator, cluster: Cluster) -> None:
    await rendered(cluster)
    await asyncio.sleep(0.05)
    mark = len(cluster.writes())
    await cluster.patch(cm_url("default", "web-programs"), {"metadata": {"annotations": {"note": "hi"}}})
    await asyncio.sleep(0.2)
    assert [r for r in cluster.writes()[mark:] if r.resource == kmock.resource("v1/configmaps")] == []


async def test_drift_while_spec_is_invalid_restores_the_last_valid_rendering(operator, cluster: Cluster) -> None:
    good = await rendered(cluster)
    await cluster.patch(ps_url("default", "web"), {"spec": {"programs": [
        {"name": "api", "command": ["x"], "dependsOn": ["api-2"]}, {"name": "api-2", "command": ["y"],
                                                                     "dependsOn": ["api"]}]}})
    await eventually(lambda: settled(cluster, "web", 2))
    await cluster.delete(cm_url("default", "web-programs"))
    back = await eventually(lambda: cluster.configmap("web-programs"))
    assert back["data"] == good["data"]
