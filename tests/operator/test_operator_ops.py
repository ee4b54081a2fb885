"""Operations: the command line, metrics, liveness, and the API permissions the operator really uses."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from progset_operator.__main__ import main, options_from, parser
from progset_operator.metrics import Metrics, serve
from progset_operator.runtime import Options

from .emulator import rbac_usage
from .fixtures import REPO, Cluster, cm_url, eventually, programset, ps_url, running

HELLO = [{"name": "hello", "command": ["echo", "hello, world"]}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


def test_run_options_map_to_kopf_scope() -> None:
    args = parser().parse_args(["run", "-n", "a", "--namespace", "b", "--standalone", "--metrics-port", "0",
                                "--liveness", "http://0.0.0.0:8080/healthz"])
    options = options_from(args)
    assert options == Options(namespaces=("a", "b"), standalone=True, liveness="http://0.0.0.0:8080/healthz",
                              metrics_port=0)
    assert not options.clusterwide
    assert options_from(parser().parse_args(["run"])).clusterwide
    assert options_from(parser().parse_args(["run", "-A"])).clusterwide


def test_namespace_and_all_namespaces_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", "-n", "a", "--all-namespaces"])
    assert exit_.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_unreadable_kubeconfig_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    assert main(["run", "--standalone", "--metrics-port", "0"]) == 2
    assert "cannot load kubeconfig" in capsys.readouterr().err


async def test_rbac_usage_of_a_clusterwide_operator(operator, cluster: Cluster, emulator) -> None:
    await cluster.create(programset("web", HELLO, configMapName="first"))
    await eventually(lambda: (cluster.programset("web") or {}).get("status"))
    await cluster.patch(cm_url("default", "first"), {"data": {"programs.json": "tampered"}})
    await eventually(lambda: cluster.configmap("first")["data"]["programs.json"] != "tampered")
    await cluster.patch(ps_url("default", "web"), {"spec": {"configMapName": "second"}})
    await eventually(lambda: cluster.configmap("second") and cluster.configmap("first") is None)
    await eventually(lambda: ("create", "events", True) in rbac_usage(emulator))
    await asyncio.sleep(0.1)
    assert rbac_usage(emulator) == {
        ("list", "programsets.progset.io", False), ("watch", "programsets.progset.io", False),
        ("get", "programsets.progset.io", True), ("patch", "programsets.progset.io", True),
        ("patch", "programsets.progset.io/status", True),
        ("list", "configmaps", False), ("watch", "configmaps", False), ("get", "configmaps", True),
        ("create", "configmaps", True), ("patch", "configmaps", True), ("delete", "configmaps", True),
        ("create", "events", True),
        ("list", "customresourcedefinitions.apiextensions.k8s.io", False),
        ("watch", "customresourcedefinitions.apiextensions.k8s.io", False),
    }


async def test_rbac_usage_of_a_namespaced_operator(emulator, kubeconfig, cluster: Cluster) -> None:
    async with running(emulator, Options(standalone=True, namespaces=("team-a",))):
        await cluster.create(programset("web", HELLO, namespace="team-a"))
        await eventually(lambda: (cluster.programset("web", "team-a") or {}).get("status"))
        await eventually(lambda: ("create", "events", True) in rbac_usage(emulator))
    used = rbac_usage(emulator)
    assert {(verb, res) for verb, res, namespaced in used if not namespaced} == {
        ("list", "namespaces"), ("watch", "namespaces"),
        ("list", "customresourcedefinitions.apiextensions.k8s.io"),
        ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
    }
    assert {("list", "programsets.progset.io", True), ("watch", "configmaps", True)} <= used


async def test_metrics_endpoint_serves_valid_prometheus_text(operator, cluster: Cluster) -> None:
    server, _ = serve(operator.metrics, 0, "127.0.0.1")
    try:
        await cluster.create(programset("web", HELLO))
        await eventually(lambda: operator.metrics.value("progset_operator_reconciles_total", {"result": "created"}))
        status, text = await asyncio.to_thread(fetch, f"http://127.0.0.1:{server.server_port}/metrics")
    finally:
        server.shutdown()
        server.server_close()
    assert status == 200
    assert 'progset_operator_reconciles_total{result="created"} 1.0' in text
    assert 'progset_operator_programsets{valid="true"} 1.0' in text
    assert "progset_operator_reconcile_duration_seconds_bucket" in text
    promtool = shutil.which("promtool")
    if promtool:  # installed by .ci/run; the assertions above hold either way
        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_metrics_start_at_zero_for_every_result() -> None:
    metrics = Metrics()
    for result in ("created", "updated", "unchanged", "invalid", "conflict", "error"):
        assert metrics.registry.get_sample_value("progset_operator_reconciles_total", {"result": result}) == 0
    assert metrics.registry.get_sample_value("progset_operator_programsets", {"valid": "false"}) == 0


async def test_liveness_endpoint_reports_programsets(emulator, kubeconfig, cluster: Cluster) -> None:
    url = f"http://127.0.0.1:{free_port()}/healthz"
    async with running(emulator, Options(standalone=True, liveness=url)):
        await cluster.create(programset("web", HELLO))
        await eventually(lambda: (cluster.programset("web") or {}).get("status"))
        status, text = await asyncio.to_thread(fetch, url)
    assert status == 200
    assert json.loads(text)["programsets"] == {"valid": 1, "invalid": 0}


async def test_command_line_operator_renders_and_stops_cleanly(emulator, kubeconfig, cluster: Cluster) -> None:
    port = free_port()
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONPATH": str(REPO / "operator")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "progset_operator", "run", "--standalone", "--metrics-port", str(port),
        "--metrics-address", "127.0.0.1", "--log-format", "plain",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        await cluster.create(programset("web", HELLO))
        await eventually(lambda: cluster.configmap("web-programs"), timeout=15)
        created = 'progset_operator_reconciles_total{result="created"} 1.0'
        text = ""
        for _ in range(100):  # the counter is bumped just after the ConfigMap is written
            _, text = await asyncio.to_thread(fetch, f"http://127.0.0.1:{port}/metrics")
            if created in text:
                break
            await asyncio.sleep(0.02)
        assert created in text
        assert "process_resident_memory_bytes" in text
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(proc.communicate(), 15)
    log = output.decode()
    assert proc.returncode == 0, log
    assert "serving ProgramSets in all namespaces (standalone)" in log
    assert "ProgramSet default/web: created ConfigMap web-programs" in log
