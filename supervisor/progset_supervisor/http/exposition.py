"""The Prometheus text exposition format (version 0.0.4), written directly.

Why not ``prometheus_client``: importing it costs the supervisor about 11 MiB of resident memory
(it pulls in ``http.server``, ``wsgiref``, ``threading`` and more), measured at 200 programs as
16.8 MiB before the first scrape against 27.8 MiB in the steady state after 1,000 scrapes, while
issue 18 asks for 20 MiB; and its registry builds a ``Metric`` and a ``Sample`` per series at
every scrape. Without it the steady state is the figure in ``bench/RESULTS.md``. The supervisor only
writes gauges and counters without timestamps, so the format is small: for each family a ``# HELP``
and a ``# TYPE`` line, then one line per series. The output is checked in tests by
``prometheus_client``'s own parser and writer (a round trip gives the same bytes) and by
``promtool check metrics``; the operator keeps using ``prometheus_client``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

# The classic format (recent prometheus_client's CONTENT_TYPE_LATEST says version=1.0.0).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Family(NamedTuple):
    """One metric family; a counter's ``name`` ends in ``_total``, as it is exposed."""

    name: str
    kind: str  # "gauge" or "counter"
    help: str

    def header(self) -> str:
        help_text = self.help.replace("\\", r"\\").replace("\n", r"\n")
        return f"# HELP {self.name} {help_text}\n# TYPE {self.name} {self.kind}\n"


def number(value: float) -> str:
    """A sample value as Prometheus' Go clients (and prometheus_client) write it.

    Python's ``repr`` is a valid Prometheus float, but Go's formatting switches to an exponent for
    large values (``1.7964e+09`` rather than ``1796400000.0``); matching it keeps the output what
    every exporter writes, so byte comparisons with prometheus_client hold.
    """
    if value != value:  # NaN
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(float(value))
    point = text.find(".")
    if value > 0 and point > 6:  # 7 or more digits before the point, and no exponent yet
        digits = (text[:point] + text[point + 1:]).rstrip("0")
        mantissa = f"{digits[0]}.{digits[1:]}" if len(digits) > 1 else digits
        return f"{mantissa}e+{point - 1:02d}"
    return text


def label_value(text: str) -> str:
    """``text`` escaped for a label value between double quotes."""
    if "\\" in text or "\n" in text or '"' in text:
        return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return text


def labels(**pairs: str) -> str:
    """``{a="x",b="y"}`` with the names sorted, as prometheus_client writes them."""
    return "{" + ",".join(f'{name}="{label_value(pairs[name])}"' for name in sorted(pairs)) + "}"
