"""``/metrics`` values move with real programs: crashes, backoff, reloads, process trees."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from progset_supervisor.config import load_path

from .helpers import Scrape, Supervisor, http_get, http_port, program, scrape_until, started
from .helpers import programs_config as programs

PY = sys.executable
MiB = 1024 * 1024
STATES = ("STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL")


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    with started(tmp_path) as start_supervisor:
        yield lambda text, *args: start_supervisor(text, "--no-watch", *args, metrics="127.0.0.1:0")


def current_state(result: Scrape, name: str) -> str:
    """The one state whose series is 1; fails if there is not exactly one."""
    ones = [s for s in STATES if result.get("progset_program_state", program=name, state=s) == 1]
    zeros = [s for s in STATES if result.get("progset_program_state", program=name, state=s) == 0]
    assert len(ones) == 1 and len(zeros) == len(STATES) - 1, result.series("progset_program_state")
    return ones[0]


def tree_cpu(result: Scrape, name: str) -> float:
    """User plus system CPU seconds of ``name``'s process tree; both series must be there."""
    user = result.get("progset_program_cpu_seconds_total", program=name, mode="user")
    system = result.get("progset_program_cpu_seconds_total", program=name, mode="system")
    assert user is not None and system is not None, result.series("progset_program_cpu_seconds_total")
    return user + system


def burner(directory: Path, then: str = "") -> Path:
    """A Python script that burns 0.5 s of CPU time, then runs ``then``."""
    script = directory / "burn.py"
    script.write_text("import os, time\nt = time.process_time()\nwhile time.process_time() - t < 0.5:\n    pass\n"
                      + then)
    return script


def status_of(port: int, name: str) -> dict[str, Any]:
    reply = http_get(port, "/status")
    assert reply.status == 200 and reply.headers["content-type"] == "application/json"
    return next(p for p in reply.json()["programs"] if p["name"] == name)


def test_restarts_and_exits_count_exactly_the_crashes(start: Any) -> None:
    fast = {"initialSeconds": 0.05, "maxSeconds": 0.1, "resetAfterSeconds": 60}
    sup: Supervisor = start(programs(
        program("victim", "sleep", "1000", backoff=fast),
        program("steady", "sleep", "1000"),
        program("quitter", "sh", "-c", "exit 3", restart="never")))
    port = http_port(sup)
    sup.wait_ready(3)
    before = scrape_until(port, lambda s: s.get("progset_program_state", program="quitter", state="EXITED") == 1)
    assert before.get("progset_program_restarts_total", program="victim") == 0
    assert before.types["progset_program_restarts"] == "counter"

    crashes = 3
    for n in range(1, crashes + 1):
        os.kill(sup.forked_pids("victim")[-1], signal.SIGKILL)
        sup.wait_log(r"New program 'victim' \(\d+\) forked", count=n + 1)

    after = scrape_until(port, lambda s: s.get("progset_program_restarts_total", program="victim") == crashes)
    assert after.get("progset_program_exits_total", program="victim", reason="signal", code="137") == crashes
    assert after.series("progset_program_exits_total").keys() == {
        frozenset({("program", "victim"), ("reason", "signal"), ("code", "137")}),
        frozenset({("program", "quitter"), ("reason", "exit"), ("code", "3")})}
    assert after.get("progset_program_last_exit_code", program="victim") == 137
    assert after.get("progset_program_up", program="victim") == 1
    assert current_state(after, "victim") == "RUNNING"
    status = status_of(port, "victim")
    assert status["pid"] == sup.forked_pids("victim")[-1]
    assert status["restarts"] == crashes and status["last_exit"]["text"] == "SIGKILL"
    assert after.get("progset_program_start_time_seconds", program="victim") == pytest.approx(status["started"],
                                                                                             abs=0.001)

    assert after.get("progset_program_restarts_total", program="steady") == 0
    assert after.get("progset_program_last_exit_code", program="steady") is None  # never exited
    assert current_state(after, "quitter") == "EXITED"
    assert after.get("progset_program_up", program="quitter") == 0
    assert after.get("progset_program_last_exit_code", program="quitter") == 3
    assert after.get("progset_program_start_time_seconds", program="quitter") is None  # no process
    assert after.get("progset_program_processes", program="quitter") is None
    assert sup.stop() == 0


