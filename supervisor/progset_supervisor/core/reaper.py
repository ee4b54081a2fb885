"""The one place children are waited for, and where re-parented descendants are attributed.

``waitpid(-1, WNOHANG)`` on SIGCHLD until nothing is left. The supervisor is PID 1 or a child
subreaper, so when a process of a program dies, its children come back to the supervisor. Those
orphans are attributed to a program, so they are stopped with it (stopSignal, then SIGKILL) and
before its next start:

* an orphan still in a tracked process group belongs to that group's instance;
* otherwise (it called ``setsid``, or changed its group) it belongs to the instance whose process
  died in the same batch of exits, which is the only process it can have been re-parented from;
  when several died at once it goes to the first of them (a rare ambiguity, stopped either way);
* children nobody claims when the supervisor exits (*strays*) get SIGKILL then.

Orphans are found by reading ``/proc/self/task/<tid>/children`` (the kernel's list of our children)
after a batch that reaped a program's process: one ``pread`` and a count compared with the children
we know, the set difference only when the count says there is a stranger; never polled. Other
children (the guardian, exec checks) register with :meth:`watch`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from .exits import ExitStatus

if TYPE_CHECKING:
    from .program import Instance

ChildExit = Callable[[int], None]


class Children:
    """Our direct children as the kernel lists them, read through one kept-open descriptor.

    Orphans are re-parented to the main thread (the supervisor runs no other thread that could
    adopt them), so its ``children`` file is the whole list: one ``pread`` per batch of exits.
    """

    def __init__(self) -> None:
        try:
            self.fd = os.open(f"/proc/self/task/{os.getpid()}/children", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self.fd = -1  # no CONFIG_PROC_CHILDREN: orphans are reaped, not attributed

    def raw(self) -> bytes:
        if self.fd < 0:
            return b""
        chunks, offset = [], 0
        while True:
            chunk = os.pread(self.fd, 65536, offset)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            offset += len(chunk)

    @staticmethod
    def count(raw: bytes) -> int:
        return raw.count(b" ")  # "1 2 3 ": one space after each pid

    @staticmethod
    def pids(raw: bytes) -> set[int]:
        return {int(word) for word in raw.split()}


class Reaper:
    def __init__(self, debug: Callable[[str], None]) -> None:
        self.debug = debug
        self.by_pid: dict[int, Instance] = {}  # main processes of live instances
        self.groups: dict[int, Instance] = {}  # process groups of instances that are not gone
        self.leftover_of: dict[int, Instance] = {}  # adopted orphans
        self.others: dict[int, ChildExit] = {}  # other children: the guardian, exec checks
        self.strays: set[int] = set()
        self.children = Children()
        self.on_adopt: Callable[[int], None] | None = None  # tells the guardian
        self.on_release: Callable[[int], None] | None = None  # an adopted pid was reaped: it may be reused

    def track(self, instance: Instance) -> None:
        self.by_pid[instance.pid] = instance
        self.groups[instance.pid] = instance

    def forget(self, instance: Instance) -> None:
        """``instance`` is gone: its group id may be reused."""
        if self.groups.get(instance.pid) is instance:
            del self.groups[instance.pid]

    def watch(self, pid: int, on_exit: ChildExit) -> None:
        """A child that is not a program's process; ``on_exit(wait status)`` when it is reaped."""
        self.others[pid] = on_exit

    def reap(self) -> None:
        exits: list[tuple[int, int]] = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            exits.append((pid, status))
        owners: list[Instance] = []
        known = 0
        for pid, _status in exits:
            owner = self.by_pid.get(pid) or self.leftover_of.get(pid)
            if owner is not None and owner not in owners:
                owners.append(owner)
            known += pid in self.by_pid or pid in self.leftover_of or pid in self.others or pid in self.strays
        if owners:
            self._adopt_orphans(owners, known)  # before the exits: a program is gone only when its orphans are
        for pid, status in exits:
            instance = self.by_pid.pop(pid, None)
            if instance is not None:
                instance.exit_status = ExitStatus.from_wait_status(status)
                instance.drain_output()
                instance.supervised.exited(instance)
                continue
            instance = self.leftover_of.pop(pid, None)
            if instance is not None:
                if self.on_release is not None:
                    self.on_release(pid)
                instance.supervised.leftover_exited(instance, pid)
                continue
            callback = self.others.pop(pid, None)
            if callback is not None:
                callback(status)
                continue
            self.strays.discard(pid)
            self.debug(f"Process {pid} exited with code {ExitStatus.from_wait_status(status).code}")

    def _adopt_orphans(self, owners: list[Instance], reaped: int) -> None:
        raw = self.children.raw()
        expected = len(self.by_pid) + len(self.leftover_of) + len(self.others) + len(self.strays) - reaped
        if self.children.count(raw) <= expected:
            return  # no child we do not know: the common case costs one read and a count
        unknown = self.children.pids(raw) - self.by_pid.keys() - self.leftover_of.keys() - self.others.keys()
        unknown -= self.strays
        if not unknown:
            return
        adopted: dict[Instance, set[int]] = {}
        for pid in unknown:
            try:
                owner = self.groups.get(os.getpgid(pid)) or owners[0]
            except OSError:
                continue  # already gone (a zombie is reaped with the next batch)
            self.leftover_of[pid] = owner
            adopted.setdefault(owner, set()).add(pid)
            if self.on_adopt is not None:
                self.on_adopt(pid)
        for owner, pids in adopted.items():
            owner.supervised.adopt(owner, pids)

    def adopt_strays(self) -> set[int]:
        """Children nobody claims (for the supervisor's exit)."""
        unknown = self.children.pids(self.children.raw()) - self.by_pid.keys() - self.leftover_of.keys()
        self.strays |= unknown - self.others.keys()
        return set(self.strays)
