"""The chart's PrometheusRule, rendered by Helm's SDK and run by ``promtool test rules``.

Each alert is evaluated by Prometheus' own rule engine (promtool) on series shaped like a PodMonitor
scrape of real supervisors: it must fire when the condition lasts, and stay silent just before, and
for the look-alikes it is not about. Thresholds come from chart values, so non-default values are
tested too. Debian's ``prometheus`` package provides promtool; without it these tests skip, unless
``PROGSET_REQUIRE_PEERS=1`` (CI) makes it a failure.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import pytest
import yaml

from progset_supervisor.http.metrics import FAMILIES

from ..supervisor.peers import require
from .helpers import CHART_DIR, NAMESPACE, RELEASE, REPO, by_kind, objects, render, validate_object

JOB = f"{NAMESPACE}/{RELEASE}-supervisors"  # prometheus-operator's job label for the chart's PodMonitor
POD = {"namespace": "shop", "pod": "web-0", "instance": "10.0.0.7:9127", "job": JOB}
DASHBOARD = CHART_DIR / "dashboards" / "progset.json"


def rule_spec(values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The PrometheusRule's spec with the alerts switched on (plus ``values``), validated."""
    merged: dict[str, Any] = {"prometheusRule": {"enabled": True}}
    for key, value in (values or {}).items():
        merged[key] = {**merged.get(key, {}), **value}
    (rule,) = by_kind(objects(merged), "PrometheusRule")
    validate_object(rule)
    return rule["spec"]


def alerts(spec: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for group in spec["groups"] for r in group["rules"]}


