"""The text exposition format the supervisor writes itself, checked against prometheus_client.

The supervisor no longer imports prometheus_client (issue 18); these tests hold its output to
prometheus_client's parser and writer: parsing a scrape and writing it again with ``generate_latest``
gives the same bytes, values are formatted as ``floatToGoString`` formats them, and escaped help
texts and label values read back as they were.
"""

from __future__ import annotations

import io
import math
import random
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from progset_supervisor.config import load_path
from progset_supervisor.core.master import Master, Options
from progset_supervisor.http.exposition import Family, labels, number
from progset_supervisor.http.metrics import FAMILIES, Exporter
from progset_supervisor.runtime.log import Logger
from progset_supervisor.runtime.loop import Loop
from progset_supervisor.runtime.output import OutputSink

from .helpers import program, programs_config, write_config


class Parsed:
    """Families read back by prometheus_client's parser, as a collector its writer accepts."""

    def __init__(self, text: str) -> None:
        self.families: list[Metric] = list(text_string_to_metric_families(text))

    def collect(self) -> list[Metric]:
        return self.families


def rewritten(body: bytes) -> bytes:
    """``body`` parsed and written again by prometheus_client."""
    return generate_latest(Parsed(body.decode()))  # type: ignore[arg-type]


def test_values_are_formatted_as_prometheus_client_formats_them() -> None:
    values = [0.0, -0.0, 1.0, -1.5, 0.1 + 0.2, 2.5e-7, 1e22, -1e22, 999999.9, 1000000.0, 1234567.0, 2000000.0,
              10000000.5, -1234567.0, 123456789012.0, 1796403126.4155512, 25.6796474089233, 3.221504e07,
              math.inf, -math.inf, math.nan, 7, 0]
    rng = random.Random(18)
    values += [rng.uniform(-1e12, 1e12) for _ in range(300)] + [float(rng.randrange(10 ** 12)) for _ in range(300)]
    for value in values:
        assert number(value) == floatToGoString(value), value


def test_escaped_help_and_label_values_read_back_unchanged() -> None:
    help_text = 'help with "quotes", a \\ backslash\nand a newline'
    family = Family("tricky_value", "gauge", help_text)
    odd = ['quo"te', "back\\slash", "new\nline", "ünïcödé", "", "a,b=c}"]
    body = family.header() + "".join(f"{family.name}{labels(program=value, b='x')} {number(1.5)}\n" for value in odd)
    (parsed,) = text_string_to_metric_families(body)
    assert (parsed.name, parsed.type, parsed.documentation) == ("tricky_value", "gauge", help_text)
    assert [sample.labels for sample in parsed.samples] == [{"b": "x", "program": value} for value in odd]
    assert rewritten(body.encode()) == body.encode()


def reap_until(master: Master, done: Callable[[], bool]) -> None:
    """The master's own reaper, called until ``done`` (no SIGCHLD handler in a test process)."""
    deadline = time.monotonic() + 15
    while not done():
        assert time.monotonic() < deadline, "the programs did not exit"
        master.reap()
        time.sleep(0.01)


def test_a_scrape_is_what_prometheus_client_writes_for_it(tmp_path: Path) -> None:
    """A master with a running program and one that exited, rendered in this process."""
    config = write_config(tmp_path, programs_config(program("api", "sleep", "1000"),
                                                    program("other", "sh", "-c", "exit 3", restart="never")))
    loop = Loop()
    master = Master(Options(config_path=str(config), watch=False), loop, Logger(stream=io.StringIO()), OutputSink())
    try:
        master.start(load_path(config))
        reap_until(master, lambda: master.programs["other"].last_exit is not None)
        master.reload_results["failure"] += 2
        body, content_type = Exporter(master).render()
        assert content_type == "text/plain; version=0.0.4; charset=utf-8"
        assert rewritten(body) == body
        families = {family.name: family for family in text_string_to_metric_families(body.decode())}
        # Every family the supervisor writes is there, with its declared type.
        exposed = {f.name.removesuffix("_total") if f.kind == "counter" else f.name: f.kind for f in FAMILIES}
        assert {name: family.type for name, family in families.items()} == exposed
        for needle in (b'progset_reloads_total{result="failure"} 2.0\n', b'progset_program_up{program="api"} 1.0\n',
                       b'progset_program_exits_total{code="3",program="other",reason="exit"} 1.0\n',
                       b'progset_program_state{program="other",state="EXITED"} 1.0\n',
                       b"# TYPE progset_process_cpu_seconds_total counter\n"):
            assert needle in body
    finally:
        master.shutdown(0)
        reap_until(master, lambda: master.finished)
        loop.close()
