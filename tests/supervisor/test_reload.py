"""Reload with real processes: each onReload value, changes, broken configs, signals, file watching."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from .helpers import Supervisor, pid_alive, wait_until, write_config


def trap_program(name: str, marker_dir: Path, on_reload: str, extra: str = "", command_tag: str = "v1") -> str:
    """A program that records every signal it gets into ``marker_dir/<name>.signals``."""
    log = marker_dir / f"{name}.signals"
    script = (f"for s in HUP USR1 USR2 INT; do trap \"echo $s >> {log}\" $s; done; "
              f"trap 'echo TERM >> {log}; exit 0' TERM; echo {command_tag}; while :; do sleep 0.05; done")
    return f"""  - name: {name}
    command: ["sh", "-c", {json.dumps(script)}, {json.dumps(command_tag)}]
    onReload: {on_reload}
{extra}"""


def wait_traps(sup: Supervisor, names: str = "rks") -> None:
    """Each trap program echoes its tag only after installing its traps: signalling it before that
    would kill it with the default action."""
    for name in names:
        sup.out.wait_for(rf"^{name} \| v\d$")


def signals_of(marker_dir: Path, name: str) -> list[str]:
    path = marker_dir / f"{name}.signals"
    return path.read_text().split() if path.exists() else []


@pytest.fixture
def sup_factory(tmp_path: Path):  # type: ignore[no-untyped-def]
    started: list[Supervisor] = []

    def start(path: Path, *args: str) -> Supervisor:
        sup = Supervisor(path, *args)
        started.append(sup)
        return sup

    yield start
    for sup in started:
        sup.kill()


def three(tmp_path: Path, tag_k: str = "v1", extra: str = "") -> str:
    return "programs:\n" + trap_program("r", tmp_path, "restart") + trap_program("k", tmp_path, "keep",
                                                                                command_tag=tag_k) + \
        trap_program("s", tmp_path, "signal", "    reloadSignal: SIGUSR1\n") + extra


def start_three(sup_factory, tmp_path: Path, *args: str) -> tuple[Path, Supervisor]:  # type: ignore[no-untyped-def]
    """The r/k/s trap programs under a supervisor, each with its traps installed."""
    config = write_config(tmp_path, three(tmp_path))
    sup = sup_factory(config, *args)
    sup.wait_ready(3)
    wait_traps(sup)
    return config, sup


def test_reload_by_signal_applies_each_on_reload_value(tmp_path: Path, sup_factory) -> None:  # type: ignore[no-untyped-def]
    _, sup = start_three(sup_factory, tmp_path, "--no-watch")
    r1, k1, s1 = (sup.forked_pids(n)[0] for n in "rks")
    sup.send(signal.SIGUSR2)
    sup.wait_log(r"Loading success\.", count=2)
    assert len(sup.forked_pids("r")) == 2 and not pid_alive(r1)  # restart: a new process
    assert sup.forked_pids("k") == [k1] and pid_alive(k1)  # keep: same process...
    assert signals_of(tmp_path, "k") == []  # ...and not even a signal (HAProxy sent SIGUSR1)
    assert sup.forked_pids("s") == [s1]  # signal: same process, got its reload signal
    wait_until(lambda: signals_of(tmp_path, "s") == ["USR1"])
    assert signals_of(tmp_path, "r") == ["TERM"]  # stopped gracefully with its stop signal
    sup.wait_log(rf"Former program 'r' \({r1}\) exited with code 0 \(Exit\)")
    sup.send(signal.SIGHUP)  # SIGHUP reloads too
    sup.wait_log(r"Loading success\.", count=3)
    wait_until(lambda: signals_of(tmp_path, "s") == ["USR1", "USR1"])
    assert signals_of(tmp_path, "k") == []
    assert sup.stop() == 0


def test_changed_kept_program_restarts_new_ones_start_removed_ones_stop(tmp_path: Path, sup_factory) -> None:  # type: ignore[no-untyped-def]
    config = write_config(tmp_path, three(tmp_path) + "  - name: gone\n    command: [sleep, '1000']\n")
    sup = sup_factory(config, "--no-watch")
    sup.wait_ready(4)
    wait_traps(sup)
    (k1,), (gone,) = sup.forked_pids("k"), sup.forked_pids("gone")
    write_config(tmp_path, three(tmp_path, tag_k="v2") +
                 "  - name: fresh\n    command: [sleep, '1000']\n    onReload: keep\n")
    sup.send(signal.SIGHUP)
    sup.wait_log(r"Loading success\.", count=2)
    assert len(sup.forked_pids("k")) == 2 and not pid_alive(k1)  # definition changed: restarted
    sup.wait_log(r"Restarting program 'k' \(\d+\): definition changed")
    assert len(sup.forked_pids("fresh")) == 1  # new and 'keep': started anyway (HAProxy did not)
    assert not pid_alive(gone)
    sup.wait_log(r"Program 'gone' removed from the configuration")
    sup.out.wait_for(r"^k \| v2$")
    assert sup.stop() == 0


def test_broken_config_changes_nothing_and_is_reported(tmp_path: Path, sup_factory) -> None:  # type: ignore[no-untyped-def]
    config, sup = start_three(sup_factory, tmp_path, "--no-watch")
    before = {n: sup.forked_pids(n) for n in "rks"}
    config.write_text(three(tmp_path) + "  - name: r\n    command: [true]\n    restart: sometimes\n")
    sup.send(signal.SIGHUP)
    sup.wait_log(r"Failed to load the new configuration: nothing was changed, programs keep running")
    assert sup.err.matching(r"programs\.yaml:\d+ \(spec\.programs\[3\]\.restart\): must be one of")
    assert sup.err.matching(r"duplicate program name 'r'")
    assert {n: sup.forked_pids(n) for n in "rks"} == before
    assert all(pid_alive(p[0]) for p in before.values())
    assert all(signals_of(tmp_path, n) == [] for n in "rks")
    config.write_text(three(tmp_path))  # fixed again: the next reload works
    sup.send(signal.SIGHUP)
    sup.wait_log(r"Loading success\.", count=2)
    assert sup.stop() == 0


def test_edit_of_a_watched_file_reloads_without_a_signal(tmp_path: Path, sup_factory) -> None:  # type: ignore[no-untyped-def]
    config, sup = start_three(sup_factory, tmp_path)
    tmp = tmp_path / "new.tmp"
    tmp.write_text(three(tmp_path, tag_k="v2"))
    os.replace(tmp, config)  # editors and config tools replace the file by rename
    sup.wait_log(r"Reloading progset on config change")
    sup.wait_log(r"Loading success\.", count=2)
    assert len(sup.forked_pids("k")) == 2
    assert sup.stop() == 0


def kubelet_layout(root: Path, files: dict[str, str], stamp: str) -> None:
    """Write ``files`` the way the kubelet projects a ConfigMap: a timestamped dir, ``..data`` symlink
    swapped atomically by rename, and one symlink per key pointing through ``..data``."""
    data_dir = root / f"..{stamp}"
    data_dir.mkdir()
    for key, text in files.items():
        (data_dir / key).write_text(text)
    tmp_link = root / "..data_tmp"
    tmp_link.symlink_to(data_dir.name)
    old_target = os.readlink(root / "..data") if (root / "..data").is_symlink() else None
    os.replace(tmp_link, root / "..data")
    for key in files:
        if not (root / key).is_symlink():
            (root / key).symlink_to(f"..data/{key}")
    if old_target is not None:
        import shutil

        shutil.rmtree(root / old_target)


def test_kubelet_configmap_symlink_swap_triggers_one_reload(tmp_path: Path, sup_factory) -> None:  # type: ignore[no-untyped-def]
    mount = tmp_path / "config"
    mount.mkdir()
    markers = tmp_path / "markers"
    markers.mkdir()
    kubelet_layout(mount, {"programs.yaml": three(markers)}, "2026_11_21_10_00_00.1")
    sup = sup_factory(mount)
    sup.wait_ready(3)
    wait_traps(sup)
    r1, k1 = sup.forked_pids("r")[0], sup.forked_pids("k")[0]
    kubelet_layout(mount, {"programs.yaml": three(markers, tag_k="v2")}, "2026_11_21_10_01_00.2")
    sup.wait_log(r"Loading success\.", count=2)
    assert len(sup.forked_pids("k")) == 2 and not pid_alive(k1)
    assert not pid_alive(r1)
    # One kubelet update is one reload, not one per inotify event.
    sup.out.wait_for(r"^k \| v2$")
    assert len(sup.err.matching(r"Reloading progset")) == 1
    # The same bytes again (a kubelet resync) are not a change: no reload at all.
    kubelet_layout(mount, {"programs.yaml": three(markers, tag_k="v2")}, "2026_11_21_10_02_00.3")
    sup.send(signal.SIGHUP)  # a marker reload so we know the watcher had its chance first
    sup.wait_log(r"Loading success\.", count=3)
    assert len(sup.err.matching(r"Reloading progset on config change")) == 1
    assert sup.stop() == 0


def test_reload_waits_for_the_old_instance_before_starting_the_new(tmp_path: Path, sup_factory) -> None:  # type: ignore[no-untyped-def]
    text = """programs:
  - name: slowstop
    command: ["sh", "-c", "trap 'sleep 0.3; exit 0' TERM; echo up; while :; do sleep 0.05; done"]
