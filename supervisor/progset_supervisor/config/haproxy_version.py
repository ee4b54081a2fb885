"""The HAProxy a configuration is read as: its version, build features and run-time options.

A haproxy.cfg may ask ``.if version_atleast(3.1)``, ``feature(OPENSSL)`` or ``enabled(SPLICE)``; progset
answers as the chosen HAProxy would (``--haproxy-version``, default 3.2, the last release that had
``program`` sections), so a file written for that HAProxy takes the same branches under progset.

Versions compare the way HAProxy's ``split_version()`` documents it:
``<a>[.<b>[.<c>[.<d>]]][-{dev,pre,rc}<f>][-*][-<g>]``, missing numbers are zero, a release ranks above
its ``-rc``/``-pre``, which rank above its ``-dev``, and ``<g>`` (commits since the tag) ranks last.
A version that does not parse compares as older than any (HAProxy's ``version_atleast(abc)`` is true).

Build features are those of a common Linux build (Debian's, see ``haproxy -vv``), plus ``PROGSET``,
which no HAProxy has, so ``.if feature(PROGSET)`` tells progset from HAProxy.
"""

from __future__ import annotations

import re
from typing import NamedTuple

DEFAULT_VERSION = "3.2"
PROGSET_FEATURE = "PROGSET"

# Debian 12's haproxy -vv "Feature list" (a typical Linux build); PROGSET marks progset itself.
LINUX_FEATURES = (
    "+ACCEPT4 +BACKTRACE -CLOSEFROM +CPU_AFFINITY +CRYPT_H -DEVICEATLAS +DL -ENGINE +EPOLL -EVPORTS +GETADDRINFO "
    "-KQUEUE +LIBCRYPT +LINUX_SPLICE +LINUX_TPROXY +LUA -MEMORY_PROFILING +NETFILTER +NS -OBSOLETE_LINKER +OPENSSL "
    "-OT -PCRE +PCRE2 +PCRE2_JIT -PCRE_JIT +POLL +PRCTL -PROCCTL +PROMEX -QUIC +RT +SLZ -STATIC_PCRE -STATIC_PCRE2 "
    "+SYSTEMD +TFO +THREAD +THREAD_DUMP +TPROXY -WURFL -ZLIB -51DEGREES +" + PROGSET_FEATURE)

# enabled(<opt>) (HAProxy 2.8+): what a Linux build has on before 'global' turns some off.
DEFAULT_ENABLED = frozenset({"POLL", "EPOLL", "SPLICE", "GETADDRINFO", "REUSEPORT", "FAST-FORWARD"})
# 'global' keywords that turn one off (and the one that turns SERVER-SSL-VERIFY-NONE on).
DISABLING_KEYWORDS = {"nopoll": "POLL", "noepoll": "EPOLL", "nosplice": "SPLICE", "nogetaddrinfo": "GETADDRINFO",
                      "noreuseport": "REUSEPORT", "tune.disable-fast-forward": "FAST-FORWARD"}

_TAG = re.compile(r"(dev|rc|pre)")
_STAGE = {"dev": 1, "rc": 2, "pre": 2}
_INT = re.compile(r"[+-]?\d*")

Version = tuple[int, int, int, int, int, int, int]


def _strtol(text: str) -> tuple[int, str]:
    """C's ``strtol(text, &end, 10)``: the number at the start (0 if none) and the rest."""
    match = _INT.match(text)
    digits = match.group() if match else ""
    try:
        return int(digits), text[len(digits):]
    except ValueError:
        return 0, text


def split_version(text: str) -> Version | None:
    """HAProxy's seven-number form of a version, or None when it does not parse."""
    value = [0, 0, 0, 0, 3, 0, 0]
    if not text:
        return None
    rest = text
    for index in range(4):
        value[index], rest = _strtol(rest)
        if not rest:
            return tuple(value)  # type: ignore[return-value]
        if rest[0] == "-":
            rest = rest[1:]
            break
        if rest[0] != "." or index == 3:
            return None
        rest = rest[1:]
    if rest[:1].isdigit() or not _TAG.match(rest):
        return _commits(value, rest)
    tag = _TAG.match(rest).group()  # type: ignore[union-attr]
    value[4] = _STAGE[tag]
    value[5], rest = _strtol(rest[len(tag):])
    if not rest:
        return tuple(value)  # type: ignore[return-value]
    if rest[0] != "-":
        return None
    return _commits(value, rest[1:])


def _commits(value: list[int], rest: str) -> Version | None:
    """The ``-<g>`` commit count: the number after the last ``-`` (0 if that is not a number)."""
    last = rest.rsplit("-", 1)
    if len(last) == 2:
        if not last[1]:
            return None
        rest = last[1]
    number, left = _strtol(rest)
    value[6] = number if not left else 0
    return tuple(value)  # type: ignore[return-value]


class HAProxyTarget(NamedTuple):
    """The HAProxy whose answers ``.if`` conditions get."""

    version: str = DEFAULT_VERSION
    features: str = LINUX_FEATURES

    @property
    def parsed(self) -> Version:
        parsed = split_version(self.version)
        if parsed is None:
            raise ValueError(f"invalid HAProxy version '{self.version}': expected e.g. 2.6, 3.2 or 3.2.0")
        return parsed

    def compare(self, other: str) -> int:
        """HAProxy's ``compare_current_version``: -1 if ``other`` is older, 0 same, 1 newer; unparsable is oldest."""
        theirs = split_version(other)
        if theirs is None:
            return -3
        mine = self.parsed
        return (theirs > mine) - (theirs < mine)

    def at_least(self, version: str) -> bool:
        return split_version(version) is not None and self.parsed >= split_version(version)  # type: ignore[operator]

    def has_feature(self, name: str) -> bool:
        """``feature(NAME)``: listed with ``+`` in the build's feature list (whole words only)."""
        return f"+{name}" in self.features.split() if name else False


def parse_target(version: str) -> HAProxyTarget:
    """``--haproxy-version``'s value, checked (ValueError names what is wrong)."""
    target = HAProxyTarget(version)
    target.parsed  # noqa: B018  (raises for a version that does not parse)
    if target.parsed < (2, 0, 0, 0, 0, 0, 0):
        raise ValueError(f"HAProxy {version} had no 'program' sections (they came with 2.0)")
    return target
