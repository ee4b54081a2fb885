"""The guardian process: kills the programs' process trees when the supervisor dies without stopping them.

Run as ``python -S -I guardian_main.py`` (no site, no package import: about 10 MiB resident, started once) by a
supervisor that is not PID 1. Its stdin is a pipe from the supervisor, which writes one line per
change: ``+PGID`` (a program's process group), ``-PGID`` (gone), ``oPID`` (a process that left its
group and was adopted), ``xPID`` (that process was reaped), ``q`` (clean exit: everything was
stopped). End of file without ``q`` means the supervisor died (SIGKILL, OOM kill, crash): every
process of a recorded group, every recorded process, and all their descendants (``/proc`` ancestry,
read before anything is killed) get SIGKILL.

Why a process and not ``PR_SET_PDEATHSIG`` per program: the parent-death signal reaches only the
direct child, never its children, nor a grandchild that called ``setsid``; and setting it costs a
full fork or a ``setpriv`` exec per spawn.
"""

import os
import signal
import sys


def table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, pgid) of every process we can see."""
    procs: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        procs[int(entry)] = (int(fields[1]), int(fields[2]))
    return procs


def victims(groups: set[int], pids: set[int]) -> set[int]:
    procs = table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _pgid) in procs.items():
        children.setdefault(ppid, []).append(pid)
    found = {pid for pid, (_ppid, pgid) in procs.items() if pgid in groups} | (pids & procs.keys())
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    found.discard(os.getpid())
    return found


def main() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_IGN)
    groups: set[int] = set()
    pids: set[int] = set()
    for line in sys.stdin.buffer:
        kind, value = line[:1], line[1:].strip()
        if kind == b"q":
            return
        if not value.isdigit():
            continue
        number = int(value)
        if kind == b"+":
            groups.add(number)
        elif kind == b"-":
            groups.discard(number)
        elif kind == b"o":
            pids.add(number)
        elif kind == b"x":
            pids.discard(number)
    for _ in range(5):  # again while anything forked meanwhile
        found = victims(groups, pids)
        if not found:
            return
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        pids |= found


if __name__ == "__main__":
    main()
