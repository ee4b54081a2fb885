"""HAProxy's config-line tokenizer, re-implemented so an existing ``haproxy.cfg`` splits the same way.

The rules follow ``parse_line()`` in HAProxy's ``src/tools.c`` (options used by ``readcfgfile``):

- unquoted whitespace separates words; ``#`` outside quotes starts a comment, even inside a word;
- ``\\`` escapes outside single quotes: ``\\ `` ``\\\\`` ``\\#`` ``\\'`` ``\\"`` give the character, ``\\t``
  ``\\n`` ``\\r`` the control character, ``\\xNN`` a byte; ``\\$`` gives ``$`` only inside double quotes;
  any other ``\\`` is kept as is (``\\1`` stays ``\\1``);
- ``"..."`` is weak quoting: ``$VAR``, ``${VAR}``, ``${VAR-default}`` are expanded (nowhere else), and
  ``"${VAR[*]}"`` splits the value at whitespace into several words;
- ``'...'`` is strong quoting: nothing inside is interpreted;
- ``$.FILE``, ``$.LINE``, ``$.SECTION`` are HAProxy's pseudo-variables;
- at most :data:`MAX_WORDS` words per line, keyword included.

Where HAProxy is sloppy we are deliberately stricter or saner, and say so in the error:

- an explicitly quoted empty word (``""``) is an empty argument instead of silently ending the list;
- a word left empty only because a variable is unset is reported (HAProxy's "argument is empty"
  alert), because that is almost always a typo in a variable name; ``${VAR-}`` opts out;
- ``"${VAR[*]}"`` with an empty value yields no word at all (like ``"${arr[@]}"`` in a shell), and
  leading/trailing whitespace in the value does not create empty words;
- ``\\x00`` and ``\\x`` escapes that do not form UTF-8 cannot become a program argument.

Problems of the last two kinds matter only for lines progset uses (a ``program`` section), so a
real haproxy.cfg whose backends match binary bytes still loads: :func:`tokenize` reports them as
``issues`` instead of raising, and :func:`split_line` raises for them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import NamedTuple

MAX_WORDS = 64
PSEUDO_VARIABLES = (".FILE", ".LINE", ".SECTION")

# C's isspace() in the "C" locale; \n and \r never reach us (they end the line).
_SPACE = frozenset(" \t\v\f")
_VALUE_SPACE = frozenset(" \t\n\v\f\r")
_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_.")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_HEX = frozenset("0123456789abcdefABCDEF")
_SIMPLE_ESCAPES = {" ": " ", "\\": "\\", "t": "\t", "n": "\n", "r": "\r", "#": "#", "'": "'", '"': '"'}
_SAFE_WORD = re.compile(r"[A-Za-z0-9_./:=@%+,^~-]+")
_ORDINARY_RUN = re.compile(r"[^ \t\v\f\"'\\#$\n\r\0]+")  # characters no rule applies to, taken in one step


class TokenError(ValueError):
    """A line that HAProxy's tokenizer rejects too (unmatched quote, bad escape, too many words).

    ``column`` is 1-based so an editor can jump to it; the message already mentions it.
    """

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.column = column


class Tokens(NamedTuple):
    """The words of one line plus problems that only matter if progset uses the line.

    ``issues`` are deferred because the same text is harmless in a backend progset skips (binary
    bytes in an ``\\x`` escape) but wrong as a program argument.
    """

    words: tuple[str, ...]
    issues: tuple[str, ...] = ()


class _Tokenizer:
    """One pass over one line; state kept on the instance to keep each rule in its own method."""

    def __init__(self, line: str, environ: Mapping[str, str], pseudo: Mapping[str, str]) -> None:
        self.line = line
        self.environ = environ
        self.pseudo = pseudo
        self.words: list[str] = []
        self.issues: list[str] = []
        self.cur = bytearray()
        self.exists = False  # the current word exists even if empty (a quote or character opened it)
        self.start = 0  # column (0-based) where the current word began
        self.unset: list[str] = []  # unset variables (without default) referenced by the current word
        self.binary: str | None = None  # first problem with raw bytes in the current word
        self.squote = False
        self.dquote = False
        self.quote_at = 0

    def emit(self, text: str) -> None:
        if not self.exists and not self.cur:
            self.start = self.pos
        # os.environ carries undecodable bytes as surrogate escapes: turn them back into those bytes
        self.cur += text.encode("utf-8", "surrogateescape")
        self.exists = True

    def finish(self) -> None:
        """End the current word (if there is one) at unquoted whitespace, a list split, or end of line."""
        if self.exists or self.cur:
            try:
                word = self.cur.decode("utf-8")
            except UnicodeDecodeError:
                word = self.cur.decode("utf-8", "surrogateescape")
                self.binary = self.binary or f"word {len(self.words) + 1} (column {self.start + 1}) is not " \
                    "valid UTF-8 (from \\x escapes or an environment variable)"
            if self.binary:
                self.issues.append(self.binary)
            if not word and self.unset:
                self.issues.append(self._unset_message(self.unset[0], len(self.words) + 1))
            if len(self.words) == MAX_WORDS:
                raise TokenError(f"too many words at column {self.start + 1}: at most {MAX_WORDS} per line, "
                                 "keyword included", self.start + 1)
            self.words.append(word)
        elif self.unset:
            self.issues.append(self._unset_message(self.unset[0], len(self.words) + 1))
        self.cur = bytearray()
        self.exists = False
        self.unset = []
        self.binary = None

    @staticmethod
    def _unset_message(name: str, number: int) -> str:
        return (f"word {number} is empty because environment variable '{name}' is not set; set it, or write "
                f"${{{name}-}} where an empty value is intended")

    def run(self) -> Tokens:
        line = self.line
        n = len(line)
        self.pos = 0
        while self.pos < n:
            ch = line[self.pos]
            if ch in "\n\r\0":
                break
            if ch == "#" and not self.squote and not self.dquote:
                break
            if ch == '"' and not self.squote:
                self._toggle_quote("dquote")
            elif ch == "'" and not self.dquote:
                self._toggle_quote("squote")
            elif ch == "\\" and not self.squote:
                self._escape()
            elif ch in _SPACE and not self.squote and not self.dquote:
                self.finish()
                while self.pos < n and line[self.pos] in _SPACE:
                    self.pos += 1
            elif ch == "$" and self.dquote:
                self._variable()
            else:
                run = _ORDINARY_RUN.match(line, self.pos)
                end = run.end() if run else self.pos + 1
                self.emit(line[self.pos:end])
                self.pos = end
        if self.squote or self.dquote:
            kind = "single" if self.squote else "double"
            raise TokenError(f"unmatched {kind} quote at column {self.quote_at + 1}", self.quote_at + 1)
        self.finish()
        return Tokens(tuple(self.words), tuple(self.issues))

    def _toggle_quote(self, attr: str) -> None:
        opening = not getattr(self, attr)
        setattr(self, attr, opening)
        if opening:
            self.quote_at = self.pos
            if not self.exists and not self.cur:
                self.start = self.pos
            self.exists = True
        self.pos += 1

    def _escape(self) -> None:
        line, pos = self.line, self.pos
        nxt = line[pos + 1] if pos + 1 < len(line) else ""
        if nxt in _SIMPLE_ESCAPES:
            self.emit(_SIMPLE_ESCAPES[nxt])
            self.pos += 2
        elif nxt == "$" and self.dquote:
            self.emit("$")
            self.pos += 2
        elif nxt == "x":
            digits = line[pos + 2:pos + 4]
            if len(digits) != 2 or not set(digits) <= _HEX:
                raise TokenError(f"invalid \\x escape at column {pos + 1}: expected two hex digits, as in \\x41",
                                 pos + 1)
            if not self.exists and not self.cur:
                self.start = pos
            value = int(digits, 16)
            if value == 0 and not self.binary:
                self.binary = f"\\x00 at column {pos + 1}: a program argument cannot contain a NUL byte"
            self.cur.append(value)
            self.exists = True
            self.pos += 4
        else:
            self.emit("\\")  # not an escape sequence: HAProxy keeps the backslash (\1 stays \1)
            self.pos += 1

    def _variable(self) -> None:
        """``$NAME``, ``${NAME}``, ``${NAME-default}``, ``${NAME[*]}`` inside double quotes."""
        line = self.line
        n = len(line)
        j = self.pos + 1
        brace_at = None
        if j < n and line[j] == "{":
            brace_at = j
            j += 1
        if j >= n or line[j] not in _NAME_START:
            raise TokenError(f"invalid variable name at column {j + 1}: '$' must be followed by a letter or '_'; "
                             "write \\$ for a literal '$'", j + 1)
        name_at = j
        if line[j] == ".":
            j += 1
        while j < n and line[j] in _NAME_CHARS:
            j += 1
        name = line[name_at:j]
        value: str | None
        if name.startswith("."):
            if name not in PSEUDO_VARIABLES:
                raise TokenError(f"unknown pseudo-variable '{name}' at column {name_at + 1}; known ones are "
                                 + ", ".join(PSEUDO_VARIABLES), name_at + 1)
            value = self.pseudo.get(name, "")
        else:
            value = self.environ.get(name)
        expand = False
        if brace_at is not None and j < n and line[j] == "[":
            if line[j:j + 3] != "[*]":
                raise TokenError(f"invalid word expansion at column {j + 1}: only ${{NAME[*]}} is supported", j + 1)
            expand = True
            j += 3
        if brace_at is not None:
            if j < n and line[j] == "-":
                end = line.find("}", j)
                if end < 0:
                    raise TokenError(f"unmatched '{{' at column {brace_at + 1}", brace_at + 1)
                if value is None:
                    value = line[j + 1:end]  # raw text: HAProxy interprets nothing in a default
                j = end + 1
            elif j < n and line[j] == "}":
                j += 1
            else:
                raise TokenError(f"unmatched '{{' at column {brace_at + 1}", brace_at + 1)
        if value is None:
            self.unset.append(name)
            value = ""
        if expand:
            self._expand_list(value)
        elif value:
            self.emit(value)
        self.pos = j

    def _expand_list(self, value: str) -> None:
        """``"${NAME[*]}"``: whitespace in the value separates words; the expansion alone makes none."""
        if not self.cur:
            self.exists = False
        piece: list[str] = []
        for ch in value:
            if ch in _VALUE_SPACE:
                if piece:
                    self.emit("".join(piece))
                    piece = []
                self.finish()
            else:
                piece.append(ch)
        if piece:
            self.emit("".join(piece))


def tokenize(line: str, environ: Mapping[str, str] | None = None,
             pseudo: Mapping[str, str] | None = None) -> Tokens:
    """Split one config line into words the way HAProxy does; raise :class:`TokenError` on bad syntax.

    ``pseudo`` supplies HAProxy's ``$.FILE``/``$.LINE``/``$.SECTION`` (empty when not given).
    Problems that only matter for lines progset uses are returned in ``Tokens.issues``.
    """
    return _Tokenizer(line, os.environ if environ is None else environ, pseudo or {}).run()


def split_line(line: str, environ: Mapping[str, str] | None = None,
               pseudo: Mapping[str, str] | None = None) -> list[str]:
    """Like :func:`tokenize`, but every problem is an error: the words of a line progset will use."""
    tokens = tokenize(line, environ, pseudo)
    if tokens.issues:
        raise TokenError(tokens.issues[0], 0)
    return list(tokens.words)


def quote_word(word: str) -> str:
    """Write ``word`` so that :func:`tokenize` reads it back unchanged (for rendering HAProxy syntax).

    Plain words stay bare, others are single-quoted when possible (nothing to escape there), else
    double-quoted with ``\\``, ``"``, ``$`` and line breaks escaped.
    """
    if "\0" in word:
        raise ValueError("a word cannot contain a NUL character")
    if _SAFE_WORD.fullmatch(word):
        return word
    if not any(c in word for c in "'\n\r"):
        return f"'{word}'"
    escaped = (word.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
               .replace("\n", "\\n").replace("\r", "\\r"))
    return f'"{escaped}"'
