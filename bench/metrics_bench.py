"""Scrape cost of ``/metrics`` with 10, 200 and 1000 programs; prints Markdown tables.

Usage: ``.venv/bin/python bench/metrics_bench.py [--sizes 10,200,1000] [--scrapes 100]``

For each size a real supervisor runs that many programs (every other one a two-process tree, so the
process-tree walk has descendants to find) and is scraped over real HTTP, each scrape past the
server's reuse window so that each one renders. Reported per size:

- the client-side time of a whole scrape (connect, render, transfer), median and 99th percentile;
- the supervisor's own CPU time per scrape, median and 99th percentile: how long a scrape holds its
  event loop; and the median divided by the number of programs, which stays flat if the cost is linear;
- the supervisor's resident memory before its first scrape, after it, and after all of them.

Baseline, if Debian's ``prometheus-process-exporter`` is installed: it reads the same process trees
from ``/proc`` and exports per-group CPU, memory, fds, threads and process counts, the closest thing
to the supervisor's per-program metrics among Prometheus exporters (node_exporter has no per-process
metrics). It runs in the supervisor's PID namespace with one group per program (the programs'
command lines carry their number; children join their parent's group) and without the smaps and
per-thread extras (``-gather-smaps=false -threads=false``), so it is asked for the same work; its CPU
per scrape is summed over all its threads.

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
import socket
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
    """Every program's command line carries its number (the baseline groups processes by it)."""
    programs = []
    for i in range(count):
        seconds = str(100000 + i)
        command = ["sleep", seconds] if i % 2 else ["sh", "-c", f"sleep {seconds} & wait"]
        programs.append({"name": f"p{i}", "command": command})
    return json.dumps({"programs": programs})


EXPORTER_CONFIG = """process_names:
  - name: "p{{.Matches.n}}"
    cmdline:
      - 'sleep 1(?P<n>[0-9]+)'
"""


