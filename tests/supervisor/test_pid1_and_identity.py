"""PID 1 duties (orphan reaping in a PID namespace) and user/group switching. Both need root."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from .helpers import Supervisor, wait_until, write_config
from .peers import require

REQUIRE = os.environ.get("PROGSET_REQUIRE_PEERS") == "1"


def need_root() -> None:
    if os.geteuid() != 0:
        if REQUIRE:
            pytest.fail("these tests need root (user switching, PID namespaces); CI runs as root")
        pytest.skip("needs root: user switching and PID namespaces")


@pytest.fixture
def started():  # type: ignore[no-untyped-def]
    sups: list[Supervisor] = []
    yield sups
    for sup in sups:
        sup.kill()


def test_as_pid1_a_thousand_orphaned_grandchildren_leave_no_zombie(tmp_path: Path, started) -> None:  # type: ignore[no-untyped-def]
    need_root()
    require("unshare", "util-linux")
    config = write_config(tmp_path, """programs:
  - name: orphan-maker
    command: ["sh", "-c", "i=0; while [ $i -lt 1000 ]; do (sleep 0.2 &); i=$((i+1)); done; echo spawned;
      exec sleep 1000"]
""")
    sup = Supervisor(config, prefix=["unshare", "--pid", "--fork", "--mount-proc"])
    started.append(sup)
    sup.wait_log(r"\[NOTICE\]   \(1\) : New program 'orphan-maker' \(\d+\) forked")  # we really are PID 1
    sup.out.wait_for(r"orphan-maker \| spawned", timeout=60)
    unshare = psutil.Process(sup.pid)
    (pid1,) = unshare.children()

    def settled() -> bool:
        tree = pid1.children(recursive=True)
        return len(tree) == 1 and tree[0].status() != psutil.STATUS_ZOMBIE  # only `sleep 1000` is left

    wait_until(settled, timeout=30)
    zombies = [p for p in pid1.children(recursive=True) if p.status() == psutil.STATUS_ZOMBIE]
    assert zombies == []
    os.kill(pid1.pid, signal.SIGTERM)  # unshare does not forward signals; PID 1 handles its own SIGTERM
    assert sup.proc.wait(15) == 0


def test_as_pid1_exec_failures_are_fatal_with_the_same_messages(tmp_path: Path, started) -> None:  # type: ignore[no-untyped-def]
    """As PID 1 there is no setpriv in the chain and no lookup before the fork: the exec's own failure
    is explained afterwards, with the messages a lookup would have given."""
    need_root()
    require("unshare", "util-linux")
    not_executable = tmp_path / "script.sh"
    not_executable.write_text("#!/bin/sh\n")
    config = write_config(tmp_path, f"""programs:
  - name: typo
    command: ["/no/such/binary", "--flag"]
  - name: notinpath
    command: ["definitely-not-a-command-xyz"]
  - name: noexec
    command: ["{not_executable}"]
  - name: adir
    command: ["{tmp_path}"]
  - name: fine
    command: ["sleep", "1000"]
""")
    sup = Supervisor(config, prefix=["unshare", "--pid", "--fork", "--mount-proc"])
    started.append(sup)
    sup.wait_log(r"\[NOTICE\]   \(1\) : New program 'fine' \(\d+\) forked")  # PID 1: no setpriv
    sup.wait_log(r"Program 'typo' cannot start: cannot execute /no/such/binary: no such file")
    sup.wait_log(r"Program 'notinpath' cannot start: cannot execute definitely-not-a-command-xyz: not found in "
                 r"PATH \(")
    sup.wait_log(rf"Program 'noexec' cannot start: cannot execute {not_executable}: not an executable file")
    sup.wait_log(rf"Program 'adir' cannot start: cannot execute {tmp_path}: not an executable file")
    (pid1,) = psutil.Process(sup.pid).children()
    os.kill(pid1.pid, signal.SIGTERM)
    assert sup.proc.wait(15) == 0


def identity_probe(report: Path, name: str, extra: str) -> str:
    """A shell program (the venv's interpreter may be unreadable to other users) reporting its ids
    as ``uid gid groups...``."""
    script = (f'echo "$(id -u) $(id -g) $(grep ^Groups: /proc/self/status | cut -f2)" > {report}; '
              "exec sleep 1000")
    return f"""  - name: {name}
    command: ["sh", "-c", {json.dumps(script)}]
{extra}"""


def read_ids(report: Path) -> dict[str, object]:
    uid, gid, *groups = report.read_text().split()
    return {"uid": int(uid), "gid": int(gid), "groups": sorted(int(g) for g in groups)}


def world_readable_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="progset-ids-"))
    path.chmod(0o777)
    return path


def test_user_and_group_by_name_and_number(started) -> None:  # type: ignore[no-untyped-def]
    need_root()
    import grp
    import pwd

    work = world_readable_dir()
    nobody = pwd.getpwnam("nobody")
    nogroup = grp.getgrgid(nobody.pw_gid)
    config = write_config(work, "programs:\n"
                          + identity_probe(work / "byname.json", "byname", "    user: nobody\n")
                          + identity_probe(work / "numeric.json", "numeric", "    user: '12345'\n    group: '23456'\n")
                          + identity_probe(work / "grouponly.json", "grouponly", f"    group: {nogroup.gr_name}\n")
                          + identity_probe(work / "unknown.json", "unknown", "    user: no-such-user-xyz\n"))
    sup = Supervisor(config)
    started.append(sup)
    sup.wait_log(r"Program 'unknown' cannot start: unknown user 'no-such-user-xyz'")
    reports = {n: work / f"{n}.json" for n in ("byname", "numeric", "grouponly")}
    wait_until(lambda: all(p.exists() and p.stat().st_size for p in reports.values()))
    data = {n: read_ids(p) for n, p in reports.items()}
    assert data["byname"] == {"uid": nobody.pw_uid, "gid": nobody.pw_gid,
                              "groups": sorted(set(os.getgrouplist("nobody", nobody.pw_gid)))}  # initgroups
    assert data["byname"]["groups"] != sorted(os.getgroups())  # not the supervisor's (root's) groups
    assert data["numeric"] == {"uid": 12345, "gid": 23456, "groups": [23456]}  # OpenShift-style ids
    assert data["grouponly"]["gid"] == nogroup.gr_gid and data["grouponly"]["groups"] == [nogroup.gr_gid]
    assert data["grouponly"]["uid"] == 0
    assert sup.stop() == 0
    shutil.rmtree(work)


AS_NOBODY = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups"]


def closed_ancestor(path: str) -> str | None:
    """The first directory above ``path`` that other users cannot enter, if any."""
    for parent in reversed(Path(path).parents):
        if not parent.stat().st_mode & 0o001:
            return str(parent)
    return None


def runtime_for_nobody(work: Path) -> tuple[str, dict[str, str]]:
    """An interpreter and PYTHONPATH from which ``nobody`` can run the supervisor.

    The clone, its ``.venv`` and the venv's site-packages may live in a directory only their owner
    can enter (``/root``, any ``mktemp -d``): ``nobody`` could not import anything from there. So the
    package and PyYAML are copied into ``work`` (world-readable) and run by the base interpreter the
    venv was made from, which is normally in ``/usr/bin``. If that interpreter itself is out of reach
    (a pyenv under a private home), only this test is skipped, naming the directory.
    """
    import yaml

    import progset_supervisor

    python = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    closed = closed_ancestor(python)
    if closed is not None and os.geteuid() == 0:
        probe = subprocess.run([*AS_NOBODY, python, "-c", "pass"], capture_output=True, cwd=work)
        if probe.returncode != 0:
            pytest.skip(f"user nobody cannot run the Python interpreter {python}: {closed} is closed to other "
                        f"users (mode {Path(closed).stat().st_mode & 0o777:o}); use a venv made from a "
                        "system Python such as /usr/bin/python3")
    site = work / "site"
    for module in (progset_supervisor, yaml):
        package = Path(module.__file__).parent
        shutil.copytree(package, site / package.name, ignore=shutil.ignore_patterns("__pycache__"))
    for root, dirs, files in os.walk(site):
        for name in [*dirs, *files]:
            Path(root, name).chmod(0o755 if name in dirs else 0o644)
    site.chmod(0o755)
    return python, {"PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1"}


def test_non_root_supervisor_reports_that_it_cannot_switch_user(started) -> None:  # type: ignore[no-untyped-def]
    need_root()
    require("setpriv", "util-linux")
    work = world_readable_dir()
    python, env = runtime_for_nobody(work)
    config = write_config(work, "programs:\n"
                          + identity_probe(work / "self.json", "self", "    user: nobody\n")
                          + identity_probe(work / "root.json", "root", "    user: root\n"))
    sup = Supervisor(config, prefix=AS_NOBODY, python=python, env=env, cwd=work)
    started.append(sup)
    sup.wait_log(r"Program 'root' cannot start: cannot switch to user 'root': the supervisor runs as uid 65534, "
                 r"not root; remove user/group from the program or run the supervisor as root")
    wait_until(lambda: (work / "self.json").exists() and (work / "self.json").stat().st_size > 0)
    assert read_ids(work / "self.json")["uid"] == 65534  # its own user needs no switch
    assert sup.proc.poll() is None
    assert sup.stop() == 0
    shutil.rmtree(work)
