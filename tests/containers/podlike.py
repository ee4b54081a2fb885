"""What the kubelet gives a container, made on the host for ``docker run``: ConfigMap volumes laid out
with the ``..data`` symlink the kubelet swaps, emptyDirs owned by the pod's fsGroup, and the probes."""

from __future__ import annotations

import http.client
import os
import shutil
import time
from pathlib import Path

# HAProxy as a program under progset, reloaded by SIGUSR2 (-W master-worker): shared by the derived-image
# and bundle tests. {port} and {version} are filled per test; the answer body tells which config serves.
HAPROXY_CFG = """\
global
    master-worker
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend web
    bind 127.0.0.1:{port}
    http-request return status 200 content-type text/plain string "{version}"
"""
HAPROXY_PROGRAMS = """\
programs:
  - name: haproxy
    command: ["haproxy", "-W", "-db", "-f", "/etc/haproxy-app/haproxy.cfg"]
    onReload: signal
    reloadSignal: SIGUSR2
"""


def configmap_volume(root: Path, files: dict[str, str], stamp: str) -> Path:
    """Write ``files`` as the kubelet projects a ConfigMap (and updates it): a timestamped directory,
    ``..data`` pointing to it, replaced atomically by rename, one symlink per key through ``..data``."""
    root.mkdir(exist_ok=True)
    root.chmod(0o755)
    data = root / f"..{stamp}"
    data.mkdir(mode=0o755)
    for key, text in files.items():
        (data / key).write_text(text)
        (data / key).chmod(0o644)
    old = os.readlink(root / "..data") if (root / "..data").is_symlink() else None
    (root / "..data_tmp").symlink_to(data.name)
    os.replace(root / "..data_tmp", root / "..data")
    for key in files:
        if not (root / key).is_symlink():
            (root / key).symlink_to(f"..data/{key}")
    if old is not None:
        shutil.rmtree(root / old)
    return root


def empty_dir(path: Path, fs_group: int) -> Path:
    """An emptyDir of a pod with ``fsGroup``: group-owned by it, group-writable, setgid."""
    path.mkdir()
    os.chown(path, 0, fs_group)
    path.chmod(0o2775)
    return path


def http_status(url_host: str, port: int, path: str, timeout: float = 2.0) -> int | None:
    """The probe's HTTP status, or None when nothing answers yet."""
    connection = http.client.HTTPConnection(url_host, port, timeout=timeout)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


def wait_http(port: int, path: str, status: int = 200, timeout: float = 90.0, host: str = "127.0.0.1") -> None:
    """Probe like the kubelet (every 0.2 s here) until ``status`` answers; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = http_status(host, port, path)
        if last == status:
            return
        time.sleep(0.2)
    raise AssertionError(f"http://{host}:{port}{path} did not answer {status} within {timeout}s (last: {last})")


def http_body(port: int, path: str, host: str = "127.0.0.1") -> str | None:
    """The body of a GET, or None while nothing accepts (a program still starting, or reloading)."""
    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().read().decode()
    except ConnectionError:
        return None
    finally:
        connection.close()


def container_options(pod: dict, container: dict, volumes: dict[str, Path], pod_name: str | None = None,
                      ) -> list[str]:
    """``docker run`` options for what a pod spec asks of the kubelet for one container: the pod's user,
    group and fsGroup, the container's security context, its env (``metadata.name`` from the downward
    API as ``pod_name``; None leaves such a variable out) and its mounts (``volumes``: volume name ->
    host directory; an emptyDir not in it becomes a private tmpfs). Anything else fails the test."""
    pod_context, context = pod.get("securityContext", {}), container.get("securityContext", {})
    options: list[str] = []
    if "runAsUser" in pod_context:
        options += ["--user", f"{pod_context['runAsUser']}:{pod_context.get('runAsGroup', 0)}"]
    if "fsGroup" in pod_context:
        options += ["--group-add", str(pod_context["fsGroup"])]
    if context.get("readOnlyRootFilesystem"):
        options.append("--read-only")
    options += [arg for cap in context.get("capabilities", {}).get("drop", []) for arg in ("--cap-drop", cap)]
    if context.get("allowPrivilegeEscalation") is False:
        options += ["--security-opt", "no-new-privileges"]
    declared = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        assert "subPath" not in mount, mount
        if mount["name"] in volumes:
            suffix = ":ro" if mount.get("readOnly") else ""
            options += ["-v", f"{volumes[mount['name']]}:{mount['mountPath']}{suffix}"]
        else:
            assert "emptyDir" in declared[mount["name"]], f"no host directory for volume {mount['name']}"
            options += ["--tmpfs", mount["mountPath"]]
    for env in container.get("env", []):
        if "value" in env:
            options += ["-e", f"{env['name']}={env['value']}"]
        elif env.get("valueFrom") == {"fieldRef": {"fieldPath": "metadata.name"}}:
            if pod_name is not None:
                options += ["-e", f"{env['name']}={pod_name}"]
        else:
            raise AssertionError(f"no test support for env {env}")
    return options
