"""YAML documents with a path -> line map, so errors in manifests point at the offending line."""

from __future__ import annotations

from collections.abc import Iterator

import yaml

from .document import Document
from .errors import ConfigError, Problem
from .model import Path


class YamlSyntaxError(ConfigError):
    """The text is not YAML at all (as opposed to YAML that is not a valid config)."""


def _index(node: yaml.Node, path: Path, lines: dict[Path, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                lines[(*path, key.value)] = key.start_mark.line + 1
                _index(value, (*path, key.value), lines)
                lines[(*path, key.value)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*path, i), lines)


def load_documents(text: str, filename: str) -> Iterator[Document]:
    """Every document in ``text``; YAML syntax errors become a ConfigError naming file and line."""
    # libyaml's parser (when PyYAML was built with it) is about six times faster and keeps the marks
    # we take line numbers from.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            lines: dict[Path, int] = {}
            _index(node, (), lines)
            yield Document(loader.construct_document(node), lines, node.start_mark.line + 1)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{filename}:{mark.line + 1}" if mark else filename
        raise YamlSyntaxError(Problem(where, f"YAML syntax error: {exc.problem or exc}")) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(Problem(filename, f"YAML error: {exc}")) from None
    finally:
        loader.dispose()
