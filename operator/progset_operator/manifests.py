"""``progset-operator inject -f FILE``: the webhook's decision applied to the pod templates of manifests.

For humans who want to see (and commit) what the webhook would do, and for GitOps pipelines that
render instead of running a webhook. Every pod template of every document is passed through
:func:`admission.decide` with the ``Fail`` policy, so a pod that cannot be wired is an error naming
the file and document, and nothing is printed (a render step must not emit half a result).

ProgramSets are looked up among the documents given (so ``-f programset.yaml -f deployment.yaml``
resolves ``spec.configMapName``), then in the cluster with ``--cluster``; otherwise the ConfigMap is
assumed to have the operator's default name, with a note on stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

import yaml

from .admission import Lookup, configmap_of, decide
from .crd import GROUP, KIND
from .inject import Defaults
from .render import CONFIGMAP_SUFFIX

# kind -> the keys from the document to its pod template (metadata + spec).
TEMPLATES: dict[str, tuple[str, ...]] = {
    "Pod": (),
    "PodTemplate": ("template",),
    "Deployment": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


class ManifestError(ValueError):
    """A document cannot be read or wired; the message names the file and document."""


@dataclass
class Document:
    source: str
    index: int
    body: Any

    def __str__(self) -> str:
        meta = (self.body.get("metadata") or {}) if isinstance(self.body, dict) else {}
        kind = self.body.get("kind", "?") if isinstance(self.body, dict) else type(self.body).__name__
        return f"{self.source}, document {self.index + 1} ({kind} {meta.get('name', '?')})"


def load(stream: TextIO, source: str) -> list[Document]:
    try:
        return [Document(source, i, body) for i, body in enumerate(yaml.safe_load_all(stream)) if body is not None]
    except yaml.YAMLError as exc:
        raise ManifestError(f"{source}: not YAML: {exc}") from None


def templates(body: Any) -> Iterator[dict[str, Any]]:
    """The pod templates inside one document (``List`` items included), as mutable dicts."""
    if not isinstance(body, dict):
        return
    if body.get("kind") == "List" or (str(body.get("kind", "")).endswith("List") and "items" in body):
        for item in body.get("items") or []:
            yield from templates(item)
        return
    path = TEMPLATES.get(str(body.get("kind")))
    if path is None:
        return
    node: Any = body
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
        yield node


def programsets(documents: list[Document]) -> dict[tuple[str, str], str]:
    """(namespace, name) -> ConfigMap of the ProgramSets among the documents."""
    found = {}
    for doc in documents:
        body = doc.body
        if isinstance(body, dict) and body.get("kind") == KIND and str(body.get("apiVersion", "")).startswith(
                f"{GROUP}/"):
            meta = body.get("metadata") or {}
            found[(meta.get("namespace") or "", str(meta.get("name")))] = configmap_of(body)
    return found


def lookup_in(documents: list[Document], namespace: str, cluster: Lookup | None,
              note: Callable[[str], None]) -> Lookup:
    """Documents first, then the cluster (if any), else the default ConfigMap name (with a note)."""
    local = programsets(documents)

    def lookup(ns: str, name: str) -> str | None:
        for key in ((ns, name), ("", name) if ns == namespace else None):
            if key in local:
                return local[key]
        if cluster is not None:
            return cluster(ns, name)
        note(f"ProgramSet {ns}/{name} is not among the files given: assuming ConfigMap {name}{CONFIGMAP_SUFFIX} "
             f"(give its file with -f, or use --cluster to read it)")
        return f"{name}{CONFIGMAP_SUFFIX}"

    return lookup


def inject_documents(documents: list[Document], defaults: Defaults, namespace: str,
                     cluster: Lookup | None = None, note: Callable[[str], None] | None = None) -> list[Any]:
    """Every document, with each labelled pod template wired; raises ManifestError on the first refusal."""
    noted: set[str] = set()

    def once(message: str) -> None:
        if message not in noted:
            noted.add(message)
            (note or (lambda m: print(f"progset-operator inject: note: {m}", file=sys.stderr)))(message)

    lookup = lookup_in(documents, namespace, cluster, once)
    out = []
    for doc in documents:
        for template in templates(doc.body):
            ns = (doc.body.get("metadata") or {}).get("namespace") or namespace
            decision = decide(template, ns, lookup, defaults, policy="Fail")
            if decision.refused is not None:
                raise ManifestError(f"{doc}: {decision.refused}")
            assert decision.pod is not None
            template.clear()
            template.update(decision.pod)
        out.append(doc.body)
    return out


def dump(bodies: list[Any], stream: TextIO) -> None:
    yaml.safe_dump_all(bodies, stream, sort_keys=False, default_flow_style=False)


def render_files(paths: list[str], defaults: Defaults, namespace: str, cluster: Lookup | None,
                 stdin: TextIO, stdout: TextIO) -> None:
    documents: list[Document] = []
    for path in paths:
        if path == "-":
            documents.extend(load(stdin, "<stdin>"))
            continue
        try:
            with open(path, encoding="utf-8") as stream:
                documents.extend(load(stream, path))
        except OSError as exc:
            raise ManifestError(f"{path}: {exc.strerror}") from None
    dump(inject_documents(documents, defaults, namespace, cluster), stdout)

