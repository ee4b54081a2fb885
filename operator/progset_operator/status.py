"""ProgramSet status: conditions ``Valid`` and ``Rendered``, and the minimal patch to reach them.

Pure functions, so "what should the status say" and "does it need a write" are unit-tested. A status
that already says the right thing produces no patch at all, which keeps a resync free of writes; a
condition keeps its ``lastTransitionTime`` unless its ``status`` flips, as Kubernetes conventions ask.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

VALID = "Valid"
RENDERED = "Rendered"


@dataclass(frozen=True)
class Condition:
    """One condition as computed by the reconciler (no timestamps: those depend on history)."""

    type: str
    status: bool
    reason: str
    message: str

    @property
    def status_text(self) -> str:
        return "True" if self.status else "False"


@dataclass(frozen=True)
class Observed:
    """What one reconcile found; the status is derived from it."""

    generation: int
    valid: Condition
    rendered: Condition
    config_map: str | None = None
    config_hash: str | None = None
    programs: int | None = None


def now_text() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(existing: Sequence[Mapping[str, Any]], wanted: Sequence[Condition], generation: int,
                     now: str) -> list[dict[str, Any]]:
    """The new conditions list: ours replaced, others' conditions kept, transition times preserved."""
    by_type = {c.get("type"): c for c in existing if isinstance(c, Mapping)}
    result: list[dict[str, Any]] = []
    for cond in wanted:
        old = by_type.get(cond.type) or {}
        flipped = old.get("status") != cond.status_text
        result.append({
            "type": cond.type,
            "status": cond.status_text,
            "reason": cond.reason,
            "message": cond.message,
            "observedGeneration": generation,
            "lastTransitionTime": now if flipped or not old.get("lastTransitionTime") else old["lastTransitionTime"],
        })
    ours = {c.type for c in wanted}
    result.extend(dict(c) for c in existing if isinstance(c, Mapping) and c.get("type") not in ours)
    return result


def desired_status(current: Mapping[str, Any] | None, observed: Observed, now: str) -> dict[str, Any]:
    """The full status the ProgramSet should carry after this reconcile.

    ``configMap``, ``configHash`` and ``programs`` describe what the ConfigMap holds; when this
    generation could not be rendered they keep describing the last rendered one.
    """
    current = current or {}
    status: dict[str, Any] = {"observedGeneration": observed.generation}
    for key, value in (("configMap", observed.config_map), ("configHash", observed.config_hash),
                       ("programs", observed.programs)):
        if value is not None:
            status[key] = value
        elif key in current:
            status[key] = current[key]
    status["conditions"] = merge_conditions(current.get("conditions") or [], [observed.valid, observed.rendered],
                                            observed.generation, now)
    return status


def status_patch(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> dict[str, Any] | None:
    """A merge-patch body for ``/status`` with only the fields that differ, or None."""
    current = current or {}
    changed = {key: value for key, value in desired.items() if current.get(key) != value}
    return {"status": changed} if changed else None


def valid_condition(programs: int) -> Condition:
    return Condition(VALID, True, "Valid", f"{programs} program{'s' if programs != 1 else ''}")


def invalid_condition(message: str) -> Condition:
    return Condition(VALID, False, "InvalidSpec", message)


def rendered_condition(config_map: str, config_hash: str) -> Condition:
    return Condition(RENDERED, True, "Rendered", f"ConfigMap {config_map} holds {config_hash}")


def not_rendered_condition(reason: str, message: str, current: Mapping[str, Any] | None) -> Condition:
    """Rendered=False; says what the ConfigMap still holds, so nobody mistakes it for empty."""
    current = current or {}
    if current.get("configMap") and current.get("configHash"):
        message += f"; ConfigMap {current['configMap']} keeps {current['configHash']}"
    return Condition(RENDERED, False, reason, message)
