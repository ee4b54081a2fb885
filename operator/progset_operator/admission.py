"""What to do with one labelled pod: inject it, refuse it, or admit it annotated. Shared by both paths.

The mutating webhook and ``progset-operator inject -f`` both call :func:`decide`; they differ only in
how a ProgramSet is looked up (the API server, or the files given) and in what they do with a
refusal (an AdmissionReview denial, or an error message and exit status 1).

``policy`` is the webhook configuration's ``failurePolicy``, which the API server does not send:
under ``Fail`` a pod that cannot be injected is refused with the reason, so nobody runs a pod
without its programs; under ``Ignore`` (the chart's default) it is admitted as it is, with the reason
in the ``progset.io/injection-error`` annotation, and the operator warns about it (uninjected.py).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .inject import ERROR_ANNOTATION, Defaults, InjectionError, has_sidecar, inject, programset_of
from .kube import ApiError, KubeClient, programset_path
from .render import CONFIGMAP_SUFFIX

POLICIES = ("Ignore", "Fail")

# (namespace, ProgramSet name) -> its ConfigMap's name, or None when the ProgramSet does not exist.
# May raise InjectionError when the answer cannot be known (the API server refused the read).
Lookup = Callable[[str, str], "str | None"]


@dataclass(frozen=True)
class Decision:
    """The pod to admit (changed or not), or the reason to refuse it."""

    pod: dict[str, Any] | None
    refused: str | None = None
    injected: bool = False


def configmap_of(programset: Mapping[str, Any]) -> str:
    """The ConfigMap the operator renders a ProgramSet into: ``spec.configMapName`` or ``<name>-programs``."""
    name = str(programset["metadata"]["name"])
    return str((programset.get("spec") or {}).get("configMapName") or f"{name}{CONFIGMAP_SUFFIX}")


def decide(pod: Mapping[str, Any], namespace: str, lookup: Lookup, defaults: Defaults,
           policy: str = "Ignore") -> Decision:
    """Inject ``pod`` (a Pod, or a pod template: ``metadata`` and ``spec``) in ``namespace``."""
    meta = pod.get("metadata") or {}
    name = programset_of(meta)
    if name is None or has_sidecar(pod.get("spec")):
        return Decision(pod=dict(pod))
    try:
        configmap = lookup(namespace, name)
        if configmap is None:
            raise InjectionError(f"ProgramSet {namespace}/{name} (label progset.io/programset) does not exist: "
                                 "create it first, or fix the label")
        return Decision(pod=inject(pod, configmap, defaults), injected=True)
    except InjectionError as exc:
        if policy == "Fail":
            return Decision(pod=None, refused=f"progset: cannot wire this pod: {exc}")
        annotated = copy.deepcopy(dict(pod))
        annotated.setdefault("metadata", {}).setdefault("annotations", {})[ERROR_ANNOTATION] = str(exc)
        return Decision(pod=annotated)


def api_lookup(client: KubeClient) -> Lookup:
    """A Lookup that reads the ProgramSet from the API server (blocking: call it off the event loop)."""

    def lookup(namespace: str, name: str) -> str | None:
        try:
            body = client.get(programset_path(namespace, name))
        except ApiError as exc:
            raise InjectionError(f"cannot read ProgramSet {namespace}/{name}: {exc}") from exc
        return None if body is None else configmap_of(body)

    return lookup
