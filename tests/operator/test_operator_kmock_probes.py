"""Probes of kmock 0.8's gaps that ``emulator.Emulator`` fills, and proof that it fills them.

Each ``test_kmock_*`` asserts a gap of the *stock* emulator as it is today. When a kmock upgrade
changes one, its probe fails: then revisit ``emulator.py`` (the fix may no longer be needed, or may
now fight the new behaviour) and the reference notes in ``shared/reference/kopf-testing.md``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import kmock
import pytest
from kmock._internal import parsing

from .emulator import Emulator, parse_path_with_namespaces

CMS = "/api/v1/namespaces/default/configmaps"
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
MERGE = {"Content-Type": "application/merge-patch+json"}


def configmap(name: str | None = None, **meta: Any) -> dict[str, Any]:
    metadata = {"namespace": "default", **meta}
    if name:
        metadata["name"] = name
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {"k": "v"}}


@pytest.fixture(params=[kmock.KubernetesEmulator, Emulator], ids=["stock", "ours"])
async def emu(request: pytest.FixtureRequest) -> AsyncIterator[kmock.KubernetesEmulator]:
    server = request.param()
    server.resources.load_bundled()
    async with server, kmock.Server(server):
        yield server


@pytest.fixture
async def stock() -> AsyncIterator[kmock.KubernetesEmulator]:
    server = kmock.KubernetesEmulator()
    server.resources.load_bundled()
    async with server, kmock.Server(server):
        yield server


@pytest.fixture
async def ours() -> AsyncIterator[Emulator]:
    server = Emulator()
    server.resources.load_bundled()
    async with server, kmock.Server(server):
        yield server


async def send(emu: kmock.KubernetesEmulator, method: str, url: str, body: Any = None,
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    async with emu.request(method, url, json=body, headers=headers) as response:
        return response.status, await response.json()


async def watch_events(emu: kmock.KubernetesEmulator, url: str, count: int, timeout: float = 0.3) -> list[dict]:
    """Up to ``count`` events of a watch stream, or fewer if the stream goes quiet for ``timeout``."""
    events: list[dict] = []
    async with emu.get(url) as response:
        while len(events) < count:
            try:
                line = await asyncio.wait_for(response.content.readline(), timeout)
            except TimeoutError:
                break
            if line.strip():
                events.append(json.loads(line))
    return events


# --- the stock emulator's gaps ----------------------------------------------------------------------


async def test_kmock_stamps_no_uid_version_timestamp_or_generation(stock) -> None:
    status, created = await send(stock, "POST", CMS, configmap("a"))
    assert status == 200  # a real API server says 201
    assert not {"uid", "resourceVersion", "creationTimestamp", "generation"} & set(created["metadata"])


async def test_kmock_answers_failed_json_patch_test_with_500(stock) -> None:
    await send(stock, "POST", CMS, configmap("a"))
    op = [{"op": "test", "path": "/data/k", "value": "other"}]
    status, _ = await send(stock, "PATCH", f"{CMS}/a", op, JSON_PATCH)
    assert status == 500
    stock.errors.clear()


async def test_kmock_lists_with_a_placeholder_resource_version(stock) -> None:
    _, listing = await send(stock, "GET", CMS)
    assert listing["metadata"]["resourceVersion"] == "..."


async def test_kmock_watch_ignores_resource_version(stock) -> None:
    await send(stock, "POST", CMS, configmap("a"))
    events = await watch_events(stock, f"{CMS}?watch=true&resourceVersion=999", 1)
    assert [e["type"] for e in events] == ["ADDED"]


async def test_kmock_ignores_generate_name(stock) -> None:
    first, _ = await send(stock, "POST", CMS, configmap(generateName="ev-"))
    second, _ = await send(stock, "POST", CMS, configmap(generateName="ev-"))
    assert (first, second) == (200, 409)
    stock.errors.clear()


async def test_kmock_ignores_label_selectors(stock) -> None:
    await send(stock, "POST", CMS, configmap("a", labels={"x": "1"}))
    await send(stock, "POST", CMS, configmap("b"))
    _, listing = await send(stock, "GET", f"{CMS}?labelSelector=x%3D1")
    assert sorted(i["metadata"]["name"] for i in listing["items"]) == ["a", "b"]


async def test_kmock_collects_no_garbage(stock) -> None:
    await send(stock, "POST", CMS, configmap("owner"))
    await send(stock, "POST", CMS, configmap("child", ownerReferences=[
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "u1", "controller": True}]))
    await send(stock, "DELETE", f"{CMS}/owner")
    status, _ = await send(stock, "GET", f"{CMS}/child")
    assert status == 200


async def test_kmock_does_not_serve_put(stock) -> None:
    await send(stock, "POST", CMS, configmap("a"))
    status, _ = await send(stock, "PUT", f"{CMS}/a", configmap("a"))
    assert status == 404


def test_kmock_cannot_parse_the_namespaces_paths() -> None:
    with pytest.raises(ValueError):
        parsing.parse_path("/api/v1/namespaces")
    assert parsing.parse_path("/api/v1/namespaces/default").plural != "namespaces"


# --- what our subclass makes of them ---------------------------------------------------------------


async def test_ours_stamps_identity_and_versions(ours) -> None:
    _, a = await send(ours, "POST", CMS, configmap("a"))
    _, b = await send(ours, "POST", CMS, configmap("b"))
    assert a["metadata"]["uid"] != b["metadata"]["uid"]
    assert a["metadata"]["generation"] == 1 and a["metadata"]["creationTimestamp"].endswith("Z")
    assert int(b["metadata"]["resourceVersion"]) > int(a["metadata"]["resourceVersion"])
    _, patched = await send(ours, "PATCH", f"{CMS}/a", {"data": {"k": "w"}}, MERGE)
    assert int(patched["metadata"]["resourceVersion"]) > int(b["metadata"]["resourceVersion"])


async def test_ours_bumps_generation_only_for_spec_changes(ours) -> None:
    url = "/apis/example.com/v1/namespaces/default/things"
    ours.resources["example.com/v1/things"] = kmock.ResourceInfo(kind="Thing", namespaced=True,
                                                                 subresources={"status"})
    await send(ours, "POST", url, {"metadata": {"name": "t"}, "spec": {"a": 1}})
    _, same = await send(ours, "PATCH", f"{url}/t", {"metadata": {"labels": {"x": "y"}}}, MERGE)
    _, status = await send(ours, "PATCH", f"{url}/t/status", {"status": {"ok": True}}, MERGE)
    _, changed = await send(ours, "PATCH", f"{url}/t", {"spec": {"a": 2}}, MERGE)
    assert [o["metadata"]["generation"] for o in (same, status, changed)] == [1, 1, 2]


async def test_ours_answers_failed_json_patch_test_with_422(ours) -> None:
    await send(ours, "POST", CMS, configmap("a"))
    op = [{"op": "test", "path": "/data/k", "value": "other"}]
    status, body = await send(ours, "PATCH", f"{CMS}/a", op, JSON_PATCH)
    assert status == 422 and body["code"] == 422


async def test_ours_rejects_a_stale_resource_version_with_409(ours) -> None:
    _, a = await send(ours, "POST", CMS, configmap("a"))
    await send(ours, "PATCH", f"{CMS}/a", {"data": {"k": "w"}}, MERGE)
    stale = {"metadata": {"resourceVersion": a["metadata"]["resourceVersion"]}, "data": {"k": "x"}}
    status, _ = await send(ours, "PATCH", f"{CMS}/a", stale, MERGE)
    assert status == 409


async def test_ours_lists_and_resumes_watches_by_resource_version(ours) -> None:
    await send(ours, "POST", CMS, configmap("a"))
    _, listing = await send(ours, "GET", CMS)
    version = listing["metadata"]["resourceVersion"]
    assert version == listing["items"][0]["metadata"]["resourceVersion"]
    await send(ours, "POST", CMS, configmap("b"))  # after the list, before the watch
    events = await watch_events(ours, f"{CMS}?watch=true&resourceVersion={version}", 2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "b")]


async def test_ours_delivers_a_deletion_between_list_and_watch(ours) -> None:
    await send(ours, "POST", CMS, configmap("a"))
    _, listing = await send(ours, "GET", CMS)
    await send(ours, "DELETE", f"{CMS}/a")
    events = await watch_events(ours, f"{CMS}?watch=true&resourceVersion={listing['metadata']['resourceVersion']}",
                                2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("DELETED", "a")]


async def test_ours_honours_generate_name(ours) -> None:
    _, first = await send(ours, "POST", CMS, configmap(generateName="ev-"))
    _, second = await send(ours, "POST", CMS, configmap(generateName="ev-"))
    assert first["metadata"]["name"].startswith("ev-") and first["metadata"]["name"] != second["metadata"]["name"]


async def test_ours_routes_the_namespaces_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    parse = parse_path_with_namespaces(parsing.parse_path)
    assert parse("/api/v1/namespaces") == parsing.ParsedPath(group="", version="v1", plural="namespaces")
    assert parse("/api/v1/namespaces/default").name == "default"
    assert parse("/api/v1/namespaces/default/configmaps").plural == "configmaps"


async def test_both_serve_the_basic_crud_the_operator_needs(emu) -> None:
    status, _ = await send(emu, "POST", CMS, configmap("a"))
    assert status == 200
    _, got = await send(emu, "GET", f"{CMS}/a")
    assert got["data"] == {"k": "v"}
    _, patched = await send(emu, "PATCH", f"{CMS}/a", {"data": {"k": None, "n": "1"}}, MERGE)
    assert patched["data"] == {"n": "1"}
    status, _ = await send(emu, "DELETE", f"{CMS}/a")
    assert status == 200
    status, _ = await send(emu, "GET", f"{CMS}/a")
    assert status == 404
    emu.errors.clear()
