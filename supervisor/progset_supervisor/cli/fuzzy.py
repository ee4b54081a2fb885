"""HAProxy's command matcher for ``help <words>`` and unknown commands, ported as is.

HAProxy compares letter-pair fingerprints of the words typed with those of each keyword and proposes
the closest ones, so ``sho proc`` suggests ``show proc``. Porting the algorithm (rather than using
difflib) keeps our suggestion lists identical to HAProxy's for the same command table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

MAX_MATCHES = 5  # CLI_MAX_MATCHES
PREFIX_WORDS = 5  # CLI_PREFIX_KW_NB


class Keyword(Protocol):
    words: tuple[str, ...]
    usage: str | None


def _class(char: str) -> int:
    c = char.lower()
    if "a" <= c <= "z":
        return ord(c) - ord("a") + 1
    if "0" <= c <= "9":
        return 27
    return 28


def fingerprint(words: Sequence[str]) -> dict[int, int]:
    """Counts of (previous class, class) transitions, with begin and end markers, over all words."""
    prints: dict[int, int] = {}
    for word in words:
        before = 28
        for char in word:
            to = _class(char)
            key = 32 * before + to
            prints[key] = prints.get(key, 0) + 1
            before = to
        key = 32 * before + 28
        prints[key] = prints.get(key, 0) + 1
    return prints


def distance(a: dict[int, int], b: dict[int, int]) -> int:
    return sum(abs(a.get(k, 0) - b.get(k, 0)) for k in a.keys() | b.keys())


def matching_length(keywords: Sequence[Keyword], args: Sequence[str]) -> int:
    """How many leading words of ``args`` exactly match some keyword (hidden ones included)."""
    length = 0
    for kw in keywords:
        for idx in range(min(PREFIX_WORDS, len(kw.words))):
            if idx >= len(args) or not args[idx] or kw.words[idx] != args[idx]:
                break
            length = max(length, idx + 1)
    return length


def _prefix_matches(kw: Keyword, args: Sequence[str], length: int) -> bool:
    for idx in range(length):
        if idx >= len(kw.words) or idx >= len(args) or not args[idx]:
            return False
        if kw.words[idx] != args[idx]:
            return False
    return True


def candidates(keywords: Sequence[Keyword], args: Sequence[str]) -> tuple[int, list[Keyword]]:
    """``(length, keywords to list)`` the way ``cli_gen_usage_msg`` picks them (before sorting)."""
    length = matching_length(keywords, args)
    matches: list[tuple[int, int, Keyword]] = []
    if length < len(args) and args[length]:
        typed = [a for a in args[length:PREFIX_WORDS] if a]
        typed_print = fingerprint(typed)
        typed_len = sum(len(a) for a in typed)
        for order, kw in enumerate(keywords):
            if kw.usage is None or not _prefix_matches(kw, args, length) or len(kw.words) < length:
                continue
            rest = kw.words[length:PREFIX_WORDS]
            total = typed_len + sum(len(w) for w in rest)
            dist = distance(typed_print, fingerprint(rest))
            if dist < 5 * total // 2:
                matches.append((dist, order, kw))
        matches.sort(key=lambda m: (m[0], m[1]))
        matches = matches[:MAX_MATCHES]
    if matches:
        best = matches[0][0]
        return length, [kw for dist, _, kw in matches if dist <= 5 * best // 2]
    return length, [kw for kw in keywords if kw.usage is not None and _prefix_matches(kw, args, length)]