def test_backoff_state_readiness_and_reload_counters(start: Any, tmp_path: Path) -> None:
    flag = tmp_path / "healthy"
    slow = {"initialSeconds": 30, "maxSeconds": 30, "resetAfterSeconds": 60}
    flappy = program("flappy", "sh", "-c", 'test -e "$0" && exec sleep 1000; exit 3', str(flag), backoff=slow)
    steady = program("steady", "sleep", "1000")
    sup: Supervisor = start(programs(flappy, steady))
    config = sup.config
    port = http_port(sup)
    sup.wait_log(r"Restarting program 'flappy' in [\d.]+s")  # second failure: backoff of ~30 s

    backing = scrape_until(port, lambda s: s.get("progset_program_state", program="flappy", state="BACKOFF") == 1)
    assert current_state(backing, "flappy") == "BACKOFF"
    assert backing.get("progset_program_up", program="flappy") == 0
    assert 0 < backing.get("progset_program_backoff_seconds", program="flappy") <= 33  # type: ignore[operator]
    # Counted when decided: the immediate first restart and the one waiting in BACKOFF.
    assert backing.get("progset_program_restarts_total", program="flappy") == 2
    assert backing.get("progset_program_exits_total", program="flappy", reason="exit", code="3") == 2
    assert backing.get("progset_program_backoff_seconds", program="steady") == 0
    assert backing.get("progset_reloads_total", result="success") == 0
    assert backing.get("progset_config_info", source=str(config), hash=load_path(config).hash) == 1
    readyz = http_get(port, "/readyz")
    assert (readyz.status, readyz.body) == (503, b"not ready: flappy (BACKOFF)\n")
    assert status_of(port, "flappy")["state"] == "BACKOFF"
    assert http_get(port, "/healthz").status == 200

    # Reload a changed config: flappy starts now (its flag exists), a new program appears.
    flag.touch()
    config.write_text(programs(flappy, steady, program("extra", "sleep", "1000")))
    sup.proc.send_signal(signal.SIGHUP)
    sup.wait_log(r"Loading success\.", count=2)
    running = scrape_until(port, lambda s: s.get("progset_program_up", program="flappy") == 1
                           and s.get("progset_program_up", program="extra") == 1)
    assert current_state(running, "flappy") == "RUNNING"
    assert running.get("progset_program_backoff_seconds", program="flappy") == 0
    assert running.get("progset_program_restarts_total", program="flappy") == 2  # a reload is not a restart
    assert running.get("progset_program_restarts_total", program="steady") == 0
    assert running.get("progset_reloads_total", result="success") == 1
    assert running.series("progset_config_info") == {
        frozenset({("source", str(config)), ("hash", load_path(config).hash)}): 1.0}
    assert http_get(port, "/readyz").status == 200
    assert http_get(port, "/readyz").body == b"ok\n"
    last_reload = running.get("progset_last_reload_timestamp_seconds")
    assert last_reload is not None and last_reload > backing.get("progset_last_reload_timestamp_seconds")  # type: ignore[operator]

    good_hash = load_path(config).hash
    config.write_text("programs: [")
    sup.proc.send_signal(signal.SIGHUP)
    sup.wait_log(r"Failed to load the new configuration")
    failed = scrape_until(port, lambda s: s.get("progset_reloads_total", result="failure") == 1)
    assert failed.get("progset_reloads_total", result="success") == 1
    assert failed.get("progset_last_reload_timestamp_seconds") > last_reload  # type: ignore[operator]
    assert [dict(k)["hash"] for k in failed.series("progset_config_info")] == [good_hash]
    assert http_get(port, "/readyz").status == 200  # programs keep running on a failed reload
    assert sup.stop() == 0


