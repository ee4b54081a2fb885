"""The operator image run as the chart's Deployment runs it, against the Kubernetes emulator.

The container gets the Deployment's user, read-only root filesystem, dropped capabilities, env
(``POD_ID`` resolved as the downward API would), args and emptyDir mounts, all read from the chart
rendered by Helm. It shares the host's network (loopback only) to reach the emulator, so the chart is
given free ports and loopback listen addresses through its own values; the only addition is
``KUBECONFIG`` (a real pod would use its service account against an HTTPS API server).
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.helpers import objects, one
from tests.operator.fixtures import Cluster, eventually, programset

from .engine import Container
from .podlike import container_options, http_status

POD_NAME = "progset-7d9f8b6c5-x2x7q"


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.parametrize("with_pod_id", [True, False], ids=["chart-env", "without-POD_ID"])
async def test_operator_image_runs_as_the_chart_deploys_it(
        progset_image_names: dict[str, str], cluster: Cluster, emulator: Any, tmp_path: Path,
        with_pod_id: bool) -> None:
    """Starts, answers its liveness probe, renders a ProgramSet. ``without-POD_ID``: the operator's
    own start-up must not need a passwd entry for uid 65532 (kopf's default identity asks for one)."""
    health, metrics = free_ports(2)
    values = {"operator": {"healthPort": health, "metricsPort": metrics, "logFormat": "plain",
                           "extraArgs": [f"--liveness=http://127.0.0.1:{health}/healthz",
                                         "--metrics-address=127.0.0.1"]}}
    pod = one(objects(values), "Deployment")["spec"]["template"]["spec"]
    (spec,) = pod["containers"]
    assert any(e["name"] == "POD_ID" for e in spec["env"])
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": str(emulator.url).rstrip("/")}}],
        "users": [{"name": "operator", "user": {"token": "not-checked"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "operator"}}]}))
    kubeconfig.chmod(0o644)
    tmp_path.chmod(0o755)
    options = ["--network", "host", *container_options(pod, spec, {}, POD_NAME if with_pod_id else None),
               "-v", f"{kubeconfig}:/etc/kube/config:ro", "-e", "KUBECONFIG=/etc/kube/config"]
    box = await asyncio.to_thread(Container, progset_image_names["operator"], *spec["args"], options=options)
    try:
        async def probe() -> bool:
            return await asyncio.to_thread(http_status, "127.0.0.1", health, "/healthz") == 200

        deadline = asyncio.get_running_loop().time() + 90
        while not await probe():
            state = await asyncio.to_thread(box.state)
            assert state["Running"], "the operator exited:\n" + "\n".join(box.output.lines[-30:])
            assert asyncio.get_running_loop().time() < deadline, "no /healthz:\n" + "\n".join(box.output.lines)
            await asyncio.sleep(0.2)
        await cluster.create(programset("hello", [{"name": "hello", "command": ["echo", "hi"]}]))
        rendered = await eventually(lambda: cluster.configmap("hello-programs"), timeout=60)
        assert "programs.json" in rendered["data"]
        assert await asyncio.to_thread(http_status, "127.0.0.1", metrics, "/metrics") == 200
        exited, _ = await asyncio.to_thread(box.stop, 30)
        assert exited.code == 0, exited.logs
        assert "getpwuid" not in exited.logs
    finally:
        await asyncio.to_thread(box.remove)
