"""The reconcile loop body: ProgramSet in, ConfigMap and status out, writing only what differs.

The kopf handlers (``handlers.py``) call in here; everything that decides lives in ``render.py`` and
``status.py``. One ProgramSet is reconciled by one coroutine at a time (a lock per object), because
a drift repair triggered by a ConfigMap event may race with an update of the ProgramSet itself.

Outcomes:
- valid spec: ConfigMap created / patched / left alone, status Valid=True Rendered=True;
- spec the model rejects: status Valid=False, a Warning event, the ConfigMap untouched, and a
  ``kopf.PermanentError`` so kopf does not retry until the spec changes;
- a ConfigMap of that name owned by someone else: Rendered=False, a Warning event, a slow retry;
- API errors: a quick retry through ``kopf.TemporaryError``; the ones a retry will not fix soon
  (403, 422, ...) also show as Rendered=False reason ApiError, with a Warning event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, TypeVar

import kopf

from progset_supervisor.config import ConfigError

from . import status as st
from .kube import ApiError, KubeClient, configmap_path, programset_path
from .metrics import Metrics
from .render import (
    CONFIGMAP_DATA_MAX,
    Desired,
    configmap_patch,
    conflict,
    controller_of,
    is_programset_ref,
    problems_text,
    render,
)

log = logging.getLogger("progset_operator")

Key = tuple[str, str]
T = TypeVar("T")

CHANGE = "change"  # create/update/resume of the ProgramSet
DRIFT = "drift"  # a rendered ConfigMap was edited or deleted
CONFLICT_RETRY_SECONDS = 60.0
API_RETRY_SECONDS = 5.0


def post_event(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    """A Kubernetes event on the ProgramSet, posted by kopf's background poster."""
    kopf.event(body, type=type_, reason=reason, message=message)  # type: ignore[arg-type]


class InvalidSpec(Exception):
    """The spec passed the CRD schema (or skipped it) but not the model."""


class TooLarge(Exception):
    """The spec is valid but its rendering does not fit in a ConfigMap."""


class Conflict(Exception):
    """The ConfigMap name is taken by an object the operator does not own."""


def key_of(body: Mapping[str, Any]) -> Key:
    meta = body.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


