"""The Kubernetes Pod Security Standards, "restricted" profile (baseline included), as a checker for tests.

Transcribed from the Pod Security Standards document (kubernetes.io/docs/concepts/security/
pod-security-standards/, policy version "latest"): each control below names its row of the document's
tables. :func:`restricted_violations` returns one line per violated control and field, like the
PodSecurity admission plugin's messages; an empty list means the pod is admitted under ``enforce:
restricted``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

BASELINE_CAPABILITIES = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                         "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes"}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret", "image"}
SECCOMP_ALLOWED = {"RuntimeDefault", "Localhost"}


def containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(field path, container) of every container type the standard covers."""
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for i, container in enumerate(spec.get(key) or []):
            yield f"spec.{key}[{i}]", container


def _baseline(pod: Mapping[str, Any]) -> Iterator[str]:
    spec = pod.get("spec") or {}
    pod_sc = spec.get("securityContext") or {}
    # HostProcess
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        yield "HostProcess: spec.securityContext.windowsOptions.hostProcess must be false"
    # Host Namespaces
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            yield f"Host Namespaces: spec.{key} must be false"
    # HostPath Volumes
    for i, volume in enumerate(spec.get("volumes") or []):
        if "hostPath" in volume:
            yield f"HostPath Volumes: spec.volumes[{i}].hostPath is forbidden"
    # Sysctls
    for i, sysctl in enumerate(pod_sc.get("sysctls") or []):
        if sysctl.get("name") not in SAFE_SYSCTLS:
            yield f"Sysctls: spec.securityContext.sysctls[{i}] {sysctl.get('name')!r} is not a safe sysctl"
    # AppArmor (field and annotations), SELinux, Seccomp at pod level
    yield from _apparmor("spec.securityContext", pod_sc)
    for key, value in ((pod.get("metadata") or {}).get("annotations") or {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
                value == "runtime/default" or value.startswith("localhost/")):
            yield f"AppArmor: annotation {key}={value!r} is forbidden"
    yield from _selinux("spec.securityContext", pod_sc)
    if (pod_sc.get("seccompProfile") or {}).get("type") == "Unconfined":
        yield "Seccomp: spec.securityContext.seccompProfile.type must not be Unconfined"
    for where, container in containers(spec):
        sc = container.get("securityContext") or {}
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            yield f"HostProcess: {where}.securityContext.windowsOptions.hostProcess must be false"
        if sc.get("privileged"):
            yield f"Privileged Containers: {where}.securityContext.privileged must be false"
        added = set((sc.get("capabilities") or {}).get("add") or [])
        if added - BASELINE_CAPABILITIES:
            yield f"Capabilities: {where}.securityContext.capabilities.add {sorted(added - BASELINE_CAPABILITIES)}"
        for j, port in enumerate(container.get("ports") or []):
            if port.get("hostPort"):
                yield f"Host Ports: {where}.ports[{j}].hostPort must be 0 or unset"
        yield from _apparmor(f"{where}.securityContext", sc)
        yield from _selinux(f"{where}.securityContext", sc)
        if sc.get("procMount") not in (None, "Default"):
            yield f"/proc Mount Type: {where}.securityContext.procMount must be Default"
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            yield f"Seccomp: {where}.securityContext.seccompProfile.type must not be Unconfined"


def _apparmor(where: str, sc: Mapping[str, Any]) -> Iterator[str]:
    kind = (sc.get("appArmorProfile") or {}).get("type")
    if kind not in (None, "RuntimeDefault", "Localhost"):
        yield f"AppArmor: {where}.appArmorProfile.type {kind!r} is forbidden"


def _selinux(where: str, sc: Mapping[str, Any]) -> Iterator[str]:
    options = sc.get("seLinuxOptions") or {}
    if options.get("type", "") not in SELINUX_TYPES:
        yield f"SELinux: {where}.seLinuxOptions.type {options['type']!r} is forbidden"
    for key in ("user", "role"):
        if options.get(key):
            yield f"SELinux: {where}.seLinuxOptions.{key} must be unset"


def _restricted(pod: Mapping[str, Any]) -> Iterator[str]:
    spec = pod.get("spec") or {}
    pod_sc = spec.get("securityContext") or {}
    # Volume Types
    for i, volume in enumerate(spec.get("volumes") or []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            yield f"Volume Types: spec.volumes[{i}] uses {sorted(kinds - RESTRICTED_VOLUMES)}"
    # Running as Non-root user: runAsUser 0 is forbidden anywhere
    if pod_sc.get("runAsUser") == 0:
        yield "Running as Non-root user: spec.securityContext.runAsUser must not be 0"
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in SECCOMP_ALLOWED:
        yield f"Seccomp: spec.securityContext.seccompProfile.type {pod_seccomp!r} is forbidden"
    for where, container in containers(spec):
        sc = container.get("securityContext") or {}
        # Privilege Escalation: must be set to false
        if sc.get("allowPrivilegeEscalation") is not False:
            yield f"Privilege Escalation: {where}.securityContext.allowPrivilegeEscalation must be false"
        # Running as Non-root: the container's own value, else the pod's, must be true
        non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        if non_root is not True:
            yield f"Running as Non-root: {where}.securityContext.runAsNonRoot (or the pod's) must be true"
        if sc.get("runAsUser") == 0:
            yield f"Running as Non-root user: {where}.securityContext.runAsUser must not be 0"
        # Seccomp: the container's type, else the pod's, must be RuntimeDefault or Localhost
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in SECCOMP_ALLOWED:
            yield f"Seccomp: {where}.securityContext.seccompProfile.type (or the pod's) must be RuntimeDefault " \
                  f"or Localhost, not {seccomp!r}"
        # Capabilities: drop ALL, add at most NET_BIND_SERVICE
        capabilities = sc.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            yield f"Capabilities: {where}.securityContext.capabilities.drop must include ALL"
        added = set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}
        if added:
            yield f"Capabilities: {where}.securityContext.capabilities.add {sorted(added)} is forbidden"


def restricted_violations(pod: Mapping[str, Any]) -> list[str]:
    """Every way ``pod`` (a Pod, or a pod template: metadata + spec) breaks the restricted profile."""
    return [*_baseline(pod), *_restricted(pod)]
