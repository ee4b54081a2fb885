"""``show proc`` round-trip latency over the Master CLI: progset-supervisor against HAProxy 2.6.

Usage: ``.venv/bin/python bench/cli_bench.py [--sizes 150,200] [--rounds 400]``

For each size, one config file with that many ``program`` sections (``sleep 3600``) plus a minimal
``global``/``defaults``/``frontend`` is loaded by both tools: ``progset-supervisor -f cfg -S sock`` and
``haproxy -W -S sock -f cfg`` (master-worker mode). Each round is what ``echo 'show proc' | socat``
does: connect, send the command, half-close, read until the server closes; the two tools are measured
alternately so machine noise hits both alike. Printed as a Markdown table: median and p99 in
milliseconds, the answer's size and row count.

HAProxy 2.6's ``show proc`` has an output ceiling (about 185 processes on Debian's 2.6.12): above it
the client gets an empty line instead of the table. Sizes above the ceiling are still measured, and
flagged, but the fair comparison is the size below it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))  # the tests' HAProxy config helper: the bench compares the same file

from tests.supervisor.peers import haproxy_config  # noqa: E402


def write_config(directory: Path, count: int) -> Path:
    return haproxy_config(directory, [(f"p{i:03d}", "sleep 3600") for i in range(count)])


def round_trip(path: str, command: bytes = b"show proc\n") -> tuple[float, bytes]:
    start = time.perf_counter()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(command)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    return time.perf_counter() - start, b"".join(chunks)


def children(pid: int) -> int:
    """Live direct children of ``pid`` running sleep (the programs), from /proc."""
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z" and b"sleep" in cmdline:
            count += 1
    return count


class Tool:
    def __init__(self, name: str, argv: list[str], sock: str, count: int) -> None:
        self.name = name
        self.sock = sock
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + 60
        while children(self.proc.pid) < count or not self._answers():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise SystemExit(f"{name} did not start its {count} programs")
            time.sleep(0.1)
        time.sleep(0.5)  # let start-up work (HAProxy's worker, our first log lines) settle

    def _answers(self) -> bool:
        try:
            round_trip(self.sock, b"show version\n")
            return True
        except OSError:
            return False

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure(count: int, rounds: int, haproxy: str) -> list[dict[str, object]]:
    directory = Path(tempfile.mkdtemp(prefix="clibench", dir="/tmp"))
    tools: list[Tool] = []
    try:
        config = write_config(directory, count)
        tools.append(Tool("progset", [sys.executable, "-m", "progset_supervisor", "-f", str(config), "--no-watch",
                                      "--metrics-address", "off", "-S", str(directory / "progset.sock")],
                          str(directory / "progset.sock"), count))
        tools.append(Tool("haproxy 2.6", [haproxy, "-W", "-S", str(directory / "haproxy.sock"), "-f", str(config)],
                          str(directory / "haproxy.sock"), count))
        samples: dict[str, list[float]] = {t.name: [] for t in tools}
        answers: dict[str, bytes] = {}
        for tool in tools:  # warm-up
            for _ in range(20):
                round_trip(tool.sock)
        for _ in range(rounds):
            for tool in tools:
                elapsed, answer = round_trip(tool.sock)
                samples[tool.name].append(elapsed)
                answers[tool.name] = answer
        rows = []
        for tool in tools:
            answer = answers[tool.name]
            program_rows = answer.split(b"# programs\n", 1)[1].count(b"\n") - 1 if b"# programs\n" in answer else 0
            rows.append({"programs": count, "tool": tool.name,
                         "median": statistics.median(samples[tool.name]) * 1000,
                         "p99": percentile(samples[tool.name], 0.99) * 1000,
                         "bytes": len(answer), "rows": program_rows,
                         "note": "" if program_rows == count else f"answer lists {program_rows} of {count} programs"})
        return rows
    finally:
        for tool in tools:
            tool.close()
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="150,200", help="program counts (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=400, help="measured round trips per tool and size")
    args = parser.parse_args(argv)
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        print("haproxy is not installed (apt-get install haproxy)", file=sys.stderr)
        return 1
    version = subprocess.run([haproxy, "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        results.extend(measure(size, args.rounds, haproxy))
    print(f"`show proc` round trip, {args.rounds} rounds per cell, connect + command + read to close "
          f"({version}; Python {sys.version.split()[0]})\n")
    print("| programs | tool | median (ms) | p99 (ms) | answer (bytes) | program rows | note |")
    print("|---:|---|---:|---:|---:|---:|---|")
    for row in results:
        print(f"| {row['programs']} | {row['tool']} | {row['median']:.3f} | {row['p99']:.3f} | {row['bytes']} "
              f"| {row['rows']} | {row['note']} |")
    print()
    by_key = {(r["programs"], r["tool"]): r for r in results}
    for size in sorted({int(r["programs"]) for r in results}):  # type: ignore[call-overload]
        ours, theirs = by_key[(size, "progset")], by_key[(size, "haproxy 2.6")]
        ratio = float(ours["median"]) / float(theirs["median"])  # type: ignore[arg-type]
        valid = "" if not theirs["note"] else " (HAProxy's answer is truncated at this size: not a fair comparison)"
        print(f"- {size} programs: progset median = {ratio:.2f} x HAProxy's{valid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
