"""ProgramSet -> ConfigMap: validation with the supervisor's model, the desired ConfigMap, and the diff.

Pure functions only (no API calls), so rendering, hashing, ownership and "is a write needed?" are
unit-tested without an API server. The reconciler does the I/O around them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from progset_supervisor.config import (
    API_VERSION,
    KIND,
    Config,
    ConfigError,
    Problem,
    Source,
    config_from_spec,
    render_document,
)

from .crd import CONFIG_MAP_NAME_MAX, GROUP

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGER = "progset-operator"
PROGRAMSET_LABEL = "progset.io/programset"
HASH_ANNOTATION = "progset.io/config-hash"
DATA_KEY = "programs.json"
CONFIGMAP_SUFFIX = "-programs"
# The API server refuses a ConfigMap whose values add up to more than 1 MiB (corev1.MaxSecretSize).
# A ProgramSet can be bigger than that (etcd stores objects up to ~1.5 MiB) and the rendering, fully
# defaulted, is bigger than the spec; the reconciler checks this before asking, so the user gets a
# clear condition instead of a 422 retried forever.
CONFIGMAP_DATA_MAX = 1024 * 1024


@dataclass(frozen=True)
class Desired:
    """The ConfigMap a valid ProgramSet renders to, plus what the status reports about it."""

    config: Config
    body: dict[str, Any]

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"]["namespace"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def owner(self) -> dict[str, Any]:
        """Our controller reference to the ProgramSet."""
        ref: dict[str, Any] = self.body["metadata"]["ownerReferences"][0]
        return ref

    @property
    def owner_uid(self) -> str:
        return str(self.owner["uid"])

    @property
    def hash(self) -> str:
        return str(self.body["metadata"]["annotations"][HASH_ANNOTATION])

    @property
    def programs(self) -> int:
        return len(self.config.programs)

    @property
    def data_size(self) -> int:
        """Bytes of the ConfigMap's values, as the API server counts them against its 1 MiB limit."""
        return sum(len(value.encode()) for value in self.body["data"].values())


def source_of(body: Mapping[str, Any]) -> Source:
    meta = body.get("metadata") or {}
    generation = meta.get("generation") or 0
    return Source(namespace=str(meta.get("namespace") or ""), name=str(meta.get("name") or ""),
                  generation=generation if isinstance(generation, int) else 0)


def configmap_name(programset_name: str, config: Config) -> str:
    """``spec.configMapName`` or ``<programset>-programs``."""
    return config.config_map_name or f"{programset_name}{CONFIGMAP_SUFFIX}"


def owner_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    """The controller reference that makes the ConfigMap garbage-collected with its ProgramSet.

    Built here rather than with ``kopf.adopt`` because adopt also copies the owner's labels onto the
    child, which would make the ConfigMap's content depend on unrelated ProgramSet labels.
    """
    meta = body["metadata"]
    return {"apiVersion": API_VERSION, "kind": KIND, "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


def render(body: Mapping[str, Any]) -> Desired:
    """Validate the ProgramSet's spec with the model and build the desired ConfigMap, or raise ConfigError."""
    source = source_of(body)
    origin = f"ProgramSet {source.namespace}/{source.name}"
    config = config_from_spec(body.get("spec") or {}, origin=origin, source=source)
    name = configmap_name(source.name, config)
    if len(name) > CONFIG_MAP_NAME_MAX:
        raise ConfigError(Problem("metadata.name", f"the default ConfigMap name {name[:40]}... is longer than "
                                  f"{CONFIG_MAP_NAME_MAX} characters; set spec.configMapName"))
    text = render_document(config, source)
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": source.namespace,
            "labels": {MANAGED_BY_LABEL: MANAGER, PROGRAMSET_LABEL: source.name},
            "annotations": {HASH_ANNOTATION: config.hash},
            "ownerReferences": [owner_reference(body)],
        },
        "data": {DATA_KEY: text},
    }
    return Desired(config=config, body=configmap)


def problems_text(error: ConfigError, limit: int = 1000) -> str:
    """All problems on one line for a condition message or an event, cut to fit."""
    text = "; ".join(str(p) for p in error.problems)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- ownership -------------------------------------------------------------------------------------


def is_programset_ref(ref: Mapping[str, Any]) -> bool:
    return ref.get("kind") == KIND and str(ref.get("apiVersion", "")).split("/")[0] == GROUP


def controller_of(configmap: Mapping[str, Any]) -> dict[str, Any] | None:
    for ref in (configmap.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def conflict(actual: Mapping[str, Any], desired: Desired) -> str | None:
    """Why the existing ConfigMap must not be overwritten, or None when it is ours to write.

    Ours: controlled by this ProgramSet; or controlled by a ProgramSet of the same name that no longer
    exists (another uid: deleted and re-created before garbage collection); or labelled as ours with
    no controller (orphaned with ``--cascade=orphan``). Anything else belongs to someone else.
    """
    meta = actual.get("metadata") or {}
    ref = controller_of(actual)
    name = meta.get("name")
    if ref is not None:
        if ref.get("uid") == desired.owner_uid:
            return None
        if is_programset_ref(ref) and ref.get("name") == desired.owner["name"]:
            return None
        return (f"ConfigMap {name} is controlled by {ref.get('kind')} {ref.get('name')}; "
                "delete it or set spec.configMapName")
    if (meta.get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGER:
        return None
    return (f"ConfigMap {name} already exists and is not managed by {MANAGER}; "
            "delete it or set spec.configMapName")


# --- diff ------------------------------------------------------------------------------------------


def configmap_patch(actual: Mapping[str, Any], desired: Desired) -> dict[str, Any] | None:
    """The JSON merge-patch that makes ``actual`` what we render, or None when nothing differs.

    Only what the operator owns is compared: the whole ``data`` (an added key is drift too), no
    ``binaryData``, our labels and hash annotation, and our controller reference. Other labels,
    annotations and non-controller owner references that someone else added are left alone.
    """
    meta = actual.get("metadata") or {}
    want = desired.body
    patch: dict[str, Any] = {}
    meta_patch: dict[str, Any] = {}

    data = actual.get("data") or {}
    if data != want["data"]:
        patch["data"] = {**{key: None for key in data if key not in want["data"]}, **want["data"]}
    if actual.get("binaryData"):
        patch["binaryData"] = None

    for field in ("labels", "annotations"):
        have = meta.get(field) or {}
        missing = {k: v for k, v in want["metadata"][field].items() if have.get(k) != v}
        if missing:
            meta_patch[field] = missing

    ours = desired.owner
    refs = list(meta.get("ownerReferences") or [])
    if ours not in refs or any(r.get("controller") and r != ours for r in refs):
        # Replace our own (or a stale ProgramSet) controller reference; keep everybody else's.
        kept = [r for r in refs if not (r.get("controller") or r.get("uid") == ours["uid"])]
        meta_patch["ownerReferences"] = [*kept, ours]

    if meta_patch:
        patch["metadata"] = meta_patch
    return patch or None
