"""The configuration contract shared by the supervisor and the operator."""

from .errors import ConfigError, Problem
from .haproxy import load_haproxy_text
from .loader import load_path, load_text
from .manifest import load_yaml_text, render_document
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
    "Program", "Source", "config_from_spec", "load_haproxy_text", "load_path", "load_text", "load_yaml_text",
    "parse_signal", "render_document", "spec_hash",
]
