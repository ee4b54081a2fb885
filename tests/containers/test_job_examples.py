"""examples/workload-job.yaml run as the kubelet would run its pods: both Jobs complete.

Each container is started with the example's own args, security context, env and mounts (ConfigMap
volumes laid out as the kubelet does, the socket emptyDir shared through a host directory owned by
the fsGroup); the images named ``registry.example/...`` are the supervisor image built here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from .engine import container, run
from .podlike import configmap_volume, container_options, empty_dir

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "workload-job.yaml"


def documents() -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d}


def volumes_for(pod: dict[str, Any], tmp_path: Path) -> dict[str, Path]:
    """Host directories for the pod's ConfigMap volumes and its shared socket emptyDir."""
    docs, found = documents(), {}
    for volume in pod["volumes"]:
        if "configMap" in volume:
            data = docs["ConfigMap", volume["configMap"]["name"]]["data"]
            found[volume["name"]] = configmap_volume(tmp_path / volume["name"], data, "2026_12_01_00_00_00.1")
        elif volume["name"] == "progset-run":
            found[volume["name"]] = empty_dir(tmp_path / volume["name"], pod["securityContext"]["fsGroup"])
    return found


def probe(box: Any, path: str) -> bool:
    """The kubelet's httpGet probe, from inside the pod's network namespace."""
    done = box.exec("python3", "-c", f"import urllib.request; urllib.request.urlopen("
                                     f"'http://127.0.0.1:9127{path}', timeout=2)", check=False)
    return done.returncode == 0


def test_native_sidecar_job_completes(progset_image_names: dict[str, str], tmp_path: Path) -> None:
    pod = documents()["Job", "nightly-report"]["spec"]["template"]["spec"]
    (sidecar,) = pod["initContainers"]
    (main,) = pod["containers"]
    assert sidecar["restartPolicy"] == "Always" and sidecar["startupProbe"]["httpGet"]["path"] == "/readyz"
    image = progset_image_names["supervisor"]
    volumes = volumes_for(pod, tmp_path)
    options = ["--network", "none", *container_options(pod, sidecar, volumes)]
    with container(image, *sidecar["args"], options=options) as box:
        deadline = time.monotonic() + 90
        while not probe(box, "/readyz"):  # the startupProbe: the main container starts after it
            assert time.monotonic() < deadline, "\n".join(box.output.lines)
            time.sleep(0.2)
        box.wait_for(r"cache warm")
        done = run("run", "--rm", "--network", "none", *container_options(pod, main, volumes),
                   "--entrypoint", main["command"][0], image, *main["command"][1:], check=False, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "cache-warmer" in done.stdout and "report built" in done.stdout
        # The main container ended: the kubelet stops the sidecar, which must exit 0 within the grace period.
        exited, took = box.stop(grace=pod["terminationGracePeriodSeconds"])
        assert exited.code == 0, exited.logs
        assert took < pod["terminationGracePeriodSeconds"]


def test_supervisor_as_the_jobs_main_container_completes_with_its_critical_program(
        progset_image_names: dict[str, str], tmp_path: Path) -> None:
    pod = documents()["Job", "report-with-helpers"]["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    (main,) = pod["containers"]
    options = ["--network", "none", *container_options(pod, main, volumes_for(pod, tmp_path))]
    with container(progset_image_names["supervisor"], *main["args"], options=options) as box:
        exited = box.wait_exit(timeout=90)
        assert exited.code == 0, exited.logs
        assert "report built" in exited.logs and "cache warm" in exited.logs
