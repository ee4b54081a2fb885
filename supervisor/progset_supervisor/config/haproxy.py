"""HAProxy ``program`` section loader (placeholder until the tokenizer lands)."""

from __future__ import annotations

from .model import Config


def load_haproxy_text(text: str, filename: str) -> Config:
    raise NotImplementedError
