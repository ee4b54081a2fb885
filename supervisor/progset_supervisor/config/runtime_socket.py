"""A program's own runtime socket (HAProxy's ``stats socket``, or any line-based CLI), in HAProxy's notation.

A program that declares one becomes a *worker* on the Master CLI: ``show proc`` lists it under
``# workers`` and ``@1``, ``@!<pid>``, ``@@1`` forward commands to it, as HAProxy's master forwards
to its workers. Addresses are written as in HAProxy's ``bind``/``stats socket``: ``/run/app.sock`` or
``unix@/run/app.sock``, ``ipv4@127.0.0.1:9999`` or ``127.0.0.1:9999``, ``ipv6@[::1]:9999``,
``abns@name`` (Linux abstract namespace).
"""

from __future__ import annotations

import socket
from typing import NamedTuple


class SocketAddress(NamedTuple):
    family: int
    address: str | tuple[str, int]
    text: str  # as written

    def __str__(self) -> str:
        return self.text


def _port(text: str, written: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"invalid port in runtime socket '{written}': expected 1-65535")
    return int(text)


def parse_socket_address(text: str) -> SocketAddress:
    """``SocketAddress`` for ``text``; ValueError naming what is wrong."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"expected a socket address such as /run/app.sock or 127.0.0.1:9999, got {text!r}")
    prefix, at, rest = text.partition("@")
    if not at:
        prefix, rest = ("unix" if text.startswith("/") else "ipv4"), text
    if prefix == "unix":
        if not rest.startswith("/"):
            raise ValueError(f"runtime socket '{text}': a unix socket path must be absolute")
        return SocketAddress(socket.AF_UNIX, rest, text)
    if prefix == "abns":
        if not rest:
            raise ValueError(f"runtime socket '{text}': abns@ needs a name")
        return SocketAddress(socket.AF_UNIX, "\0" + rest, text)
    if prefix == "ipv6":
        if not rest.startswith("[") or "]:" not in rest:
            raise ValueError(f"runtime socket '{text}': write ipv6@[address]:port")
        host, port = rest[1:].split("]:", 1)
        return SocketAddress(socket.AF_INET6, (host, _port(port, text)), text)
    if prefix == "ipv4":
        host, colon, port = rest.rpartition(":")
        if not colon or not host:
            raise ValueError(f"runtime socket '{text}': write a path (/run/app.sock) or host:port (127.0.0.1:9999)")
        return SocketAddress(socket.AF_INET, (host, _port(port, text)), text)
    raise ValueError(f"runtime socket '{text}': unknown address family '{prefix}@'; use unix@, ipv4@, ipv6@ or abns@")
