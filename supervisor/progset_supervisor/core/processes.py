"""The real-process side of the :class:`~.host.Host`: spawning with output wiring, signals.

A mixin of :class:`~.master.Master` (it uses the master's loop, sink, base environment, reaper and
guardian), kept apart so the master reads as what it decides, not how a process is made.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any, NamedTuple

from ..config import Config, Program
from .program import Instance
from .spawn import build_env, spawn

if TYPE_CHECKING:
    from ..runtime.loop import Loop
    from ..runtime.output import OutputSink
    from .program import Supervised
    from .reaper import Reaper


class Options(NamedTuple):
    config_path: str
    log_lines: int = 1000
    pdeathsig: bool = True
    debounce_seconds: float = 0.2
    watch: bool = True
    seed: int | None = None
    loader: Callable[[], Config] | None = None  # how a reload reads the config (default: load_path(config_path))


class Processes:
    loop: Loop
    sink: OutputSink
    options: Options
    base_env: MutableMapping[str, str]
    reaper: Reaper
    guardian: Any
    _env: dict[str, tuple[Program, dict[str, str] | None]]
    health: Any

    def spawn(self, supervised: Supervised) -> Instance:
        program = supervised.program
        cached = self._env.get(program.name)
        if cached is None or cached[0] is not program:  # decided once per definition, not per restart
            base = self.base_env
            extra = self.health.env_for(program)  # NOTIFY_SOCKET, WATCHDOG_USEC
            cached = (program, None if base is os.environ and not program.env and not extra
                      else {**build_env(program, base), **extra})
            self._env[program.name] = cached
        pdeathsig = self.options.pdeathsig and self.guardian is None
        pid, stdout_fd, stderr_fd = spawn(program, cached[1], pdeathsig=pdeathsig)
        instance = Instance(supervised, pid, time.time(), time.monotonic())
        sink, ring, name = self.sink, supervised.ring, program.name
        for stream, fd in (("stdout", stdout_fd), ("stderr", stderr_fd)):
            def on_lines(lines: list[bytes], stream: str = stream) -> None:
                ring.add(stream, lines)
                sink.emit(name, pid, stream, lines)
            instance.readers.append(_pipe_reader(self.loop, fd, on_lines))
        self.reaper.track(instance)
        if self.guardian is not None:
            self.guardian.add(pid)
        return instance

    @staticmethod
    def signal_group(pgid: int, signum: int) -> bool:
        try:
            os.killpg(pgid, signum)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    @staticmethod
    def signal_pid(pid: int, signum: int) -> bool:
        try:
            os.kill(pid, signum)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def group_alive(self, pgid: int) -> bool:
        return self.signal_group(pgid, 0)



def _pipe_reader(loop: Loop, fd: int, on_lines: Any) -> Any:
    from ..runtime.output import PipeReader

    return PipeReader(loop, fd, on_lines)
