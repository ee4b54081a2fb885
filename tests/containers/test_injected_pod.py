"""The pod the injection webhook makes, run as containers: it really works.

The pod spec comes from the operator's own injection (the webhook's code path) and is translated
field by field into ``docker run`` options, as the kubelet would run it: one network namespace for
the pod (the app container joins the sidecar's), the ProgramSet's ConfigMap rendered by the operator
and laid out as the kubelet projects it, the emptyDirs owned by the pod's fsGroup, each container's
user, groups, read-only root filesystem, capabilities and environment from its securityContext and
spec. Then, as the kubelet does: the native sidecar starts first and its startupProbe must pass before
the app container starts; the app container reaches the Master CLI through the injected mount and
``HAPROXY_MASTER_CLI``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from progset_operator.inject import Defaults, inject
from progset_operator.render import DATA_KEY, render

from .engine import container, run
from .podlike import configmap_volume, empty_dir

PROGRAMSET = {"apiVersion": "progset.io/v1alpha1", "kind": "ProgramSet",
              "metadata": {"name": "hello", "namespace": "default", "uid": "0e5a1c5e-0000-4000-8000-000000000001"},
              "spec": {"programs": [{"name": "worker", "command": ["sh", "-c", "echo worker up; exec sleep 100000"]},
                                    {"name": "helper", "command": ["sleep", "100000"]}]}}
POD_UID = 1000


def app_pod(image: str) -> dict[str, Any]:
    """The user's pod: one label, a restricted securityContext, and an app that asks the Master CLI."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "labels": {"progset.io/programset": "hello"}},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": POD_UID, "runAsGroup": POD_UID,
                                "fsGroup": POD_UID, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "app", "image": image,
                # The app only knows HAPROXY_MASTER_CLI, as HAProxy tooling does.
                "command": ["progsetctl", "show", "programs"],
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }


def volumes_on_host(pod: dict[str, Any], root: Path, configmaps: dict[str, dict[str, str]]) -> dict[str, Path]:
    """Each pod volume made on the host as the kubelet makes it."""
    fs_group = pod["spec"]["securityContext"]["fsGroup"]
    made = {}
    for volume in pod["spec"]["volumes"]:
        path = root / volume["name"]
        if "configMap" in volume:
            files = configmaps[volume["configMap"]["name"]]
            made[volume["name"]] = configmap_volume(path, files, "2026_12_04_17_00_00.1")
        else:
            assert "emptyDir" in volume, volume
            made[volume["name"]] = empty_dir(path, fs_group)
    return made


def docker_options(pod: dict[str, Any], spec: dict[str, Any], volumes: dict[str, Path]) -> list[str]:
    """``docker run`` options for one container of the pod, from its spec and the pod's securityContext."""
    pod_context = pod["spec"].get("securityContext") or {}
    context = {**pod_context, **(spec.get("securityContext") or {})}
    options = ["--user", f"{context['runAsUser']}:{context['runAsGroup']}"]
    if "fsGroup" in pod_context:
        options += ["--group-add", str(pod_context["fsGroup"])]
    if context.get("readOnlyRootFilesystem"):
        options.append("--read-only")
    if "ALL" in (context.get("capabilities") or {}).get("drop", []):
        options += ["--cap-drop", "ALL"]
    if context.get("allowPrivilegeEscalation") is False:
        options += ["--security-opt", "no-new-privileges"]
    for variable in spec.get("env") or []:
        options += ["-e", f"{variable['name']}={variable['value']}"]
    for mount in spec.get("volumeMounts") or []:
        assert "subPath" not in mount
        suffix = ":ro" if mount.get("readOnly") else ""
        options += ["-v", f"{volumes[mount['name']]}:{mount['mountPath']}{suffix}"]
    if spec.get("command"):
        options += ["--entrypoint", spec["command"][0]]
    return options


def probe(sidecar: Any, spec: dict[str, Any], probe_name: str) -> bool:
    """The kubelet's httpGet probe, sent inside the pod's network namespace."""
    get = spec[probe_name]["httpGet"]
    port = {p["name"]: p["containerPort"] for p in spec["ports"]}[get["port"]]
    code = ("import sys, urllib.request\n"
            f"try: sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{port}{get['path']}', timeout=2).status "
            "== 200 else 1)\n"
            "except Exception: sys.exit(1)\n")
    return sidecar.exec("python3", "-c", code, check=False).returncode == 0


def test_the_injected_pod_runs_and_the_app_reaches_the_master_cli(progset_image_names: dict[str, str],
                                                                   tmp_path: Path) -> None:
    image = progset_image_names["supervisor"]
    rendered = render(PROGRAMSET)
    configmaps = {rendered.name: {DATA_KEY: rendered.body["data"][DATA_KEY]}}
    pod = inject(app_pod(image), rendered.name, Defaults(image=image))
    (sidecar_spec,) = pod["spec"]["initContainers"]
    assert sidecar_spec["restartPolicy"] == "Always"
    (app_spec,) = pod["spec"]["containers"]
    volumes = volumes_on_host(pod, tmp_path, configmaps)

    sidecar_options = ["--network", "none", *docker_options(pod, sidecar_spec, volumes)]
    with container(sidecar_spec["image"], *sidecar_spec["args"], options=sidecar_options) as sidecar:
        # The kubelet starts the next container only once the sidecar's startupProbe passed.
        deadline = time.monotonic() + 90
        while not probe(sidecar, sidecar_spec, "startupProbe"):
            assert time.monotonic() < deadline, "the sidecar's startupProbe never passed:\n" + run(
                "logs", sidecar.name, check=False).stdout
            time.sleep(0.5)
        assert probe(sidecar, sidecar_spec, "livenessProbe")
        sidecar.wait_for(r"worker up")

        # The app container: same network namespace (a pod), its own user, the injected mount and variable.
        app_options = ["--network", f"container:{sidecar.name}", *docker_options(pod, app_spec, volumes)]
        done = run("run", "--rm", *app_options, app_spec["image"], *app_spec["command"][1:], check=False,
                   timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "worker" in done.stdout and "helper" in done.stdout, done.stdout
        # The socket the app used is the supervisor's, mode 660, in the pod's group.
        listing = sidecar.exec("stat", "-c", "%a %g", "/var/run/progset/master.sock").stdout.split()
        assert listing == ["660", str(POD_UID)]
        exited, _ = sidecar.stop(grace=20)
        assert exited.code == 0, exited.logs
