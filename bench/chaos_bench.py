"""Chaos benchmarks (issue 15): crash/restart cycles, a reload storm, a CLI fuzz run, an HTTP flood.

Each runs progset side by side with the tools it replaces where they have the same feature, in one
run, and prints a Markdown report for ``bench/RESULTS.md``:

- **crash cycles**: one program that exits at once, restarted every time (progset with a 1 ms backoff,
  supervisord with ``startsecs=0``; HAProxy cannot restart). Until ``--cycles`` restarts (progset) or
  as long as progset took (supervisord): cycles per second, the supervisor's RSS after the warm-up
  (first 10 %) and at the end, its open fds, and zombies among its children at the end.
- **reload storm**: ``--reloads`` reload signals 50 ms apart (SIGHUP for progset, SIGUSR2 for HAProxy's
  master), the config rewritten before each; then whether exactly the last config's programs run.
- **CLI fuzz**: ``--inputs`` random inputs (command words, mutations, random bytes, long lines), one
  connection each, to progset's and HAProxy's master CLI; crashes, inputs per second, fds and RSS.
- **HTTP flood**: progset only (supervisord and HAProxy's master have no health endpoint): idle
  connections re-opened as soon as closed plus a scrape loop, while ``/healthz`` is probed.

    .venv/bin/python bench/chaos_bench.py            # all four at the issue's sizes (~3-5 min)
    .venv/bin/python bench/chaos_bench.py --cycles 2000 --reloads 30 --inputs 2000   # quicker
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
PROGSET = str(PROJECT / ".venv" / "bin" / "progset-supervisor")
sys.path.insert(0, str(PROJECT))

from tests.chaos.tools import Flood  # noqa: E402  (the suite's flooder, not a second copy)


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return int(next(line for line in fh if line.startswith("VmRSS:")).split()[1])


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, state) of the direct children of ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append((int(entry), fields[0]))
    return found


def descendants_cmdlines(pid: int) -> list[str]:
    parents: dict[int, int] = {}
    cmdlines: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                parents[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdlines[int(entry)] = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    result = []
    for child in parents:
        node = child
        while node in parents and node != pid:
            node = parents[node]
        if node == pid and child != pid:
            result.append(cmdlines.get(child, ""))
    return result


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def launch(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 16), b""))
    except FileNotFoundError:
        return 0


# -- crash cycles ---------------------------------------------------------------------------------------
def crash_cycles(tool: str, scratch: Path, cycles: int, max_seconds: float) -> dict[str, object]:
    counter = scratch / f"{tool}-starts"
    command = ["sh", "-c", f"echo >> {counter}; exit 1"]
    if tool == "progset":
        config = scratch / "crash.json"
        config.write_text(json.dumps({"programs": [{"name": "crasher", "command": command, "restart": "always",
                                                    "backoff": {"initialSeconds": 0.001, "maxSeconds": 0.001}}]}))
        argv = [PROGSET, "-f", str(config), "--metrics-address", "off", "--no-watch"]
    else:
        config = scratch / "supervisord.conf"
        config.write_text("\n".join([
            "[supervisord]", "nodaemon=true", f"logfile={scratch / 'supervisord.log'}", "logfile_maxbytes=0",
            f"pidfile={scratch / 'supervisord.pid'}", "user=root" if os.geteuid() == 0 else "", "",
            "[program:crasher]", f"command={' '.join(command[:2])} '{command[2]}'", "autorestart=true",
            "startsecs=0", "startretries=100000000", "stdout_logfile=NONE", "stderr_logfile=NONE", ""]))
        argv = ["supervisord", "-n", "-c", str(config)]
    proc = launch(argv, scratch / f"{tool}-crash.log")
    began = time.monotonic()
    warm: tuple[int, int] | None = None
    try:
        while True:
            time.sleep(0.5)
            done = count_lines(counter)
            if warm is None and done >= cycles // 10:
                warm = (rss_kb(proc.pid), fds(proc.pid))
            if done >= cycles or time.monotonic() - began > max_seconds or proc.poll() is not None:
                break
        elapsed = time.monotonic() - began
        done = count_lines(counter)
        end_rss, end_fds = rss_kb(proc.pid), fds(proc.pid)
        zombies = sum(1 for _, state in children(proc.pid) if state == "Z")
        alive = proc.poll() is None
    finally:
        stop(proc)
    return {"tool": tool, "cycles": done, "seconds": round(elapsed, 1), "per_second": round(done / elapsed, 1),
            "rss_warm_kb": warm[0] if warm else None, "rss_end_kb": end_rss,
            "fds_warm": warm[1] if warm else None, "fds_end": end_fds, "zombies": zombies, "alive": alive}


# -- reload storm ---------------------------------------------------------------------------------------
def reload_storm(tool: str, scratch: Path, reloads: int) -> dict[str, object]:
    def write(i: int) -> None:
        names = [f"p{i % 3}-{k}" for k in range(3)]  # each config has other programs than the last
        if tool == "progset":
            (scratch / "storm.json").write_text(json.dumps({"programs": [
                {"name": name, "command": ["sh", "-c", "sleep 3600; :", f"STORM-{i}-{name}"], "stopTimeoutSeconds": 2}
                for name in names]}))
        else:
            lines = ["global", "    master-worker", "", "defaults", "    mode http", "    timeout connect 1s",
                     "    timeout client 1s", "    timeout server 1s", ""]
            for name in names:
                lines += [f"program {name}", f'    command sh -c "sleep 3600; :" STORM-{i}-{name}', ""]
            (scratch / "storm.cfg").write_text("\n".join(lines))

    write(0)
    if tool == "progset":
        argv = [PROGSET, "-f", str(scratch / "storm.json"), "--metrics-address", "off", "--no-watch"]
        reload_signal = signal.SIGHUP
    else:
        # (a program exiting at a reload would make HAProxy's master stop everything: exit-on-failure;
        # the programs here only exit when a reload removes them)
        argv = ["haproxy", "-W", "-db", "-f", str(scratch / "storm.cfg")]
        reload_signal = signal.SIGUSR2
    proc = launch(argv, scratch / f"{tool}-storm.log")
    time.sleep(2)
    began = time.monotonic()
    try:
        for i in range(1, reloads + 1):
            write(i)
            proc.send_signal(reload_signal)
            time.sleep(0.05)
        expected = {f"STORM-{reloads}-p{reloads % 3}-{k}" for k in range(3)}
        settled = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            running = {word for line in descendants_cmdlines(proc.pid) for word in line.split()
                       if word.startswith("STORM-")}
            if running == expected:
                settled = time.monotonic() - began
                break
            time.sleep(0.1)
        zombies = sum(1 for _, state in children(proc.pid) if state == "Z")
        alive = proc.poll() is None
        rss = rss_kb(proc.pid) if alive else None
    finally:
        stop(proc)
    return {"tool": tool, "reloads": reloads, "settled_on_last_config": settled is not None,
            "seconds_to_settle": round(settled, 2) if settled is not None else None, "zombies": zombies,
            "master_rss_kb": rss, "alive": alive, "running_at_end": sorted(running)}


# -- CLI fuzz -------------------------------------------------------------------------------------------
WORDS = ["show", "proc", "programs", "info", "env", "logs", "startup-logs", "version", "help", "prompt",
         "echo", "operator", "user", "expert-mode", "on", "off", "set", "severity-output", "number", "cli",
         "level", "sockets", "signal", "start", "SIGHUP", "SIGUSR1", "@", "@0", "@master", "@!1", "@@1",
         "target", "quit", "timed", "i", "p", "n", ";", "'", '"', "\\", "#", "-1", "99999999999999999999"]
FORBIDDEN = {"quit"}  # ends only the fuzzer's own session; harmless, but it cuts the input short


def fuzz_input(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.55:  # words of the language, some mutated
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 6))]
        text = " ".join(words)
        if rng.random() < 0.3:
            position = rng.randrange(len(text) + 1)
            text = text[:position] + chr(rng.randrange(1, 0x2FF)) + text[position:]
        return text.encode("utf-8", "replace") + rng.choice([b"\n", b";", b"\r\n", b"", b"\n\n"])
    if kind < 0.85:  # random bytes
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))) + b"\n"
    if kind < 0.95:  # many commands at once
        return b";".join(rng.choice(WORDS).encode() for _ in range(rng.randint(10, 300))) + b"\n"
    return b"x" * rng.randint(60_000, 70_000) + b"\n"  # around the line limit


def fuzz(tool: str, scratch: Path, inputs: int, seed: int) -> dict[str, object]:
    sock_path = str(scratch / f"{tool}.sock")
    if tool == "progset":
        config = scratch / "fuzz.json"
        config.write_text(json.dumps({"programs": [{"name": "app", "command": ["sleep", "3600"]}]}))
        argv = [PROGSET, "-f", str(config), "-S", sock_path, "--metrics-address", "off", "--no-watch"]
    else:
        config = scratch / "fuzz.cfg"
        config.write_text("global\n    master-worker\n\ndefaults\n    mode http\n    timeout client 1s\n"
                          "    timeout server 1s\n    timeout connect 1s\n\nprogram app\n    command sleep 3600\n")
        argv = ["haproxy", "-W", "-db", "-S", sock_path, "-f", str(config)]
    proc = launch(argv, scratch / f"{tool}-fuzz.log")
    deadline = time.monotonic() + 30
    while not os.path.exists(sock_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    rng = random.Random(seed)
    errors = 0
    began = time.monotonic()
    rss_before, fds_before = rss_kb(proc.pid), fds(proc.pid)
    try:
        for _ in range(inputs):
            data = fuzz_input(rng)
            if any(word in data.split() for word in (w.encode() for w in FORBIDDEN)):
                continue
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.settimeout(5)
                    sock.connect(sock_path)
                    sock.sendall(data)
                    sock.shutdown(socket.SHUT_WR)
                    while sock.recv(65536):
                        pass
            except OSError:
                errors += 1
            if proc.poll() is not None:
                break
        elapsed = time.monotonic() - began
        alive = proc.poll() is None
        echo = b""
        if alive:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5)
                sock.connect(sock_path)
                sock.sendall(b"show proc\n")
                sock.shutdown(socket.SHUT_WR)
                echo = sock.recv(65536)
        result = {"tool": tool, "inputs": inputs, "seconds": round(elapsed, 1),
                  "per_second": round(inputs / elapsed, 1), "client_errors": errors, "alive": alive,
                  "answers_after": b"app" in echo, "rss_before_kb": rss_before,
                  "rss_after_kb": rss_kb(proc.pid) if alive else None, "fds_before": fds_before,
                  "fds_after": fds(proc.pid) if alive else None}
    finally:
        stop(proc)
    return result


# -- HTTP flood -----------------------------------------------------------------------------------------
def http_flood(scratch: Path, seconds: float) -> dict[str, object]:
    config = scratch / "http.json"
    config.write_text(json.dumps({"programs": [{"name": f"p{i}", "command": ["sleep", "3600"]} for i in range(20)]}))
    log = scratch / "http.log"
    proc = launch([PROGSET, "-f", str(config), "--metrics-address", "127.0.0.1:0", "--no-watch"], log)
    port = None
    deadline = time.monotonic() + 30
    while port is None and time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if "HTTP endpoints on http://" in line:
                port = int(line.split("http://", 1)[1].split(" ", 1)[0].rsplit(":", 1)[1])
        time.sleep(0.1)
    assert port is not None, log.read_text()
    # The flood and the scrapers run in a process of their own: in this one they would compete with
    # the probe for the GIL, and a probe late for that reason says nothing about the supervisor.
    flooder = subprocess.Popen([sys.executable, __file__, "--flood-child", str(port), str(seconds + 1)],
                               stdout=subprocess.PIPE, text=True)
    probes: list[float] = []
    failures: list[str] = []
    try:
        time.sleep(1)
        began = time.monotonic()
        while time.monotonic() - began < seconds:
            start = time.monotonic()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
                conn.request("GET", "/healthz")
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    probes.append(time.monotonic() - start)
                else:
                    failures.append(f"status {status}")
            except OSError as exc:
                failures.append(f"{type(exc).__name__} after {time.monotonic() - start:.2f}s")
            time.sleep(0.1)
        counts = json.loads(flooder.communicate(timeout=60)[0])
        rss = rss_kb(proc.pid)
    finally:
        if flooder.poll() is None:
            flooder.kill()
        stop(proc)
    failed = len(failures)
    opened, scrapes = counts["opened"], [counts["scrapes"]]
    ordered = sorted(probes)
    return {"tool": "progset", "seconds": seconds, "idle_connections": 300, "flood_connections_opened": opened,
            "scrapes_served": scrapes[0], "probes_ok": len(probes), "probes_failed": failed,
            "probe_p50_ms": round(statistics.median(ordered) * 1000, 1) if ordered else None,
            "probe_p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 1) if ordered else None,
            "probe_max_ms": round(ordered[-1] * 1000, 1) if ordered else None, "rss_kb": rss,
            "failures": "; ".join(failures) or "-"}


def flood_child(port: int, seconds: float) -> None:
    """``--flood-child``: 300 idle connections re-opened when closed, and 4 scrapers, for ``seconds``."""
    stop_scrapes = threading.Event()
    scrapes = [0]

    def scraper() -> None:
        while not stop_scrapes.is_set():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/metrics")
                conn.getresponse().read()
                conn.close()
                scrapes[0] += 1
            except OSError:
                pass

    threads = [threading.Thread(target=scraper, daemon=True) for _ in range(4)]
    with Flood(port, 300) as flood:
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        stop_scrapes.set()
        opened = flood.opened
    print(json.dumps({"opened": opened, "scrapes": scrapes[0]}))


def table(rows: list[dict[str, object]]) -> str:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(row.get(k, "")) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def ratio(a: object, b: object) -> str:
    if isinstance(a, int | float) and isinstance(b, int | float) and b:
        return f"{a / b:.2f}"
    return "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cycles", type=int, default=10_000)
    parser.add_argument("--max-seconds", type=float, default=240.0, help="cap on each crash-cycle run")
    parser.add_argument("--reloads", type=int, default=100)
    parser.add_argument("--inputs", type=int, default=10_000)
    parser.add_argument("--flood-seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--only", choices=("crash", "storm", "fuzz", "http"), action="append")
    parser.add_argument("--flood-child", nargs=2, type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.flood_child:
        flood_child(int(args.flood_child[0]), args.flood_child[1])
        return 0
    only = set(args.only or ("crash", "storm", "fuzz", "http"))
    have_supervisord, have_haproxy = bool(shutil.which("supervisord")), bool(shutil.which("haproxy"))
    out = ["## Chaos benchmarks (issue 15)", "",
           f"Command: `.venv/bin/python bench/chaos_bench.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
           f"Machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}, Python "
           f"{platform.python_version()}; load average at start {os.getloadavg()[0]:.1f}", ""]
    with tempfile.TemporaryDirectory(prefix="chaosbench") as tmp:
        scratch = Path(tmp)
        if "crash" in only:
            print("crash cycles: progset", file=sys.stderr)
            rows = [crash_cycles("progset", scratch, args.cycles, args.max_seconds)]
            if have_supervisord:
                print("crash cycles: supervisord", file=sys.stderr)
                rows.append(crash_cycles("supervisord", scratch, args.cycles,
                                         min(args.max_seconds, float(rows[0]["seconds"]))))  # type: ignore[arg-type]
            out += ["### Crash/restart cycles", "", table(rows), ""]
            if len(rows) == 2:
                speed = ratio(rows[0]["per_second"], rows[1]["per_second"])
                out += [f"Cycles per second, progset / supervisord: {speed}", ""]
        if "storm" in only:
            rows = []
            for tool in ["progset", *(["haproxy"] if have_haproxy else [])]:
                print(f"reload storm: {tool}", file=sys.stderr)
                rows.append(reload_storm(tool, scratch, args.reloads))
            out += ["### Reload storm", "", table(rows), ""]
        if "fuzz" in only:
            rows = []
            for tool in ["progset", *(["haproxy"] if have_haproxy else [])]:
                print(f"CLI fuzz: {tool}", file=sys.stderr)
                rows.append(fuzz(tool, scratch, args.inputs, args.seed))
            out += ["### Master CLI fuzz", "", table(rows), ""]
            if len(rows) == 2:
                speed = ratio(rows[0]["per_second"], rows[1]["per_second"])
                out += [f"Inputs per second, progset / HAProxy: {speed}", ""]
        if "http" in only:
            print("HTTP flood: progset", file=sys.stderr)
            out += ["### HTTP flood (progset only: neither supervisord nor HAProxy's master has a health endpoint)",
                    "", table([http_flood(scratch, args.flood_seconds)]), ""]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
