"""The state machine of one program, driven through a fake Host and a fake clock: no processes, no
loop, microseconds per case. The same transitions run against real processes in test_lifecycle.py,
test_reload.py and test_process_tree.py."""

from __future__ import annotations

import random
import signal
from typing import Any

from progset_supervisor.config import config_from_spec
from progset_supervisor.core.exits import ExitStatus
from progset_supervisor.core.program import Instance, State, Supervised
from progset_supervisor.core.spawn import SpawnError


class FakeTimer:
    def __init__(self, host: FakeHost, when: float, callback: Any, args: tuple[Any, ...]) -> None:
        self.host, self.when, self.callback, self.args, self.cancelled = host, when, callback, args, False

    def cancel(self) -> None:
        self.cancelled = True

    def remaining(self) -> float:
        return max(0.0, self.when - self.host.clock)


class FakeLog:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def notice(self, message: str) -> None:
        self.lines.append(message)

    warning = alert = notice


class FakeHost:
    """Records what the program asks for; the test plays the kernel (exits, process groups)."""

    def __init__(self) -> None:
        self.log = FakeLog()
        self.shutting_down = False
        self.rng = random.Random(1)
        self.clock = 1000.0
        self.timers: list[FakeTimer] = []
        self.next_pid = 100
        self.spawn_error: str | None = None
        self.signals: list[tuple[str, int, int]] = []  # ("group"|"pid", id, signal)
        self.alive_groups: set[int] = set()
        self.deps_running = True
        self.final: list[str] = []
        self.gone_instances: list[int] = []
        self.old: list[int] = []

    def monotonic(self) -> float:
        return self.clock

    def wall(self) -> float:
        return self.clock

    def call_later(self, delay: float, callback: Any, *args: Any) -> FakeTimer:
        timer = FakeTimer(self, self.clock + delay, callback, args)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        self.clock += seconds
        for timer in sorted(self.timers, key=lambda t: t.when):
            if timer.when <= self.clock and not timer.cancelled:
                timer.cancelled = True
                timer.callback(*timer.args)

    def spawn(self, supervised: Supervised) -> Instance:
        if self.spawn_error:
            raise SpawnError(self.spawn_error)
        self.next_pid += 1
        self.alive_groups.add(self.next_pid)
        return Instance(supervised, self.next_pid, self.clock, self.clock)

    def signal_group(self, pgid: int, signum: int) -> bool:
        self.signals.append(("group", pgid, signum))
        return pgid in self.alive_groups

    def signal_pid(self, pid: int, signum: int) -> bool:
        self.signals.append(("pid", pid, signum))
        return True

    def group_alive(self, pgid: int) -> bool:
        return pgid in self.alive_groups

    def dependencies_running(self, program: Any) -> bool:
        return self.deps_running

    def state_changed(self, supervised: Supervised) -> None:
        pass

    def ended_for_good(self, supervised: Supervised) -> None:
        self.final.append(supervised.state.value)

    def retired(self, instance: Instance) -> None:
        self.old.append(instance.pid)

    def gone(self, instance: Instance) -> None:
        self.gone_instances.append(instance.pid)

    # the kernel's side
    def exit(self, supervised: Supervised, code: int = 0, *, instance: Instance | None = None,
             group_left: bool = False) -> None:
        instance = instance or supervised.instance
        assert instance is not None
        if not group_left:
            self.alive_groups.discard(instance.pid)
        instance.exit_status = ExitStatus(code, None, self.clock) if code < 128 else \
            ExitStatus(code, code - 128, self.clock)
        supervised.exited(instance)


def make(**fields: Any) -> tuple[FakeHost, Supervised]:
    spec = {"name": "p", "command": ["p"], "stopTimeoutSeconds": 5, **fields}
    host = FakeHost()
    return host, Supervised(host, config_from_spec({"programs": [spec]}).programs[0])