def test_process_tree_cpu_memory_fds_threads(start: Any, tmp_path: Path) -> None:
    big = tmp_path / "big.py"
    big.write_text("import time\nblock = b'x' * (50 * 1024 * 1024)\nprint('allocated', flush=True)\n"
                   "time.sleep(1000)\n")
    burn = burner(tmp_path)
    sup: Supervisor = start(programs(
        # sh forks python and waits: the tree is two processes.
        program("big", "sh", "-c", '"$0" "$1" & wait', PY, str(big)),
        # python burns 0.5 s of CPU and exits; sh reaps it, then becomes sleep: the CPU stays counted.
        program("burner", "sh", "-c", '"$0" "$1"; echo burnt; exec sleep 1000', PY, str(burn)),
        program("small", "sleep", "1000")))
    port = http_port(sup)
    sup.out.wait_for(r"^big \| allocated$")
    sup.out.wait_for(r"^burner \| burnt$")
    result = scrape_until(port, lambda s: s.get("progset_program_processes", program="burner") == 1)

    assert result.get("progset_program_processes", program="big") == 2
    assert result.get("progset_program_threads", program="big") == 2
    assert result.get("progset_program_resident_memory_bytes", program="big") >= 50 * MiB  # type: ignore[operator]
    assert result.get("progset_program_resident_memory_bytes", program="small") < 10 * MiB  # type: ignore[operator]
    assert result.get("progset_program_processes", program="small") == 1
    assert result.get("progset_program_open_fds", program="small") == 3  # stdin, stdout and stderr pipes
    assert result.get("progset_program_open_fds", program="big") >= 6  # type: ignore[operator]

    assert tree_cpu(result, "burner") >= 0.48  # clock-tick rounding of the 0.5 s python measured
    assert tree_cpu(result, "small") < 0.1
    assert result.types["progset_program_cpu_seconds"] == "counter"
    own_rss = result.get("progset_process_resident_memory_bytes")
    assert own_rss is not None and own_rss < 100 * MiB
    assert result.get("progset_process_open_fds", ) is not None
    assert sup.stop() == 0


def test_cpu_counter_never_drops_when_a_descendant_leaves_or_the_program_restarts(start: Any, tmp_path: Path) -> None:
    burn = burner(tmp_path, then="print('burnt', os.getpid(), flush=True)\ntime.sleep(1000)\n")
    inner = tmp_path / "inner.sh"
    inner.write_text('"$1" "$2" &\necho "inner $$"\nwait\n')
    # program (sh) -> inner sh -> python, which burns 0.5 s and stays.
    sup: Supervisor = start(programs(program("orphaner", "sh", "-c", 'sh "$0" "$1" "$2"; exec sleep 1000',
                                             str(inner), PY, str(burn), backoff={"initialSeconds": 0.05})))
    port = http_port(sup)
    inner_pid = int(sup.out.wait_for(r"^orphaner \| inner (\d+)$")[0].group(1))
    burner_pid = int(sup.out.wait_for(r"^orphaner \| burnt (\d+)$")[0].group(1))
    try:
        before = scrape_until(port, lambda s: s.get("progset_program_processes", program="orphaner") == 3)
        assert tree_cpu(before, "orphaner") >= 0.48

        # The inner shell dies without reaping python: python is re-parented to the supervisor (a
        # subreaper) and leaves the tree, taking its CPU time with it.
        os.kill(inner_pid, signal.SIGKILL)
        left = scrape_until(port, lambda s: s.get("progset_program_processes", program="orphaner") == 1)
        assert tree_cpu(left, "orphaner") >= tree_cpu(before, "orphaner")

        os.kill(sup.forked_pids("orphaner")[-1], signal.SIGKILL)
        restarted = scrape_until(port, lambda s: s.get("progset_program_restarts_total", program="orphaner") == 1
                                 and s.get("progset_program_up", program="orphaner") == 1)
        assert tree_cpu(restarted, "orphaner") >= tree_cpu(left, "orphaner")
    finally:
        with contextlib.suppress(ProcessLookupError):  # the restart stopped it (what was left of the group)
            os.kill(burner_pid, signal.SIGKILL)
    assert sup.stop() == 0
