"""Prometheus metrics for ``/metrics``: the master's state and each program's process tree, read at scrape time.

Nothing is sampled between scrapes: each scrape walks the master's programs and the process tree of
each running program. The process table is read in one pass over ``/proc`` (a parent-to-children map
plus each process's ``stat``), so a scrape costs O(programs + processes); psutil's
``Process.children(recursive=True)`` per program would scan the whole process table once per program.

The text is written by :mod:`.exposition`, not by ``prometheus_client`` (why: see there). Every
value about the programs and the supervisor comes from the read model's snapshot
(:func:`..core.status.snapshot`), the same values ``show proc``, ``show programs`` and ``/status`` show;
only the process trees are read here.
Metric names and meanings are documented in the README's metrics section; keep the two in step.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

from ..core.health import DURATION_BUCKETS
from ..core.program import State
from ..core.status import ProgramStatus, SupervisorStatus, snapshot
from .exposition import CONTENT_TYPE, Family, label_value, labels, number

if TYPE_CHECKING:
    from ..core.master import Master

PREFIX = "progset"
STATES: tuple[State, ...] = tuple(State)
PROC = "/proc"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Fields of /proc/PID/stat after "(comm)", counted from 0 (proc(5) numbers them from 3).
S_STATE, S_PPID, S_UTIME, S_STIME, S_CUTIME, S_CSTIME, S_THREADS, S_START, S_VSIZE, S_RSS = (
    0, 1, 11, 12, 13, 14, 17, 19, 20, 21)


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
        self.cpu_user += (int(stat[S_UTIME]) + int(stat[S_CUTIME])) / CLOCK_TICKS
        self.cpu_system += (int(stat[S_STIME]) + int(stat[S_CSTIME])) / CLOCK_TICKS
        self.resident_bytes += int(stat[S_RSS]) * PAGE_SIZE
        self.threads += int(stat[S_THREADS])
        try:
            self.open_fds += len(os.listdir(f"{proc}/{pid}/fd"))
        except OSError:  # exited meanwhile, or runs as another user and we are not root
            pass


def read_stat_text(pid: int, proc: str = PROC) -> bytes | None:
    """``/proc/PID/stat`` after the command name, unsplit, or None if the process is gone."""
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
    # The command name may hold spaces and parentheses: what follows its last ")".
    return data[data.rfind(b")") + 2:]


def read_stat(pid: int, proc: str = PROC) -> list[bytes] | None:
    """The fields of ``/proc/PID/stat`` after the command name, or None if the process is gone."""
    text = read_stat_text(pid, proc)
    return None if text is None else text.split()


def process_tree_usage(roots: dict[str, int], proc: str = PROC) -> dict[str, TreeUsage]:
    """Usage of the process tree under each root pid, from one pass over the process table.

    Read from ``/proc`` directly rather than through psutil: one ``stat`` read per process gives the
    parent, CPU times, threads and resident pages, where psutil's public API needs four reads per
    process plus a create-time check; ``bench/metrics_bench.py`` measures psutil at 4-5 times slower.

    Each process's ``stat`` is kept unsplit (one object) and split only if it is in a tree: the
    table holds every process the supervisor can see, and keeping some 50 fields of each cost
    the supervisor about 5 MiB of resident memory it never gave back (issue 18; small objects fill
    the allocator's arenas, which stay as long as one object in them lives).
    """
    if not roots:
        return {}
    table: dict[int, bytes] = {}
    children: dict[int, list[int]] = {}
    for entry in os.listdir(proc):
        if entry.isdigit():
            pid = int(entry)
            text = read_stat_text(pid, proc)
            if text is not None:
                head = text.split(maxsplit=2)  # state, ppid, the rest
                if len(head) == 3:
                    table[pid] = text
                    children.setdefault(int(head[S_PPID]), []).append(pid)
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
            stat = table[pid].split()
            # A zombie holds no memory; its CPU time goes to its parent when reaped.
            if len(stat) > S_RSS and stat[S_STATE] != b"Z":
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


def _family(suffix: str, kind: str, help_text: str) -> Family:
    return Family(f"{PREFIX}_{suffix}" + ("_total" if kind == "counter" else ""), kind, help_text)


UP = _family("program_up", "gauge", "1 if the program is RUNNING, else 0.")
STATE = _family("program_state", "gauge", "Current state of the program: 1 for the series of its state, 0 for the "
                "others.")
START = _family("program_start_time_seconds", "gauge", "Unix time the program's current process started; absent "
                "while no process runs.")
BACKOFF = _family("program_backoff_seconds", "gauge", "Seconds left before the next restart attempt while in "
                  "BACKOFF, else 0.")
RESTARTS = _family("program_restarts", "counter", "Automatic restarts after the program exited (not counting "
                   "starts by command or reload).")
EXITS = _family("program_exits", "counter", "Exits of the program's process, by reason (exit or signal) and exit "
                "code (128+N for signal N).")
LAST_EXIT = _family("program_last_exit_code", "gauge", "Exit code of the program's last exit (128+N for signal N); "
                    "absent until it first exits.")
CPU = _family("program_cpu_seconds", "counter", "CPU time of the program's process tree (the program and its "
              "descendants, including reaped ones), by mode, summed over the program's restarts.")
RSS = _family("program_resident_memory_bytes", "gauge", "Sum of the resident memory of the processes in the "
              "program's process tree.")
FDS = _family("program_open_fds", "gauge", "Open file descriptors in the program's process tree.")
THREADS = _family("program_threads", "gauge", "Threads in the program's process tree.")
PROCESSES = _family("program_processes", "gauge", "Processes in the program's process tree.")
DROPPED = _family("output_dropped_lines", "counter", "Output lines of the program dropped because the supervisor's "
                  "stdout/stderr was not read (a stalled log pipe); never blocking on it keeps the supervisor "
                  "running.")
READY = _family("program_ready", "gauge", "1 if the program is ready: RUNNING, and its readiness check, sd_notify "
                "READY=1 and startup check (those it has) passed; else 0.")
RESTART_REASONS = _family("program_restart_reasons", "counter", "Automatic restarts by reason: exit or signal (it "
                          "ended by itself), liveness or startup (a failed check or a watchdog miss ended it).")
CHECK_RUNS = _family("check_runs", "counter", "Runs of each health check (readiness, liveness, startup, notify, "
                     "watchdog) by result.")
CHECK_DURATION = Family(f"{PREFIX}_check_duration_seconds", "histogram", "How long each health check run took.")
RELOADS = _family("reloads", "counter", "Configuration reloads, by result.")
CONFIG_INFO = _family("config_info", "gauge", "The loaded configuration: where it came from (namespace/name@generation "
                      "of a rendered ProgramSet, else the file) and its content hash. Always 1.")
LAST_RELOAD = _family("last_reload_timestamp_seconds", "gauge", "Unix time of the last configuration load or "
                      "reload attempt, successful or not (the start-up load counts).")
# The supervisor's own process, under the names and help texts of prometheus_client's ProcessCollector.
OWN_VIRTUAL = _family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.")
OWN_RESIDENT = _family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.")
OWN_START = _family("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.")
OWN_CPU = _family("process_cpu_seconds", "counter", "Total user and system CPU time spent in seconds.")
OWN_FDS = _family("process_open_fds", "gauge", "Number of open file descriptors.")
OWN_MAX_FDS = _family("process_max_fds", "gauge", "Maximum number of open file descriptors.")
FAMILIES = (UP, STATE, START, BACKOFF, RESTARTS, EXITS, LAST_EXIT, READY, RESTART_REASONS, CHECK_RUNS, CHECK_DURATION,
            CPU, RSS, FDS, THREADS, PROCESSES, DROPPED, RELOADS,
            CONFIG_INFO, LAST_RELOAD, OWN_VIRTUAL, OWN_RESIDENT, OWN_START, OWN_CPU, OWN_FDS, OWN_MAX_FDS)
HEADERS = {family: family.header() for family in FAMILIES}
# ',state="X"} ' for each state, in the order the series are written.
STATE_LABELS = tuple((state, f',state="{state.value}"}} ') for state in STATES)
ONE, ZERO = number(1.0), number(0.0)
BUCKET_BOUNDS = (*(number(b) for b in DURATION_BUCKETS), "+Inf")


def _state_lines(inner: str, current: State) -> str:
    """The ``progset_program_state`` lines of one program, one per State; ``inner`` is its label set
    without ``}``."""
    return "".join(f"{STATE.name}{inner}{suffix}{ONE if state is current else ZERO}\n"
                   for state, suffix in STATE_LABELS)


def boot_time(proc: str = PROC) -> float | None:
    """``btime`` of ``/proc/stat``: the supervisor's start time is counted from it."""
    try:
        with open(f"{proc}/stat", "rb") as stat:
            for line in stat:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


