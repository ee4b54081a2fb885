"""Scrape cost of ``/metrics`` with 10, 200 and 1000 programs; prints Markdown tables.

Usage: ``.venv/bin/python bench/metrics_bench.py [--sizes 10,200,1000] [--scrapes 20]``

For each size a real supervisor runs that many programs (every other one a two-process tree, so the
process-tree walk has descendants to find) and is scraped over real HTTP. Reported per size:

- the client-side time of a whole scrape (connect, render, transfer), median and 95th percentile;
- the supervisor's own CPU time per scrape: how long the scrape holds its event loop;
- the same divided by the number of programs, which stays flat if the cost grows linearly;
- the supervisor's resident memory before and after its first scrape (prometheus_client is imported then).

A second table compares ways of reading every program's process tree: one pass over ``/proc`` (what
the collector does), one ``psutil.process_iter`` pass with psutil's per-process calls, and psutil's
``Process.children(recursive=True)`` per program.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psutil

from progset_supervisor.http.metrics import process_tree_usage
from progset_supervisor.http.server import METRICS_REUSE_SECONDS


def config_text(count: int) -> str:
    programs = []
    for i in range(count):
        command = ["sleep", "3600"] if i % 2 else ["sh", "-c", "sleep 3600 & wait"]
        programs.append({"name": f"p{i}", "command": command})
    return json.dumps({"programs": programs})


class Running:
    """A supervisor subprocess; reads its stderr until it has forked every program and bound HTTP."""

    def __init__(self, config: Path, count: int, namespace: bool) -> None:
        # In a PID namespace of its own, as in a pod, /proc holds only the supervisor's processes.
        prefix = ["unshare", "--pid", "--fork", "--mount-proc"] if namespace else []
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "progset_supervisor", "-f", str(config), "--no-watch",
             "--metrics-address", "127.0.0.1:0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.port = 0
        forked = 0
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if match := re.search(r"HTTP endpoints on http://\S+:(\d+) ", line):
                self.port = int(match.group(1))
            forked += "forked" in line
            if "Loading success." in line:
                break
        if forked != count or not self.port:
            raise RuntimeError(f"supervisor started {forked} of {count} programs (port {self.port})")
        # Keep reading: a full stderr pipe would block the supervisor's log writes (and its stop).
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()
        self.ps = psutil.Process(self.proc.pid)
        if namespace:  # unshare --fork waits for the supervisor, its child
            self.ps = self.ps.children()[0]

    def scrape(self) -> tuple[float, int]:
        started = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=30) as reply:
            body = reply.read()
        return time.perf_counter() - started, len(body)

    def cpu(self) -> float:
        """CPU seconds the supervisor has run, in nanoseconds resolution (cpu_times() counts 10 ms ticks)."""
        with open(f"/proc/{self.ps.pid}/schedstat") as fh:
            return int(fh.read().split()[0]) / 1e9

    def stop(self) -> None:
        self.ps.send_signal(signal.SIGTERM)
        self.proc.wait(60)


def measure(count: int, scrapes: int, workdir: Path, namespace: bool) -> dict[str, float]:
    config = workdir / f"bench-{count}.json"
    config.write_text(config_text(count))
    sup = Running(config, count, namespace)
    try:
        rss_before = sup.ps.memory_info().rss
        first, _ = sup.scrape()
        rss_after = sup.ps.memory_info().rss
        times: list[float] = []
        cpu: list[float] = []
        size = 0
        elapsed = first
        for _ in range(scrapes):
            # Past the server's reuse window (METRICS_REUSE_SECONDS, or 4 x the render time if longer).
            time.sleep(max(METRICS_REUSE_SECONDS, 4 * elapsed) + 0.05)
            cpu_start = sup.cpu()
            elapsed, size = sup.scrape()
            cpu.append(sup.cpu() - cpu_start)
            times.append(elapsed)
        pids = [c.pid for c in sup.ps.children()]
        processes = sum(t.processes for t in process_tree_usage({str(p): p for p in pids}).values())
        return {
            "programs": count, "processes": processes, "bytes": size, "first": first,
            "median": statistics.median(times), "p95": sorted(times)[max(0, int(len(times) * 0.95) - 1)],
            "cpu": statistics.median(cpu), "rss_before": rss_before, "rss_after": rss_after,
            **tree_strategies(pids),
        }
    finally:
        sup.stop()


def best_of(rounds: int, work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def psutil_details(proc: psutil.Process) -> None:
    with proc.oneshot():
        proc.cpu_times()
        proc.memory_info()
        proc.num_threads()
        proc.num_fds()


def psutil_one_pass(pids: list[int]) -> None:
    """The psutil equivalent of the collector: one process_iter pass for a ppid map, then details."""
    children: dict[int, list[psutil.Process]] = {}
    by_pid: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["ppid"]):
        by_pid[proc.pid] = proc
        children.setdefault(proc.info["ppid"], []).append(proc)
    for pid in pids:
        stack = [by_pid[pid]] if pid in by_pid else []
        while stack:
            proc = stack.pop()
            try:
                psutil_details(proc)
            except psutil.Error:
                pass
            stack.extend(children.get(proc.pid, ()))


def psutil_per_program(pids: list[int], sample: int = 20) -> float:
    """``children(recursive=True)`` scans the whole process table per call: time ``sample`` programs and
    scale to all of them (a full run at 1000 programs takes tens of seconds)."""
    chosen = pids[:sample]
    started = time.perf_counter()
    for pid in chosen:
        try:
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                psutil_details(proc)
        except psutil.Error:
            pass
    return (time.perf_counter() - started) * len(pids) / max(1, len(chosen))


def tree_strategies(pids: list[int]) -> dict[str, float]:
    roots = {str(pid): pid for pid in pids}
    return {"proc_one_pass": best_of(5, lambda: process_tree_usage(roots)),
            "psutil_one_pass": best_of(5, lambda: psutil_one_pass(pids)),
            "psutil_per_program": psutil_per_program(pids)}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,200,1000", help="comma-separated program counts")
    parser.add_argument("--scrapes", type=int, default=20, help="scrapes per size after the first")
    parser.add_argument("--no-pid-namespace", dest="namespace", action="store_false",
                        help="run the supervisor in the host's PID namespace (its /proc scan then also reads every "
                             "other process of the machine)")
    args = parser.parse_args()
    if args.namespace and (os.geteuid() != 0 or not shutil.which("unshare")):
        print("(no root or no unshare: the supervisor runs in the host's PID namespace)", file=sys.stderr)
        args.namespace = False
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(n, args.scrapes, Path(tmp), args.namespace) for n in sizes]

    load = os.getloadavg()[0]
    where = "in its own PID namespace, as in a pod" if args.namespace else "in the host's PID namespace"
    print(f"### /metrics scrape cost ({os.cpu_count()} CPUs, load average {load:.1f} at the end, "
          f"Python {sys.version.split()[0]}, {args.scrapes} scrapes per size, supervisor {where})\n")
    print("| programs | processes | body kB | scrape median ms | scrape p95 ms | supervisor CPU ms/scrape "
          "| µs CPU per program | first scrape ms | RSS before → after first scrape MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['programs']} | {r['processes']} | {r['bytes'] / 1000:.0f} | {ms(r['median'])} | {ms(r['p95'])} "
              f"| {ms(r['cpu'])} | {r['cpu'] * 1e6 / r['programs']:.0f} | {ms(r['first'])} "
              f"| {r['rss_before'] / 1e6:.1f} → {r['rss_after'] / 1e6:.1f} |")
    print("\n### Reading every program's process tree (CPU, RSS, threads, fds of each process), best of 5\n")
    print(f"Measured in the bench process, which sees every process of the machine ({len(psutil.pids())} at the "
          "end of the run).\n")
    print("| programs | /proc, one pass (used) ms | psutil, one process_iter pass ms "
          "| psutil, children(recursive=True) per program ms |")
    print("|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['programs']} | {ms(r['proc_one_pass'])} | {ms(r['psutil_one_pass'])} "
              f"| {ms(r['psutil_per_program'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
