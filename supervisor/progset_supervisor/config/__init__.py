"""The configuration contract shared by the supervisor and the operator."""

import importlib
from typing import Any

from .errors import ConfigError, Problem
from .loader import load_path, load_paths, load_text
from .model import (
    API_VERSION,
    KIND,
    RENDERED_KIND,
    Backoff,
    Config,
    EnvVar,
    Program,
    Source,
    config_from_spec,
    parse_signal,
    spec_hash,
)

__all__ = [
    "API_VERSION", "KIND", "RENDERED_KIND", "Backoff", "Config", "ConfigError", "EnvVar", "Problem",
    "Program", "Source", "config_from_spec", "load_haproxy_text", "load_path", "load_paths", "load_text",
    "load_yaml_text",
    "parse_signal", "render_document", "spec_hash",
]

# Loaded on first access (PEP 562), like the loaders in ``loader.load_text``: importing the package
# must not import both syntaxes' parsers.
_LAZY = {"load_haproxy_text": ".haproxy", "load_yaml_text": ".manifest", "render_document": ".manifest"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
