"""Pods that asked for progset (label ``progset.io/programset``) but run without it.

With ``failurePolicy: Ignore`` an operator outage never blocks pod creation, so the cost is that a
pod can be admitted unwired: the webhook was down or slow, the namespace is not opted in, or the pod
could not be wired (its ``progset.io/injection-error`` annotation says why). The operator watches
labelled pods and reports each such pod once: a Warning event on the pod and
``progset_operator_uninjected_pods_seen``; ``progset_operator_uninjected_pods`` counts those that
currently exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .inject import ERROR_ANNOTATION, annotations_of, has_sidecar, labels_of
from .metrics import Metrics
from .render import PROGRAMSET_LABEL

REASON = "NotInjected"


def message_for(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    name = labels_of(meta).get(PROGRAMSET_LABEL, "")
    why = annotations_of(meta).get(ERROR_ANNOTATION)
    if why:
        return f"pod asks for ProgramSet {name!r} but runs without the progset sidecar: {why}"
    return (f"pod asks for ProgramSet {name!r} (label {PROGRAMSET_LABEL}) but runs without the progset sidecar: "
            "the injection webhook did not wire it (namespace not labelled progset.io/injection=enabled, or the "
            "operator was unavailable and the webhook's failurePolicy is Ignore); recreate the pod")


class Uninjected:
    """The uids of labelled pods without the sidecar; tells which ones to warn about (once each)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.current: set[str] = set()
        self.warned: set[str] = set()

    def observe(self, event_type: str | None, pod: Mapping[str, Any]) -> str | None:
        """Record one watch event; the Warning message to post, or None."""
        uid = str((pod.get("metadata") or {}).get("uid") or "")
        if not uid:
            return None
        if event_type == "DELETED" or has_sidecar(pod.get("spec")):
            self.current.discard(uid)
            self.warned.discard(uid)
            self.metrics.uninjected.set(len(self.current))
            return None
        self.current.add(uid)
        self.metrics.uninjected.set(len(self.current))
        if uid in self.warned:
            return None
        self.warned.add(uid)
        self.metrics.uninjected_seen.inc()
        return message_for(pod)
