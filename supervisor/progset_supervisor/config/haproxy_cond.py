"""Conditions of HAProxy's ``.if`` / ``.elif`` lines, evaluated the way ``src/cfgcond.c`` does.

Grammar (the words after ``.if`` are re-joined with single spaces first, as HAProxy does)::

    expr := and [ "||" expr ]        and := term [ "&&" and ]
    term := "!"* ( number | "(" expr ")" | predicate "(" args ")" )

A number is true when non-zero (C ``strtol`` syntax: ``1``, ``0``, ``0x10``, ``010``); an empty
condition is false. The predicates are those of the chosen HAProxy version (:mod:`.haproxy_version`):
``defined``, ``feature``, ``streq``, ``strneq``, ``version_atleast``, ``version_before`` (2.4+),
``openssl_version_atleast``, ``openssl_version_before``, ``ssllib_name_startswith`` (2.5+), ``strstr``
and ``enabled`` (2.8+); an older version answers a newer predicate with HAProxy's "unparsable
conditional expression". The OpenSSL predicates answer for the OpenSSL Python is linked with (the
system's, which Debian's haproxy uses too). Error texts are HAProxy's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from .haproxy_version import DEFAULT_ENABLED, HAProxyTarget, split_version

MAX_DEPTH = 64
_ARITY = {"defined": 1, "feature": 1, "streq": 2, "strneq": 2, "strstr": 2, "version_atleast": 1,
          "version_before": 1, "openssl_version_atleast": 1, "openssl_version_before": 1,
          "ssllib_name_startswith": 1, "enabled": 1}
_SINCE = {"strstr": "2.8", "enabled": "2.8", "openssl_version_atleast": "2.5", "openssl_version_before": "2.5",
          "ssllib_name_startswith": "2.5"}
_NUMBER = re.compile(r"[+-]?(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
_WORD = re.compile(r"[^ (]*")


class ConditionError(ValueError):
    """A condition HAProxy would not parse; the message is HAProxy's."""


