"""Sidecar injection: a pod spec in, the same pod wired to progset-supervisor out.

Pure (no API calls), so the mutating webhook and ``progset-operator inject -f`` produce exactly the
same pod, and every rule is unit-tested without a cluster. What a wired pod gets (README.md, "Wire a
pod in one line"):

- the supervisor as a native sidecar: ``initContainers[0]`` named ``progset`` with
  ``restartPolicy: Always``, a startupProbe on ``/readyz`` (the app containers start once the
  programs run) and a livenessProbe on ``/healthz``; or, with ``progset.io/mode: main``, as the last
  regular container with readiness on ``/readyz``;
- a restricted-profile securityContext that runs as the pod's user and group, so the app containers
  can open the mode-660 Master CLI socket;
- the ProgramSet's ConfigMap mounted as a directory at ``/etc/progset`` (never subPath: a subPath
  mount never sees the kubelet's updates, and the supervisor reloads on them);
- an emptyDir at ``/var/run/progset`` in the sidecar and in every app container that should reach
  the Master CLI, with ``HAPROXY_MASTER_CLI`` set there;
- the port named ``metrics`` and the label ``progset.io/supervisor: "true"`` the PodMonitor selects.

A pod that already has a container named ``progset`` is returned unchanged: the API server may call
a webhook twice (reinvocationPolicy), and a pod wired by hand or by ``inject -f`` must stay as it is.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .render import PROGRAMSET_LABEL

SUPERVISOR_LABEL = "progset.io/supervisor"
SIDECAR = "progset"

IMAGE_ANNOTATION = "progset.io/image"
SOCKET_ANNOTATION = "progset.io/socket-containers"
RESOURCES_ANNOTATION = "progset.io/resources"
MODE_ANNOTATION = "progset.io/mode"
ERROR_ANNOTATION = "progset.io/injection-error"
ANNOTATIONS = (IMAGE_ANNOTATION, SOCKET_ANNOTATION, RESOURCES_ANNOTATION, MODE_ANNOTATION)
MODES = ("sidecar", "main")

CONFIG_DIR = "/etc/progset"
RUN_DIR = "/var/run/progset"
SOCKET = f"{RUN_DIR}/master.sock"
MASTER_CLI_ENV = "HAPROXY_MASTER_CLI"
METRICS_PORT = 9127
ARGS = ["-f", CONFIG_DIR, "-S", f"{SOCKET},mode,660,level,operator"]
CONFIG_VOLUME = "progset-config"
RUN_VOLUME = "progset-run"
TMP_VOLUME = "progset-tmp"
# The sidecar runs as this user when the pod names none (or root): the supervisor image's own user.
FALLBACK_USER = 65532

DEFAULT_RESOURCES: dict[str, Any] = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
# A Kubernetes quantity (resource.Quantity's canonical forms: decimal, binary or exponent suffix).
_QUANTITY = re.compile(r"^[+]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[numkMGTPE]|[KMGTPE]i)?$")
_IMAGE = re.compile(r"^\S+$")
_NAME_LIST = re.compile(r"^\s*[a-z0-9]([-a-z0-9]*[a-z0-9])?(\s*,\s*[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\s*$")


class InjectionError(ValueError):
    """The pod asks for something that cannot be injected; the message names the annotation or field."""


@dataclass(frozen=True)
class Defaults:
    """What the operator injects when the pod's annotations do not say otherwise."""

    image: str
    resources: Mapping[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULT_RESOURCES))


@dataclass(frozen=True)
class Options:
    """The pod's choices, read from its ``progset.io/*`` annotations."""

    image: str
    resources: Mapping[str, Any]
    mode: str = "sidecar"
    socket_containers: tuple[str, ...] | None = None  # None: every app container


def labels_of(meta: Mapping[str, Any] | None) -> dict[str, str]:
    return dict((meta or {}).get("labels") or {})


def annotations_of(meta: Mapping[str, Any] | None) -> dict[str, str]:
    return dict((meta or {}).get("annotations") or {})


def programset_of(meta: Mapping[str, Any] | None) -> str | None:
    """The ProgramSet a pod (or pod template) asks for: its ``progset.io/programset`` label."""
    name = labels_of(meta).get(PROGRAMSET_LABEL)
    return name or None


