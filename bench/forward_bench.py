"""``@1 show info`` round trip through the Master CLI: progset forwarding to HAProxy run as a program,
against HAProxy 2.6's own master forwarding to its worker.

Usage: ``.venv/bin/python bench/forward_bench.py [--rounds 400]``

Both sides end at the same kind of process: an HAProxy 2.6 worker answering ``show info``.
- HAProxy: ``haproxy -W -S master.sock -f h.cfg``; the master relays ``@1 show info`` to its worker over
  their socketpair.
- progset: ``progset-supervisor -S master.sock -f p.cfg`` where ``p.cfg`` runs ``haproxy -db -f h.cfg``
  as a program with ``runtime-socket`` (h.cfg's ``stats socket``); the supervisor connects to it per
  command. Also measured: the same command sent to that stats socket directly (the floor).
Each round is ``echo '@1 show info' | socat``: connect, send, half-close, read until closed. The tools
are measured alternately; medians and p99 in milliseconds, and progset / HAProxy as a ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "bench"))
sys.path.insert(0, str(PROJECT))  # the worker tests' HAProxy config: the bench runs the same one

from tests.supervisor.peers import HAPROXY_WORKER_CFG as H_CFG  # noqa: E402

from cli_bench import round_trip  # noqa: E402

P_CFG = """\
program haproxy
\tcommand {haproxy} -db -f {dir}/h.cfg
\truntime-socket {dir}/stats.sock
"""


def wait_answer(path: Path, command: bytes, deadline: float = 15.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            if round_trip(str(path), command)[1].startswith(b"Name: HAProxy"):
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"no answer on {path}")


def stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99) - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=400)
    args = parser.parse_args()
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        raise SystemExit("haproxy is not installed (Debian package 'haproxy')")
    with tempfile.TemporaryDirectory(prefix="fwdbench") as tmp:
        ha_dir, ps_dir = Path(tmp, "haproxy"), Path(tmp, "progset")
        ha_dir.mkdir()
        ps_dir.mkdir()
        (ha_dir / "h.cfg").write_text(H_CFG.format(dir=ha_dir))
        (ps_dir / "h.cfg").write_text(H_CFG.format(dir=ps_dir))
        (ps_dir / "p.cfg").write_text(P_CFG.format(dir=ps_dir, haproxy=haproxy))
        procs = [
            subprocess.Popen([haproxy, "-W", "-S", str(ha_dir / "master.sock"), "-f", str(ha_dir / "h.cfg")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True),
            subprocess.Popen([sys.executable, "-m", "progset_supervisor", "-S", str(ps_dir / "master.sock"),
                              "-f", str(ps_dir / "p.cfg"), "--metrics-address", "off"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True),
        ]
        try:
            command = b"@1 show info\n"
            targets = {"HAProxy 2.6 master": ha_dir / "master.sock", "progset": ps_dir / "master.sock",
                       "stats socket directly": ps_dir / "stats.sock"}
            for name, path in targets.items():
                wait_answer(path, command if name != "stats socket directly" else b"show info\n")
            samples: dict[str, list[float]] = {name: [] for name in targets}
            for _ in range(args.rounds):
                for name, path in targets.items():
                    sent = command if name != "stats socket directly" else b"show info\n"
                    samples[name].append(round_trip(str(path), sent)[0])
            print("| target | median ms | p99 ms |")
            print("|---|---|---|")
            for name, values in samples.items():
                median, p99 = stats(values)
                print(f"| {name} | {median:.3f} | {p99:.3f} |")
            ratio = statistics.median(samples["progset"]) / statistics.median(samples["HAProxy 2.6 master"])
            print(f"\nprogset / HAProxy master (medians): {ratio:.2f}x over {args.rounds} rounds each")
        finally:
            for proc in procs:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        os.killpg(proc.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
