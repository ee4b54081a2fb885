#!/usr/bin/env python3
"""progset-supervisor side by side with supervisord and HAProxy's master: start, memory, idle CPU, restarts.

Why one script for all three tools: absolute numbers depend on the machine, so the only claims worth
making are ratios between tools measured in the same run, on the same machine, with the same probe
(see ``proctree``). Nothing here is asserted; the output is a Markdown report for ``bench/RESULTS.md``.

progset runs as deployed: by default the bench installs it as a wheel into a scratch venv, as
supervisor/Dockerfile does (``--editable`` uses the project's editable ``.venv`` instead, ``--progset``
any executable). For each N, first ``--starts`` start-only rounds, interleaved between the tools (round
1: every tool once, round 2: ...) so that each sees the same machine: launch with N programs, wait
until all run, SIGTERM, wait until all is gone. Then, for each tool, in this order:

1. **start**: time from launching the tool until N processes ``sleep 86400 MARKER_i`` descend from it
   (with the rounds' starts, ``--starts`` + 1 samples: the table shows their median and range);
2. **RSS**: the tool's own resident memory (its main process, not the programs) after ``--settle-seconds``;
3. **idle CPU**: utime+stime of the tool over ``--idle-seconds`` of nothing happening, plus its
   context switches (a wake-up, even one too short to cost a clock tick, is a context switch);
4. **restart**: SIGKILL one program ``--kills`` times (a different program each time where N allows,
   ``--kill-gap`` apart) and time until a new process with the same marker exists; median and range.
   HAProxy never restarts a program: it gets one kill and is reported ``never`` if nothing came back
   within ``--never-wait`` seconds;
5. **stop**: SIGTERM to the tool until it and all its programs are gone (extra, not in the issue).

Every process this run starts is killed at the end, on errors and on Ctrl-C too: the tool's process
group, the descendants it had, and anything still carrying this run's marker prefix.

    .venv/bin/python bench/supervisor_bench.py                      # the issue's numbers (about 7 min)
    .venv/bin/python bench/supervisor_bench.py -n 10 -n 200 --idle-seconds 2 --kills 5   # quick look
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from proctree import (
    CLK_TCK,
    ProgramScanner,
    Usage,
    alive,
    children,
    cpu_times,
    find_by_marker_prefix,
    rss_kib,
    start_time,
    usage,
)
from tools import EDITABLE, PROJECT, Install, Progset, Tool, default_tools, install_wheel


@dataclass
class Result:
    """One tool at one N; ``None`` means not measured (the tool failed before that step)."""

    tool: str
    n: int
    first_s: float | None = None
    start_s: float | None = None
    first_samples: list[float] = field(default_factory=list)  # first_s of the start rounds and of this one
    start_samples: list[float] = field(default_factory=list)  # start_s likewise
    rss_kib: int | None = None
    idle: Usage | None = None
    restarts_ms: list[float] = field(default_factory=list)
    never_restarts: bool = False
    exited_after_kill: bool = False  # the tool stopped everything because one program was killed
    stop_s: float | None = None
    # Under monitoring (--scrapes): RSS at checkpoints and after all queries
    scraped: list[tuple[int, int]] = field(default_factory=list)  # (queries so far, RSS KiB)
    scrape_ms: list[float] = field(default_factory=list)  # client-side time of each scrape
    busy: float | None = None  # share of the machine's CPU busy (others' load) during the idle window
    errors: list[str] = field(default_factory=list)


class Interrupted(Exception):
    """SIGTERM to the bench: unwind like Ctrl-C so every ``finally`` cleans up."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Interrupted(f"signal {signum}")


def descendants(root: int) -> dict[int, int | None]:
    """Every process below ``root`` with its start time, so a later kill cannot hit a reused pid."""
    found: dict[int, int | None] = {}
    stack = children(root)
    while stack:
        pid = stack.pop()
        if pid not in found:
            found[pid] = start_time(pid)
            stack.extend(children(pid))
    return found


