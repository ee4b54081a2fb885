"""Conditions of HAProxy's ``.if`` / ``.elif`` lines, evaluated the way ``src/cfgcond.c`` does.

Grammar (the words after ``.if`` are re-joined with single spaces first, as HAProxy does)::

    expr := and [ "||" expr ]        and := term [ "&&" and ]
    term := "!"* ( number | "(" expr ")" | predicate "(" args ")" )

A number is true when non-zero (C ``strtol`` syntax: ``1``, ``0``, ``0x10``, ``010``); an empty
condition is false. Predicates: ``defined(VAR)``, ``streq(a,b)``, ``strneq(a,b)`` and
``feature(NAME)``, which is true only for ``PROGSET``, so one file can serve both HAProxy (whose
``feature(PROGSET)`` is false) and progset. ``version_atleast``/``version_before`` are refused with a
clear error: progset has no HAProxy version to compare.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

MAX_DEPTH = 64
PROGSET_FEATURE = "PROGSET"
_ARITY = {"defined": 1, "feature": 1, "streq": 2, "strneq": 2}
_UNSUPPORTED = ("version_atleast", "version_before")
_NUMBER = re.compile(r"[+-]?(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
_WORD = re.compile(r"[^ (]*")


class ConditionError(ValueError):
    """A condition HAProxy would not parse, or one progset cannot answer."""


class _Parser:
    """Recursive descent over the condition text; evaluates as it parses (no side effects to defer)."""

    def __init__(self, text: str, environ: Mapping[str, str]) -> None:
        self.text = text
        self.pos = 0
        self.environ = environ

    def skip_blanks(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def expr(self, depth: int) -> bool:
        result = self.conjunction(depth)
        self.skip_blanks()
        if self.text.startswith("||", self.pos):
            self.pos += 2
            right = self.expr(depth + 1)  # parsed even when already true, so syntax errors always show
            result = result or right
        return result

    def conjunction(self, depth: int) -> bool:
        result = self.term(depth)
        self.skip_blanks()
        if self.text.startswith("&&", self.pos):
            self.pos += 2
            right = self.conjunction(depth + 1)
            result = result and right
        return result

    def term(self, depth: int) -> bool:
        if depth > MAX_DEPTH:
            raise ConditionError(f"condition nested more than {MAX_DEPTH} levels deep")
        self.skip_blanks()
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
            value = self.expr(depth + 1)
            self.skip_blanks()
            if not self.text.startswith(")", self.pos):
                raise ConditionError(f"expected ')' at position {self.pos + 1} of condition '{self.text}'")
            self.pos += 1
            return value != negate
        return self.predicate() != negate

    def predicate(self) -> bool:
        name = _WORD.match(self.text, self.pos).group()  # type: ignore[union-attr]
        if not name:
            raise ConditionError(f"unparsable condition '{self.text}' at position {self.pos + 1}")
        if name in _UNSUPPORTED:
            raise ConditionError(f"predicate '{name}' is not supported: progset is not HAProxy and has no "
                                 f"HAProxy version; use feature({PROGSET_FEATURE}) to tell progset from HAProxy")
        if name not in _ARITY:
            raise ConditionError(f"unknown predicate '{name}' in condition '{self.text}'; supported: "
                                 + ", ".join(f"{p}()" for p in _ARITY))
        self.pos += len(name)
        args = self.arguments(name)
        if len(args) != _ARITY[name]:
            raise ConditionError(f"'{name}' expects {_ARITY[name]} argument(s), got {len(args)}")
        if name == "defined":
            return args[0] in self.environ
        if name == "feature":
            return args[0] == PROGSET_FEATURE
        equal = args[0] == args[1]
        return equal if name == "streq" else not equal

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
                if ch == ")":
                    self.pos = i + 1
                    return args if args != [""] else []
            else:
                piece.append(ch)
                lead_trail.append(ch in " \t")
            i += 1
        raise ConditionError(f"missing ')' after the arguments of '{name}' in condition '{text}'")


def _trim(chars: list[str], blank: list[bool]) -> str:
    start, end = 0, len(chars)
    while start < end and blank[start]:
        start += 1
    while end > start and blank[end - 1]:
        end -= 1
    return "".join(chars[start:end])


def eval_condition(text: str, environ: Mapping[str, str]) -> bool:
    """Evaluate the condition of an ``.if``/``.elif`` line; raise :class:`ConditionError` if invalid."""
    parser = _Parser(text, environ)
    parser.skip_blanks()
    if parser.pos == len(text):
        return False
    result = parser.expr(0)
    parser.skip_blanks()
    if parser.pos != len(text):
        raise ConditionError(f"unexpected '{text[parser.pos]}' at position {parser.pos + 1} of condition '{text}'")
    return result