def thread_cpu(pid: int) -> float:
    """CPU seconds of every thread of ``pid`` (schedstat: nanoseconds, where stat counts 10 ms ticks)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as fh:
                total += int(fh.read().split()[0])
        except OSError:
            pass
    return total / 1e9


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


class Exporter:
    """prometheus-process-exporter in the supervisor's PID and mount namespaces (its /proc)."""

    def __init__(self, executable: str, sup: Running, workdir: Path, namespace: bool) -> None:
        config = workdir / "process-exporter.yml"
        config.write_text(EXPORTER_CONFIG)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        # -m: the mount namespace with the pod-like /proc (what it reads; not -p: a Go program cannot
        # start threads after entering a PID namespace); -F: exec, so it is this Popen's process.
        prefix = ["nsenter", "-t", str(sup.ps.pid), "-m", "-F"] if namespace else []
        self.proc = subprocess.Popen(
            [*prefix, executable, f"-config.path={config}", f"-web.listen-address=127.0.0.1:{self.port}",
             "-gather-smaps=false", "-threads=false"],
            stdout=subprocess.DEVNULL, stderr=(workdir / "process-exporter.log").open("wb"), start_new_session=True)
        self.ps = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.scrape()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    log = (workdir / "process-exporter.log").read_text(errors="replace")[:600]
                    raise RuntimeError(f"prometheus-process-exporter did not answer: {log}") from None
                time.sleep(0.1)

    def scrape(self) -> tuple[float, int]:
        started = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=30) as reply:
            body = reply.read()
        return time.perf_counter() - started, len(body)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)

    def groups(self) -> int:
        """Groups it reports: one per program when it sees the supervisor's processes."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=30) as reply:
            return len(set(re.findall(rb'namedprocess_namegroup_num_procs\{groupname="([^"]+)"', reply.read())))


def exporter_run(executable: str, sup: Running, workdir: Path, namespace: bool, scrapes: int) -> dict[str, float]:
    exporter = Exporter(executable, sup, workdir, namespace)
    try:
        groups = exporter.groups()
        if groups != sup.count:
            raise RuntimeError(f"prometheus-process-exporter sees {groups} groups, not {sup.count} programs")
        times: list[float] = []
        cpu: list[float] = []
        size = 0
        for _ in range(scrapes):
            time.sleep(0.05)
            cpu_start = thread_cpu(exporter.ps.pid)
            elapsed, size = exporter.scrape()
            cpu.append(thread_cpu(exporter.ps.pid) - cpu_start)
            times.append(elapsed)
        return {"x_bytes": size, "x_median": statistics.median(times), "x_p99": percentile(times, 0.99),
                "x_cpu": statistics.median(cpu), "x_cpu_p99": percentile(cpu, 0.99),
                "x_rss": exporter.ps.memory_info().rss}
    finally:
        exporter.stop()


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
        self.count = count
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


def measure(count: int, scrapes: int, workdir: Path, namespace: bool, exporter: str | None) -> dict[str, float]:
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
        rss_end = sup.ps.memory_info().rss
        pids = [c.pid for c in sup.ps.children()]
        processes = sum(t.processes for t in process_tree_usage({str(p): p for p in pids}).values())
        baseline = exporter_run(exporter, sup, workdir, namespace, scrapes) if exporter else {}
        return {
            "programs": count, "processes": processes, "bytes": size, "first": first,
            "median": statistics.median(times), "p99": percentile(times, 0.99),
            "cpu": statistics.median(cpu), "cpu_p99": percentile(cpu, 0.99), "rss_before": rss_before,
            "rss_after": rss_after, "rss_end": rss_end, **baseline, **tree_strategies(pids),
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


def mib(size: float) -> str:
    return f"{size / 2**20:.1f}"


def version(executable: str) -> str:
    out = subprocess.run([executable, "-version"], capture_output=True, text=True, check=False)
    return ((out.stdout or out.stderr).strip().splitlines() or ["process-exporter"])[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,200,1000", help="comma-separated program counts")
    parser.add_argument("--scrapes", type=int, default=100, help="scrapes per size after the first")
    parser.add_argument("--no-baseline", action="store_true",
                        help="do not run prometheus-process-exporter beside the supervisor")
    parser.add_argument("--no-pid-namespace", dest="namespace", action="store_false",
                        help="run the supervisor in the host's PID namespace (its /proc scan then also reads every "
                             "other process of the machine)")
    args = parser.parse_args()
    if args.namespace and (os.geteuid() != 0 or not shutil.which("unshare")):
        print("(no root or no unshare: the supervisor runs in the host's PID namespace)", file=sys.stderr)
        args.namespace = False
    sizes = [int(s) for s in args.sizes.split(",")]
    exporter = None if args.no_baseline else shutil.which("prometheus-process-exporter")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(n, args.scrapes, Path(tmp), args.namespace, exporter) for n in sizes]

    load = os.getloadavg()[0]
    where = "in its own PID namespace, as in a pod" if args.namespace else "in the host's PID namespace"
    print(f"### /metrics scrape cost ({os.cpu_count()} CPUs, load average {load:.1f} at the end, "
          f"Python {sys.version.split()[0]}, {args.scrapes} scrapes per size, supervisor {where})\n")
    print("| programs | processes | body kB | scrape median ms | scrape p99 ms | supervisor CPU ms/scrape, median "
          "| p99 | µs CPU per program | first scrape ms | RSS before → after first → after all scrapes MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['programs']} | {r['processes']} | {r['bytes'] / 1000:.0f} | {ms(r['median'])} | {ms(r['p99'])} "
              f"| {ms(r['cpu'])} | {ms(r['cpu_p99'])} | {r['cpu'] * 1e6 / r['programs']:.0f} | {ms(r['first'])} "
              f"| {mib(r['rss_before'])} → {mib(r['rss_after'])} → {mib(r['rss_end'])} |")
    if exporter:
        print(f"\n### Baseline: {version(exporter)} on the same programs, same scrapes\n")
        print("| programs | body kB | scrape median ms | p99 | exporter CPU ms/scrape, median | p99 "
              "| progset CPU / exporter CPU (medians) | exporter RSS MiB |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['programs']} | {r['x_bytes'] / 1000:.0f} | {ms(r['x_median'])} | {ms(r['x_p99'])} "
                  f"| {ms(r['x_cpu'])} | {ms(r['x_cpu_p99'])} | {r['cpu'] / r['x_cpu']:.2f}x "
                  f"| {mib(r['x_rss'])} |")
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