"""
    config = write_config(tmp_path, text)
    sup = sup_factory(config, "--no-watch")
    sup.wait_ready(1)
    (old,) = sup.forked_pids("slowstop")
    sup.send(signal.SIGHUP)
    sup.wait_log(r"Loading success\.", count=2)
    lines = sup.err.lines
    exit_at = next(i for i, line in enumerate(lines) if f"Former program 'slowstop' ({old})" in line)
    new_at = max(i for i, line in enumerate(lines) if "New program 'slowstop'" in line)
    assert exit_at < new_at  # no overlap: the new instance could bind the same port
    assert sup.stop() == 0


def test_a_busy_neighbour_file_neither_wakes_nor_delays_the_watcher(tmp_path: Path, sup_factory) -> None:  # type: ignore[no-untyped-def]
    import threading

    config, sup = start_three(sup_factory, tmp_path)
    stop = threading.Event()

    def scribble() -> None:  # e.g. a log file next to the config, written every 20 ms
        with open(tmp_path / "app.log", "a") as log:
            while not stop.wait(0.02):
                log.write("line\n")
                log.flush()

    writer = threading.Thread(target=scribble)
    writer.start()
    try:
        tmp = tmp_path / "new.tmp"
        tmp.write_text(three(tmp_path, tag_k="v2"))
        os.replace(tmp, config)
        sup.wait_log(r"Reloading progset on config change", timeout=5)
        sup.wait_log(r"Loading success\.", count=2)
    finally:
        stop.set()
        writer.join()
    assert len(sup.err.matching(r"Reloading progset")) == 1
    assert sup.stop() == 0


def test_sigterm_in_the_middle_of_a_reload_stops_everything_cleanly(tmp_path: Path, sup_factory) -> None:  # type: ignore[no-untyped-def]
    text = """programs:
  - name: slowstop
    command: ["sh", "-c", "trap 'sleep 0.5; exit 0' TERM; echo up; while :; do sleep 0.05; done"]
  - name: plain
    command: ["sleep", "1000"]
    onReload: keep