class Reconciler:
    """Renders ProgramSets into ConfigMaps and keeps them there."""

    def __init__(self, client: KubeClient, metrics: Metrics) -> None:
        self.client = client
        self.metrics = metrics
        # One lock per ProgramSet, kept only while a coroutine holds or awaits it (see _exclusive).
        self._locks: dict[Key, asyncio.Lock] = {}
        self._lock_users: Counter[Key] = Counter()
        # The last ConfigMap rendered from a valid spec: lets a ConfigMap event be judged without an
        # API call, and lets drift be repaired while the current spec is invalid.
        self._desired: dict[Key, Desired] = {}
        self._valid: dict[Key, bool] = {}
        # ProgramSets deleted while a reconcile of theirs was running (uid, or None if unknown).
        self._forgotten: dict[Key, str | None] = {}

    # --- bookkeeping ---------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _exclusive(self, key: Key) -> AsyncIterator[None]:
        """Run the block as the only reconcile of ``key``; the lock is dropped with its last user."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._lock_users[key] += 1
        try:
            async with lock:
                yield
        finally:
            self._lock_users[key] -= 1
            if not self._lock_users[key]:
                del self._lock_users[key], self._locks[key]

    def _set_valid(self, key: Key, valid: bool) -> None:
        # Every reconcile lands here; the gauge is recounted only when the verdict changed.
        if self._valid.get(key) is not valid:
            self._valid[key] = valid
            self._publish_counts()

    def _publish_counts(self) -> None:
        self.metrics.set_programsets(**self.counts())

    def forget(self, namespace: str, name: str, uid: str | None = None) -> None:
        """The ProgramSet is gone: drop its state so its ConfigMap's deletion is not "repaired"."""
        key = (namespace, name)
        self._drop_state(key)
        if key in self._locks:
            # A reconcile is running, e.g. a drift repair that read the owner just before it was deleted;
            # it would store the state again when it ends (and count a ProgramSet that no longer
            # exists, forever): have it drop the state then.
            self._forgotten[key] = uid
        log.info("ProgramSet %s/%s: deleted; its ConfigMap is left to garbage collection", namespace, name)

    def _drop_state(self, key: Key) -> None:
        self._desired.pop(key, None)
        if self._valid.pop(key, None) is not None:
            self._publish_counts()

    def counts(self) -> dict[str, int]:
        valid = sum(1 for v in self._valid.values() if v)
        return {"valid": valid, "invalid": len(self._valid) - valid}

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    # --- ProgramSet changes ----------------------------------------------------------------------------

    async def reconcile(self, body: Mapping[str, Any]) -> str:
        """Bring the ConfigMap and status in line with ``body``; returns the ConfigMap outcome."""
        async with self._exclusive(key_of(body)):
            return await self._reconcile_locked(body, CHANGE)

    async def _reconcile_locked(self, body: Mapping[str, Any], trigger: str) -> str:
        key = key_of(body)
        started = time.perf_counter()
        result = "error"
        try:
            result = await self._reconcile(body, trigger)
            return result
        except InvalidSpec as exc:
            result = "invalid"
            raise kopf.PermanentError(f"invalid spec: {exc}") from None
        except TooLarge as exc:  # like an invalid spec, only an edit of the spec can fix it
            result = "invalid"
            raise kopf.PermanentError(str(exc)) from None
        except Conflict as exc:
            result = "conflict"
            raise kopf.TemporaryError(str(exc), delay=CONFLICT_RETRY_SECONDS) from None
        except ApiError as exc:
            log.warning("ProgramSet %s/%s: API error, retrying in %gs: %s", *key, API_RETRY_SECONDS, exc)
            raise kopf.TemporaryError(f"API error: {exc}", delay=API_RETRY_SECONDS) from exc
        finally:
            self.metrics.count(result)
            self.metrics.duration.observe(time.perf_counter() - started)
            self._settle_forgotten(key, (body.get("metadata") or {}).get("uid"))

    def _settle_forgotten(self, key: Key, uid: object) -> None:
        """Under the lock, at the end: drop the state again if this ProgramSet was deleted meanwhile."""
        if key in self._forgotten:
            gone = self._forgotten.pop(key)
            if gone is None or gone == uid:
                self._drop_state(key)

    async def _reconcile(self, body: Mapping[str, Any], trigger: str) -> str:
        key = key_of(body)
        current = body.get("status") or {}
        generation = int((body.get("metadata") or {}).get("generation") or 0)
        try:
            desired = render(body)
        except ConfigError as exc:
            self._set_valid(key, False)
            if trigger == DRIFT:
                return await self._restore_last_good(key, body)
            message = problems_text(exc)
            observed = st.Observed(generation, st.invalid_condition(message),
                                   st.not_rendered_condition("InvalidSpec", "the spec is invalid", current))
            await self._warn(body, observed, message,
                             f"generation {generation} is invalid, ConfigMap left as it was: {message}")
            raise InvalidSpec(message) from None

        self._set_valid(key, True)
        valid = st.valid_condition(desired.programs)
        size = desired.data_size
        if size > CONFIGMAP_DATA_MAX:
            # The API server would answer 422 on every attempt: say so once, keep the old ConfigMap
            # (and the last rendering that fits, for drift repair), and wait for the next edit.
            if trigger == DRIFT:
                return await self._restore_last_good(key, body)
            message = (f"the rendered ConfigMap {desired.name} would hold {size} bytes, more than "
                       f"the {CONFIGMAP_DATA_MAX} bytes a ConfigMap can; make the spec smaller")
            observed = st.Observed(generation, valid, st.not_rendered_condition("TooLarge", message, current))
            await self._warn(body, observed, message, f"generation {generation} not rendered: {message}")
            raise TooLarge(message)
        self._desired[key] = desired
        try:
            result = await self._ensure_configmap(desired)
        except Conflict as exc:
            observed = st.Observed(generation, valid, st.not_rendered_condition("ConfigMapConflict", str(exc),
                                                                                current))
            await self._warn(body, observed, str(exc), str(exc))
            raise
        except ApiError as exc:
            if not exc.transient:  # e.g. 403: tell the user on the object, not only in the operator's log
                message = f"cannot write ConfigMap {desired.name}: {exc.status} {exc.reason}: {exc.message}"[:1000]
                observed = st.Observed(generation, valid, st.not_rendered_condition("ApiError", message, current))
                with contextlib.suppress(ApiError):  # best effort: the status may fail too
                    await self._warn(body, observed, message)
            raise
        await self._drop_previous(key, current, desired)
        observed = st.Observed(generation, valid, st.rendered_condition(desired.name, desired.hash),
                               config_map=desired.name, config_hash=desired.hash, programs=desired.programs)
        await self._write_status(body, observed)
        if result != "unchanged":
            action = "restored" if trigger == DRIFT else result
            log.info("ProgramSet %s/%s: %s ConfigMap %s (%s, %d programs, generation %d)",
                     *key, action, desired.name, desired.hash, desired.programs, generation)
            reason = "ConfigMapRestored" if trigger == DRIFT else f"ConfigMap{result.capitalize()}"
            post_event(body, "Normal", reason, f"ConfigMap {desired.name} {action}: {desired.hash}")
        else:
            log.debug("ProgramSet %s/%s: ConfigMap %s up to date", *key, desired.name)
        return result

    async def _ensure_configmap(self, desired: Desired) -> str:
        """Create or patch the ConfigMap; "unchanged" when it already holds exactly what we render."""
        path = configmap_path(desired.namespace, desired.name)
        for _ in range(3):
            actual = await self._call(self.client.get, path)
            if actual is None:
                try:
                    await self._call(self.client.create, configmap_path(desired.namespace), desired.body)
                    return "created"
                except ApiError as exc:
                    if exc.status == 409:  # created in between; look again
                        continue
                    raise
            why = conflict(actual, desired)
            if why:
                raise Conflict(why)
            patch = configmap_patch(actual, desired)
            if patch is None:
                return "unchanged"
            version = (actual.get("metadata") or {}).get("resourceVersion")
            if version:  # optimistic concurrency: fail with 409 if someone wrote in between
                patch.setdefault("metadata", {})["resourceVersion"] = version
            try:
                await self._call(self.client.merge_patch, path, patch)
                return "updated"
            except ApiError as exc:
                if exc.status == 409:
                    continue
                raise
        raise ApiError(409, "Conflict", f"ConfigMap {desired.name} kept changing while being written")

    async def _drop_previous(self, key: Key, current: Mapping[str, Any], desired: Desired) -> None:
        """After ``spec.configMapName`` changed, delete the ConfigMap rendered under the old name."""
        previous = current.get("configMap")
        if not previous or previous == desired.name:
            return
        path = configmap_path(desired.namespace, str(previous))
        old = await self._call(self.client.get, path)
        ref = controller_of(old) if old else None
        if old is None or ref is None or ref.get("uid") != desired.owner_uid:
            return
        uid = str(old["metadata"].get("uid") or "") or None
        if await self._call(lambda: self.client.delete(path, uid=uid)):
            log.info("ProgramSet %s/%s: deleted previous ConfigMap %s", *key, previous)

    async def _warn(self, body: Mapping[str, Any], observed: st.Observed, message: str,
                    log_line: str | None = None) -> None:
        """Write a Rendered=False status; only when that changed it (not on every retry of the same
        failure) log ``log_line`` and post a Warning event with the condition's reason and ``message``."""
        if await self._write_status(body, observed):
            if log_line:
                log.warning("ProgramSet %s/%s: %s", *key_of(body), log_line)
            post_event(body, "Warning", observed.rendered.reason, message)

    async def _write_status(self, body: Mapping[str, Any], observed: st.Observed) -> bool:
        """Patch ``/status`` with what differs; False (and no request) when it already says this."""
        current = body.get("status") or {}
        patch = st.status_patch(current, st.desired_status(current, observed, st.now_text()))
        if patch is None:
            return False
        namespace, name = key_of(body)
        try:
            await self._call(self.client.merge_patch, programset_path(namespace, name, "status"), patch)
        except ApiError as exc:
            if exc.status == 404:  # deleted meanwhile
                return False
            raise
        return True

    async def _restore_last_good(self, key: Key, body: Mapping[str, Any]) -> str:
        """Drift while the spec is invalid: put back the ConfigMap of the last valid spec, if known."""
        desired = self._desired.get(key)
        uid = (body.get("metadata") or {}).get("uid")
        if desired is None or desired.owner_uid != uid:
            log.warning("ProgramSet %s/%s: its ConfigMap changed while the spec is invalid and no valid "
                        "rendering is known since this operator started; leaving it", *key)
            return "unchanged"
        return await self._ensure_configmap(desired)

    # --- ConfigMap changes (drift) ---------------------------------------------------------------------

    async def configmap_event(self, event_type: str | None, configmap: Mapping[str, Any]) -> str | None:
        """Repair a rendered ConfigMap that was edited or deleted; None when there was nothing to do.

        The initial listing (``event_type`` None) is skipped: the resume handlers reconcile every
        ProgramSet at start-up anyway, which covers drift that happened while the operator was down.
        """
        ref = controller_of(configmap)
        if event_type is None or ref is None or not is_programset_ref(ref):
            return None
        meta = configmap.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(ref.get("name")))
        desired = self._desired.get(key)
        if (event_type != "DELETED" and desired is not None and desired.name == meta.get("name")
                and desired.owner_uid == ref.get("uid") and configmap_patch(configmap, desired) is None):
            return None  # our own write coming back, or an edit that changed nothing we own
        # Read the owner under its lock and repair under the same lock: a deletion of the owner in
        # between is then seen by forget() as "a reconcile is running" and undone at its end.
        async with self._exclusive(key):
            try:
                owner = await self._call(self.client.get, programset_path(key[0], key[1]))
                owner_meta = (owner or {}).get("metadata") or {}
                if owner is None or owner_meta.get("uid") != ref.get("uid") or owner_meta.get("deletionTimestamp"):
                    return None  # the owner is gone: garbage collection's business, not drift
                log.info("ProgramSet %s/%s: ConfigMap %s was %s; restoring", *key, meta.get("name"),
                         "deleted" if event_type == "DELETED" else "modified")
                result = await self._reconcile_locked(owner, trigger=DRIFT)
            finally:
                self._settle_forgotten(key, ref.get("uid"))
        if result in ("created", "updated"):
            self.metrics.repairs.inc()
        return result
