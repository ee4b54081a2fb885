"""Fixtures for the operator tests: the emulated API server, a kubeconfig for it, a running operator.

The operator runs inside the test's event loop with ``kopf.spawn_tasks``/``kopf.run_tasks`` (never
``kopf.operator()``, which cancels pytest-asyncio's own tasks when it stops) and is assembled by the
same ``progset_operator.runtime.build`` as the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp.test_utils
import aiohttp.web
import kmock
import kopf
import pytest
import yaml
from kmock._internal import parsing

from progset_operator.runtime import Operator, Options, build

from .emulator import Emulator, is_test_request, parse_path_with_namespaces

PROGRAMSETS = "progset.io/v1alpha1/programsets"
CONFIGMAPS = "v1/configmaps"
NAMESPACES = ("default", "team-a", "team-b")
REPO = Path(__file__).resolve().parents[2]


async def eventually(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll until ``predicate()`` is truthy and return it; fail with the last value after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
        await asyncio.sleep(interval)


def programset(name: str, programs: list[dict[str, Any]], namespace: str = "default",
               **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "progset.io/v1alpha1", "kind": "ProgramSet",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"programs": programs, **spec}}


def ps_url(namespace: str = "default", name: str | None = None, sub: str | None = None) -> str:
    url = f"/apis/progset.io/v1alpha1/namespaces/{namespace}/programsets"
    return url + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")


def cm_url(namespace: str = "default", name: str | None = None) -> str:
    return f"/api/v1/namespaces/{namespace}/configmaps" + (f"/{name}" if name else "")


MERGE = {"Content-Type": "application/merge-patch+json"}


class Cluster:
    """What a test does as "the user": create, patch, delete through the emulator's own client."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu

    async def _json(self, response: Any) -> dict[str, Any]:
        async with response as resp:
            payload = await resp.json()
            assert resp.status < 300, payload
            return payload

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        ns = body["metadata"].get("namespace", "default")
        plural = "programsets" if body["kind"] == "ProgramSet" else "configmaps"
        url = ps_url(ns) if plural == "programsets" else cm_url(ns)
        return await self._json(self.emu.post(url, json=body))

    async def patch(self, url: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self._json(self.emu.patch(url, json=patch, headers=MERGE))

    async def delete(self, url: str) -> dict[str, Any]:
        return await self._json(self.emu.delete(url))

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        key = (kmock.resource(resource), namespace, name)
        if key not in self.emu.objects or self.emu.objects[key].deleted:
            return None
        return self.emu.objects[key].raw

    def configmap(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        return self.get(CONFIGMAPS, namespace, name)

    def programset(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        return self.get(PROGRAMSETS, namespace, name)

    def writes(self) -> list[Any]:
        """Every mutating request the operator (not the test) sent, oldest first."""
        return [r for r in self.emu if r.method in ("POST", "PATCH", "PUT", "DELETE") and not is_test_request(r)]


def conditions(ps: dict) -> dict[str, tuple[str, str]]:
    """The ProgramSet's conditions as type -> (status, reason)."""
    return {c["type"]: (c["status"], c["reason"]) for c in (ps.get("status") or {}).get("conditions", [])}


def settled(cluster: Cluster, name: str, generation: int, namespace: str = "default") -> dict | None:
    """The ProgramSet once its status describes ``generation``."""
    ps = cluster.programset(name, namespace)
    if ps and (ps.get("status") or {}).get("observedGeneration") == generation:
        return ps
    return None


def events(emu: Emulator, reason: str) -> list[dict]:
    """The Kubernetes events with this reason the operator posted."""
    found = []
    for key, obj in emu.objects.items():
        if key[0] == kmock.resource("v1/events") and not obj.deleted and obj.raw.get("reason") == reason:
            found.append(obj.raw)
    return found


# kube-apiserver takes request bodies up to 3 MiB (etcd then stores objects up to ~1.5 MiB); aiohttp's
# default is 1 MiB, which would hide what happens with ProgramSets between those sizes.
REQUEST_BODY_MAX = 3 * 1024 * 1024


class _Server(aiohttp.test_utils.RawTestServer):
    async def _make_runner(self, debug: bool = True, **kwargs: Any) -> Any:
        loop = self._loop

        def request(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> aiohttp.web.BaseRequest:
            return aiohttp.web.BaseRequest(message, payload, protocol, writer, task, loop,
                                           client_max_size=REQUEST_BODY_MAX)

        return await super()._make_runner(debug=debug, request_factory=request, **kwargs)


@pytest.fixture
async def emulator(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Emulator]:
    monkeypatch.setattr(parsing, "parse_path", parse_path_with_namespaces(parsing.parse_path))
    emu = Emulator()
    emu.resources.load_bundled()
    emu.resources[PROGRAMSETS] = kmock.ResourceInfo(
        kind="ProgramSet", singular="programset", namespaced=True, subresources={"status"},
        shortnames={"pset"}, verbs={"get", "list", "watch", "create", "patch", "update", "delete"})
    for ns in NAMESPACES:
        emu.objects["v1/namespaces", None, ns] = {"apiVersion": "v1", "kind": "Namespace",
                                                  "metadata": {"name": ns, "resourceVersion": "0"}}
    async with emu, kmock.Server(emu, server_cls=_Server):
        yield emu
        # kmock answers its own crashes with HTTP 500 and only collects them: fail the test on those.
        crashes = [e for e in emu.errors if not (isinstance(e, kmock.KubernetesError) and e.status < 500)]
        assert not crashes, crashes


@pytest.fixture
def cluster(emulator: Emulator) -> Cluster:
    return Cluster(emulator)


@pytest.fixture
def kubeconfig(emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kubeconfig for the emulator in $KUBECONFIG, as a user would run the operator locally."""
    path = tmp_path / "kubeconfig"
    server = str(emulator.url).rstrip("/")
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [{"name": "tester", "user": {"token": "not-checked"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester"}}],
    }))
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


def watching(emu: Emulator, resource: str, namespace: str | None = None) -> int:
    return len([r for r in emu if r.action == kmock.action.WATCH and r.resource == kmock.resource(resource)
                and (namespace is None or r.namespace == namespace)])


@contextlib.asynccontextmanager
async def running(emu: Emulator, options: Options) -> AsyncIterator[Operator]:
    """Run the operator until the block ends; ready once both watch streams are open."""
    operator = build(options)
    # A handler waiting out a retry delay holds kopf's queue for exit_timeout (2 s) at shutdown;
    # tests that leave one behind (conflicts) need not wait for it.
    operator.settings.queueing.exit_timeout = 0.2
    ignored = set(asyncio.all_tasks())
    stop, ready = asyncio.Event(), asyncio.Event()
    tasks = await kopf.spawn_tasks(**operator.kopf_kwargs(), stop_flag=stop, ready_flag=ready)
    runner = asyncio.create_task(kopf.run_tasks(tasks, ignored=ignored))
    try:
        await asyncio.wait_for(ready.wait(), 5)
        namespace = options.namespaces[0] if options.namespaces else None
        await eventually(lambda: watching(emu, PROGRAMSETS, namespace) and watching(emu, CONFIGMAPS, namespace))
        yield operator
    finally:
        ignored.add(asyncio.current_task())  # type: ignore[arg-type]
        ignored.update(t for t in asyncio.all_tasks()
                       if getattr(t.get_coro(), "__qualname__", "").startswith("RequestHandler."))
        stop.set()
        await asyncio.wait_for(runner, 10)
        operator.client.close()


RunOperator = Callable[..., Awaitable[Any]]


@pytest.fixture
def operator_options() -> Options:
    return Options(standalone=True)


@pytest.fixture
async def operator(emulator: Emulator, kubeconfig: Path, operator_options: Options) -> AsyncIterator[Operator]:
    async with running(emulator, operator_options) as op:
        yield op