def test_start_runs_or_goes_fatal_with_the_reason() -> None:
    host, p = make()
    p.start()
    assert p.state is State.RUNNING and p.pid == 101
    host, p = make(critical=True)
    host.spawn_error = "cannot execute /nope: no such file"
    p.start()
    assert p.state is State.FATAL and p.fatal_reason == "cannot execute /nope: no such file"
    assert host.final == ["FATAL"]


def test_waits_in_starting_for_dependencies() -> None:
    host, p = make()
    host.deps_running = False
    p.start()
    assert p.state is State.STARTING and p.pid is None
    host.deps_running = True
    p.dependency_ready()
    assert p.state is State.RUNNING


def test_first_restart_is_immediate_then_backoff_on_the_fake_clock() -> None:
    host, p = make(restart="always", backoff={"initialSeconds": 1, "maxSeconds": 8, "resetAfterSeconds": 60})
    p.start()
    host.exit(p, 3)
    assert p.state is State.RUNNING and p.pid == 102 and p.restarts == 1
    host.exit(p, 3)
    assert p.state is State.BACKOFF and 0.9 <= p.backoff_remaining() <= 1.1
    host.advance(0.5)
    assert p.state is State.BACKOFF
    host.advance(0.7)
    assert p.state is State.RUNNING and p.pid == 103
    host.advance(61)  # a long run resets the streak: the next restart is immediate again
    host.exit(p, 1)
    assert p.state is State.RUNNING and p.pid == 104


def test_exit_policies() -> None:
    host, p = make()  # on-failure
    p.start()
    host.exit(p, 0)
    assert p.state is State.EXITED and host.final == ["EXITED"]
    host, p = make(restart="never")
    p.start()
    host.exit(p, 137)
    assert p.state is State.EXITED and p.last_exit is not None and p.last_exit.signal == 9


def test_stop_escalates_to_sigkill_after_the_timeout() -> None:
    host, p = make(stopSignal="SIGINT")
    p.start()
    answers: list[str] = []
    p.stop(lambda: answers.append("stopped"), manual=True)
    assert p.state is State.STOPPING and host.signals == [("group", 101, signal.SIGINT)]
    host.advance(4.9)
    assert host.signals[-1][2] == signal.SIGINT
    host.advance(0.2)
    assert host.signals[-1] == ("group", 101, signal.SIGKILL)
    host.exit(p, 137)
    assert p.state is State.STOPPED and answers == ["stopped"] and p.manually_stopped


def test_a_clean_stop_cancels_the_kill_timer() -> None:
    host, p = make()
    p.start()
    p.stop()
    host.exit(p, 143)
    host.advance(10)
    assert [s[2] for s in host.signals] == [signal.SIGTERM] and p.state is State.STOPPED


def test_a_restart_waits_until_what_is_left_of_the_group_is_gone() -> None:
    """Defect 2 of issue 17: the rest of the process group gets stopSignal before the restart."""
    host, p = make(restart="always")
    p.start()
    host.exit(p, 1, group_left=True)  # `sh -c "sleep 777 & exit 1"`: sleep stays in the group
    assert host.signals == [("group", 101, signal.SIGTERM)]
    assert p.state is State.STARTING and p.pid is None  # not restarted next to its leftovers
    host.alive_groups.discard(101)
    assert p.instance is not None
    p.settle(p.instance)  # the reaper reaped the last of the group
    assert p.state is State.RUNNING and p.pid == 102 and host.gone_instances == [101]


def test_leftovers_that_ignore_the_stop_signal_are_killed_then_the_program_restarts() -> None:
    host, p = make(restart="always")
    p.start()
    first = p.instance
    assert first is not None
    p.adopt(first, {555})  # a process that left the group (setsid) came back to the supervisor
    host.exit(p, 1)
    assert ("pid", 555, signal.SIGTERM) in host.signals and p.pid is None
    host.advance(5.1)
    assert ("pid", 555, signal.SIGKILL) in host.signals and ("group", 101, signal.SIGKILL) in host.signals
    assert p.state is State.RUNNING and p.pid == 102