def has_sidecar(spec: Mapping[str, Any] | None) -> bool:
    """Whether the pod already runs the supervisor (injected before, or wired by hand)."""
    spec = spec or {}
    return any(c.get("name") == SIDECAR for key in ("initContainers", "containers") for c in spec.get(key) or [])


def _resources(text: str) -> dict[str, Any]:
    where = f"annotation {RESOURCES_ANNOTATION}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InjectionError(f"{where}: not JSON ({exc.msg} at character {exc.pos}); expected e.g. "
                             '{"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}') from None
    if not isinstance(value, dict) or not value or set(value) - {"requests", "limits"}:
        raise InjectionError(f"{where}: expected an object with 'requests' and/or 'limits', got {text!r}")
    for kind, amounts in value.items():
        if not isinstance(amounts, dict):
            raise InjectionError(f"{where}: {kind} must be an object of resource name to quantity")
        for resource, amount in amounts.items():
            if isinstance(amount, bool) or not isinstance(amount, str | int) or not _QUANTITY.match(str(amount)):
                raise InjectionError(f"{where}: {kind}.{resource}: {amount!r} is not a Kubernetes quantity")
            amounts[resource] = str(amount)
    return value


def options_from(meta: Mapping[str, Any] | None, defaults: Defaults) -> Options:
    """The pod's annotations, checked; an :class:`InjectionError` names the bad annotation."""
    notes = annotations_of(meta)
    image = notes.get(IMAGE_ANNOTATION, defaults.image)
    if not _IMAGE.match(image):
        raise InjectionError(f"annotation {IMAGE_ANNOTATION}: {image!r} is not an image reference")
    mode = notes.get(MODE_ANNOTATION, "sidecar")
    if mode not in MODES:
        raise InjectionError(f"annotation {MODE_ANNOTATION}: {mode!r} is not one of {', '.join(MODES)}")
    resources = _resources(notes[RESOURCES_ANNOTATION]) if RESOURCES_ANNOTATION in notes \
        else copy.deepcopy(dict(defaults.resources))
    sockets: tuple[str, ...] | None = None
    if SOCKET_ANNOTATION in notes:
        text = notes[SOCKET_ANNOTATION]
        if text.strip() == "":
            sockets = ()
        elif not _NAME_LIST.match(text):
            raise InjectionError(f"annotation {SOCKET_ANNOTATION}: {text!r} is not a comma-separated list of "
                                 "container names")
        else:
            sockets = tuple(name.strip() for name in text.split(","))
    return Options(image=image, resources=resources, mode=mode, socket_containers=sockets)


def _identity(spec: Mapping[str, Any], apps: list[dict[str, Any]]) -> dict[str, Any]:
    """runAsUser/runAsGroup for the sidecar: the pod's own, else the first app container's.

    The Master CLI socket is mode 660 and owned by the supervisor's uid and primary gid, so the
    supervisor must run with the group the app containers run with.
    """
    pod = spec.get("securityContext") or {}
    found: dict[str, Any] = {}
    for key in ("runAsUser", "runAsGroup"):
        if key in pod:
            continue  # inherited from the pod
        for container in apps:
            value = (container.get("securityContext") or {}).get(key)
            if value is not None:
                found[key] = value
                break
    user = found.get("runAsUser", pod.get("runAsUser"))
    if user in (None, 0):
        found["runAsUser"] = FALLBACK_USER  # restricted profile: never root
    return found


def _security_context(spec: Mapping[str, Any], apps: list[dict[str, Any]]) -> dict[str, Any]:
    """The restricted Pod Security profile's container fields, as the pod runs."""
    context: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        **_identity(spec, apps),
    }
    if not (spec.get("securityContext") or {}).get("seccompProfile"):
        context["seccompProfile"] = {"type": "RuntimeDefault"}
    return context


def _probe(path: str, **timing: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "metrics"}, **timing}


