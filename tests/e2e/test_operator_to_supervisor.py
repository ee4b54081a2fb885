"""The whole loop: ProgramSet -> operator -> ConfigMap -> kubelet-style mount -> running supervisor.

The operator is the real one (kopf + our handlers, run in the test's loop exactly as the operator
tests run it) against the operator tests' kmock emulator; the supervisor is a real
``python -m progset_supervisor`` process reading the ConfigMap's data laid out on disk the way the
kubelet projects it, and answering ``show proc`` on its Master CLI socket. Nothing of ours is mocked.

The supervisor is a child process and every wait on it blocks, so those waits go through
``asyncio.to_thread``: the emulator and the operator live in this test's event loop and must keep
running meanwhile.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from progset_supervisor import __version__
from tests.operator.fixtures import Cluster, eventually, programset, ps_url, settled
from tests.supervisor.cli_helpers import exchange, socket_dir
from tests.supervisor.helpers import Supervisor, pid_alive, wait_until
from tests.supervisor.test_reload import kubelet_layout

HASH_ANNOTATION = "progset.io/config-hash"
NAMES = ("web", "api", "sidecar")


def prog(name: str, tag: str, on_reload: str) -> dict[str, Any]:
    """A program that says which command it runs, then sleeps (exec: the pid is the sleeper's)."""
    return {"name": name, "command": ["sh", "-c", f"echo {tag}; exec sleep 3600", name], "onReload": on_reload}


PROGRAMS_V1 = [prog("web", "v1", "restart"), prog("api", "v1", "keep"), prog("sidecar", "v1", "keep")]
PROGRAMS_V2 = [prog("web", "v1", "restart"), prog("api", "v1", "keep"), prog("sidecar", "v2", "keep")]

UPTIME = r"\d+d\d\dh\d\dm\d\ds"


def show_proc_pattern(master_pid: int, master_reloads: str, rows: list[tuple[int, str, int]]) -> str:
    """HAProxy's ``show proc``: ``%-15s`` columns, master line, ``# workers`` (empty), ``# programs``,
    then one line per program, and the blank line that ends every Master CLI answer."""

    def row(pid: int, kind: str, reloads: str, version: str) -> str:
        return re.escape(f"{pid:<15} {kind:<15} {reloads:<15} ") + UPTIME + " +" + re.escape(f" {version:<15}\n")

    header = f"#{'<PID>':<14} {'<type>':<15} {'<reloads>':<15} {'<uptime>':<15} {'<version>':<15}\n"
    return (re.escape(header)
            + row(master_pid, "master", master_reloads, __version__)
            + "# workers\n# programs\n"
            + "".join(row(pid, name, str(reloads), "-") for pid, name, reloads in rows)
            + "\n")


async def cli(sock: str, command: str) -> str:
    return (await asyncio.to_thread(exchange, sock, command + "\n")).decode()


async def show_info(sock: str) -> dict[str, str]:
    text = await cli(sock, "show info")
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().decode().split("\0")[:-1]
    except FileNotFoundError:
        return []


def rendered(cluster: Cluster, name: str, not_hash: str | None = None) -> dict[str, Any] | None:
    """The ConfigMap once it carries a content hash other than ``not_hash``."""
    cm = cluster.configmap(name)
    if cm and cm["metadata"].get("annotations", {}).get(HASH_ANNOTATION) not in (None, not_hash):
        return cm
    return None


async def test_programset_edit_reaches_the_supervisor_and_restarts_exactly_the_right_programs(
        operator, cluster: Cluster, tmp_path: Path) -> None:
    # 1. The operator renders the ProgramSet into its ConfigMap.
    await cluster.create(programset("demo", PROGRAMS_V1))
    cm1 = await eventually(lambda: rendered(cluster, "demo-programs"))
    hash1 = cm1["metadata"]["annotations"][HASH_ANNOTATION]
    assert list(cm1["data"]) == ["programs.json"]

    # 2. The kubelet projects it into the pod; the supervisor starts on the mounted directory.
    mount = tmp_path / "programs"
    mount.mkdir()
    kubelet_layout(mount, dict(cm1["data"]), "2026_11_21_10_00_00.100000001")
    with socket_dir() as sockets:
        sock = str(sockets / "master.sock")
        sup = Supervisor(mount, "-S", sock)
        try:
            await asyncio.to_thread(sup.wait_ready, 3)
            pids1 = {name: sup.forked_pids(name) for name in NAMES}
            assert all(len(p) == 1 for p in pids1.values()), pids1
            web1, api1, side1 = (pids1[n][0] for n in NAMES)

            before = await cli(sock, "show proc")
            assert re.fullmatch(show_proc_pattern(sup.pid, "0 [failed: 0]",
                                                  [(web1, "web", 0), (api1, "api", 0), (side1, "sidecar", 0)]),
                                before), before
            info = await show_info(sock)
            assert (info["Config_hash"], info["Config_source"]) == (hash1, "default/demo@1")
            await asyncio.to_thread(sup.out.wait_for, r"^sidecar \| v1$")

            # 3. Edit the ProgramSet: sidecar's command changes, api (onReload: keep) is left alone.
            await cluster.patch(ps_url("default", "demo"), {"spec": {"programs": PROGRAMS_V2}})
            cm2 = await eventually(lambda: rendered(cluster, "demo-programs", not_hash=hash1))
            hash2 = cm2["metadata"]["annotations"][HASH_ANNOTATION]
            ps = await eventually(lambda: settled(cluster, "demo", 2))
            assert ps["status"]["configHash"] == hash2

            # 4. The kubelet swaps ..data; the supervisor's watcher reloads on its own (no signal sent).
            kubelet_layout(mount, dict(cm2["data"]), "2026_11_21_10_01_00.200000002")
            await asyncio.to_thread(sup.wait_log, r"Loading success\.", count=2)
            await asyncio.to_thread(sup.wait_log, r"New program '.*' \(\d+\) forked", count=5)

            # 5. Exactly web (onReload: restart) and sidecar (definition changed) were restarted.
            assert len(sup.err.matching(r"Reloading progset on config change")) == 1
            assert len(sup.err.matching(r"Reloading progset")) == 1
            assert sup.err.matching(rf"Restarting program 'web' \({web1}\): onReload: restart")
            assert sup.err.matching(rf"Restarting program 'sidecar' \({side1}\): definition changed")
            assert not sup.err.matching(r"Restarting program 'api'")
            assert sup.forked_pids("api") == [api1] and pid_alive(api1)
            (_, web2), (_, side2) = sup.forked_pids("web"), sup.forked_pids("sidecar")
            assert not pid_alive(web1) and not pid_alive(side1)
            assert pid_alive(web2) and pid_alive(side2)
            await asyncio.to_thread(wait_until, lambda: cmdline(side2) == ["sleep", "3600"])
            await asyncio.to_thread(sup.out.wait_for, r"^sidecar \| v2$")
            await asyncio.to_thread(sup.out.wait_for, r"^web \| v1$", count=2)
            assert [m.group(0) for m in sup.out.matching(r"^api \| .*")] == ["api | v1"]  # never started again

            after = await cli(sock, "show proc")
            assert re.fullmatch(show_proc_pattern(sup.pid, "1 [failed: 0]",
                                                  [(web2, "web", 0), (api1, "api", 1), (side2, "sidecar", 0)]),
                                after), after
            assert "# old programs" not in after
            info = await show_info(sock)
            assert (info["Config_hash"], info["Config_source"]) == (hash2, "default/demo@2")

            assert await asyncio.to_thread(sup.stop) == 0
        finally:
            sup.kill()
