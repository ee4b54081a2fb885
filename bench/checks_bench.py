"""Cost of health checks: N programs, each with one check every second, and the supervisor's CPU and RSS.

Side by side in one run:

- ``progset http``: N programs (``sleep``), each with an HTTP readiness check every 1 s;
- ``progset tcp``: the same with TCP checks;
- ``progset exec``: the same with exec checks (``true``, spawned as the program would be);
- ``haproxy http``: HAProxy 2.6 health-checking N servers with ``option httpchk`` and ``inter 1s``,
  the closest thing HAProxy has (it checks servers, not programs; supervisord checks nothing).

Every check asks one HTTP endpoint: a separate HAProxy answering ``200`` itself (``http-request return``),
so the checked side is cheap and not what is measured. After every program is ready (``/readyz`` says
200; for HAProxy, a settle delay), the CPU time (utime + stime from ``/proc/<pid>/stat``) of the
checking process is read over ``--seconds`` and divided by the wall time: the share of one core. RSS is
read at the end. Usage::

    python bench/checks_bench.py -n 1000 --seconds 30
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def measure(pid: int, seconds: float) -> tuple[float, float]:
    """(share of one core over ``seconds``, RSS in MiB at the end)."""
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    return (cpu1 - cpu0) / (t1 - t0), rss_mib(pid)


def target(haproxy: str, scratch: Path) -> tuple[subprocess.Popen[bytes], int]:
    """An HTTP endpoint answering 200 to anything, served by HAProxy itself."""
    port = free_port()
    cfg = scratch / "target.cfg"
    cfg.write_text("global\n    maxconn 8000\ndefaults\n    mode http\n    timeout connect 1s\n"
                   f"    timeout client 5s\n    timeout server 5s\nfrontend fe\n    bind 127.0.0.1:{port}\n"
                   f"    http-request return status 200 content-type text/plain string ok\n")
    proc = subprocess.Popen([haproxy, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("target HAProxy did not start")


def check_runs(metrics_port: int) -> float:
    """Check runs so far, summed from ``progset_check_runs_total``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30) as reply:
        text = reply.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("progset_check_runs_total{"))


def progset(kind: str, n: int, port: int, scratch: Path, seconds: float) -> tuple[float, float, float, float]:
    """Start progset with N checked programs; (time until all ready, CPU share, RSS MiB, checks per second)."""
    check: dict[str, object]
    if kind == "http":
        check = {"http": {"port": port, "path": "/healthz"}}
    elif kind == "tcp":
        check = {"tcp": {"port": port}}
    else:
        check = {"exec": {"command": ["true"]}, "timeoutSeconds": 5}
    programs = [{"name": f"p{i}", "command": ["sleep", "86400"], "readiness": {**check, "periodSeconds": 1}}
                for i in range(n)]
    config = scratch / f"progset-{kind}.json"
    config.write_text(json.dumps({"programs": programs}))
    metrics = free_port()
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "progset_supervisor", "-f", str(config), "--no-watch",
                             "--metrics-address", f"127.0.0.1:{metrics}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = started + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/readyz", timeout=5) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"progset {kind}: not all ready after 120 s")
            time.sleep(0.1)
        ready = time.monotonic() - started
        time.sleep(2)  # past the first, synchronised round of checks
        runs0, t0 = check_runs(metrics), time.monotonic()
        share, rss = measure(proc.pid, seconds)  # the scrapes are outside the measured window
        rate = (check_runs(metrics) - runs0) / (time.monotonic() - t0)
        return ready, share, rss, rate
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def haproxy_checks(haproxy: str, n: int, port: int, scratch: Path, seconds: float) -> tuple[float, float]:
    cfg = scratch / "checker.cfg"
    servers = "".join(f"    server s{i} 127.0.0.1:{port} check inter 1s\n" for i in range(n))
    cfg.write_text("global\n    maxconn 8000\ndefaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n"
                   f"    timeout server 5s\n    timeout check 1s\nfrontend fe\n    bind 127.0.0.1:{free_port()}\n"
                   "    default_backend be\nbackend be\n    option httpchk GET /healthz\n" + servers)
    proc = subprocess.Popen([haproxy, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(5)  # HAProxy spreads the first checks over the interval
        return measure(proc.pid, seconds)
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--kinds", default="http,tcp,exec")
    args = parser.parse_args()
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        sys.exit("haproxy (Debian package haproxy) is needed: it serves the checked endpoint")
    rows = []
    with tempfile.TemporaryDirectory(prefix="checks-bench") as tmp:
        scratch = Path(tmp)
        server, port = target(haproxy, scratch)
        try:
            for kind in args.kinds.split(","):
                ready, share, rss, rate = progset(kind, args.n, port, scratch, args.seconds)
                rows.append((f"progset {kind}", ready, share, rss, rate))
                print(f"progset {kind}: all {args.n} ready after {ready:.2f} s; CPU {share * 100:.1f} % of a core; "
                      f"RSS {rss:.1f} MiB; {rate:.0f} checks/s", flush=True)
            share, rss = haproxy_checks(haproxy, args.n, port, scratch, args.seconds)
            rows.append(("haproxy http", None, share, rss, None))
            print(f"haproxy http: CPU {share * 100:.1f} % of a core; RSS {rss:.1f} MiB", flush=True)
        finally:
            server.terminate()
            server.wait(30)
    base = next(share for name, _, share, _, _ in rows if name == "haproxy http")
    print("\n| checker | all ready | checks/s | CPU (share of one core) | CPU per check | RSS | CPU vs HAProxy |")
    print("|---|---|---|---|---|---|---|")
    for name, ready, share, rss, rate in rows:
        ratio = f"{share / base:.1f}x" if base > 0 else "-"
        shown = "-" if ready is None else f"{ready:.2f} s"
        per = share / (rate if rate else args.n)  # HAProxy: N checks a second by its configuration
        print(f"| {name} | {shown} | {'-' if rate is None else f'{rate:.0f}'} | {share * 100:.1f} % | "
              f"{per * 1e6:.0f} µs | {rss:.1f} MiB | {ratio} |")


if __name__ == "__main__":
    main()
