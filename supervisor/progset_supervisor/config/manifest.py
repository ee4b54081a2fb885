"""Loader for ProgramSet manifests, rendered configs and bare ``programs:`` files (YAML or JSON).

The same YAML a user applies with kubectl loads here without a cluster (``-f programset.yaml``), and
so does what the operator writes into the ConfigMap. Documents of other kinds in the same file (a
Deployment next to the ProgramSet, say) are skipped, so an example file can hold a whole workload.

JSON first: a text that is one JSON object (what the operator renders) is read with the ``json``
module, several times faster than PyYAML and without importing it (~20 ms). Only when such a
document is not a valid config is it read again as YAML, so the errors name lines. Everything else
(block YAML, several documents, YAML flow syntax that is not JSON) goes to PyYAML directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .document import Document
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


def _locator(filename: str, doc: Document, prefix: Path) -> Any:
    def locate(path: Path) -> str:
        return f"{doc.where(filename, (*prefix, *path))} ({path_text(path)})"
    return locate


def _kind_of(data: Any) -> str | None:
    if isinstance(data, Mapping):
        if "apiVersion" in data or "kind" in data:
            return str(data.get("kind"))
        if "programs" in data:
            return "bare"
    return None


def _json_document(text: str, filename: str) -> Document | None:
    """The text as one JSON document, or None when it is not JSON (then it is YAML's to read).

    A ``.json`` file that is not valid JSON is an error here, with JSON's line and column.
    """
    if not text.lstrip().startswith("{"):
        if filename.endswith(".json"):
            raise ConfigError(Problem(filename, "JSON syntax error: expected an object ({...})"))
        return None
    import json

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if filename.endswith(".json"):
            raise ConfigError(Problem(f"{filename}:{exc.lineno}",
                                      f"JSON syntax error: {exc.msg} (column {exc.colno})")) from None
        return None
    except RecursionError:
        return None
    return Document(data, {}, 0)


def load_yaml_text(text: str, filename: str, *, check_references: bool = True) -> Config:
    """Load the one ProgramSet, RenderedProgramSet or bare ``programs:`` document in ``text``.

    ``check_references=False``: ``dependsOn``/``readyPrograms`` may name programs of other files.
    """
    document = _json_document(text, filename)
    if document is not None:
        try:
            return _config_from([document], filename, check_references)
        except ConfigError as without_lines:
            from .yamlfile import YamlSyntaxError

            try:  # the same problems, now with lines (JSON is YAML)
                _config_from(_yaml_documents(text, filename), filename, check_references)
            except YamlSyntaxError:
                pass  # valid JSON that PyYAML cannot read: keep the JSON reading's messages
            except ConfigError as with_lines:
                raise with_lines from None
            raise without_lines from None
    return _config_from(_yaml_documents(text, filename), filename, check_references)


def _yaml_documents(text: str, filename: str) -> list[Document]:
    from .yamlfile import load_documents

    return [d for d in load_documents(text, filename) if d.data is not None]


def _config_from(docs: list[Document], filename: str, check_references: bool) -> Config:
    ours = [d for d in docs if _kind_of(d.data) in (KIND, RENDERED_KIND, "bare")]
    if not ours:
        kinds = sorted({str(_kind_of(d.data)) for d in docs})
        raise ConfigError(Problem(filename, "no ProgramSet found: expected a document with "
                                  f"'apiVersion: {API_VERSION}' and 'kind: ProgramSet' (or a top-level "
                                  f"'programs:' list); found kinds {kinds or 'none'}"))
    if len(ours) > 1:
        raise ConfigError(Problem(ours[1].where(filename), "more than one ProgramSet in one file; "
                                  "put each in its own file or merge their programs"))
    doc = ours[0]
    data = doc.data
    kind = _kind_of(data)
    if kind == "bare":
        config = config_from_spec(data, _locator(filename, doc, ()), origin=filename,
                                  check_references=check_references)
        config.no_programs_ok = _says_no_programs(data)
        return config
    api = data.get("apiVersion")
    if api != API_VERSION:
        raise ConfigError(Problem(doc.where(filename, ("apiVersion",)),
                                  f"unsupported apiVersion {api!r}; this supervisor reads {API_VERSION}"))
    meta = data.get("metadata") or {}
    if not isinstance(meta, Mapping):
        raise ConfigError(Problem(doc.where(filename, ("metadata",)), "metadata must be a mapping"))
    if "spec" not in data:
        raise ConfigError(Problem(doc.where(filename), f"{kind} has no 'spec'"))
    generation = meta.get("generation", 0)
    source = Source(namespace=str(meta.get("namespace") or ""), name=str(meta.get("name") or ""),
                    generation=generation if isinstance(generation, int) else 0)
    config = config_from_spec(data["spec"], _locator(filename, doc, ("spec",)), origin=filename, source=source,
                              check_references=check_references)
    config.no_programs_ok = _says_no_programs(data["spec"])
    if kind == RENDERED_KIND:
        stated = data.get("hash")
        if stated is not None and stated != spec_hash(data["spec"]):
            raise ConfigError(Problem(doc.where(filename, ("hash",)),
                                      f"content hash {stated} does not match the spec; the rendered file was "
                                      "edited or truncated: re-render it with progset-operator"))
    return config


def _says_no_programs(spec: object) -> bool:
    """``programs: []`` written out: no programs on purpose (``programs:`` alone is null, not this)."""
    return isinstance(spec, Mapping) and isinstance(spec.get("programs"), list) and not spec["programs"]


def render_document(config: Config, source: Source | None = None) -> str:
    """The rendered-config document the operator writes into the ConfigMap (key ``programs.json``).

    JSON, so the supervisor reads it with the ``json`` module (see the module docstring), laid out
    one program per line: readable in ``kubectl get configmap -o yaml``, one changed line per changed
    program in a diff, and about as compact as block YAML (the ConfigMap size limit is 1 MiB).
    """
    import json

    spec = config.to_spec()
    src = source or config.source

    def dumps(value: object) -> str:
        return json.dumps(value, ensure_ascii=False)

    programs = spec.pop("programs")
    program_lines = ",\n".join(f"      {dumps(program)}" for program in programs)
    spec_items = [f'    "programs": [\n{program_lines}\n    ]' if programs else '    "programs": []']
    spec_items += [f"    {dumps(key)}: {dumps(value)}" for key, value in spec.items()]
    head = {"apiVersion": API_VERSION, "kind": RENDERED_KIND,
            "metadata": {"namespace": src.namespace, "name": src.name, "generation": src.generation},
            "hash": config.hash}  # the spec's hash, computed once per Config (the operator reads it too)
    items = [f"  {dumps(key)}: {dumps(value)}" for key, value in head.items()]
    items.append('  "spec": {\n' + ",\n".join(spec_items) + "\n  }")
    return "{\n" + ",\n".join(items) + "\n}\n"