def test_leftovers_of_a_program_that_ended_for_good_are_stopped_with_it() -> None:
    host, p = make()
    p.start()
    host.exit(p, 0, group_left=True)  # a daemonising program: its main process exits 0
    assert p.state is State.EXITED and host.signals == []  # left alone: it may be the real service
    stopped: list[bool] = []
    p.stop(lambda: stopped.append(True))
    assert host.signals == [("group", 101, signal.SIGTERM)] and not stopped
    host.alive_groups.clear()
    assert p.instance is not None
    p.settle(p.instance)
    assert stopped == [True]


def test_replace_stops_the_old_instance_first_and_a_start_in_between_waits() -> None:
    host, p = make()
    p.start()
    new = config_from_spec({"programs": [{"name": "p", "command": ["p", "2"]}]}).programs[0]
    done: list[str] = []
    assert p.replace(new, "definition changed", lambda: done.append("old gone"))
    assert p.state is State.REPLACING and host.old == [101] and host.signals == [("group", 101, signal.SIGTERM)]
    p.start(manual=True)
    assert p.pid is None and p.state is State.REPLACING
    old = p.retiring
    assert old is not None
    host.exit(p, 143, instance=old)
    assert done == ["old gone"] and p.state is State.REPLACING  # the master starts it after the reload's stops
    p.replaced()
    assert p.state is State.RUNNING and p.pid == 102 and p.instance is not None and p.instance.program is new


def test_stop_during_replace_is_not_undone_by_the_reload() -> None:
    host, p = make()
    p.start()
    new = config_from_spec({"programs": [{"name": "p", "command": ["p", "2"]}]}).programs[0]
    p.replace(new, "definition changed")
    p.stop(manual=True)
    assert p.state is State.STOPPED
    assert p.retiring is not None
    host.exit(p, 143, instance=p.retiring)
    p.replaced()
    assert p.state is State.STOPPED and p.pid is None


def test_stop_for_a_dependency_holds_the_program_in_starting() -> None:
    host, p = make()
    p.start()
    p.stop(hold=True)
    host.exit(p, 143)
    assert p.state is State.STARTING and not p.manually_stopped
    p.dependency_ready()
    assert p.state is State.RUNNING


def test_shutdown_turns_a_crash_into_a_stop() -> None:
    host, p = make(restart="always")
    p.start()
    host.shutting_down = True
    host.exit(p, 1)
    assert p.state is State.STOPPED and p.pid is None and p.restarts == 0


def test_retire_stops_a_removed_program() -> None:
    host, p = make()
    p.start()
    assert p.retire()
    assert p.state is State.STOPPED and host.old == [101] and p.instance is None
    assert not p.retire()  # nothing left to wait for


def test_a_failed_check_ends_the_process_as_a_crash_and_counts_its_reason() -> None:
    host, p = make(restart="on-failure")
    p.start()
    pid = p.pid
    p.check_failed("liveness", "liveness check (timed out after 1s)")
    assert p.state is State.RUNNING and ("group", pid, signal.SIGTERM) in host.signals
    assert "Program 'p' (101) failed its liveness check (timed out after 1s): stopping it for a restart " \
           "(reason liveness)" in host.log.lines
    host.exit(p, 128 + signal.SIGTERM)
    assert p.restarts == 1 and p.restart_reasons == {"liveness": 1}
    assert p.state is State.RUNNING and p.pid != pid  # the first restart is immediate, then backoff applies


def test_a_failed_check_of_a_restart_never_program_leaves_it_exited() -> None:
    host, p = make(restart="never")
    p.start()
    p.check_failed("startup", "startup check (exit 1)")
    host.advance(5)  # it ignored the stop signal: SIGKILL at the stop timeout
    assert ("group", 101, signal.SIGKILL) in host.signals
    host.exit(p, 128 + signal.SIGKILL)
    assert p.state is State.EXITED and host.final == ["EXITED"] and p.restarts == 0
