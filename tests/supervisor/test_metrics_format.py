"""``text_format`` writes exactly what prometheus_client's ``generate_latest`` writes, faster."""

from __future__ import annotations

import io
import math
from pathlib import Path

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest

from progset_supervisor.core.master import Master, Options
from progset_supervisor.http.metrics import Exporter, _text_format, text_format
from progset_supervisor.runtime.log import Logger
from progset_supervisor.runtime.loop import Loop
from progset_supervisor.runtime.output import OutputSink


class Collected:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def reference(families: list[Metric]) -> bytes:
    return generate_latest(Collected(families))  # type: ignore[arg-type]


def tricky() -> list[Metric]:
    plain = GaugeMetricFamily("plain_value", 'help with "quotes", a \\ backslash\nand a newline', value=1234567.0)
    labelled = GaugeMetricFamily("labelled", "labels given out of order", labels=["state", "program", "b"])
    for value, program in [(0.0, "api"), (1.0, 'quo"te'), (-1.5, "back\\slash"), (1e22, "new\nline"),
                           (math.inf, "ünïcödé"), (-math.inf, ""), (math.nan, "x"), (0.1 + 0.2, "y"),
                           (123456789012.0, "z")]:
        labelled.add_metric(["RUNNING", program, "b"], value)
    counter = CounterMetricFamily("events", "a counter", labels=["kind"])
    counter.add_metric(["a"], 3.0)
    counter.add_metric(["b"], 2.5e-7)
    return [plain, labelled, counter, CounterMetricFamily("empty", "no samples", labels=["x"])]


def test_same_bytes_as_generate_latest_on_tricky_names_values_and_help() -> None:
    families = tricky()
    assert _text_format(families) == reference(families)  # written here, not handed to generate_latest


def test_families_it_does_not_write_itself_go_to_generate_latest() -> None:
    info = InfoMetricFamily("build", "an info family", value={"version": "1"})
    histogram = HistogramMetricFamily("latency_seconds", "a histogram", buckets=[("1.0", 2), ("+Inf", 3)],
                                      sum_value=2.5)
    created = CounterMetricFamily("with_created", "a counter with _created", value=1.0, created=1700000000.0)
    stamped = GaugeMetricFamily("stamped", "a timestamped sample", labels=["a"])
    stamped.add_metric(["x"], 1.0, timestamp=1700000000.5)
    for unusual in (info, histogram, created, stamped):
        families = [*tricky(), unusual]
        assert text_format(families) == reference(families)


def test_same_bytes_as_generate_latest_for_the_supervisor_collectors(tmp_path: Path) -> None:
    loop = Loop()
    try:
        master = Master(Options(config_path=str(tmp_path / "unused.yaml")), loop, Logger(stream=io.StringIO()),
                        OutputSink())
        master.reload_results["failure"] += 2
        families = list(Exporter(master).registry.collect())
        body = _text_format(families)
        assert body == reference(families)
        assert b'progset_reloads_total{result="failure"} 2.0\n' in body
        assert b"# TYPE progset_process_cpu_seconds_total counter\n" in body
    finally:
        loop.close()
