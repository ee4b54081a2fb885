"""Process lifecycle with real processes: spawn options, stop escalation, backoff, critical, exit codes."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from .helpers import pid_alive, started, wait_until, write_config

PY = sys.executable


def yaml_programs(*programs: str) -> str:
    return "programs:\n" + "".join(programs)


@pytest.fixture
def run(tmp_path: Path):  # type: ignore[no-untyped-def]
    with started(tmp_path) as start:
        yield start


def test_spawn_options_argv_env_cwd_umask_pgid_and_no_leaked_fds(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    report = tmp_path / "report.json"
    script = (
        "import json,os,sys;"
        f"json.dump({{'argv': sys.argv[1:], 'env': os.environ.get('GREETING'), 'cwd': os.getcwd(),"
        " 'umask': os.umask(0), 'pgid': os.getpgid(0), 'pid': os.getpid(), 'sid': os.getsid(0),"
        " 'fds': sorted(int(f) for f in os.listdir('/proc/self/fd'))},"
        f" open({str(report)!r}, 'w')); import time; time.sleep(1000)"
    )
    sup = run(yaml_programs(f"""  - name: probe
    command: [{json.dumps(PY)}, "-c", {json.dumps(script)}, "two words", "$HOME", "*"]
    env: [{{name: GREETING, value: "hello, world"}}]
    workingDir: {json.dumps(str(tmp_path))}
    umask: "0027"
"""))
    sup.wait_ready(1)
    wait_until(lambda: report.exists() and report.stat().st_size > 0)
    data = json.loads(report.read_text())
    (pid,) = sup.forked_pids("probe")
    assert data["argv"] == ["two words", "$HOME", "*"]  # no shell: nothing expanded
    assert data["env"] == "hello, world"
    assert data["cwd"] == str(tmp_path)
    assert data["umask"] == 0o027
    assert data["pid"] == pid and data["pgid"] == pid  # its own process group
    assert data["sid"] != pid  # not a session leader: it cannot grab a terminal
    # stdin is /dev/null; only stdin/stdout/stderr and the listdir fd itself are open
    assert data["fds"] == [0, 1, 2, 3]
    assert sup.stop() == 0


def test_plain_program_gets_only_std_fds_default_signals_and_devnull_stdin(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A descriptor the supervisor inherited from its own parent must not reach a program, and signals
    the supervisor ignores (SIGPIPE, SIGXFSZ, and SIGHUP/SIGUSR2 while it starts) or handles must be
    back to what the supervisor itself was given, none blocked (glibc's posix_spawn, for one, would
    have left its internal signals 32 and 33 ignored)."""
    report, sigs = tmp_path / "report.json", tmp_path / "signals.txt"
    script = (
        "import json,os;"
        f"json.dump({{'fds': sorted(int(f) for f in os.listdir('/proc/self/fd')), 'pgid': os.getpgid(0),"
        " 'stdin': os.readlink('/proc/self/fd/0'), 'pid': os.getpid()},"
        f" open({str(report)!r}, 'w')); import time; time.sleep(1000)"
    )
    leaked_r, leaked_w = os.pipe()
    os.set_inheritable(leaked_w, True)
    try:
        # Python ignores SIGPIPE itself at start-up, so dispositions are read by grep under sh.
        sup = run(yaml_programs(f"""  - name: probe
    command: [{json.dumps(PY)}, "-c", {json.dumps(script)}]
  - name: signals
    command: ["sh", "-c", "grep -E '^Sig(Ign|Blk):' /proc/self/status > {sigs}; exec sleep 1000"]
"""), pass_fds=(leaked_w,))
    finally:
        os.close(leaked_w)
    sup.wait_ready(2)
    wait_until(lambda: report.exists() and report.stat().st_size > 0 and sigs.exists() and sigs.stat().st_size > 0)
    data = json.loads(report.read_text())
    (pid,) = sup.forked_pids("probe")
    assert data["fds"] == [0, 1, 2, 3]  # 3: the listdir's own descriptor
    assert data["stdin"] == "/dev/null"
    assert data["pid"] == pid and data["pgid"] == pid
    masks = {k: int(v, 16) for k, v in (line.split(":") for line in sigs.read_text().split("\n") if line)}
    # The supervisor must add no ignored or blocked signal of its own: the program gets what a process
    # started straight from here gets, except the signals the supervisor handles (reset by exec).
    # glibc's internal signals 32 and 33 are left out: their inheritance is up to the ancestors (GNU
    # make, which uses glibc's posix_spawn, leaves them ignored for everything it runs).
    import subprocess

    direct = subprocess.run(["sh", "-c", "grep -E '^Sig(Ign|Blk):' /proc/self/status"], capture_output=True,
                            text=True, check=True).stdout
    inherited = {k: int(v, 16) for k, v in (line.split(":") for line in direct.split("\n") if line)}
    internal = 1 << 31 | 1 << 32
    handled = sum(1 << (s - 1) for s in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGUSR2, signal.SIGCHLD))
    assert masks["SigBlk"] == inherited["SigBlk"] == 0
    assert masks["SigIgn"] & ~internal == inherited["SigIgn"] & ~internal & ~handled, (masks, inherited)
    assert masks["SigIgn"] & (1 << (signal.SIGPIPE - 1) | 1 << (signal.SIGXFSZ - 1)) == 0
    assert sup.stop() == 0
    # the write end the supervisor inherited is closed everywhere once it is gone: EOF, not a hang
    os.set_blocking(leaked_r, False)
    assert os.read(leaked_r, 1) == b""
    os.close(leaked_r)