def _openssl_compare(text: str) -> int:
    """Like HAProxy's ``openssl_compare_current_version``: -1/0/1, or raise for a text that does not parse."""
    import ssl

    wanted = re.fullmatch(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?([a-z]?)", text)
    if not wanted:
        raise ConditionError(f"cannot parse OpenSSL version '{text}'")
    major, minor, patch, letter = wanted.groups()
    mine = ssl.OPENSSL_VERSION_INFO
    theirs = (int(major), int(minor or 0), int(patch or 0), (ord(letter) - 96) if letter else 0)
    own = (mine[0], mine[1], mine[2], mine[3])
    return (theirs > own) - (theirs < own)


class _Parser:
    """Recursive descent over the condition text; evaluates as it parses (no side effects to defer)."""

    def __init__(self, text: str, environ: Mapping[str, str], target: HAProxyTarget,
                 enabled: Callable[[str], bool], directive: str) -> None:
        self.text = text
        self.pos = 0
        self.environ = environ
        self.target = target
        self.enabled = enabled
        self.directive = directive

    def fail(self, message: str, pos: int | None = None) -> ConditionError:
        where = self.pos if pos is None else pos
        return ConditionError(f"{message} in '{self.directive}' at position {where + 1}")

    def skip_blanks(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def expr(self, depth: int) -> bool:
        start = self.pos
        result = self.conjunction(depth, start)
        self.skip_blanks()
        if self.text.startswith("||", self.pos):
            self.pos += 2
            self.skip_blanks()
            right = self.expr(depth + 1)  # parsed even when already true, so syntax errors always show
            result = result or right
        return result

    def conjunction(self, depth: int, start: int) -> bool:
        result = self.term(depth)
        self.skip_blanks()
        if self.text.startswith("&&", self.pos):
            self.pos += 2
            self.skip_blanks()
            right = self.conjunction(depth + 1, self.pos)
            result = result and right
        return result

    def term(self, depth: int) -> bool:
        self.skip_blanks()
        if depth > MAX_DEPTH:
            raise self.fail(f"unparsable conditional expression '{self.text[self.pos:]}'")
        start = self.pos
        negate = False
        while self.text.startswith("!", self.pos):
            negate = not negate
            self.pos += 1
            self.skip_blanks()
        number = _NUMBER.match(self.text, self.pos)
        if number:
            self.pos = number.end()
            nonzero = any(c not in "0xX+-" for c in number.group())  # only truth matters, not the value
            return nonzero != negate
        if self.text.startswith("(", self.pos):
            self.pos += 1
            self.skip_blanks()
            if self.pos >= len(self.text):
                raise self.fail(f"unparsable conditional expression '{self.text[start:]}'", start)
            value = self.expr(depth + 1)
            self.skip_blanks()
            if not self.text.startswith(")", self.pos):
                raise self.fail(f"expected ')' after conditional expression '{self.text[start:]}'", start)
            self.pos += 1
            return value != negate
        return self.predicate(start) != negate

    def predicate(self, start: int) -> bool:
        name = _WORD.match(self.text, self.pos).group()  # type: ignore[union-attr]
        since = _SINCE.get(name)
        if name not in _ARITY or (since is not None and not self.target.at_least(since)):
            raise self.fail(f"unparsable conditional expression '{self.text[start:]}'", start)
        self.pos += len(name)
        args = self.arguments(name)
        want = _ARITY[name]
        if len(args) < want:
            raise self.fail(f"missing arguments (got {len(args)}/{want}), type 'string' expected in argument "
                            f"{max(len(args), 1)} of predicate '{name}' used in conditional expression",
                            self.pos - 1 if args else self.pos)
        return self.evaluate(name, args)

    def evaluate(self, name: str, args: list[str]) -> bool:
        if name == "defined":
            return args[0] in self.environ
        if name == "feature":
            return self.target.has_feature(args[0])
        if name == "streq":
            return args[0] == args[1]
        if name == "strneq":
            return args[0] != args[1]
        if name == "strstr":
            return args[1] in args[0]
        if name == "version_atleast":
            return self.target.compare(args[0]) <= 0
        if name == "version_before":
            return self.target.compare(args[0]) > 0
        if name == "enabled":
            return self.enabled(args[0])
        if name == "ssllib_name_startswith":
            import ssl

            return ssl.OPENSSL_VERSION.startswith(args[0])
        compared = _openssl_compare(args[0])
        return compared <= 0 if name == "openssl_version_atleast" else compared > 0

    def arguments(self, name: str) -> list[str]:
        """``(a,b)``: commas separate, quotes and ``\\`` protect, unquoted edge blanks are trimmed."""
        text = self.text
        if not text.startswith("(", self.pos):
            return []
        i = self.pos + 1
        args: list[str] = []
        piece: list[str] = []  # characters of the argument; quoted ones are kept apart from trimming
        lead_trail: list[bool] = []  # per character: True if it was an unquoted blank
        quote = ""
        while i < len(text):
            ch = text[i]
            if quote:
                if ch == quote:
                    quote = ""
                else:
                    piece.append(ch)
                    lead_trail.append(False)
            elif ch in "'\"":
                quote = ch
            elif ch == "\\" and i + 1 < len(text):
                i += 1
                piece.append(text[i])
                lead_trail.append(False)
            elif ch in ",)":
                args.append(_trim(piece, lead_trail))
                piece, lead_trail = [], []
                if ch == ")" or len(args) == _ARITY[name]:
                    if ch != ")":
                        raise self.fail(f"expected ')' before '{text[i:]}' in argument {len(args)} of predicate "
                                        f"'{name}' used in conditional expression", i)
                    self.pos = i + 1
                    return args if args != [""] or _ARITY[name] == 1 else []
            else:
                piece.append(ch)
                lead_trail.append(ch in " \t")
            i += 1
        raise self.fail(f"expected ')' after the arguments of predicate '{name}' used in conditional expression", i)


def _trim(chars: list[str], blank: list[bool]) -> str:
    start, end = 0, len(chars)
    while start < end and blank[start]:
        start += 1
    while end > start and blank[end - 1]:
        end -= 1
    return "".join(chars[start:end])


def _default_enabled(option: str) -> bool:
    return option in DEFAULT_ENABLED


def eval_condition(text: str, environ: Mapping[str, str], target: HAProxyTarget | None = None, *,
                   enabled: Callable[[str], bool] = _default_enabled, directive: str = ".if") -> bool:
    """Evaluate the condition of an ``.if``/``.elif`` line as HAProxy ``target`` would.

    ``enabled`` answers ``enabled(<opt>)`` (the loader knows which ``global`` keywords turned options off).
    Raises :class:`ConditionError` with HAProxy's message for a condition HAProxy would not parse.
    """
    parser = _Parser(text, environ, target or HAProxyTarget(), enabled, directive)
    parser.skip_blanks()
    if parser.pos == len(text):
        return False
    result = parser.expr(0)
    parser.skip_blanks()
    if parser.pos != len(text):
        raise parser.fail(f"unexpected character '{text[parser.pos]}' at the end of conditional expression '{text}'")
    return result


__all__ = ["ConditionError", "HAProxyTarget", "eval_condition", "split_version"]