def promtool_test(tmp_path: Path, spec: Mapping[str, Any], tests: list[dict[str, Any]]) -> None:
    """``promtool check rules`` then ``promtool test rules`` on the rendered groups; fail with its report."""
    promtool = require("promtool", "prometheus")
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": spec["groups"]}))
    checked = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    unit = tmp_path / "test.yaml"
    unit.write_text(yaml.safe_dump({"rule_files": [rules.name], "evaluation_interval": "1m", "tests": tests}))
    ran = subprocess.run([promtool, "test", "rules", unit.name], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    body = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return {"series": f"{name}{{{body}}}", "values": values}


def fired(alertname: str, eval_time: str, *expected: dict[str, Any]) -> dict[str, Any]:
    return {"eval_time": eval_time, "alertname": alertname, "exp_alerts": list(expected)}


def annotations(spec: Mapping[str, Any], alert: str, **labels: str) -> dict[str, str]:
    """The alert's annotations with ``{{ $labels.x }}`` filled in (``$value`` is filled by the caller)."""
    out = {}
    for key, text in alerts(spec)[alert]["annotations"].items():
        for label, value in labels.items():
            text = text.replace(f"{{{{ $labels.{label} }}}}", value)
        out[key] = text
    return out


# -- the object --------------------------------------------------------------------------------------------


def test_off_by_default_and_on_with_one_value() -> None:
    assert by_kind(objects(), "PrometheusRule") == []
    spec = rule_spec({"prometheusRule": {"labels": {"release": "kube-prometheus-stack"}}})
    assert sorted(alerts(spec)) == ["ProgsetConfigSkew", "ProgsetProgramCrashLooping", "ProgsetProgramFatal",
                                    "ProgsetProgramNotReady", "ProgsetReloadFailed", "ProgsetSupervisorDown"]
    (rule,) = by_kind(objects({"prometheusRule": {"enabled": True, "namespace": "monitoring",
                                                  "labels": {"release": "kps"}}}), "PrometheusRule")
    assert rule["metadata"]["namespace"] == "monitoring" and rule["metadata"]["labels"]["release"] == "kps"


def test_bad_threshold_values_are_refused_by_the_schema() -> None:
    for bad, where in (({"crashLooping": {"restarts": "three"}}, "/prometheusRule/crashLooping/restarts"),
                       ({"notReady": {"for": "ten minutes"}}, "/prometheusRule/notReady/for"),
                       ({"fatal": {"after": "1m"}}, "after"),
                       ({"supervisorSelector": "{job=\"x\"}"}, "/prometheusRule/supervisorSelector")):
        with pytest.raises(helm_python.HelmValuesError) as error:
            render({"prometheusRule": {"enabled": True, **bad}})
        assert where in str(error.value)


def test_alert_labels_and_severities_come_from_values(tmp_path: Path) -> None:
    spec = rule_spec({"prometheusRule": {"alertLabels": {"team": "edge"}, "fatal": {"severity": "page"}}})
    for name, rule in alerts(spec).items():
        assert rule["labels"]["team"] == "edge", name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
    assert alerts(spec)["ProgsetProgramFatal"]["labels"]["severity"] == "page"
    assert alerts(spec)["ProgsetSupervisorDown"]["labels"]["severity"] == "critical"
    promtool_test(tmp_path, spec, [])  # still valid rules


# -- each alert, through promtool ------------------------------------------------------------------------


def crash_loop_tests(spec: Mapping[str, Any], restarts: int) -> list[dict[str, Any]]:
    # "api" restarts once a minute from t=0; "calm" restarted twice, long ago.
    labels = {**POD, "program": "api"}
    expected = {"exp_labels": {**labels, "severity": "warning"},
                "exp_annotations": annotations(spec, "ProgsetProgramCrashLooping", **labels)}
    value = restarts + 1
    expected["exp_annotations"]["description"] = expected["exp_annotations"]["description"].replace(
        "{{ $value | humanize }}", str(value))
    return [{
        "interval": "1m",
        "input_series": [series("progset_program_restarts_total", "0+1x30", **labels),
                         series("progset_program_restarts_total", "0 1 2 2x30", **POD, program="calm")],
        "alert_rule_test": [fired("ProgsetProgramCrashLooping", f"{restarts}m"),  # exactly the threshold: silent
                            fired("ProgsetProgramCrashLooping", f"{value}m", expected)],
    }]


def test_crash_looping_fires_above_the_restart_threshold(tmp_path: Path) -> None:
    spec = rule_spec()
    assert alerts(spec)["ProgsetProgramCrashLooping"]["expr"] == "increase(progset_program_restarts_total[15m]) > 3"
    promtool_test(tmp_path, spec, crash_loop_tests(spec, 3))


def test_crash_looping_threshold_and_window_are_values(tmp_path: Path) -> None:
    spec = rule_spec({"prometheusRule": {"crashLooping": {"restarts": 10, "window": "20m"}}})
    assert alerts(spec)["ProgsetProgramCrashLooping"]["expr"] == "increase(progset_program_restarts_total[20m]) > 10"
    assert "in the last 20m" in alerts(spec)["ProgsetProgramCrashLooping"]["annotations"]["description"]
    promtool_test(tmp_path, spec, crash_loop_tests(spec, 10))


def test_fatal_fires_after_its_for_duration(tmp_path: Path) -> None:
    spec = rule_spec({"prometheusRule": {"fatal": {"for": "3m"}}})
    labels = {**POD, "program": "api", "state": "FATAL"}
    expected = {"exp_labels": {**labels, "severity": "critical"},
                "exp_annotations": annotations(spec, "ProgsetProgramFatal", **labels)}
    promtool_test(tmp_path, spec, [{
        "interval": "1m",
        "input_series": [series("progset_program_state", "0 0 1x20", **labels),  # FATAL from 2m
                         series("progset_program_state", "1x20", **POD, program="api", state="STOPPED"),
                         series("progset_program_state", "0x20", **POD, program="ok", state="FATAL")],
        "alert_rule_test": [fired("ProgsetProgramFatal", "4m"),  # FATAL for 2m of 3m: pending only
                            fired("ProgsetProgramFatal", "5m", expected)],
    }])


def test_not_ready_fires_only_for_programs_meant_to_run(tmp_path: Path) -> None:
    spec = rule_spec()
    states = ("STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "REPLACING", "EXITED", "FATAL")
    input_series = []
    # web: RUNNING, never ready. done: EXITED (finished). broken: FATAL (its own alert). stopped: STOPPED
    # by command. ok: RUNNING and ready. flaky: ready again at 9m.
    for program, state, ready in (("web", "RUNNING", "0x30"), ("done", "EXITED", "0x30"), ("broken", "FATAL", "0x30"),
                                  ("stopped", "STOPPED", "0x30"), ("ok", "RUNNING", "1x30"),
                                  ("flaky", "BACKOFF", "0x8 1x22")):
        input_series.append(series("progset_program_ready", ready, **POD, program=program))
        input_series.extend(series("progset_program_state", "1x30" if s == state else "0x30", **POD, program=program,
                                   state=s) for s in states)
    labels = {**POD, "program": "web"}
    expected = {"exp_labels": {**labels, "severity": "warning"},
                "exp_annotations": annotations(spec, "ProgsetProgramNotReady", **labels)}
    assert "for 10m" in expected["exp_annotations"]["description"]
    promtool_test(tmp_path, spec, [{
        "interval": "1m", "input_series": input_series,
        "alert_rule_test": [fired("ProgsetProgramNotReady", "9m"), fired("ProgsetProgramNotReady", "10m", expected),
                            fired("ProgsetProgramNotReady", "25m", expected)],
    }])


def test_reload_failed_fires_within_its_window_and_clears_after(tmp_path: Path) -> None:
    spec = rule_spec({"prometheusRule": {"reloadFailed": {"window": "10m"}}})
    expected = {"exp_labels": {**POD, "result": "failure", "severity": "warning"},
                "exp_annotations": annotations(spec, "ProgsetReloadFailed", **POD)}
    promtool_test(tmp_path, spec, [{
        "interval": "1m",
        "input_series": [series("progset_reloads_total", "0 0 0 1x30", **POD, result="failure"),  # fails at 3m
                         series("progset_reloads_total", "0+1x30", **POD, result="success"),
                         series("progset_reloads_total", "0x30", **{**POD, "pod": "web-1"}, result="failure")],
        "alert_rule_test": [fired("ProgsetReloadFailed", "2m"), fired("ProgsetReloadFailed", "4m", expected),
                            fired("ProgsetReloadFailed", "12m", expected), fired("ProgsetReloadFailed", "14m")],
    }])


def test_config_skew_fires_when_it_outlasts_a_rollout(tmp_path: Path) -> None:
    spec = rule_spec()
    info = "progset_config_info"
    pods = [
        # shop/web: web-2 never takes generation 2's config: skew from 0m.
        series(info, "1x40", **{**POD, "pod": "web-0"}, source="shop/web@2", hash="sha256:bbb"),
        series(info, "1x40", **{**POD, "pod": "web-1"}, source="shop/web@2", hash="sha256:bbb"),
        series(info, "1x40", **{**POD, "pod": "web-2"}, source="shop/web@1", hash="sha256:aaa"),
        # shop/api: a rollout that completes in 4 minutes (api-0's old series goes stale).
        series(info, "1x3 stale", **{**POD, "pod": "api-0"}, source="shop/api@1", hash="sha256:111"),
        series(info, "_x4 1x36", **{**POD, "pod": "api-0"}, source="shop/api@2", hash="sha256:222"),
        series(info, "1x40", **{**POD, "pod": "api-1"}, source="shop/api@2", hash="sha256:222"),
        # same hash from different generations (a change that did not alter the programs): no skew
        series(info, "1x40", **{**POD, "pod": "db-0"}, source="shop/db@3", hash="sha256:ddd"),
        series(info, "1x40", **{**POD, "pod": "db-1"}, source="shop/db@4", hash="sha256:ddd"),
        # a supervisor run from a file, not a ProgramSet: never part of a ProgramSet's skew
        series(info, "1x40", **{**POD, "pod": "plain"}, source="/etc/progset", hash="sha256:eee"),
    ]
    labels = {"namespace": "shop", "programset": "web"}
    expected = {"exp_labels": {**labels, "severity": "warning"},
                "exp_annotations": annotations(spec, "ProgsetConfigSkew", **labels)}
    expected["exp_annotations"]["description"] = expected["exp_annotations"]["description"].replace(
        "{{ $value }}", "2")
    promtool_test(tmp_path, spec, [{
        "interval": "1m", "input_series": pods,
        "alert_rule_test": [fired("ProgsetConfigSkew", "14m"), fired("ProgsetConfigSkew", "15m", expected),
                            fired("ProgsetConfigSkew", "30m", expected)],
    }])


def test_supervisor_down_uses_the_podmonitor_job_or_a_selector(tmp_path: Path) -> None:
    spec = rule_spec()
    assert alerts(spec)["ProgsetSupervisorDown"]["expr"] == f'up{{job="{JOB}"}} == 0'
    expected = {"exp_labels": {**POD, "severity": "critical"},
                "exp_annotations": annotations(spec, "ProgsetSupervisorDown", **POD)}
    up = [series("up", "1 1 0x30", **POD),  # down from 2m
          series("up", "0x30", **{**POD, "job": "node-exporter", "pod": "node-0"}),  # not a supervisor
          series("up", "1x30", **{**POD, "pod": "web-1"})]
    promtool_test(tmp_path, spec, [{
        "interval": "1m", "input_series": up,
        "alert_rule_test": [fired("ProgsetSupervisorDown", "6m"), fired("ProgsetSupervisorDown", "7m", expected)],
    }])
    # Scraped by a config of your own: the selector names those targets.
    mine = {**POD, "job": "kubernetes-pods", "container": "progset"}
    spec = rule_spec({"prometheusRule": {"supervisorSelector": 'job="kubernetes-pods", container="progset"',
                                         "supervisorDown": {"for": "2m"}}})
    expected = {"exp_labels": {**mine, "severity": "critical"},
                "exp_annotations": annotations(spec, "ProgsetSupervisorDown", **mine)}
    promtool_test(tmp_path, spec, [{
        "interval": "1m",
        "input_series": [series("up", "1 1 0x30", **mine), series("up", "0x30", **{**mine, "container": "app"})],
        "alert_rule_test": [fired("ProgsetSupervisorDown", "3m"), fired("ProgsetSupervisorDown", "4m", expected)],
    }])


def test_supervisor_down_follows_the_podmonitor_namespace() -> None:
    spec = rule_spec({"podMonitor": {"namespace": "monitoring"}})
    assert alerts(spec)["ProgsetSupervisorDown"]["expr"] == f'up{{job="monitoring/{RELEASE}-supervisors"}} == 0'


# -- metric names: the rules and the dashboard use only what the supervisor exports ----------------------

PROMQL_WORDS = {"sum", "max", "min", "count", "avg", "by", "without", "on", "ignoring", "group_left", "group_right",
                "rate", "irate", "increase", "time", "or", "and", "unless", "vector", "label_values", "label_replace",
                "bool", "topk", "bottomk"}


def exported_names() -> set[str]:
    """Every series name the supervisor's exporter writes (a histogram's as its three series)."""
    names: set[str] = set()
    for family in FAMILIES:
        if family.kind == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
        else:
            names.add(family.name)
    return names


def metric_names(expr: str) -> set[str]:
    """Identifiers of ``expr`` that name metrics: strings, label matchers, ranges, grouping lists,
    label_values' label argument, variables and numbers removed; what remains is a metric or a keyword."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', " ", expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"(label_values\(\s*[a-zA-Z_:][\w:]*)\s*,\s*\w+\s*\)", r"\1)", expr)
    expr = re.sub(r"\$\w+", " ", expr)
    return {t for t in re.findall(r"[a-zA-Z_:][\w:]*", expr) if t not in PROMQL_WORDS}


def test_metric_name_extraction_sees_every_metric() -> None:
    expr = ('count by (a) (label_replace(progset_a{x="1"}, "programset", "$1", "source", "[^/]+/(.+)@[0-9]+")) '
            '+ sum without (mode) (rate(other_metric[$__rate_interval])) or vector(0) - time()')
    assert metric_names(expr) == {"progset_a", "other_metric"}
    assert metric_names('label_values(progset_c{namespace=~"$namespace"}, pod)') == {"progset_c"}


def test_alerts_use_only_metrics_the_supervisor_exports() -> None:
    used = set().union(*(metric_names(r["expr"]) for r in alerts(rule_spec()).values()))
    assert used - {"up"} <= exported_names(), used - exported_names()
    assert {"progset_program_restarts_total", "progset_program_state", "progset_program_ready",
            "progset_reloads_total", "progset_config_info", "up"} <= used


def dashboard_panels() -> list[dict[str, Any]]:
    return json.loads(DASHBOARD.read_text())["panels"]


def test_every_dashboard_panel_queries_metrics_the_supervisor_exports() -> None:
    exported = exported_names()
    for panel in dashboard_panels():
        exprs = [t["expr"] for t in panel["targets"]]
        assert exprs, panel["title"]
        for expr in exprs:
            used = metric_names(expr)
            assert used and used <= exported, (panel["title"], used - exported)
            # every panel follows the namespace and pod variables
            assert 'namespace=~"$namespace"' in expr and 'pod=~"$pod"' in expr, (panel["title"], expr)
    variables = json.loads(DASHBOARD.read_text())["templating"]["list"]
    for variable in variables:
        if variable["type"] == "query":
            assert metric_names(variable["query"]["query"]) <= exported, variable["name"]
    assert [v["name"] for v in variables] == ["datasource", "namespace", "pod", "instance", "program"]


def test_dashboard_has_readiness_and_config_skew_panels() -> None:
    by_title = {p["title"]: p for p in dashboard_panels()}
    assert "progset_program_ready" in by_title["Readiness"]["targets"][0]["expr"]
    skew = by_title["ProgramSets with config skew"]["targets"][0]["expr"]
    # the same grouping as the ProgsetConfigSkew alert
    alert = alerts(rule_spec())["ProgsetConfigSkew"]["expr"]
    assert "count by (namespace, programset) (count by (namespace, programset, hash) (" in skew
    assert alert.startswith("count by (namespace, programset) (count by (namespace, programset, hash) (")
    assert metric_names(by_title["Pods per config hash"]["targets"][0]["expr"]) == {"progset_config_info"}
    ids = [p["id"] for p in dashboard_panels()]
    assert len(ids) == len(set(ids))


def test_prometheus_rule_schema_check_is_strict() -> None:
    """The schema :func:`validate_object` uses for PrometheusRule refuses a misspelt field."""
    (rule,) = by_kind(objects({"prometheusRule": {"enabled": True}}), "PrometheusRule")
    broken = json.loads(json.dumps(rule))
    broken["spec"]["groups"][0]["rules"][0]["exprs"] = "1"
    with pytest.raises(jsonschema.ValidationError):
        validate_object(broken)


def test_readme_alerts_values_example_renders_and_every_alert_is_documented() -> None:
    """The README's alerts.yaml example is a valid values file, and its table names every alert."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("\n### Alerts\n"):]
    section = section[:section.index("\n### ", 1)]
    example = section[section.index("```yaml\n") + len("```yaml\n"):]
    example = example[:example.index("```")]
    values = yaml.safe_load(example)
    spec = rule_spec(values)
    assert alerts(spec)["ProgsetProgramNotReady"]["for"] == values["prometheusRule"]["notReady"]["for"]
    for name, rule in alerts(rule_spec()).items():
        assert f"| `{name}` | {rule['labels']['severity']} |" in section, name