def test_output_is_prefixed_per_program_and_stream(run) -> None:  # type: ignore[no-untyped-def]
    sup = run(yaml_programs("""  - name: talker
    command: ["sh", "-c", "echo out-line; echo err-line >&2; printf 'no-newline'; exec sleep 1000"]
"""))
    sup.wait_ready(1)
    sup.out.wait_for(r"^talker \| out-line$")
    sup.err.wait_for(r"^talker \| err-line$")
    (pid,) = sup.forked_pids("talker")
    # Once the shell has exec'd sleep, 'no-newline' is in the pipe (a stop before that could kill the
    # shell before it printed it).
    wait_until(lambda: Path(f"/proc/{pid}/comm").read_text().strip() == "sleep")
    assert sup.stop() == 0
    sup.out.wait_for(r"^talker \| no-newline$")  # a partial last line is flushed when the pipe closes


def test_json_log_format(run) -> None:  # type: ignore[no-untyped-def]
    sup = run(yaml_programs("""  - name: talker
    command: ["sh", "-c", "echo 'caf\\u00e9 \\"quoted\\"'; exec sleep 1000"]
"""), "--log-format", "json")
    sup.out.wait_for(r'"program": "talker"')
    record = json.loads(sup.out.lines[0])
    assert record["program"] == "talker" and record["stream"] == "stdout"
    assert record["line"] == 'caf\u00e9 "quoted"'
    assert isinstance(record["pid"], int) and isinstance(record["ts"], float)
    message = json.loads(sup.err.wait_for(r'"msg": "New program')[0].string)
    assert message["level"] == "notice" and message["source"] == "progset"
    assert sup.stop() == 0


def test_program_ignoring_sigterm_is_sigkilled_after_its_timeout(run) -> None:  # type: ignore[no-untyped-def]
    sup = run(yaml_programs("""  - name: stubborn
    command: ["sh", "-c", "trap '' TERM; echo trapped; while :; do sleep 1; done"]
    stopTimeoutSeconds: 0.5
"""))
    sup.wait_ready(1)  # stdout and stderr are read by different threads: wait for the fork line too
    sup.out.wait_for(r"stubborn \| trapped")
    (pid,) = sup.forked_pids("stubborn")
    assert sup.stop() == 0
    sup.wait_log(r"Program 'stubborn' \(\d+\) did not stop within 0.5s: sending SIGKILL to its process group")
    sup.wait_log(rf"Current program 'stubborn' \({pid}\) exited with code 137 \(Killed\)")
    assert not pid_alive(pid)


def test_stop_leaves_no_process_of_the_group_behind(run) -> None:  # type: ignore[no-untyped-def]
    sup = run(yaml_programs("""  - name: forks
    command: ["sh", "-c", "sleep 1000 & sleep 1000"]
"""))
    sup.wait_ready(1)
    (pid,) = sup.forked_pids("forks")
    wait_until(lambda: len(psutil.Process(pid).children()) == 2)
    members = [pid, *(c.pid for c in psutil.Process(pid).children())]
    assert sup.stop() == 0
    wait_until(lambda: not any(pid_alive(p) for p in members), timeout=5)


