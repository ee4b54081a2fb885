"""Cheap /proc readers for the benchmark: a tool's process tree, its programs, its own CPU and memory.

Why a tree walk and not a scan of every /proc entry: the scan runs in a tight loop while the tool
under test is starting or restarting a program, on the same two cores. Reading the tool's
``/proc/PID/task/*/children`` and then only the command lines of pids not seen before costs a few
system calls per round, whatever else runs on the machine, and it is the same code for every tool, so
it disturbs progset, supervisord and HAProxy equally. Polling is fine here: it is the benchmark
observing from outside, never the supervisor.

Linux only (``CONFIG_PROC_CHILDREN``, present on Debian and on these machines).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")
FORK_SETTLE = 0.005  # seconds after a fork during which its child may still be missing from /proc


def _read(path: str) -> bytes:
    """open/read/close with no Python file object: this runs thousands of times a second.

    Reads until EOF: seq_file-backed files such as ``children`` hand out one page per ``read``, so
    a single read would see only the first ~800 children of a big tool.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return b""
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return b""
    finally:
        os.close(fd)


def children(pid: int) -> list[int]:
    """Direct children of every thread of ``pid`` (a multi-threaded parent lists them per thread)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    if len(tids) == 1:
        return list(map(int, _read(f"/proc/{pid}/task/{tids[0]}/children").split()))
    found: list[int] = []
    for tid in tids:
        found.extend(map(int, _read(f"/proc/{pid}/task/{tid}/children").split()))
    return found


def cmdline(pid: int) -> list[bytes]:
    """argv of ``pid``; empty for a zombie or a process that is gone."""
    raw = _read(f"/proc/{pid}/cmdline")
    return raw.rstrip(b"\0").split(b"\0") if raw else []


def stat(pid: int) -> list[bytes]:
    """Fields of /proc/PID/stat after the command name (so index 0 is the state); empty if gone."""
    raw = _read(f"/proc/{pid}/stat")
    return raw[raw.rindex(b")") + 2:].split() if raw else []


def start_time(pid: int) -> int | None:
    """Start time in clock ticks since boot: with the pid, identifies one process even if pids wrap."""
    fields = stat(pid)
    return int(fields[19]) if fields else None


def alive(pid: int, started: int | None) -> bool:
    """Still running: same start time (not a reused pid) and not a zombie waiting for its reaper."""
    fields = stat(pid)
    return bool(fields) and fields[0] != b"Z" and int(fields[19]) == started


class ProgramScanner:
    """Finds the tool's descendants that run the benchmark program, by their marker argument.

    A program counts as running once its argv is ``sleep ... MARKER`` (any path to ``sleep``): that
    excludes the moment between fork and exec and progset's ``setpriv`` exec chain, whose argv also
    ends with the marker. Matched pids are cached, so a settled round reads one ``children`` file and
    nothing else.
    """

    def __init__(self, root: int, markers: set[bytes], program: bytes = b"sleep") -> None:
        self.root = root
        self.markers = markers
        self.program = program
        self.known: dict[int, bytes] = {}  # pid -> marker, for pids already seen running the program
        self._last_pid = -1
        self._last_fork = 0.0
        self._pending = True

    def _match(self, pid: int) -> bytes | None:
        argv = cmdline(pid)
        if len(argv) >= 2 and argv[-1] in self.markers and os.path.basename(argv[0]) == self.program:
            return argv[-1]
        return None

    def scan(self) -> dict[bytes, int]:
        """One round: marker -> pid of a program carrying it (the highest pid when several do).

        A pid matched once is not read again while it stays a child, so a killed but not yet reaped
        program still counts here; :meth:`find_replacement` is the call that tells old from new.
        """
        seen: dict[int, bytes] = {}
        stack = children(self.root)
        while stack:
            pid = stack.pop()
            marker = self.known.get(pid)
            if marker is None:
                marker = self._match(pid)
                if marker is None:
                    stack.extend(children(pid))  # HAProxy's worker, a program not exec'd yet, ...
                    continue
            seen[pid] = marker
        self.known = seen
        result: dict[bytes, int] = {}
        for pid, marker in sorted(seen.items()):
            result[marker] = pid
        return result

    def find_replacement(self, marker: bytes, old_pid: int) -> int | None:
        """The pid of a process other than ``old_pid`` running ``marker``, if one exists now.

        Called in a tight loop after a kill, so most rounds must cost next to nothing: the kernel's
        last allocated pid (``ns_last_pid``, one small read) gates the rest. Only when some process on
        the machine forked recently (within ``FORK_SETTLE`` seconds, as a new child may show up in
        its parent's list a moment after its pid is allocated) or a child of the tool has not exec'd
        the program yet is the ``children`` list read again; of that, only pids never matched before
        cost a command-line read.
        """
        last, now = last_pid(), time.monotonic()
        if last != self._last_pid:
            self._last_pid, self._last_fork = last, now
        elif not self._pending and now - self._last_fork > FORK_SETTLE:
            return None
        self._pending = False
        for pid in set(children(self.root)).difference(self.known):  # set arithmetic in C: new pids only
            known = self._match(pid)
            if known is None:
                self._pending = True  # forked, not exec'd yet (or HAProxy's worker: it never matches)
                continue
            self.known[pid] = known
            if known == marker and pid != old_pid:
                return pid
        return None


def last_pid() -> int:
    """The last pid the kernel handed out in our pid namespace: changes whenever anything forks."""
    raw = _read("/proc/sys/kernel/ns_last_pid")
    return int(raw) if raw else -1


@dataclass(frozen=True)
class Usage:
    """CPU and scheduling counters of one process (all its threads), read at one instant."""

    cpu_ticks: int  # utime + stime, in clock ticks (1/CLK_TCK s)
    run_ns: int  # time on CPU in nanoseconds (schedstat): finer than ticks, same meaning
    switches: int  # voluntary + involuntary context switches: each wake-up costs at least one

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.cpu_ticks - other.cpu_ticks, self.run_ns - other.run_ns, self.switches - other.switches)


def usage(pid: int) -> Usage:
    """utime+stime from /proc/PID/stat (the issue's measure), plus schedstat and context switches."""
    raw = _read(f"/proc/{pid}/stat")
    fields = raw[raw.rindex(b")") + 2:].split()
    ticks = int(fields[11]) + int(fields[12])
    run_ns = switches = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        tids = []
    for tid in tids:
        sched = _read(f"/proc/{pid}/task/{tid}/schedstat").split()
        if sched:
            run_ns += int(sched[0])
        for line in _read(f"/proc/{pid}/task/{tid}/status").splitlines():
            if line.startswith((b"voluntary_ctxt_switches:", b"nonvoluntary_ctxt_switches:")):
                switches += int(line.split()[1])
    return Usage(ticks, run_ns, switches)


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` alone (``VmRSS``), in KiB: children are separate processes."""
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith(b"VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine: how loaded it was by others while a tool sat idle."""
    fields = [int(x) for x in _read("/proc/stat").split(b"\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


def find_by_marker_prefix(prefix: bytes) -> list[int]:
    """Every process on the machine whose last argument starts with ``prefix``: the clean-up sweep.

    The prefix carries this run's pid and a random nonce, so it only ever names processes this
    benchmark run created, even if they were re-parented away from the tool.
    """
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        argv = cmdline(int(entry))
        if len(argv) >= 2 and argv[-1].startswith(prefix):
            found.append(int(entry))
    return found