class Exporter:
    """Renders a scrape of one master; keeps what must survive between scrapes (the CPU counters)."""

    def __init__(self, master: Master, proc: str = PROC) -> None:
        self.master = master
        self.proc = proc
        self._cpu: dict[str, CpuCounter] = {}
        self._boot_time = boot_time(proc)

    def render(self) -> tuple[bytes, str]:
        """Body and Content-Type, always the classic text format.

        Not OpenMetrics, even though Prometheus asks for it first: nothing here needs what OpenMetrics
        adds (exemplars, ``_created``, units), and Prometheus accepts the text format as well.
        """
        out: list[str] = []
        status = snapshot(self.master)
        facts = status.programs
        self._programs(out, facts)
        self._health(out, status)
        self._process_trees(out, facts)
        self._dropped(out, facts)
        self._supervisor(out, status)
        self._own_process(out)
        return "".join(out).encode(), CONTENT_TYPE

    @staticmethod
    def _programs(out: list[str], facts: tuple[ProgramStatus, ...]) -> None:
        """One string per family (``"".join`` of a generator): a scrape keeps at most one family's
        lines alive at once, not every line of the body (20,000 small strings at 1000 programs)."""
        rows = [(f, f'{{program="{label_value(f.name)}"}} ') for f in facts]  # with each program's label set
        out.append(HEADERS[UP] + "".join(
            f"{UP.name}{label}{ONE if f.state is State.RUNNING else ZERO}\n" for f, label in rows))
        out.append(HEADERS[STATE] + "".join(_state_lines(label[:-2], f.state) for f, label in rows))
        out.append(HEADERS[START] + "".join(
            f"{START.name}{label}{number(f.started)}\n" for f, label in rows if f.started is not None))
        out.append(HEADERS[BACKOFF] + "".join(
            f"{BACKOFF.name}{label}{number(f.backoff_seconds)}\n" for f, label in rows))
        out.append(HEADERS[RESTARTS] + "".join(f"{RESTARTS.name}{label}{number(f.restarts)}\n" for f, label in rows))
        out.append(HEADERS[EXITS] + "".join(
            f"{EXITS.name}{labels(program=f.name, reason=reason, code=str(code))} {number(count)}\n"
            for f in facts for (reason, code), count in sorted(f.exits.items())))
        out.append(HEADERS[LAST_EXIT] + "".join(
            f"{LAST_EXIT.name}{label}{number(f.last_exit.code)}\n" for f, label in rows if f.last_exit is not None))

    @staticmethod
    def _health(out: list[str], status: SupervisorStatus) -> None:
        """Readiness, restarts by reason, and the checks' runs and durations (a histogram)."""
        out.append(HEADERS[READY])
        out.extend(f'{READY.name}{{program="{label_value(f.name)}"}} {ONE if f.ready else ZERO}\n'
                   for f in status.programs)
        out.append(HEADERS[RESTART_REASONS])
        for f in status.programs:
            for reason, count in sorted(f.restarts_by_reason.items()):
                out.append(f"{RESTART_REASONS.name}{labels(program=f.name, reason=reason)} {number(count)}\n")
        out.append(HEADERS[CHECK_RUNS])
        for (program, check, result), count in sorted(status.check_runs.items()):
            out.append(f"{CHECK_RUNS.name}{labels(program=program, check=check, result=result)} {number(count)}\n")
        out.append(HEADERS[CHECK_DURATION])
        name = CHECK_DURATION.name
        for (program, check), (slots, total) in sorted(status.check_durations.items()):
            inner = f'check="{label_value(check)}",'
            cumulative = 0
            for bound, count in zip(BUCKET_BOUNDS, slots, strict=True):
                cumulative += count
                out.append(f'{name}_bucket{{{inner}le="{bound}",program="{label_value(program)}"}} '
                           f"{number(cumulative)}\n")
            series = labels(program=program, check=check)
            out.append(f"{name}_count{series} {number(cumulative)}\n{name}_sum{series} {number(total)}\n")

    def _process_trees(self, out: list[str], facts: tuple[ProgramStatus, ...]) -> None:
        roots = {f.name: f.pid for f in facts if f.pid is not None}
        usage = process_tree_usage(roots, self.proc)
        self._cpu = {f.name: self._cpu.get(f.name) or CpuCounter() for f in facts}  # forget removed programs
        program = {name: f'{{program="{label_value(name)}"}} ' for name in usage}
        out.append(HEADERS[CPU] + "".join(
            self._cpu_lines(label_value(name), self._cpu[name].update(roots[name], tree.cpu_user, tree.cpu_system))
            for name, tree in usage.items()))
        for family, field in ((RSS, "resident_bytes"), (FDS, "open_fds"), (THREADS, "threads"),
                              (PROCESSES, "processes")):
            out.append(HEADERS[family] + "".join(
                f"{family.name}{program[name]}{number(getattr(tree, field))}\n" for name, tree in usage.items()))

    @staticmethod
    def _cpu_lines(escaped: str, times: tuple[float, float]) -> str:
        return (f'{CPU.name}{{mode="user",program="{escaped}"}} {number(times[0])}\n'
                f'{CPU.name}{{mode="system",program="{escaped}"}} {number(times[1])}\n')

    def _dropped(self, out: list[str], facts: tuple[ProgramStatus, ...]) -> None:
        """Every program (0 until a line is dropped), and removed programs that had lines dropped."""
        counts = self.master.sink.dropped_lines()
        out.append(HEADERS[DROPPED])
        out.extend(f'{DROPPED.name}{{program="{label_value(name)}"}} {number(counts.get(name, 0))}\n'
                   for name in dict.fromkeys([*(f.name for f in facts), *counts]))

    @staticmethod
    def _supervisor(out: list[str], status: SupervisorStatus) -> None:
        out.append(HEADERS[RELOADS])
        for result in ("success", "failure"):
            out.append(f'{RELOADS.name}{{result="{result}"}} {number(status.reload_results.get(result, 0))}\n')
        if status.config_hash is not None:
            out.append(HEADERS[CONFIG_INFO])
            source = status.config_source or status.config_origin
            out.append(f"{CONFIG_INFO.name}{labels(source=source, hash=status.config_hash)} {ONE}\n")
        last = status.last_reload if status.last_reload is not None else status.started
        out.append(f"{HEADERS[LAST_RELOAD]}{LAST_RELOAD.name} {number(last)}\n")

    def _own_process(self, out: list[str]) -> None:
        """The supervisor's own process, as prometheus_client's ProcessCollector reports it."""
        if self._boot_time is None:
            return
        stat = read_stat(os.getpid(), self.proc)
        if stat is not None and len(stat) > S_RSS:
            cpu = (int(stat[S_UTIME]) + int(stat[S_STIME])) / CLOCK_TICKS
            start = int(stat[S_START]) / CLOCK_TICKS + self._boot_time
            for family, value in ((OWN_VIRTUAL, float(stat[S_VSIZE])), (OWN_RESIDENT, int(stat[S_RSS]) * PAGE_SIZE),
                                  (OWN_START, start), (OWN_CPU, cpu)):
                out.append(f"{HEADERS[family]}{family.name} {number(value)}\n")
        try:
            fds = len(os.listdir(f"{self.proc}/{os.getpid()}/fd"))
        except OSError:
            return
        out.append(f"{HEADERS[OWN_FDS]}{OWN_FDS.name} {number(fds)}\n")
        soft = max_open_files(self.proc)
        if soft is not None:
            out.append(f"{HEADERS[OWN_MAX_FDS]}{OWN_MAX_FDS.name} {number(soft)}\n")


def max_open_files(proc: str = PROC) -> float | None:
    """The soft ``Max open files`` limit from ``/proc/self/limits`` (``unlimited`` is +Inf)."""
    try:
        with open(f"{proc}/{os.getpid()}/limits", "rb") as limits:
            for line in limits:
                if line.startswith(b"Max open file"):
                    soft = line.split()[3]
                    return math.inf if soft == b"unlimited" else float(soft)
    except OSError:
        pass
    return None
