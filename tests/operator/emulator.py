"""kmock's KubernetesEmulator plus the few things a real API server adds and kopf relies on.

kmock 0.8 is "a database over HTTP" (see ``shared/reference/kopf-testing.md``). Without this subclass
there is no ``uid`` (so an ownerReference is invalid), no ``resourceVersion`` (so kopf's watch resumes
re-deliver everything and its guarded JSON-patches cannot work), a failed JSON-patch ``test`` is a 500
instead of a 422, ``generateName`` is ignored (the second kopf event gets a 409), and events that
happen between a watch's initial dump and its bus subscription are lost. Each gap is pinned by a probe
in ``test_operator_kmock_probes.py`` so a kmock upgrade that changes them is noticed.

Only what the operator tests need is emulated; this is not a general-purpose API server.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import jsonpointer
import kmock
from kmock._internal import enums, parsing, rendering

MUTATING = (enums.action.CREATE, enums.action.UPDATE, enums.action.DELETE)
# The API server refuses a ConfigMap whose data and binaryData values add up to more than 1 MiB
# (ValidateConfigMap, corev1.MaxSecretSize) with a 422.
CONFIGMAP_DATA_MAX = 1024 * 1024
KMOCK_USER_AGENT_PREFIX = "kmock/"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 merge-patch, used only to predict whether a PATCH changes ``spec`` (for ``generation``)."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def revision_of(body: Mapping[str, Any] | None) -> int:
    """The integer resourceVersion of a stored body (0 when the emulator never stamped it)."""
    if not body:
        return 0
    try:
        return int((body.get("metadata") or {}).get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesEmulator):
    """A KubernetesEmulator that stamps metadata, answers 422 for failed patches and resumes watches."""

    # kmock decides which reaction serves a request by filtering the whole request history, so each
    # request costs O(requests so far). Tests want the history; the benchmark turns it off.
    record_requests: bool = True
    _revision: int = attrs.field(default=0, init=False)
    _write_lock: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        try:
            if request.resource is None or request.action not in MUTATING:
                return await super()._handle(request)
            # One writer at a time, so the stamp computed here is the one the base class stores.
            async with self._write_lock:
                try:
                    self._stamp(request)
                    return await super()._handle(request)
                except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
                    raise kmock.KubernetesError(status=422, reason="Invalid", message=str(exc)) from exc
        finally:
            if not self.record_requests:
                self._requests[:] = [r for r in self._requests if r is not request]

    # The base class answers fetch/create/patch/delete by scanning every stored object; with a few
    # thousand objects (the benchmark) that dominates, so look the one object up by its key.

    async def _serve_fetch(self, request: rendering.Request) -> rendering.Payload:
        stored = self._stored(request)
        if stored is None:
            raise kmock.KubernetesObjectNotFoundError()
        return stored.raw

    async def _serve_create(self, request: rendering.Request) -> rendering.Payload:
        meta = request.data.get("metadata", {})
        return self.objects[request.resource, request.namespace or meta.get("namespace"), meta["name"]].raw

    async def _serve_update(self, request: rendering.Request) -> rendering.Payload:
        return self.objects[request.resource, request.namespace, request.name].last.raw

    async def _serve_delete(self, request: rendering.Request) -> rendering.Payload:
        return self.objects[request.resource, request.namespace, request.name].last.raw

    def _next_revision(self) -> str:
        self._revision += 1
        return str(self._revision)

    def _stored(self, request: rendering.Request) -> Any:
        key = (request.resource, request.namespace, request.name)
        if request.name is None or key not in self.objects or self.objects[key].deleted:
            return None
        return self.objects[key]

    def _stamp(self, request: rendering.Request) -> None:
        """Fill in what the API server would: identity, timestamps, generation and resourceVersion."""
        if request.action == enums.action.CREATE and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
            if request.namespace:
                meta["namespace"] = request.namespace
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            meta["generation"] = 1
            self._check_configmap_size(request, request.data)
            meta["resourceVersion"] = self._next_revision()
        elif request.action == enums.action.UPDATE:
            self._stamp_patch(request)
        elif request.action == enums.action.DELETE:
            stored = self._stored(request)
            if stored is not None:
                stored.last["metadata"] = {**stored.last.raw.get("metadata", {}),
                                           "resourceVersion": self._next_revision()}

    def _stamp_patch(self, request: rendering.Request) -> None:
        stored = self._stored(request)
        if stored is None:
            return  # the base class answers 404
        old = copy.deepcopy(stored.raw)
        old_meta = old.get("metadata", {})
        if isinstance(request.data, list):
            new = jsonpatch.apply_patch(old, request.data)  # raises -> 422 in _handle
        elif isinstance(request.data, dict):
            stated = (request.data.get("metadata") or {}).get("resourceVersion")
            if stated is not None and str(stated) != str(old_meta.get("resourceVersion")):
                raise kmock.KubernetesError(status=409, reason="Conflict",
                                            message="the object has been modified; resourceVersion mismatch")
            new = merge_patch(old, request.data)
        else:
            return
        self._check_configmap_size(request, new)
        generation = int(old_meta.get("generation") or 1)
        if request.subresource is None and new.get("spec") != old.get("spec"):
            generation += 1
        stamp = {"resourceVersion": self._next_revision(), "generation": generation}
        if isinstance(request.data, list):
            request.data.extend({"op": "add", "path": f"/metadata/{k}", "value": v} for k, v in stamp.items())
        else:
            meta = request.data.get("metadata") or {}
            request.data["metadata"] = {**meta, **stamp}

    @staticmethod
    def _check_configmap_size(request: rendering.Request, body: Any) -> None:
        if request.resource != kmock.resource("v1/configmaps") or not isinstance(body, Mapping):
            return
        size = sum(len(str(v).encode()) for field in ("data", "binaryData") for v in (body.get(field) or {}).values())
        if size > CONFIGMAP_DATA_MAX:
            raise kmock.KubernetesError(status=422, reason="Invalid",
                                        message=f"ConfigMap is invalid: []: Too long: must have at most "
                                                f"{CONFIGMAP_DATA_MAX} bytes")

    def _objects_of(self, request: rendering.Request) -> Iterable[tuple[Any, bool]]:
        """(object, deleted) pairs of the requested resource, namespace and name."""
        for (resource, namespace, name), obj in self.objects.items():
            if resource != request.resource:
                continue
            if request.namespace is not None and namespace != request.namespace:
                continue
            if request.name is not None and name != request.name:
                continue
            yield obj, obj.deleted

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        if not any(resource == request.resource for resource in self._get_resources()):
            raise kmock.KubernetesResourceNotFoundError()
        async with self._lock:
            pairs = list(self._objects_of(request))
            items = [obj.raw for obj, deleted in pairs if not deleted]
            # The list's version is the newest *stored* change, never a stamp not yet committed.
            latest = max((revision_of(obj.last.raw) for obj, _ in pairs), default=0)
            latest = max(latest, self._committed_revision())
        return {"metadata": {"resourceVersion": str(latest)}, "items": items}

    def _committed_revision(self) -> int:
        return max((revision_of(obj.last.raw) for _, obj in self.objects.items() if not obj.empty), default=0)

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        yield b""  # send the headers now, as the base class does
        since = int(request.params.get("resourceVersion") or 0)
        assert request.resource is not None
        bus = self._buses[request.resource]
        async with self._lock:
            # Subscribe before the snapshot, under the lock every write holds: nothing falls in between.
            mark = await bus.mark()
            snapshot = []
            for obj, deleted in self._objects_of(request):
                body = obj.last.raw
                if revision_of(body) > since or (since == 0 and not deleted):
                    snapshot.append({"type": "DELETED" if deleted else "ADDED", "object": body})
        try:
            for event in snapshot:
                if since == 0 and event["type"] == "DELETED":
                    continue
                yield event
            async for event in mark:
                body = event.get("object") or {}
                meta = body.get("metadata") or {}
                if request.namespace is not None and meta.get("namespace") != request.namespace:
                    continue
                if request.name is not None and meta.get("name") != request.name:
                    continue
                if revision_of(body) and revision_of(body) <= since:
                    continue
                yield event
        finally:
            await bus.unmark(mark)


_NAMESPACES = re.compile(r"^/api/v1/namespaces/?$")
_NAMESPACE = re.compile(r"^/api/v1/namespaces/([^/]+)/?$")


def parse_path_with_namespaces(original: Any) -> Any:
    """kmock 0.8 crashes on ``/api/v1/namespaces`` and misreads ``/api/v1/namespaces/NAME``.

    kopf lists and watches namespaces when it serves specific namespaces (``--namespace``), so the
    namespaced tests route those two paths to the cluster-scoped ``namespaces`` resource.
    """

    def parse_path(path: str) -> parsing.ParsedPath:
        if _NAMESPACES.match(path):
            return parsing.ParsedPath(group="", version="v1", plural="namespaces")
        match = _NAMESPACE.match(path)
        if match:
            return parsing.ParsedPath(group="", version="v1", plural="namespaces", name=match.group(1))
        return original(path)

    return parse_path


def is_test_request(request: rendering.Request) -> bool:
    """Requests the test itself sent through kmock's client, as opposed to the operator's."""
    return str(request.headers.get("User-Agent", "")).startswith(KMOCK_USER_AGENT_PREFIX)


RBAC_VERBS = {"POST": "create", "PATCH": "patch", "PUT": "update"}


def rbac_verb(request: rendering.Request) -> str | None:
    """The RBAC verb an API request needs (``get``/``list``/``watch``/``create``/...)."""
    method = str(request.method.value if hasattr(request.method, "value") else request.method).upper()
    if method == "GET":
        if request.params.get("watch") in ("true", "1"):
            return "watch"
        return "get" if request.name else "list"
    if method == "DELETE":
        return "delete" if request.name else "deletecollection"
    return RBAC_VERBS.get(method)


def rbac_requests(emulator: kmock.KubernetesEmulator) -> Iterator[tuple[str, str, str, str | None]]:
    """(verb, group, ``plural[/subresource]``, namespace) of each API request the operator sent.

    Discovery requests (no resource) and the test's own requests (kmock's client) are left out, so
    an RBAC test can compare what was used with the chart's Role/ClusterRole rules.
    """
    for request in emulator:
        if request.resource is None or not request.resource.plural or is_test_request(request):
            continue
        verb = rbac_verb(request)
        if verb is None:
            continue
        resource = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
        yield verb, request.resource.group or "", resource, request.namespace


def rbac_usage(emulator: kmock.KubernetesEmulator) -> set[tuple[str, str, bool]]:
    """The (verb, ``plural[.group][/subresource]``, namespace-scoped?) triples the operator used.

    Resources are spelled as ``kubectl auth can-i`` reads them: ``configmaps``,
    ``programsets.progset.io``, ``programsets.progset.io/status``.
    """
    used: set[tuple[str, str, bool]] = set()
    for verb, group, resource, namespace in rbac_requests(emulator):
        plural, slash, subresource = resource.partition("/")
        spelled = f"{plural}.{group}{slash}{subresource}" if group else resource
        used.add((verb, spelled, namespace is not None))
    return used