"""
    config = write_config(tmp_path, text)
    sup = sup_factory(config, "--no-watch")
    sup.wait_ready(2)
    sup.out.wait_for(r"^slowstop \| up$")
    (old,), (plain,) = sup.forked_pids("slowstop"), sup.forked_pids("plain")
    sup.send(signal.SIGHUP)
    sup.wait_log(r"Restarting program 'slowstop'")  # the old instance is now stopping (0.5 s)
    sup.send(signal.SIGTERM)
    assert sup.proc.wait(15) == 0
    assert sup.forked_pids("slowstop") == [old]  # the replacement was never started
    assert not pid_alive(old) and not pid_alive(plain)
    sup.wait_log(r"All programs exited\. Exiting\.\.\. \(0\)")


def test_reload_signals_during_a_reload_are_coalesced_into_one_more(tmp_path: Path, sup_factory) -> None:  # type: ignore[no-untyped-def]
    text = """programs:
  - name: slowstop
    command: ["sh", "-c", "trap 'sleep 0.3; exit 0' TERM; echo up; while :; do sleep 0.05; done"]
"""
    config = write_config(tmp_path, text)
    sup = sup_factory(config, "--no-watch")
    sup.wait_ready(1)
    sup.out.wait_for(r"^slowstop \| up$")
    sup.send(signal.SIGHUP)
    sup.wait_log(r"Restarting program 'slowstop'")
    for _ in range(3):  # while the first reload waits for the old instance
        sup.send(signal.SIGUSR2)
    sup.wait_log(r"Reloading progset on queued request")
    sup.wait_log(r"Loading success\.", count=3)
    assert len(sup.err.matching(r"Reloading progset")) == 2  # the first, then one for all three signals
    assert sup.stop() == 0


@pytest.mark.parametrize("changed", [True, False])
def test_watcher_started_after_the_load_notices_a_change_made_in_between(tmp_path: Path, changed: bool) -> None:
    """The watcher starts only once the first programs run (after the load); an edit made between the
    load and the watcher's start has no inotify event, so the watcher compares with what was loaded."""
    from progset_supervisor.core.watch import ConfigWatcher, config_fingerprint
    from progset_supervisor.runtime.loop import Loop

    config = write_config(tmp_path, "programs: []\n")
    loaded = config_fingerprint(str(config))
    if changed:
        config.write_text("programs:\n  - name: late\n    command: [sleep, '1']\n")
    loop = Loop()
    calls: list[str] = []
    watcher = ConfigWatcher(loop, str(config), lambda: calls.append("change"), debounce=0.05, loaded=loaded)
    try:
        deadline = loop.time() + 1.0
        while not calls and loop.time() < deadline:
            loop.run_once(max_wait=deadline - loop.time())
        assert calls == (["change"] if changed else [])
        # the difference counted once: its content is now the watcher's baseline
        assert watcher.fingerprint == config_fingerprint(str(config))
    finally:
        watcher.close()
        loop.close()


def test_a_load_records_what_it_read_as_the_watcher_reads_it(tmp_path: Path) -> None:
    """The watcher's baseline is what the load read (no second read, no window in between): both must
    describe the same files the same way, for a file and for a kubelet-style directory."""
    from progset_supervisor.config import load_path
    from progset_supervisor.core.watch import config_fingerprint

    single = write_config(tmp_path, "programs:\n  - name: a\n    command: [sleep, '1']\n")
    assert load_path(single).fingerprint == config_fingerprint(str(single)) != b""
    mount = tmp_path / "mount"
    mount.mkdir()
    kubelet_layout(mount, {"a.yaml": "programs:\n  - name: a\n    command: [sleep, '1']\n",
                           "b.json": '{"programs": [{"name": "b", "command": ["true"]}]}'}, "2026_11_22_01_00_00.1")
    loaded = load_path(mount).fingerprint
    assert loaded == config_fingerprint(str(mount))
    (mount / "b.json").write_text("{}")  # an edit would be seen
    assert config_fingerprint(str(mount)) != loaded