def hard_kill(proc: subprocess.Popen[bytes], marker_prefix: bytes) -> None:
    """Last-resort clean-up of one tool: its group, the tree it had, and every process with our marker."""
    tree = descendants(proc.pid) if proc.poll() is None else {}
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the tool and what stayed in its group (HAProxy's worker)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    for pid, started in tree.items():
        if started is not None and start_time(pid) == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for pid in find_by_marker_prefix(marker_prefix):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextmanager
def launched(argv: list[str], workdir: Path, marker_prefix: bytes,
             env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    """Start a tool in its own session (Ctrl-C reaches only the bench, which then cleans up in order)."""
    with open(workdir / "stdout.log", "wb") as out, open(workdir / "stderr.log", "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=workdir, env=env,
                                start_new_session=True)
    try:
        yield proc, t0
    finally:
        hard_kill(proc, marker_prefix)


def wrapped_child(proc: subprocess.Popen[bytes], deadline: float) -> int | None:
    """The supervisor started by a wrapper (``unshare --fork``): the wrapper's only child."""
    while time.perf_counter() < deadline and proc.poll() is None:
        kids = children(proc.pid)
        if kids:
            return kids[0]
        time.sleep(0.0005)
    return None


def tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def wait_running(result: Result, scanner: ProgramScanner, proc: subprocess.Popen[bytes], t0: float, n: int,
                 deadline: float, log: Path) -> bool:
    """Poll until ``n`` programs run; record when the first and the last did. False on failure."""
    while True:
        running = scanner.scan()
        if running and result.first_s is None:
            result.first_s = time.perf_counter() - t0
        if len(running) == n:
            result.start_s = time.perf_counter() - t0
            return True
        if proc.poll() is not None or time.perf_counter() > deadline:
            why = f"exited with {proc.returncode}" if proc.returncode is not None else "timed out"
            result.errors.append(f"start: {len(running)}/{n} running, {why}; {tail(log)}")
            return False
        time.sleep(0.001)


def kill_one(scanner: ProgramScanner, marker: bytes, wait: float) -> tuple[float | None, str]:
    """SIGKILL the program carrying ``marker``; milliseconds until a replacement runs (None: none came)."""
    pid = scanner.scan().get(marker)
    if pid is None:
        return None, f"program {marker.decode()} not running before the kill"
    t_kill = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    while scanner.find_replacement(marker, pid) is None:
        if time.perf_counter() - t_kill > wait:
            return None, f"nothing replaced {marker.decode()} within {wait:g} s"
        time.sleep(0.0002)  # yield the core: on two cores a spinning probe would slow the tool
    return (time.perf_counter() - t_kill) * 1000, ""


ORPHAN_GRACE = 2.0  # seconds programs may outlive their supervisor's exit before they count as left behind


def stop(proc: subprocess.Popen[bytes], supervisor: int, scanner: ProgramScanner,
         timeout: float) -> tuple[float | None, str]:
    """SIGTERM to the supervisor; seconds until it has exited and none of its programs runs (None: why not).

    The signal goes out once the supervisor handles it (:func:`await_handler`; the clock starts then).
    A supervisor that exits while its programs still run has left them behind (nothing else would stop
    them): that is reported after ``ORPHAN_GRACE`` instead of waiting out ``timeout``.
    """
    if not await_handler(supervisor, signal.SIGTERM, 10.0):
        return None, "no SIGTERM handler 10 s after the start; not sent"
    programs = {pid: start_time(pid) for pid in scanner.scan().values()}
    t_stop = time.perf_counter()
    os.kill(supervisor, signal.SIGTERM)  # the supervisor itself: unshare would not pass it on
    t_exit = None
    while True:
        exited = proc.poll() is not None
        if exited and not any(alive(pid, started) for pid, started in programs.items()):
            return time.perf_counter() - t_stop, ""
        now = time.perf_counter()
        if exited:
            t_exit = now if t_exit is None else t_exit
            if now - t_exit > ORPHAN_GRACE:
                left = sum(alive(pid, started) for pid, started in programs.items())
                return None, f"the supervisor exited ({proc.returncode}), leaving {left} programs running"
        if now - t_stop > timeout:
            return None, f"not done after {timeout:g} s"
        time.sleep(0.001)


def handles(pid: int, signum: int) -> bool:
    """Whether ``pid`` has a handler for ``signum`` now (``SigCgt`` in /proc/PID/status).

    Not ``SigBlk``: none of the tools waits for signals with signalfd, and HAProxy's master blocks
    every signal for a moment while it resets its handlers, just before its last SIGTERM-less phase.
    """
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & 1 << (signum - 1))
    except OSError:
        pass
    return False


def await_handler(pid: int, signum: int, timeout: float) -> bool:
    """Wait until ``pid`` handles ``signum``: a tool may run its programs before it can be stopped.

    HAProxy's master runs its programs before it catches SIGTERM (SIGTERM shows up in its ``SigCgt``
    only after it logs "Loading success."): a SIGTERM in between kills the master with the default
    action and leaves every program running (seen at N = 10 and 200).
    A namespace's PID 1 without a handler would drop the signal instead. A start-only round, which
    stops the tool right after its start, would meet this every time; the full measurement's stop
    comes after settle, idle and kills, but waits the same way.
    """
    deadline = time.perf_counter() + timeout
    while not handles(pid, signum):
        if time.perf_counter() > deadline:
            return False
        time.sleep(0.001)
    return True


CHECKPOINTS = (1, 10, 100)


def monitored(result: Result, tool: Tool, supervisor: int, workdir: Path, args: argparse.Namespace) -> None:
    """Scrape ``args.scrapes`` times, one at a time (each a new connection, read to the end), with a
    CLI query after every ``args.cli_every``-th; record the tool's RSS at the checkpoints and at the end.

    Back to back by default, as issue 18 measured it: progset then answers from its reused body for
    0.25 s (or four render times) and renders again after that. ``--paced`` waits past that window
    (``Monitor.reuse``, or four round trips if longer) so that every scrape is a fresh render, as at
    Prometheus' pace; at 1000 programs on a loaded machine that is a second or more per scrape.
    """
    monitor = tool.monitor(workdir)
    for i in range(1, args.scrapes + 1):
        started = time.perf_counter()
        monitor.scrape()
        elapsed = time.perf_counter() - started
        result.scrape_ms.append(elapsed * 1000)
        if args.paced and monitor.reuse:
            time.sleep(max(monitor.reuse, 4 * elapsed) + 0.01)
        if args.cli_every and i % args.cli_every == 0:
            monitor.cli()
        if i in CHECKPOINTS:
            result.scraped.append((i, rss_kib(supervisor)))
    time.sleep(args.settle_seconds)
    result.scraped.append((args.scrapes, rss_kib(supervisor)))


def measure(tool: Tool, n: int, marker_prefix: str, args: argparse.Namespace, workdir: Path,
            env: dict[str, str], mode: str = "full") -> Result:
    """All measurements of one tool at one N, each step only if the previous one worked.

    ``mode`` "warmup" stops after the start: it loads the tool's files into the page cache (and fills
    progset's bytecode cache), so the first measured tool is not the one that pays for a cold disk.
    "start" is one start-only round: the start, then the stop (SIGTERM once the supervisor handles it,
    as in step 5; the clean-up kills what is left if that fails), so the next round begins on a quiet
    machine.
    A tool that does not restart gets its kill in a second launch, after the stop was measured:
    HAProxy's master, by default, answers a killed program by stopping everything (exit-on-failure).
    """
    result = Result(tool.name, n)
    markers = [f"{marker_prefix}{i:05d}" for i in range(n)]
    # The config gets a directory of its own: progset watches its config's directory, and the logs the
    # bench collects in ``workdir`` would otherwise wake it on every line it writes (no pod does that).
    confdir = workdir / "config"
    confdir.mkdir()
    argv = tool.write_config(confdir, [["sleep", "86400", m] for m in markers])
    wanted = {m.encode() for m in markers}
    with launched(argv, workdir, marker_prefix.encode(), env) as (proc, t0):
        supervisor = proc.pid if not tool.wrapper else wrapped_child(proc, t0 + args.start_timeout)
        if supervisor is None:
            result.errors.append(f"start: {tool.wrapper[0]} started no supervisor; {tail(workdir / 'stderr.log')}")
            return result
        scanner = ProgramScanner(supervisor, wanted)
        # 1. start
        if not wait_running(result, scanner, proc, t0, n, t0 + args.start_timeout, workdir / "stderr.log"):
            return result
        if mode == "warmup":
            return result
        if mode == "start":
            stopped, stop_error = stop(proc, supervisor, scanner, args.stop_timeout)
            if stopped is None:
                result.errors.append(f"stop: {stop_error}")
            return result
        # 2. memory, once settled
        time.sleep(args.settle_seconds)
        result.rss_kib = rss_kib(supervisor)
        # 3. idle CPU: the bench sleeps, so whatever the tool does now it does on its own
        before, machine_before = usage(supervisor), cpu_times()
        time.sleep(args.idle_seconds)
        result.idle = usage(supervisor) - before
        machine_after = cpu_times()
        result.busy = (machine_after[0] - machine_before[0]) / max(1, machine_after[1] - machine_before[1])
        # 3b. memory under monitoring: --scrapes queries one at a time, a CLI query every --cli-every
        if args.scrapes:
            try:
                monitored(result, tool, supervisor, workdir, args)
            except (OSError, RuntimeError, http.client.HTTPException) as exc:
                result.errors.append(f"monitoring: {type(exc).__name__}: {exc}")
        # 4. restart after SIGKILL: a different program each time while N allows
        for k in range(args.kills if tool.restarts else 0):
            marker = markers[(k * max(1, n // args.kills)) % n if n >= args.kills else k % n].encode()
            latency, error = kill_one(scanner, marker, args.restart_timeout)
            if latency is None:
                result.errors.append(f"restart: {error}")
                break
            result.restarts_ms.append(latency)
            time.sleep(args.kill_gap)
        # 5. stop: until the tool has exited and none of its programs runs any more
        result.stop_s, stop_error = stop(proc, supervisor, scanner, args.stop_timeout)
        if result.stop_s is None:
            result.errors.append(f"stop: {stop_error}")
    if tool.restarts:
        return result
    # 4'. the kill, for a tool that never restarts: a fresh instance, since the master may exit after it
    killdir = workdir / "kill"
    killdir.mkdir()
    with launched(argv, killdir, marker_prefix.encode(), env) as (proc, t0):
        scanner = ProgramScanner(proc.pid, wanted)
        probe = Result(tool.name, n)
        if not wait_running(probe, scanner, proc, t0, n, t0 + args.start_timeout, killdir / "stderr.log"):
            result.errors.extend(probe.errors)
            return result
        latency, _ = kill_one(scanner, markers[0].encode(), args.never_wait)
        if latency is not None:
            result.restarts_ms.append(latency)
        else:
            result.never_restarts = True
            time.sleep(0.1)  # HAProxy's master takes a moment to act on exit-on-failure
            result.exited_after_kill = proc.poll() is not None
    return result


# -- report ---------------------------------------------------------------------------------------------------------

def machine() -> list[tuple[str, str]]:
    """What a reader needs to compare these numbers with their own."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return [("CPUs (nproc)", str(len(os.sched_getaffinity(0)))), ("CPU model", model), ("memory", mem),
            ("kernel", f"{platform.system()} {platform.release()}"),
            ("Python (bench)", f"{platform.python_version()} ({sys.executable})")]


def fmt_ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "—"
    if b == 0:
        return "—" if a == 0 else "∞"
    return f"{a / b:.2f}x"


def restart_value(r: Result) -> float | None:
    return statistics.median(r.restarts_ms) if r.restarts_ms else None


def start_value(r: Result) -> float | None:
    """Median time until all N ran, over the start rounds and the full measurement's start."""
    return statistics.median(r.start_samples) if r.start_samples else None


def seconds(samples: list[float]) -> str:
    """One sample as it is; several as median (min-max, n=count)."""
    if len(samples) == 1:
        return f"{samples[0]:.3f} s"
    return f"{statistics.median(samples):.3f} s ({min(samples):.3f}-{max(samples):.3f}, n={len(samples)})"


def table(results: list[Result], tools: list[str], args: argparse.Namespace) -> str:
    """One row per (metric, N); lower is better everywhere, so a ratio below 1 means progset wins."""
    by = {(r.tool, r.n): r for r in results}
    ns = sorted({r.n for r in results})
    idle = f"{args.idle_seconds:g} s"

    def cell_first(r: Result) -> tuple[str, float | None]:
        if not r.first_samples:
            return "—", None
        return seconds(r.first_samples), statistics.median(r.first_samples)

    def cell_busy(r: Result) -> tuple[str, None]:
        return ("—", None) if r.busy is None else (f"{r.busy * 100:.0f} %", None)

    def cell_start(r: Result) -> tuple[str, float | None]:
        return ("failed", None) if not r.start_samples else (seconds(r.start_samples), start_value(r))

    def cell_rss(r: Result) -> tuple[str, float | None]:
        return ("—", None) if r.rss_kib is None else (f"{r.rss_kib / 1024:.1f} MiB", float(r.rss_kib))

    def cell_cpu(r: Result) -> tuple[str, float | None]:
        if r.idle is None:
            return "—", None
        return f"{r.idle.cpu_ticks * 1000 / CLK_TCK:.0f} ms", float(r.idle.cpu_ticks)

    def cell_oncpu(r: Result) -> tuple[str, float | None]:
        if r.idle is None:
            return "—", None
        return f"{r.idle.run_ns / 1e6:.2f} ms, {r.idle.switches} wake-ups", r.idle.run_ns / 1e6

    def cell_restart(r: Result) -> tuple[str, float | None]:
        if r.never_restarts:
            return ("never; the master then stopped every program and exited" if r.exited_after_kill
                    else "never"), None
        if not r.restarts_ms:
            return "—", None
        med = statistics.median(r.restarts_ms)
        return (f"{med:.1f} ms ({min(r.restarts_ms):.1f}-{max(r.restarts_ms):.1f}, n={len(r.restarts_ms)})",
                med)

    def cell_scraped(at: int) -> Callable[[Result], tuple[str, float | None]]:
        def cell(r: Result) -> tuple[str, float | None]:
            kib = dict(r.scraped).get(at)
            return ("—", None) if kib is None else (f"{kib / 1024:.1f} MiB", float(kib))
        return cell

    def cell_growth(r: Result) -> tuple[str, None]:
        values = dict(r.scraped)
        if 100 not in values or args.scrapes not in values:
            return "—", None
        return f"{(values[args.scrapes] - values[100]) / 1024:+.1f} MiB", None

    def cell_scrape_ms(r: Result) -> tuple[str, float | None]:
        if not r.scrape_ms:
            return "—", None
        ordered = sorted(r.scrape_ms)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        med = statistics.median(ordered)
        return f"{med:.1f} ms (p99 {p99:.1f})", med

    def cell_stop(r: Result) -> tuple[str, float | None]:
        return ("—", None) if r.stop_s is None else (f"{r.stop_s:.3f} s", r.stop_s)

    median = ", median (min-max)" if args.starts else ""
    under = []
    if args.scrapes:
        cli = f", a CLI query after every {args.cli_every}th" if args.cli_every else ""
        under = [(f"RSS after {at} scrape{'s' if at > 1 else ''}", cell_scraped(at)) for at in CHECKPOINTS
                 if at < args.scrapes]
        paced = ", each one rendered" if args.paced else ", back to back"
        under += [(f"**RSS after {args.scrapes} scrapes{paced}{cli} (steady state)**", cell_scraped(args.scrapes)),
                  (f"RSS growth from scrape 100 to {args.scrapes}", cell_growth),
                  ("scrape round trip, client side, median (p99)", cell_scrape_ms)]
    metrics = [(f"first program running after{median}", cell_first), (f"all N running after{median}", cell_start),
               ("supervisor RSS" + (", idle (before any scrape)" if args.scrapes else ""), cell_rss), *under,
               (f"idle CPU over {idle} (utime+stime)", cell_cpu),
               (f"idle on-CPU time and wake-ups over {idle}", cell_oncpu),
               ("restart after SIGKILL, median (min-max)", cell_restart), ("stop all (SIGTERM → gone)", cell_stop),
               (f"machine CPU busy during the idle window (others' load; {os.cpu_count()} CPUs)", cell_busy)]
    head = ["metric", "N", *tools]
    ratios = [(mine, other) for mine in tools if mine.startswith("progset")
              for other in ("haproxy", "supervisord") if other in tools]
    head += [f"{mine}/{other}" for mine, other in ratios]
    rows = ["| " + " | ".join(head) + " |", "|" + "|".join(["---", "---:"] + ["---:"] * (len(head) - 2)) + "|"]
    for label, cell in metrics:
        for n in ns:
            values = {t: cell(by[(t, n)]) if (t, n) in by else ("—", None) for t in tools}
            row = [label, str(n), *(values[t][0] for t in tools)]
            row += [fmt_ratio(values[mine][1], values[other][1]) for mine, other in ratios]
            rows.append("| " + " | ".join(row) + " |")
    return "\n".join(rows)


def targets(results: list[Result], mine: str = "progset") -> list[str]:
    """The issue's targets at N = 200 for one progset variant, each plainly met or not."""
    by = {(r.tool, r.n): r for r in results}
    p, s, h = by.get((mine, 200)), by.get(("supervisord", 200)), by.get(("haproxy", 200))
    if p is None:
        return [f"- N = 200 not measured for {mine}: targets not evaluated."]

    def verdict(ok: bool | None) -> str:
        return "not measured" if ok is None else ("**met**" if ok else "**NOT met**")

    def secs(r: Result | None) -> str:
        value = None if r is None else start_value(r)
        if r is None or value is None:
            return "—"
        return f"{value:.3f} s" if len(r.start_samples) == 1 else f"median {value:.3f} s of {len(r.start_samples)}"

    def kib(r: Result | None) -> str:
        return "—" if r is None or r.rss_kib is None else f"{r.rss_kib / 1024:.1f} MiB"

    out = []
    mine_s, haproxy_s = start_value(p), None if h is None else start_value(h)
    ok = None if mine_s is None or haproxy_s is None else mine_s <= haproxy_s
    how = " (medians of the starts)" if len(p.start_samples) > 1 else ""
    out.append(f"- All 200 running no slower than HAProxy{how}: {verdict(ok)} "
               f"({mine} {secs(p)}, HAProxy {secs(h)})")
    ok = None if p.rss_kib is None or s is None or s.rss_kib is None else p.rss_kib < s.rss_kib
    out.append(f"- RSS below supervisord's: {verdict(ok)} ({mine} {kib(p)}, supervisord {kib(s)})")
    med, other = restart_value(p), None if s is None else restart_value(s)
    ok = None if med is None else med < 10
    out.append(f"- Restart latency under 10 ms median: {verdict(ok)} ({mine} "
               f"{'—' if med is None else f'{med:.1f} ms'}{'' if other is None else f', supervisord {other:.0f} ms'})")
    ok = None if p.idle is None else p.idle.cpu_ticks == 0
    out.append(f"- Idle CPU 0: {verdict(ok)} "
               f"({'—' if p.idle is None else f'{p.idle.cpu_ticks} ticks, {p.idle.switches} wake-ups'})")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", dest="sizes", type=int, action="append", metavar="N",
                        help="number of programs (repeatable; default 10, 200 and 1000)")
    parser.add_argument("--tool", dest="tools", action="append",
                        choices=("progset", "progset-pid1", "supervisord", "haproxy"),
                        help="only these tools (repeatable; default all: ratios need progset and another)")
    parser.add_argument("--pid1", action="store_true",
                        help="also run progset as PID 1 of a new pid namespace (unshare, needs root), as in a pod")
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="idle CPU window (default %(default)s)")
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs for the restart median (default %(default)s)")
    parser.add_argument("--kill-gap", type=float, default=0.2, help="pause after each restart (default %(default)s)")
    parser.add_argument("--settle-seconds", type=float, default=1.0,
                        help="wait after all run before reading RSS (default %(default)s)")
    parser.add_argument("--scrapes", type=int, default=0, metavar="K",
                        help="after the idle window, query each tool's monitoring surface K times back to back and "
                             "report its RSS under scraping (progset: GET /metrics; HAProxy: 'show proc' on the "
                             "master CLI; supervisord: XML-RPC getAllProcessInfo); turns those surfaces on "
                             "(default 0: off, as before)")
    parser.add_argument("--paced", action="store_true",
                        help="with --scrapes: wait past progset's /metrics reuse window after each scrape, so each "
                             "one renders (default: back to back, as issue 18 measured)")
    parser.add_argument("--cli-every", type=int, default=100, metavar="C",
                        help="with --scrapes: a CLI query ('show proc'; supervisord: getAllProcessInfo) after "
                             "every C-th scrape (default %(default)s; 0: none)")
    parser.add_argument("--start-timeout", type=float, default=120.0, help="default %(default)s s")
    parser.add_argument("--restart-timeout", type=float, default=5.0, help="default %(default)s s")
    parser.add_argument("--never-wait", type=float, default=1.0,
                        help="seconds a killed HAProxy program must stay dead to count as 'never' "
                             "(default %(default)s)")
    parser.add_argument("--stop-timeout", type=float, default=60.0, help="default %(default)s s")
    parser.add_argument("--starts", type=int, default=5, metavar="K",
                        help="start-only rounds per N before the full measurement, interleaved between the "
                             "tools; the start rows show the median of K+1 (default %(default)s; 0: one start)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--progset", metavar="PATH",
                       help="progset-supervisor executable to measure (default: build a wheel of the working "
                            "tree and install it into a scratch venv, as supervisor/Dockerfile does)")
    which.add_argument("--editable", action="store_true",
                       help="measure the project's editable .venv install (a dev install: its .pth files run at "
                            "every interpreter start)")
    parser.add_argument("--progset-config", choices=("rendered", "yaml"), default="rendered",
                        help="progset's input: 'rendered' (default) is what the operator writes into the ConfigMap "
                             "(JSON, every field defaulted) in a directory given to -f, as in a pod; 'yaml' a "
                             "hand-written bare programs: YAML file")
    parser.add_argument("--supervisord", help="supervisord executable (default: from PATH)")
    parser.add_argument("--haproxy", help="haproxy executable (default: from PATH)")
    parser.add_argument("--no-warmup", action="store_true",
                        help="skip the untimed N=10 start of each tool that warms the page cache")
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="with --editable or --progset: run progset as the environment has it "
                             "(PYTHONDONTWRITEBYTECODE honoured, so an editable install compiles its sources at "
                             "every start); the default wheel install is compiled at install, as in the image")
    parser.add_argument("--keep", action="store_true", help="keep the temporary configs and logs, print where")
    args = parser.parse_args(argv)
    if not 0 <= args.starts <= 999:
        parser.error("--starts must be between 0 and 999")
    return args


def progset_install(args: argparse.Namespace, install: Install | None) -> str:
    """The report's line on which progset was measured."""
    if install is not None:
        return install.description
    bytecode = ("bytecode as the environment has it" if args.no_bytecode_cache else
                "bytecode compiled once into a scratch PYTHONPYCACHEPREFIX (as an installed wheel has it)")
    if args.progset:
        return f"{args.progset} (--progset); {bytecode}"
    return f"the project's editable .venv (--editable; its .pth files run at every start); {bytecode}"


def starts_note(args: argparse.Namespace) -> str:
    if not args.starts:
        return ""
    return (f"Start: {args.starts} start-only rounds per N, interleaved between the tools (each round starts every "
            "tool once, waits until all N run, stops it), plus the full measurement's start: median "
            f"(min-max) of {args.starts + 1}; the ratios compare medians. ")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if inherited as ignored (a script's `&`)
    sizes = args.sizes or [10, 200, 1000]
    tools = [replace(t, monitored=args.scrapes > 0)
             for t in default_tools(args.progset or str(EDITABLE), args.supervisord, args.haproxy,
                                    args.pid1 or "progset-pid1" in (args.tools or ()), args.progset_config)
             if args.tools is None or t.name in args.tools]
    # Markers are sleep durations' fractional digits (GNU sleep adds its arguments): this run's pid and a
    # random nonce, then tool, size, launch (0: the full measurement, 1..K: start rounds) and program index.
    # The run prefix names this run's processes and no others; each launch's prefix, only its own.
    run_prefix = f"0.{os.getpid() % 100000:05d}{random.randrange(10000):04d}"

    def prefix(ti: int, size: int, launch: int) -> str:
        return f"{run_prefix}{ti}{size}{launch:03d}"

    root = Path(tempfile.mkdtemp(prefix="progset-bench-"))
    results: list[Result] = []
    interrupted = False
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    t_begin = time.perf_counter()
    install = None
    if not args.progset and not args.editable and any(isinstance(t, Progset) for t in tools):
        print("# progset: installing a wheel into a scratch venv ...", file=sys.stderr, flush=True)
        try:
            install = install_wheel(root)
        except (KeyboardInterrupt, Interrupted, subprocess.CalledProcessError) as exc:
            if isinstance(exc, subprocess.CalledProcessError):
                print(f"# progset install failed: {' '.join(map(str, exc.cmd))}\n{exc.stdout}{exc.stderr}",
                      file=sys.stderr)
            subprocess.run(["rm", "-rf", str(root)], check=False)
            return 1 if isinstance(exc, subprocess.CalledProcessError) else 130
        tools = [replace(t, executable=str(install.executable)) if isinstance(t, Progset) else t for t in tools]
    # Read now: the scratch venv is gone by the time the report is written.
    versions = [(t.name, t.version()) for t in tools]
    envs = {t.name: t.environment(root, install is None and not args.no_bytecode_cache) for t in tools}
    try:
        if not args.no_warmup:
            for ti, tool in enumerate(tools):
                workdir = root / f"{tool.name}-warmup"
                workdir.mkdir()
                print(f"# {tool.name} warm-up ...", file=sys.stderr, flush=True)
                warm = measure(tool, 10, prefix(ti, 9, 0), args, workdir, envs[tool.name], mode="warmup")
                for error in warm.errors:
                    print(f"#   {tool.name} warm-up: {error}", file=sys.stderr, flush=True)
        for ni, n in enumerate(sizes):
            # Start-only rounds, interleaved: every tool once per round, so all see the same machine.
            rounds: dict[str, list[Result]] = {t.name: [] for t in tools}
            for k in range(1, args.starts + 1):
                done = []
                for ti, tool in enumerate(tools):
                    workdir = root / f"{tool.name}-{n}-start{k}"
                    workdir.mkdir()
                    sample = measure(tool, n, prefix(ti, ni % 9, k), args, workdir, envs[tool.name], mode="start")
                    rounds[tool.name].append(sample)
                    done.append(f"{tool.name} {'failed' if sample.start_s is None else f'{sample.start_s:.3f} s'}")
                    for error in sample.errors:
                        print(f"#   {tool.name} N={n} start round {k}: {error}", file=sys.stderr, flush=True)
                print(f"# N={n} start round {k}/{args.starts}: {', '.join(done)}", file=sys.stderr, flush=True)
            for ti, tool in enumerate(tools):
                workdir = root / f"{tool.name}-{n}"
                workdir.mkdir()
                print(f"# {tool.name} N={n} ...", file=sys.stderr, flush=True)
                result = measure(tool, n, prefix(ti, ni % 9, 0), args, workdir, envs[tool.name])
                for error in result.errors:
                    print(f"#   {tool.name} N={n}: {error}", file=sys.stderr, flush=True)
                starts = [*rounds[tool.name], result]
                result.first_samples = [r.first_s for r in starts if r.first_s is not None]
                result.start_samples = [r.start_s for r in starts if r.start_s is not None]
                result.errors += [f"start round {k}: {e}" for k, r in enumerate(rounds[tool.name], 1) for e in r.errors]
                results.append(result)
    except (KeyboardInterrupt, Interrupted):
        interrupted = True
        print("# interrupted: every process started was killed; partial results follow", file=sys.stderr)
    finally:
        for pid in find_by_marker_prefix(run_prefix.encode()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if args.keep:
            print(f"# configs and logs kept in {root}", file=sys.stderr)
        else:
            subprocess.run(["rm", "-rf", str(root)], check=False)
    elapsed = time.perf_counter() - t_begin
    load_after = Path("/proc/loadavg").read_text().split()[:3]

    command = " ".join(["python", os.path.relpath(__file__, PROJECT), *(sys.argv[1:] if argv is None else argv)])
    lines = ["### Machine", ""]
    lines += [f"- {k}: {v}" for k, v in machine()]
    lines += [f"- {name}: {version}" for name, version in versions]
    if any(isinstance(t, Progset) for t in tools):
        lines.append(f"- progset install: {progset_install(args, install)}")
        lines.append("- progset config: " + ("the operator's rendering (JSON, every field defaulted) in a directory, "
                                             "as a pod mounts it" if args.progset_config == "rendered" else
                                             "a bare programs: YAML file (PyYAML)"))
    lines += [f"- load average (1, 5, 15 min) before: {' '.join(load_before)}, after: {' '.join(load_after)}"]
    lines += ["", "### Command", "", f"    {command}    # from the repository root; took {elapsed:.0f} s", "",
              "### Results", "",
              f"Lower is better everywhere. {starts_note(args)}Restart: {args.kills} SIGKILLs of a running program, "
              "each timed until a new process with its marker exists. Idle CPU is in clock ticks "
              f"({1000 // CLK_TCK} ms each); on-CPU time (schedstat) and wake-ups (context switches) show what "
              "a tick hides.", "", table(results, [t.name for t in tools], args), "",
              "### Targets (issue 2, N = 200)", "",
              *(line for t in tools if t.name.startswith("progset") for line in targets(results, t.name))]
    errors = [f"- {r.tool} N={r.n}: {e}" for r in results for e in r.errors]
    if errors:
        lines += ["", "### Errors", "", *errors]
    print("\n".join(lines))
    return 130 if interrupted else 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
