"""Real consumers of ``/metrics``: ``promtool check metrics``, a Prometheus server, the Grafana dashboard.

Debian's ``prometheus`` package provides both binaries. Without them these tests skip, unless
``PROGSET_REQUIRE_PEERS=1`` (CI) makes a missing binary a failure.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from .helpers import PROJECT, Supervisor, http_get, http_port, program, scrape, scrape_until, started
from .helpers import programs_config as programs
from .peers import require

DASHBOARD = PROJECT / "charts" / "progset" / "dashboards" / "progset.json"
FAST = {"initialSeconds": 0.05, "maxSeconds": 0.1, "resetAfterSeconds": 60}


@pytest.fixture(scope="module")
def supervisor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Supervisor, int]]:
    """One supervisor with every kind of series: running, crashed, exited, fatal, in backoff."""
    slow = {"initialSeconds": 30, "maxSeconds": 30, "resetAfterSeconds": 60}
    config = programs(
        program("victim", "sleep", "1000", backoff=FAST),
        program("tree", "sh", "-c", "sleep 1000 & sleep 1000 & wait"),
        program("quitter", "sh", "-c", "exit 3", restart="never"),
        program("flappy", "sh", "-c", "exit 4", backoff=slow),
        program("missing", "/nonexistent/program"),
        # never ready: its readiness check asks a port nobody listens on (check series and histogram)
        program("unready", "sleep", "1000", readiness={"tcp": {"port": 9}, "periodSeconds": 0.2}))
    with started(tmp_path_factory.mktemp("sup")) as start:
        sup = start(config, "--no-watch", metrics="127.0.0.1:0")
        port = http_port(sup)
        sup.wait_log(r"Restarting program 'flappy' in")
        yield sup, port
        assert sup.stop() == 0


def test_promtool_accepts_a_real_scrape(supervisor: tuple[Supervisor, int]) -> None:
    promtool = require("promtool", "prometheus")
    _, port = supervisor
    text = scrape_until(port, lambda s: s.get("progset_program_state", program="flappy", state="BACKOFF") == 1).text
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")
    # The scrape did hold every family promtool was meant to see.
    for needle in ('progset_program_exits_total{', 'state="BACKOFF"} 1.0', 'progset_program_processes{',
                   "progset_config_info{", "progset_process_cpu_seconds_total ",
                   'progset_program_ready{program="unready"} 0.0',
                   'progset_check_runs_total{check="readiness",program="unready",result="failure"}',
                   'progset_check_duration_seconds_bucket{check="readiness",le="+Inf",program="unready"}',
                   'progset_program_restart_reasons_total{program="flappy",reason="exit"}'):
        assert needle in text


def test_prometheus_client_reads_a_real_scrape_and_writes_it_back_unchanged(
        supervisor: tuple[Supervisor, int]) -> None:
    """The supervisor writes the format itself (issue 18); prometheus_client's parser and writer agree."""
    from prometheus_client.exposition import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    _, port = supervisor
    text = scrape_until(port, lambda s: s.get("progset_program_state", program="flappy", state="BACKOFF") == 1).text
    families = list(text_string_to_metric_families(text))

    class Parsed:
        def collect(self) -> list[Any]:
            return families

    assert generate_latest(Parsed()).decode() == text  # type: ignore[arg-type]
    assert 'progset_program_exits_total{code="4",program="flappy",reason="exit"}' in text


def test_text_format_even_when_openmetrics_is_preferred(supervisor: tuple[Supervisor, int]) -> None:
    """Prometheus asks for OpenMetrics first; the text format (cheaper to write) is what it gets."""
    _, port = supervisor
    prometheus_accept = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
                         "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
    reply = http_get(port, "/metrics", headers={"Accept": prometheus_accept})
    assert reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert b"# EOF" not in reply.body and b"# TYPE progset_program_restarts_total counter\n" in reply.body


