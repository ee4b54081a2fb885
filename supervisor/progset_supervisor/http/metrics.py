"""Prometheus metrics for ``/metrics``: a collector that reads the master's state at scrape time.

Nothing is sampled between scrapes: each scrape walks the master's programs and the process tree of
each running program. The process table is read in one pass over ``/proc`` (a parent-to-children map
plus each process's ``stat``), so a scrape costs O(programs + processes); psutil's
``Process.children(recursive=True)`` per program would scan the whole process table once per program.

This module imports ``prometheus_client`` (it pulls in ``http.server``, ``wsgiref`` and more: the
supervisor's resident memory grows by 3 MB at its first scrape with 10 programs, 11 MB with 1000),
so :mod:`.http` imports it only on the first ``/metrics`` request: a supervisor that is never scraped
never pays for it.

Metric names and meanings are documented in ``docs/metrics.md``; keep the two in step.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.utils import floatToGoString

from ..core.program import State

if TYPE_CHECKING:
    from ..core.master import Master
    from ..core.program import Supervised

PREFIX = "progset"
# The classic format text_format() writes (recent prometheus_client CONTENT_TYPE_LATEST says version=1.0.0).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LEGACY_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
STATES: tuple[State, ...] = tuple(State)
PROC = "/proc"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Fields of /proc/PID/stat after "(comm)", counted from 0 (proc(5) numbers them from 3).
STATE, PPID, UTIME, STIME, CUTIME, CSTIME, NUM_THREADS, RSS = 0, 1, 11, 12, 13, 14, 17, 21


class TreeUsage:
    """Resources of one program's process tree (the program's process and all its descendants)."""

    __slots__ = ("cpu_system", "cpu_user", "open_fds", "processes", "resident_bytes", "threads")

    def __init__(self) -> None:
        self.processes = 0
        self.cpu_user = 0.0
        self.cpu_system = 0.0
        self.resident_bytes = 0
        self.open_fds = 0
        self.threads = 0

    def add(self, pid: int, stat: list[bytes], proc: str) -> None:
        """Add one live process.

        CPU time includes the process's *waited-for children* (``cutime``/``cstime``): when a
        descendant exits and its parent reaps it, its CPU time moves into the parent's, so the tree
        total does not drop when a worker exits.
        """
        self.processes += 1
        self.cpu_user += (int(stat[UTIME]) + int(stat[CUTIME])) / CLOCK_TICKS
        self.cpu_system += (int(stat[STIME]) + int(stat[CSTIME])) / CLOCK_TICKS
        self.resident_bytes += int(stat[RSS]) * PAGE_SIZE
        self.threads += int(stat[NUM_THREADS])
        try:
            self.open_fds += len(os.listdir(f"{proc}/{pid}/fd"))
        except OSError:  # exited meanwhile, or runs as another user and we are not root
            pass


def read_stat(pid: int, proc: str = PROC) -> list[bytes] | None:
    """The fields of ``/proc/PID/stat`` after the command name, or None if the process is gone."""
    try:
        fd = os.open(f"{proc}/{pid}/stat", os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    # The command name may hold spaces and parentheses: split after its last ")".
    return data[data.rfind(b")") + 2:].split()


def process_tree_usage(roots: dict[str, int], proc: str = PROC) -> dict[str, TreeUsage]:
    """Usage of the process tree under each root pid, from one pass over the process table.

    Read from ``/proc`` directly rather than through psutil: one ``stat`` read per process gives the
    parent, CPU times, threads and resident pages, where psutil's public API needs four reads per
    process plus a create-time check; ``bench/metrics_bench.py`` measures psutil at 4-5 times slower.
    """
    if not roots:
        return {}
    table: dict[int, list[bytes]] = {}
    children: dict[int, list[int]] = {}
    for entry in os.listdir(proc):
        if entry.isdigit():
            pid = int(entry)
            stat = read_stat(pid, proc)
            if stat is not None and len(stat) > RSS:
                table[pid] = stat
                children.setdefault(int(stat[PPID]), []).append(pid)
    usage: dict[str, TreeUsage] = {}
    for name, root in roots.items():
        tree = usage[name] = TreeUsage()
        stack = [root] if root in table else []
        seen: set[int] = set()
        while stack:
            pid = stack.pop()
            if pid in seen:  # pid reuse during the pass cannot loop us
                continue
            seen.add(pid)
            stat = table[pid]
            if stat[STATE] != b"Z":  # a zombie holds no memory; its CPU time goes to its parent when reaped
                tree.add(pid, stat, proc)
            stack.extend(children.get(pid, ()))
    return usage


class CpuCounter:
    """One program's tree CPU times as counters that never go down, across its restarts.

    The tree's raw total drops when a new process replaces the program, and when a descendant leaves
    the tree without being reaped inside it (an orphan re-parented to the supervisor takes its CPU
    time with it). Prometheus reads any drop as a counter reset and would count the whole remaining
    total again as new usage: a false spike. So what a tree had reached is carried over instead.
    """

    __slots__ = ("base", "last", "pid")

    def __init__(self) -> None:
        self.pid = 0
        self.last = (0.0, 0.0)
        self.base = (0.0, 0.0)

    def update(self, pid: int, user: float, system: float) -> tuple[float, float]:
        if pid != self.pid:  # a new process tree: the old one's total stays counted
            self.pid = pid
            self.base = (self.base[0] + self.last[0], self.base[1] + self.last[1])
            self.last = (0.0, 0.0)
        # A drop within one tree is absorbed into the base, so the sum stays where it was.
        self.base = (self.base[0] + max(0.0, self.last[0] - user), self.base[1] + max(0.0, self.last[1] - system))
        self.last = (user, system)
        return self.base[0] + user, self.base[1] + system


def _name(suffix: str) -> str:
    return f"{PREFIX}_{suffix}"


class ProgsetCollector:
    """Reads ``master`` on each ``collect()``; registered with ``auto_describe=False`` so that
    registering it does not run a scrape."""

    def __init__(self, master: Master) -> None:
        self.master = master
        self._cpu: dict[str, CpuCounter] = {}

    def collect(self) -> Iterator[Metric]:
        master = self.master
        programs = list(master.programs.values())
        label = ["program"]

        up = GaugeMetricFamily(_name("program_up"), "1 if the program is RUNNING, else 0.", labels=label)
        state = GaugeMetricFamily(_name("program_state"), "Current state of the program: 1 for the series of "
                                  "its state, 0 for the others.", labels=["program", "state"])
        start = GaugeMetricFamily(_name("program_start_time_seconds"), "Unix time the program's current process "
                                  "started; absent while no process runs.", labels=label)
        backoff = GaugeMetricFamily(_name("program_backoff_seconds"), "Seconds left before the next restart "
                                    "attempt while in BACKOFF, else 0.", labels=label)
        restarts = CounterMetricFamily(_name("program_restarts"), "Automatic restarts after the program "
                                       "exited (not counting starts by command or reload).", labels=label)
        exits = CounterMetricFamily(_name("program_exits"), "Exits of the program's process, by reason (exit "
                                    "or signal) and exit code (128+N for signal N).",
                                    labels=["program", "reason", "code"])
        last_exit = GaugeMetricFamily(_name("program_last_exit_code"), "Exit code of the program's last exit "
                                      "(128+N for signal N); absent until it first exits.", labels=label)
        for supervised in programs:
            name = supervised.name
            current = supervised.state
            up.add_metric([name], 1.0 if current is State.RUNNING else 0.0)
            for each in STATES:
                state.add_metric([name, each.value], 1.0 if each is current else 0.0)
            instance = supervised.instance
            if instance is not None and instance.alive:
                start.add_metric([name], instance.started_wall)
            backoff.add_metric([name], supervised.backoff_remaining())
            restarts.add_metric([name], float(supervised.restarts))
            for (reason, code), count in sorted(supervised.exits.items()):
                exits.add_metric([name, reason, str(code)], float(count))
            if supervised.last_exit is not None:
                last_exit.add_metric([name], float(supervised.last_exit.code))
        yield from (up, state, start, backoff, restarts, exits, last_exit)
        yield from self._process_trees(programs)
        yield from self._supervisor(master)

    def _process_trees(self, programs: list[Supervised]) -> Iterator[Metric]:
        roots = {s.name: s.pid for s in programs if s.pid is not None}
        usage = process_tree_usage(roots)
        label = ["program"]
        cpu = CounterMetricFamily(_name("program_cpu_seconds"), "CPU time of the program's process tree (the "
                                  "program and its descendants, including reaped ones), by mode, summed over "
                                  "the program's restarts.", labels=["program", "mode"])
        rss = GaugeMetricFamily(_name("program_resident_memory_bytes"), "Sum of the resident memory of the "
                                "processes in the program's process tree.", labels=label)
        fds = GaugeMetricFamily(_name("program_open_fds"), "Open file descriptors in the program's process tree.",
                                labels=label)
        threads = GaugeMetricFamily(_name("program_threads"), "Threads in the program's process tree.",
                                    labels=label)
        processes = GaugeMetricFamily(_name("program_processes"), "Processes in the program's process tree.",
                                      labels=label)
        self._cpu = {s.name: self._cpu.get(s.name) or CpuCounter() for s in programs}  # forget removed programs
        for name, tree in usage.items():
            user, system = self._cpu[name].update(roots[name], tree.cpu_user, tree.cpu_system)
            cpu.add_metric([name, "user"], user)
            cpu.add_metric([name, "system"], system)
            rss.add_metric([name], float(tree.resident_bytes))
            fds.add_metric([name], float(tree.open_fds))
            threads.add_metric([name], float(tree.threads))
            processes.add_metric([name], float(tree.processes))
        yield from (cpu, rss, fds, threads, processes)

    def _supervisor(self, master: Master) -> Iterator[Metric]:
        reloads = CounterMetricFamily(_name("reloads"), "Configuration reloads, by result.", labels=["result"])
        for result in ("success", "failure"):
            reloads.add_metric([result], float(master.reload_results[result]))
        yield reloads
        dropped = CounterMetricFamily(_name("output_dropped_lines"), "Output lines of the program dropped because "
                                      "the supervisor's stdout/stderr was not read (a stalled log pipe); "
                                      "never blocking on it keeps the supervisor running.", labels=["program"])
        counts = master.sink.dropped_lines()
        for name in dict.fromkeys([*master.programs, *counts]):
            dropped.add_metric([name], float(counts.get(name, 0)))
        yield dropped
        config = master.config
        if config is not None:
            info = GaugeMetricFamily(_name("config_info"), "The loaded configuration: where it came from "
                                     "(namespace/name@generation of a rendered ProgramSet, else the file) "
                                     "and its content hash. Always 1.", labels=["source", "hash"])
            info.add_metric([str(config.source) or config.origin, config.hash], 1.0)  # cached on the Config
            yield info
        last = master.last_reload_time if master.last_reload_time is not None else master.started_wall
        yield GaugeMetricFamily(_name("last_reload_timestamp_seconds"), "Unix time of the last configuration "
                                "load or reload attempt, successful or not (the start-up load counts).",
                                value=last)


def _label_value(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')
    return value


class _Unusual(Exception):
    """A family :func:`text_format` does not write itself."""


def text_format(families: list[Metric]) -> bytes:
    """The Prometheus text format (0.0.4) of ``families``, byte for byte what prometheus_client's
    ``generate_latest`` writes for them, in about half the time.

    Why not ``generate_latest`` itself: it validates and escapes every metric and label name of every
    sample, which is most of the cost of a scrape at a few thousand samples (200 programs), and the
    scrape runs on the loop that restarts programs. Here each name is checked once. Families it treats
    specially (histograms, ``_created`` samples, timestamps, names outside the classic character set)
    are left to it, so the output never differs; a test compares the two on tricky input.
    """
    try:
        return _text_format(families)
    except _Unusual:
        return generate_latest(_Families(families))


def _text_format(families: list[Metric]) -> bytes:
    out: list[str] = []
    orders: dict[tuple[str, ...], list[str]] = {}  # label names as given -> sorted, once checked
    for metric in families:
        if metric.type not in ("gauge", "counter") or not LEGACY_NAME.match(metric.name):
            raise _Unusual
        name = metric.name + "_total" if metric.type == "counter" else metric.name
        help_text = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {help_text}\n# TYPE {name} {metric.type}\n")
        for sample in metric.samples:
            if sample.name != name or sample.timestamp is not None:
                raise _Unusual
            labels = sample.labels
            if not labels:
                out.append(f"{name} {floatToGoString(sample.value)}\n")
                continue
            keys = tuple(labels)
            order = orders.get(keys)
            if order is None:
                if not all(LEGACY_NAME.match(k) for k in keys):
                    raise _Unusual
                order = orders[keys] = sorted(keys)
            text = ",".join(f'{k}="{_label_value(labels[k])}"' for k in order)
            out.append(f"{name}{{{text}}} {floatToGoString(sample.value)}\n")
    return "".join(out).encode()


class _Families:
    """Already collected families, as a collector ``generate_latest`` accepts."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


class Exporter:
    """The collectors for one master and the rendering of a scrape."""

    def __init__(self, master: Master) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ProgsetCollector(master))  # type: ignore[arg-type]
        # The supervisor's own process (CPU, memory, fds, start time) as progset_process_*.
        ProcessCollector(namespace=PREFIX, registry=self.registry)

    def render(self) -> tuple[bytes, str]:
        """Body and Content-Type, always the classic text format.

        Not OpenMetrics, even though Prometheus asks for it first: prometheus_client's OpenMetrics
        writer takes about 2.5 times as long, and nothing here needs what OpenMetrics adds (exemplars,
        ``_created``, units); Prometheus accepts the text format as well.
        """
        return text_format(list(self.registry.collect())), CONTENT_TYPE
