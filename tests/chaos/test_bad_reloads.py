"""Issue 15.3: an emptied ConfigMap must not stop every program.

The config is a kubelet-style ConfigMap volume (``..data`` swapped atomically). Its key is emptied,
reduced to a comment, or removed altogether: each reload is refused, the running pids stay the same,
``/readyz`` stays 200; a valid update afterwards is applied as usual.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from ..supervisor.cli_helpers import exchange, socket_dir
from ..supervisor.helpers import Supervisor, http_get, http_port

GOOD = "program api\n  command sleep 3600\nprogram worker\n  command sleep 3600\n"
_stamps = itertools.count()


def publish(root: Path, files: dict[str, str]) -> None:
    """What the kubelet does on a ConfigMap update: a new timestamped dir, ``..data`` swapped to it, key
    symlinks added for new keys and removed for keys that are gone."""
    stamp = root / f"..2026_12_04_12_00_00.{next(_stamps):09d}"
    stamp.mkdir(parents=True)
    for name, text in files.items():
        (stamp / name).write_text(text)
    os.symlink(stamp.name, root / "..data_tmp")
    os.replace(root / "..data_tmp", root / "..data")
    for name in files:
        if not (root / name).is_symlink():
            os.symlink(f"..data/{name}", root / name)
    for entry in os.listdir(root):
        if not entry.startswith(".") and entry not in files:
            os.unlink(root / entry)


def proc_pids(sock: str) -> dict[str, int]:
    pids = {}
    for line in exchange(sock, "show proc\n").decode().splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0].isdigit() and fields[1] in ("api", "worker"):
            pids[fields[1]] = int(fields[0])
    return pids


@pytest.mark.parametrize("emptied", [{"haproxy.cfg": ""}, {"haproxy.cfg": "# all programs moved elsewhere\n"},
                                     {"programs.yaml": "programs:\n"}, {}])
def test_an_emptied_configmap_is_refused_and_nothing_stops(tmp_path: Path, emptied: dict[str, str]) -> None:
    root = tmp_path / "config"
    root.mkdir()
    publish(root, {"haproxy.cfg": GOOD})
    with socket_dir() as sockets:
        sock = str(sockets / "master.sock")
        sup = Supervisor(root, "-S", sock, metrics="127.0.0.1:0")
        try:
            sup.wait_ready(2)
            port = http_port(sup)
            before = proc_pids(sock)
            assert set(before) == {"api", "worker"}
            failures = len(sup.err.matching(r"Failed to load the new configuration"))
            publish(root, emptied)
            sup.wait_log(r"Failed to load the new configuration: nothing was changed, programs keep running",
                         count=failures + 1)
            assert proc_pids(sock) == before
            assert http_get(port, "/readyz").status == 200
            assert "ReloadFailed" in exchange(sock, "prompt\n").decode()
            # A real update afterwards goes through as usual.
            publish(root, {"haproxy.cfg": GOOD + "program extra\n  command sleep 3600\n"})
            sup.wait_log(r"New program 'extra' \(\d+\) forked")
            assert sup.stop() == 0
        finally:
            sup.kill()