# -- a real Prometheus server ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Prometheus:
    def __init__(self, base: str) -> None:
        self.base = base

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=5) as reply:
            document = json.load(reply)
        assert document["status"] == "success", document
        return document["data"]

    def query(self, expr: str, **params: str) -> list[dict[str, Any]]:
        return self.get("/api/v1/query", query=expr, **params)["result"]

    def wait(self, what: str, probe: Any, timeout: float = 20.0) -> Any:
        """Poll ``probe()`` until it returns something truthy (Prometheus has no event to wait on)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                result = probe()
            except OSError:
                result = None
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"Prometheus: timed out waiting for {what}")
            time.sleep(0.2)


@pytest.fixture
def prometheus(supervisor: tuple[Supervisor, int], tmp_path: Path) -> Iterator[Prometheus]:
    executable = require("prometheus", "prometheus")
    _, target = supervisor
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "progset", "static_configs": [{"targets": [f"127.0.0.1:{target}"]}]}]}))
    port = free_port()
    with (tmp_path / "prometheus.log").open("w") as log:
        proc = subprocess.Popen([executable, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        server = Prometheus(f"http://127.0.0.1:{port}")
        server.wait("readiness", lambda: urllib.request.urlopen(f"{server.base}/-/ready", timeout=2).status == 200,
                    timeout=30)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def restart_samples(server: Prometheus) -> list[tuple[float, str]]:
    result = server.query('progset_program_restarts_total{program="victim"}[1m]')
    return [(float(t), v) for t, v in result[0]["values"]] if result else []


def test_prometheus_scrapes_restarts(supervisor: tuple[Supervisor, int], prometheus: Prometheus) -> None:
    sup, port = supervisor
    restarts_before = scrape(port).get("progset_program_restarts_total", program="victim")
    assert restarts_before is not None
    # A first scrape before the crashes, so the window starts at the old value.
    prometheus.wait("a first scrape", lambda: restart_samples(prometheus))
    targets = prometheus.get("/api/v1/targets")["activeTargets"]
    assert [(t["health"], t["lastError"]) for t in targets] == [("up", "")]

    crashes = 2
    forks = len(sup.forked_pids("victim"))
    for n in range(1, crashes + 1):
        os.kill(sup.forked_pids("victim")[-1], signal.SIGKILL)
        sup.wait_log(r"New program 'victim' \(\d+\) forked", count=forks + n)
    expected = restarts_before + crashes
    samples = prometheus.wait("two scrapes, the last one after the crashes",
                              lambda: (s := restart_samples(prometheus)) and len(s) >= 2
                              and float(s[-1][1]) == expected and s)
    assert float(samples[0][1]) == restarts_before

    # Evaluated at the last sample, with the window starting at the first one, increase() does not
    # extrapolate: it is exactly the number of crashes.
    at = datetime.fromtimestamp(round(samples[-1][0], 3), UTC).isoformat(timespec="milliseconds")
    increase = prometheus.query('increase(progset_program_restarts_total{program="victim"}[1m])', time=at)
    assert [(r["metric"]["program"], float(r["value"][1])) for r in increase] == [("victim", float(crashes))]
    now = prometheus.query("increase(progset_program_restarts_total[1m])")
    assert {r["metric"]["program"] for r in now} == {"victim", "tree", "quitter", "flappy", "missing", "unready"}
    assert float(next(r for r in now if r["metric"]["program"] == "victim")["value"][1]) >= crashes

    # Every dashboard query runs on this Prometheus and returns data.
    for expr in dashboard_queries():
        concrete = (expr.replace("$__rate_interval", "5s").replace("$__range", "1m")
                    .replace("$instance", ".*").replace("$program", ".*")
                    .replace("$namespace", ".*").replace("$pod", ".*"))
        if concrete.startswith("label_values("):
            continue  # a Grafana function, checked by the name test below
        assert prometheus.query(concrete), f"dashboard query returned nothing: {concrete}"


# -- the Grafana dashboard -----------------------------------------------------------------------------------
PROMQL_WORDS = {"sum", "max", "min", "count", "avg", "by", "without", "on", "ignoring", "group_left",
                "group_right", "rate", "irate", "increase", "time", "or", "and", "unless", "vector", "label_values",
                "label_replace",
                "bool", "topk", "bottomk"}


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and templating queries."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "expr" and isinstance(value, str):
                    found.append(value)
                elif key == "query" and isinstance(value, dict) and isinstance(value.get("query"), str):
                    found.append(value["query"])
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(DASHBOARD.read_text()))
    return found


def metric_names(expr: str) -> set[str]:
    """Identifiers of ``expr`` that name metrics: label matchers, ranges, grouping lists, label_values'
    label argument, variables and numbers removed; what remains is a metric or a PromQL keyword."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', " ", expr)  # strings (label_replace's arguments)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"(label_values\(\s*[a-zA-Z_:][\w:]*)\s*,\s*\w+\s*\)", r"\1)", expr)
    expr = re.sub(r"\$\w+", " ", expr)
    return {t for t in re.findall(r"[a-zA-Z_:][\w:]*", expr) if t not in PROMQL_WORDS}


def test_dashboard_uses_only_metrics_a_running_supervisor_exports(supervisor: tuple[Supervisor, int]) -> None:
    _, port = supervisor
    queries = dashboard_queries()
    assert len(queries) >= 9
    used = set().union(*(metric_names(q) for q in queries))
    assert used, queries
    assert all(name.startswith("progset_") for name in used), used
    exported = scrape_until(port, lambda s: s.get("progset_program_state", program="flappy", state="BACKOFF") == 1)
    assert used <= exported.names, used - exported.names
    titles = {p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]}
    assert {"Restarts per program", "Program state", "CPU per program", "Resident memory per program",
            "Reload results"} <= titles


def test_metric_name_extraction_sees_every_metric() -> None:
    """The name test above is only as good as this parser: it must not drop or invent names."""
    expr = ('max by (program) (progset_a{x="1", state="y"} * 2 or progset_b{z=~"$v"}) - time() '
            '+ sum without (mode) (rate(other_metric[$__rate_interval])) or vector(0)')
    assert metric_names(expr) == {"progset_a", "progset_b", "other_metric"}
    assert metric_names('label_values(progset_c{instance=~"$instance"}, program)') == {"progset_c"}