def test_custom_stop_signal_goes_to_the_group(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "got-int"
    sup = run(yaml_programs(f"""  - name: graceful
    command: ["sh", "-c", "trap 'touch {marker}; exit 0' INT; echo ready; while :; do sleep 0.05; done"]
    stopSignal: SIGINT
"""))
    sup.out.wait_for("graceful \\| ready")
    assert sup.stop() == 0
    assert marker.exists()
    sup.wait_log(r"Current program 'graceful' \(\d+\) exited with code 0 \(Exit\)")


def test_crash_loop_backs_off_with_growing_capped_gaps_and_idle_cpu(run) -> None:  # type: ignore[no-untyped-def]
    sup = run(yaml_programs("""  - name: crasher
    command: ["sh", "-c", "exit 3"]
    backoff: {initialSeconds: 0.1, maxSeconds: 0.4, resetAfterSeconds: 60}
"""))
    sup.wait_log(r"New program 'crasher'", count=7, timeout=20)
    matches = sup.err.matching(r"Restarting program 'crasher'(?: in ([\d.e-]+)s)? \(restart (\d+)")
    delays = [float(m.group(1) or 0) for m in matches[:6]]
    assert [int(m.group(2)) for m in matches[:6]] == [1, 2, 3, 4, 5, 6]
    assert delays[0] == 0.0  # the first restart is immediate
    assert 0.09 <= delays[1] <= 0.11 and 0.18 <= delays[2] <= 0.22
    assert all(0.36 <= d <= 0.4 for d in delays[3:6])  # capped at maxSeconds
    # While it waits in backoff the supervisor sleeps in the kernel: no busy loop.
    proc = psutil.Process(sup.pid)
    before = proc.cpu_times()
    time.sleep(1.0)
    after = proc.cpu_times()
    spent = (after.user + after.system) - (before.user + before.system)
    # ~3 restarts happen in that second; each costs well under 10 ms of CPU.
    assert spent < 0.1, f"supervisor used {spent:.3f}s CPU in 1s of backoff"
    assert sup.stop() == 0


def test_idle_supervisor_uses_no_cpu(run) -> None:  # type: ignore[no-untyped-def]
    sup = run(yaml_programs(*(f"""  - name: idle{i}
    command: ["sleep", "1000"]
""" for i in range(20))))
    sup.wait_ready(20)
    proc = psutil.Process(sup.pid)
    time.sleep(0.3)
    before = proc.cpu_times()
    time.sleep(1.0)
    after = proc.cpu_times()
    assert (after.user + after.system) - (before.user + before.system) < 0.02
    assert sup.stop() == 0


def test_restart_policies(run) -> None:  # type: ignore[no-untyped-def]
    sup = run(yaml_programs("""  - name: clean-on-failure
    command: ["true"]
  - name: fail-never
    command: ["false"]
    restart: never
  - name: clean-always
    command: ["true"]
    restart: always
    backoff: {initialSeconds: 5, maxSeconds: 5}
"""))
    sup.wait_log(r"New program 'clean-always'", count=2)
    sup.wait_log(r"Current program 'clean-on-failure' \(\d+\) exited with code 0")
    sup.wait_log(r"Current program 'fail-never' \(\d+\) exited with code 1")
    sup.wait_log(r"Restarting program 'clean-always' in")  # second exit: backoff
    assert len(sup.forked_pids("clean-on-failure")) == 1
    assert len(sup.forked_pids("fail-never")) == 1
    assert sup.stop() == 0


def test_critical_program_ends_the_supervisor_with_its_exit_code(run) -> None:  # type: ignore[no-untyped-def]
    sup = run(yaml_programs("""  - name: bystander
    command: ["sleep", "1000"]
  - name: vital
    command: ["sh", "-c", "sleep 0.3; exit 7"]
    restart: never
    critical: true
"""))
    sup.wait_ready(2)
    assert sup.proc.wait(15) == 7
    sup.wait_log(r"Critical program 'vital' ended for good: stopping every program, exit code 7")
    (bystander,) = sup.forked_pids("bystander")
    assert not pid_alive(bystander)


def test_non_critical_failures_never_end_the_supervisor(run) -> None:  # type: ignore[no-untyped-def]
    sup = run(yaml_programs("""  - name: dies
    command: ["sh", "-c", "kill -USR1 $$"]
    restart: never
  - name: lives
    command: ["sleep", "1000"]
"""))
    sup.wait_log(r"Current program 'dies' \(\d+\) exited with code 138 \(User defined signal 1\)")
    assert sup.proc.poll() is None  # HAProxy's exit-on-failure would have killed everything here
    assert sup.stop() == 0


def test_missing_executable_is_fatal_with_a_clear_message(run) -> None:  # type: ignore[no-untyped-def]
    sup = run(yaml_programs("""  - name: typo
    command: ["/no/such/binary", "--flag"]
  - name: notinpath
    command: ["definitely-not-a-command-xyz"]
  - name: fine
    command: ["sleep", "1000"]
"""))
    sup.wait_log(r"Program 'typo' cannot start: cannot execute /no/such/binary: no such file")
    sup.wait_log(r"Program 'notinpath' cannot start: cannot execute definitely-not-a-command-xyz: not found in PATH")
    sup.wait_ready(1)
    assert sup.proc.poll() is None
    assert sup.stop() == 0


def test_dependencies_start_in_order_and_stop_in_reverse(run) -> None:  # type: ignore[no-untyped-def]
    sup = run(yaml_programs("""  - name: app
    command: ["sleep", "1000"]
    dependsOn: [db, cache]
  - name: db
    command: ["sleep", "1000"]
  - name: cache
    command: ["sleep", "1000"]
    dependsOn: [db]
"""))
    sup.wait_ready(3)
    forked = [m.group(1) for m in sup.err.matching(r"New program '(\w+)'")]
    assert forked == ["db", "cache", "app"]
    assert sup.stop() == 0
    exited = [m.group(1) for m in sup.err.matching(r"Current program '(\w+)' \(\d+\) exited")]
    assert exited == ["app", "cache", "db"]


def test_sigint_also_stops_cleanly_with_exit_zero(run) -> None:  # type: ignore[no-untyped-def]
    sup = run(yaml_programs("""  - name: s
    command: ["sleep", "1000"]
"""))
    sup.wait_ready(1)
    assert sup.stop(signal.SIGINT) == 0
    sup.wait_log(r"Exiting Master process\.\.\. \(SIGINT\)")


def test_children_die_with_a_sigkilled_supervisor(run) -> None:  # type: ignore[no-untyped-def]
    sup = run(yaml_programs("""  - name: orphan-to-be
    command: ["sleep", "1000"]
"""))
    sup.wait_ready(1)
    (pid,) = sup.forked_pids("orphan-to-be")
    # Outside PID 1 the parent-death signal is set by setpriv just before it execs the program: a
    # supervisor killed in that window (well under a millisecond; README, "Lifecycle") cannot be noticed.
    wait_until(lambda: Path(f"/proc/{pid}/comm").read_text().strip() == "sleep")
    os.kill(sup.pid, signal.SIGKILL)
    sup.proc.wait()
    wait_until(lambda: not pid_alive(pid), timeout=5)


def test_pidfile_is_written_and_removed(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pidfile = tmp_path / "progset.pid"
    sup = run(yaml_programs("""  - name: s
    command: ["sleep", "1000"]
"""), "-p", str(pidfile))
    sup.wait_ready(1)
    assert pidfile.read_text() == f"{sup.pid}\n"
    assert sup.stop() == 0
    assert not pidfile.exists()


def test_broken_config_at_start_exits_1_naming_file_and_line(run) -> None:  # type: ignore[no-untyped-def]
    sup = run(yaml_programs("""  - name: ok
    command: ["sleep", "1"]
  - name: bad
    command: "sleep 1"
"""))
    assert sup.proc.wait(10) == 1
    line = sup.err.wait_for(r"\[ALERT\]")[0].string
    assert "programs.yaml:5 (spec.programs[1].command)" in line and "not a shell string" in line


def test_check_mode(tmp_path: Path) -> None:
    import subprocess

    good = write_config(tmp_path, yaml_programs("""  - name: ok
    command: ["sleep", "1"]
"""))
    result = subprocess.run([PY, "-m", "progset_supervisor", "-c", "-f", str(good)], capture_output=True, text=True)
    assert result.returncode == 0 and "Configuration file is valid (1 programs" in result.stdout


def test_garbage_collection_is_back_on_once_the_programs_run(tmp_path: Path) -> None:
    """Start-up runs with the cyclic GC off (it only cost time there); leaving it off would leak every
    reference cycle for the life of the pod."""
    import subprocess

    config = tmp_path / "programs.yaml"
    config.write_text(yaml_programs('  - name: s\n    command: ["sleep", "1000"]\n'))
    probe = ("import gc, os, signal, sys, threading, time\n"
             "from progset_supervisor.__main__ import main\n"
             "def check():\n"  # once the program runs, the first load is over (then 0.5 s of slack)
             "    path = f'/proc/{os.getpid()}/task/{os.getpid()}/children'\n"
             "    while not open(path).read().strip():\n"
             "        time.sleep(0.01)\n"
             "    time.sleep(0.5)\n"
             "    print('gc enabled:', gc.isenabled(), file=sys.stderr, flush=True)\n"
             "    os.kill(os.getpid(), signal.SIGTERM)\n"
             "threading.Thread(target=check, daemon=True).start()\n"
             f"sys.exit(main(['-f', {str(config)!r}, '--metrics-address', 'off']))\n")
    out = subprocess.run([PY, "-c", probe], capture_output=True, text=True, timeout=30)
    assert "Loading success." in out.stderr
    assert "gc enabled: True" in out.stderr, out.stderr
    assert out.returncode == 0
