"""Loader for ProgramSet manifests, rendered configs and bare ``programs:`` YAML files.

The same YAML a user applies with kubectl loads here without a cluster (``-f programset.yaml``), and
so does what the operator writes into the ConfigMap. Documents of other kinds in the same file (a
Deployment next to the ProgramSet, say) are skipped, so an example file can hold a whole workload.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from .errors import ConfigError, Problem
from .model import (
    API_VERSION,
    KIND,
    RENDERED_KIND,
    Config,
    Path,
    Source,
    config_from_spec,
    path_text,
    spec_hash,
)
from .yamlfile import YamlDocument, load_documents


def _locator(filename: str, doc: YamlDocument, prefix: Path) -> Any:
    def locate(path: Path) -> str:
        return f"{filename}:{doc.line_of((*prefix, *path))} ({path_text(path)})"
    return locate


def _kind_of(data: Any) -> str | None:
    if isinstance(data, Mapping):
        if "apiVersion" in data or "kind" in data:
            return str(data.get("kind"))
        if "programs" in data:
            return "bare"
    return None


def load_yaml_text(text: str, filename: str, *, check_references: bool = True) -> Config:
    """Load the one ProgramSet, RenderedProgramSet or bare ``programs:`` document in ``text``.

    ``check_references=False``: ``dependsOn``/``readyPrograms`` may name programs of other files.
    """
    docs = [d for d in load_documents(text, filename) if d.data is not None]
    ours = [d for d in docs if _kind_of(d.data) in (KIND, RENDERED_KIND, "bare")]
    if not ours:
        kinds = sorted({str(_kind_of(d.data)) for d in docs})
        raise ConfigError(Problem(filename, "no ProgramSet found: expected a document with "
                                  f"'apiVersion: {API_VERSION}' and 'kind: ProgramSet' (or a top-level "
                                  f"'programs:' list); found kinds {kinds or 'none'}"))
    if len(ours) > 1:
        raise ConfigError(Problem(f"{filename}:{ours[1].start_line}", "more than one ProgramSet in one file; "
                                  "put each in its own file or merge their programs"))
    doc = ours[0]
    data = doc.data
    kind = _kind_of(data)
    if kind == "bare":
        return config_from_spec(data, _locator(filename, doc, ()), origin=filename,
                                check_references=check_references)
    api = data.get("apiVersion")
    if api != API_VERSION:
        raise ConfigError(Problem(f"{filename}:{doc.line_of(('apiVersion',))}",
                                  f"unsupported apiVersion {api!r}; this supervisor reads {API_VERSION}"))
    meta = data.get("metadata") or {}
    if not isinstance(meta, Mapping):
        raise ConfigError(Problem(f"{filename}:{doc.line_of(('metadata',))}", "metadata must be a mapping"))
    if "spec" not in data:
        raise ConfigError(Problem(f"{filename}:{doc.start_line}", f"{kind} has no 'spec'"))
    generation = meta.get("generation", 0)
    source = Source(namespace=str(meta.get("namespace") or ""), name=str(meta.get("name") or ""),
                    generation=generation if isinstance(generation, int) else 0)
    config = config_from_spec(data["spec"], _locator(filename, doc, ("spec",)), origin=filename, source=source,
                              check_references=check_references)
    if kind == RENDERED_KIND:
        stated = data.get("hash")
        if stated is not None and stated != spec_hash(data["spec"]):
            raise ConfigError(Problem(f"{filename}:{doc.line_of(('hash',))}",
                                      f"content hash {stated} does not match the spec; the rendered file was "
                                      "edited or truncated: re-render it with progset-operator"))
    return config


def render_document(config: Config, source: Source | None = None) -> str:
    """The rendered-config document the operator writes into the ConfigMap (key ``programs.yaml``)."""
    spec = config.to_spec()
    src = source or config.source
    doc = {
        "apiVersion": API_VERSION,
        "kind": RENDERED_KIND,
        "metadata": {"namespace": src.namespace, "name": src.name, "generation": src.generation},
        "hash": spec_hash(spec),
        "spec": spec,
    }
    # libyaml's dumper (when PyYAML has it) gives the same bytes about five times faster; the operator
    # renders every ProgramSet on every change.
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return "# Rendered by progset-operator; edits are overwritten.\n" + yaml.dump(
        doc, Dumper=dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)
