"""Splitting client bytes into commands and words, exactly as HAProxy's master CLI does.

A command ends at a newline or at a ``;`` that is not escaped; a backslash escapes the next byte (so
``echo a\\;b`` is one command). Words are separated by spaces or tabs that are not escaped, and the
backslashes are removed from the words afterwards. Everything works on bytes: a client may send
anything, and nothing here may raise on it.
"""

from __future__ import annotations

import re

_SPECIAL = re.compile(rb"\\.|[;\n]", re.DOTALL)
_WORD = re.compile(rb"(?:[^ \t\\]|\\.|\\$)+", re.DOTALL)
_UNESCAPE = re.compile(rb"\\(.)", re.DOTALL)


def find_command_end(data: bytes | bytearray, start: int = 0) -> int:
    """Index of the ``;`` or newline that ends the command starting at ``start``, or -1 if none yet."""
    for match in _SPECIAL.finditer(data, start):
        if match.end() - match.start() == 1:
            return match.start()
    return -1


def split_commands(data: bytes) -> list[bytes]:
    """The non-blank commands of ``data``, escapes kept (for clients such as progsetctl)."""
    commands: list[bytes] = []
    start = 0
    while start <= len(data):
        end = find_command_end(data, start)
        command = data[start:] if end < 0 else data[start:end]
        if command.strip(b" \t\r"):
            commands.append(command)
        if end < 0:
            break
        start = end + 1
    return commands


def split_words(command: bytes) -> list[str]:
    """Words of one command with escapes removed, decoded so that any byte survives a round trip."""
    return [_UNESCAPE.sub(rb"\1", word).decode("utf-8", "surrogateescape") for word in _WORD.findall(command)]


def encode(text: str) -> bytes:
    """The inverse of the decoding in :func:`split_words`: what a client sent comes back byte for byte."""
    return text.encode("utf-8", "surrogateescape")