def _supervisor(options: Options, spec: Mapping[str, Any], apps: list[dict[str, Any]]) -> dict[str, Any]:
    sidecar = options.mode == "sidecar"
    container: dict[str, Any] = {"name": SIDECAR, "image": options.image}
    if sidecar:
        container["restartPolicy"] = "Always"  # a native sidecar (Kubernetes 1.29+)
    container["args"] = list(ARGS)
    container["ports"] = [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}]
    if sidecar:
        # The kubelet starts the app containers once this passes: the programs are up by then.
        container["startupProbe"] = _probe("/readyz", periodSeconds=1, failureThreshold=300)
    else:
        container["readinessProbe"] = _probe("/readyz", periodSeconds=5, failureThreshold=2)
    container["livenessProbe"] = _probe("/healthz", periodSeconds=10, failureThreshold=3)
    container["resources"] = copy.deepcopy(dict(options.resources))
    container["securityContext"] = _security_context(spec, apps)
    container["volumeMounts"] = [
        {"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": RUN_VOLUME, "mountPath": RUN_DIR},
        {"name": TMP_VOLUME, "mountPath": "/tmp"},
    ]
    return container


def _add_volumes(spec: dict[str, Any], configmap: str) -> None:
    volumes = spec.setdefault("volumes", [])
    taken = {v.get("name") for v in volumes}
    for name in (CONFIG_VOLUME, RUN_VOLUME, TMP_VOLUME):
        if name in taken:
            raise InjectionError(f"spec.volumes: the pod already has a volume named {name!r}; rename it, or "
                                 f"wire the pod by hand and add a container named {SIDECAR!r}")
    volumes.append({"name": CONFIG_VOLUME, "configMap": {"name": configmap}})
    volumes.append({"name": RUN_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})
    volumes.append({"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "64Mi"}})


def _wire_socket(container: dict[str, Any], where: str) -> None:
    mounts = container.setdefault("volumeMounts", [])
    for mount in mounts:
        if mount.get("mountPath", "").rstrip("/") == RUN_DIR:
            raise InjectionError(f"{where}: already mounts {mount.get('name')!r} at {RUN_DIR}")
    mounts.append({"name": RUN_VOLUME, "mountPath": RUN_DIR})
    env = container.setdefault("env", [])
    if not any(e.get("name") == MASTER_CLI_ENV for e in env):
        env.append({"name": MASTER_CLI_ENV, "value": f"unix@{SOCKET}"})


def _socket_targets(spec: dict[str, Any], options: Options) -> list[tuple[str, dict[str, Any]]]:
    """(field path, container) of each container that gets the Master CLI socket."""
    every = {"containers": spec.get("containers") or [], "initContainers": spec.get("initContainers") or []}
    if options.socket_containers is None:
        return [(f"spec.containers[{i}]", c) for i, c in enumerate(every["containers"])]
    targets = []
    for name in options.socket_containers:
        hits = [(f"spec.{key}[{i}]", c) for key, items in every.items() for i, c in enumerate(items)
                if c.get("name") == name]
        if not hits:
            raise InjectionError(f"annotation {SOCKET_ANNOTATION}: the pod has no container named {name!r}")
        targets.extend(hits)
    return targets


def inject(template: Mapping[str, Any], configmap: str, defaults: Defaults) -> dict[str, Any]:
    """The pod (or pod template: ``metadata`` + ``spec``) wired to the supervisor; a new dict.

    ``configmap`` is the ProgramSet's rendered ConfigMap. Unchanged when the pod already has a
    container named ``progset``.
    """
    pod = copy.deepcopy(dict(template))
    spec = pod.setdefault("spec", {})
    if has_sidecar(spec):
        return pod
    meta = pod.setdefault("metadata", {})
    options = options_from(meta, defaults)
    apps = list(spec.get("containers") or [])
    targets = _socket_targets(spec, options)
    _add_volumes(spec, configmap)
    for where, container in targets:
        _wire_socket(container, where)
    supervisor = _supervisor(options, spec, apps)
    if options.mode == "sidecar":
        spec["initContainers"] = [supervisor, *(spec.get("initContainers") or [])]
    else:
        spec["containers"] = [*apps, supervisor]
    meta.setdefault("labels", {})[SUPERVISOR_LABEL] = "true"
    return pod
