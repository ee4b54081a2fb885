"""YAML documents with a path -> line map, so errors in manifests point at the offending line."""

from __future__ import annotations

from collections.abc import Iterator

import yaml

from .document import Document
from .errors import ConfigError, Problem
from .model import Path


class YamlSyntaxError(ConfigError):
    """The text is not YAML at all (as opposed to YAML that is not a valid config)."""


MAX_NODES = 100_000  # values in one document, aliases expanded: far above any real config (2000 programs)


class _Refused(Exception):
    """A document we will not build: where (0-based line) and why."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def _index(root: yaml.Node, lines: dict[Path, int]) -> None:
    """Fill ``lines`` (path -> 1-based line) for every value; refuse duplicate keys and alias bombs.

    Iterative, and bounded by :data:`MAX_NODES` counted with aliases expanded: a "billion laughs"
    document (nine aliases of nine aliases of ...) is a few lines of text but 10^9 values once
    expanded; walking it blocked the loop for seconds before anything said no. A duplicate key is
    refused instead of the last one silently winning, as ``kubectl apply`` refuses it.
    """
    stack: list[tuple[yaml.Node, Path]] = [(root, ())]
    visited = 0
    while stack:
        node, path = stack.pop()
        visited += 1
        if visited > MAX_NODES:
            raise _Refused(root.start_mark.line, f"more than {MAX_NODES} values once aliases are expanded "
                           "(a YAML alias bomb?); refused")
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode):
                    continue
                if key.value in seen and key.tag != "tag:yaml.org,2002:merge":
                    raise _Refused(key.start_mark.line, f"duplicate key '{key.value}' (first at line "
                                   f"{seen[key.value]}); YAML keeps only the last one, so one of them is a "
                                   "mistake")
                seen[key.value] = key.start_mark.line + 1
                lines[(*path, key.value)] = key.start_mark.line + 1
                stack.append((value, (*path, key.value)))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                stack.append((item, (*path, i)))


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
            _index(node, lines)
            yield Document(loader.construct_document(node), lines, node.start_mark.line + 1)
    except _Refused as exc:
        raise YamlSyntaxError(Problem(f"{filename}:{exc.line + 1}", exc.message)) from None
    except RecursionError:
        raise YamlSyntaxError(Problem(filename, "nested too deeply to be a configuration")) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{filename}:{mark.line + 1}" if mark else filename
        raise YamlSyntaxError(Problem(where, f"YAML syntax error: {exc.problem or exc}")) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(Problem(filename, f"YAML error: {exc}")) from None
    finally:
        loader.dispose()
