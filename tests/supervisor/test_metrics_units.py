"""The pieces of a scrape that need no supervisor: the /proc tree walk and the monotonic CPU counter."""

from __future__ import annotations

from pathlib import Path

import pytest

from progset_supervisor.http.metrics import CLOCK_TICKS, PAGE_SIZE, CpuCounter, process_tree_usage


def fake_process(proc: Path, pid: int, comm: str, state: str, ppid: int, *, ticks: tuple[int, int, int, int],
                 threads: int, rss_pages: int, fds: int) -> None:
    """A /proc/PID directory as proc(5) lays it out: ``stat`` and one entry per open fd."""
    utime, stime, cutime, cstime = ticks
    (proc / str(pid) / "fd").mkdir(parents=True)
    (proc / str(pid) / "stat").write_text(
        f"{pid} ({comm}) {state} {ppid} {pid} {pid} 0 -1 4194304 100 0 0 0 {utime} {stime} {cutime} {cstime} "
        f"20 0 {threads} 0 12345 1000000 {rss_pages} 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n")
    for fd in range(fds):
        (proc / str(pid) / "fd" / str(fd)).touch()


def test_tree_walk_sums_descendants_only(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    # root 10 -> 11 (zombie), 12 -> 13; 20 is someone else's; the command name has ") " in it.
    fake_process(proc, 10, "my) (prog", "S", 1, ticks=(100, 50, 300, 30), threads=2, rss_pages=1000, fds=4)
    fake_process(proc, 11, "dead", "Z", 10, ticks=(999, 999, 0, 0), threads=1, rss_pages=0, fds=0)
    fake_process(proc, 12, "worker", "R", 10, ticks=(20, 10, 0, 0), threads=3, rss_pages=500, fds=5)
    fake_process(proc, 13, "helper", "S", 12, ticks=(5, 5, 0, 0), threads=1, rss_pages=100, fds=3)
    fake_process(proc, 20, "other", "S", 1, ticks=(7777, 7777, 0, 0), threads=9, rss_pages=9999, fds=9)
    (proc / "self").mkdir()  # not a pid: skipped
    usage = process_tree_usage({"prog": 10, "gone": 99, "leaf": 13}, proc=str(proc))

    tree = usage["prog"]
    assert tree.processes == 3  # the zombie is not counted
    assert tree.cpu_user == pytest.approx((100 + 300 + 20 + 5) / CLOCK_TICKS)  # own + reaped children
    assert tree.cpu_system == pytest.approx((50 + 30 + 10 + 5) / CLOCK_TICKS)
    assert tree.resident_bytes == (1000 + 500 + 100) * PAGE_SIZE
    assert (tree.threads, tree.open_fds) == (6, 12)
    assert usage["gone"].processes == 0 and usage["gone"].resident_bytes == 0
    assert (usage["leaf"].processes, usage["leaf"].open_fds) == (1, 3)
    assert process_tree_usage({}, proc=str(proc)) == {}


def test_cpu_counter_never_goes_down() -> None:
    counter = CpuCounter()
    assert counter.update(100, 1.0, 0.5) == (1.0, 0.5)
    # A descendant left the tree: the raw total drops, the counter stays.
    assert counter.update(100, 0.2, 0.1) == pytest.approx((1.0, 0.5))
    assert counter.update(100, 0.7, 0.1) == pytest.approx((1.5, 0.5))
    # A restart: the new tree's time is added to what the old one had reached.
    assert counter.update(200, 0.3, 0.0) == pytest.approx((1.8, 0.5))
    assert counter.update(200, 0.4, 0.2) == pytest.approx((1.9, 0.7))
