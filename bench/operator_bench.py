"""Operator benchmark: create -> ConfigMap latency, and reconciling 500 ProgramSets, against the emulator.

Three processes, as in a cluster: the API server (kmock's emulator plus the test suite's subclass,
``tests/operator/emulator.py``), the operator exactly as shipped (``progset-operator run``), and this
driver, which creates ProgramSets over HTTP and times what it sees on its own watch streams.

    .venv/bin/python bench/operator_bench.py [--latency-samples 50] [--count 500]

The emulator is an in-memory Python server, not etcd + kube-apiserver: the absolute numbers say how
fast the operator's own path is (kopf, the model, the renders, the writes), not what a real cluster
adds. The lead records the printed numbers in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
PS_PATH = "/apis/progset.io/v1alpha1/namespaces/{ns}/programsets"
CM_WATCH = "/api/v1/configmaps?watch=true"
PS_WATCH = "/apis/progset.io/v1alpha1/programsets?watch=true"


# --- the API server process ------------------------------------------------------------------------


async def serve_emulator(namespaces: list[str]) -> None:
    """Run the emulator until stdin closes; print its URL first."""
    sys.path.insert(0, str(REPO / "tests" / "operator"))
    import kmock
    from emulator import Emulator

    emu = Emulator(record_requests=False)
    emu.resources.load_bundled()
    emu.resources["progset.io/v1alpha1/programsets"] = kmock.ResourceInfo(
        kind="ProgramSet", namespaced=True, subresources={"status"},
        verbs={"get", "list", "watch", "create", "patch", "update", "delete"})
    for ns in namespaces:
        emu.objects["v1/namespaces", None, ns] = {"metadata": {"name": ns, "resourceVersion": "0"}}
    async with emu, kmock.Server(emu):
        print(str(emu.url).rstrip("/"), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


# --- the driver ------------------------------------------------------------------------------------


def programset(name: str, namespace: str) -> dict[str, Any]:
    return {"apiVersion": "progset.io/v1alpha1", "kind": "ProgramSet",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"programs": [
                {"name": "haproxy", "command": ["/usr/sbin/haproxy", "-W", "-db", "-f", "/etc/haproxy.cfg"],
                 "onReload": "signal", "reloadSignal": "SIGUSR2", "critical": True},
                {"name": "dataplaneapi", "command": ["/usr/local/bin/dataplaneapi", "--port=5555"],
                 "onReload": "keep", "dependsOn": ["haproxy"]},
                {"name": "mirror", "command": ["/usr/local/bin/spoa-mirror", "--runtime=0"], "restart": "always"},
            ]}}


class Watcher:
    """Timestamps of the first ConfigMap and the first rendered status seen per ProgramSet name."""

    def __init__(self) -> None:
        self.configmaps: dict[str, float] = {}
        self.statuses: dict[str, float] = {}
        self.changed = asyncio.Event()

    async def follow(self, session: aiohttp.ClientSession, url: str, kind: str) -> None:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as response:
            async for line in response.content:
                if not line.strip():
                    continue
                obj = json.loads(line)["object"]
                now = time.perf_counter()
                meta = obj.get("metadata", {})
                if kind == "cm":
                    owner = (meta.get("labels") or {}).get("progset.io/programset")
                    if owner:
                        self.configmaps.setdefault(f"{meta['namespace']}/{owner}", now)
                elif (obj.get("status") or {}).get("observedGeneration") == 1:
                    self.statuses.setdefault(f"{meta['namespace']}/{meta['name']}", now)
                self.changed.set()

    async def wait(self, table: dict[str, float], keys: set[str], timeout: float) -> float:
        deadline = time.perf_counter() + timeout
        while not keys <= table.keys():
            self.changed.clear()
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError(f"{len(keys - table.keys())} of {len(keys)} not seen within {timeout}s")
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                continue
        return max(table[k] for k in keys)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_operator(kubeconfig: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    return subprocess.Popen(
        [sys.executable, "-m", "progset_operator", "run", "--standalone", "--all-namespaces",
         "--metrics-port", str(port), "--metrics-address", "127.0.0.1", "--log-format", "plain"],
        env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def metric(session: aiohttp.ClientSession, port: int, name: str) -> float:
    try:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
            text = await response.text()
    except aiohttp.ClientError:
        return -1.0
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def cpu_seconds(proc: subprocess.Popen[bytes]) -> float:
    """User + system CPU of a process and its threads so far."""
    times = psutil.Process(proc.pid).cpu_times()
    return float(times.user + times.system)


async def create_all(session: aiohttp.ClientSession, bodies: list[dict[str, Any]], parallel: int) -> None:
    gate = asyncio.Semaphore(parallel)

    async def one(body: dict[str, Any]) -> None:
        async with gate, session.post(PS_PATH.format(ns=body["metadata"]["namespace"]), json=body) as response:
            if response.status >= 300:
                raise RuntimeError(f"create {body['metadata']['name']}: {response.status} {await response.text()}")

    await asyncio.gather(*(one(b) for b in bodies))


def quantiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (f"median {statistics.median(ordered) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, "
            f"max {ordered[-1] * 1000:.1f} ms")


async def run(args: argparse.Namespace) -> None:
    namespaces = [f"bench-{i}" for i in range(args.namespaces)]
    with tempfile.TemporaryDirectory(prefix="progset-bench-") as tmp:
        emulator = subprocess.Popen([sys.executable, __file__, "--serve-emulator", *namespaces],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert emulator.stdout is not None
        url = emulator.stdout.readline().decode().strip()
        kubeconfig = Path(tmp) / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "bench",
            "clusters": [{"name": "bench", "cluster": {"server": url}}],
            "users": [{"name": "bench", "user": {"token": "bench"}}],
            "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench"}}]}))
        log = Path(tmp) / "operator.log"
        port = free_port()
        operator = start_operator(kubeconfig, port, log)
        watcher = Watcher()
        try:
            async with aiohttp.ClientSession(url) as session:
                follows = [asyncio.create_task(watcher.follow(session, CM_WATCH, "cm")),
                           asyncio.create_task(watcher.follow(session, PS_WATCH, "ps"))]
                started = time.perf_counter()
                await create_all(session, [programset("warmup", namespaces[0])], 1)
                await watcher.wait(watcher.statuses, {f"{namespaces[0]}/warmup"}, 60)
                print(f"operator up and rendering after {time.perf_counter() - started:.2f} s "
                      "(process start, imports, discovery, first reconcile)")

                cm_latency, status_latency = [], []
                for i in range(args.latency_samples):
                    key = f"{namespaces[0]}/lat-{i}"
                    t0 = time.perf_counter()
                    await create_all(session, [programset(f"lat-{i}", namespaces[0])], 1)
                    cm_latency.append(await watcher.wait(watcher.configmaps, {key}, 30) - t0)
                    status_latency.append(await watcher.wait(watcher.statuses, {key}, 30) - t0)
                print(f"create -> ConfigMap ({args.latency_samples} sequential): {quantiles(cm_latency)}")
                print(f"create -> status Rendered ({args.latency_samples} sequential): {quantiles(status_latency)}")

                bodies = [programset(f"many-{i}", namespaces[i % len(namespaces)]) for i in range(args.count)]
                keys = {f"{b['metadata']['namespace']}/{b['metadata']['name']}" for b in bodies}
                cpu_op, cpu_emu = cpu_seconds(operator), cpu_seconds(emulator)
                t0 = time.perf_counter()
                await create_all(session, bodies, args.parallel)
                t_posted = time.perf_counter() - t0
                t_cms = await watcher.wait(watcher.configmaps, keys, 600) - t0
                t_status = await watcher.wait(watcher.statuses, keys, 600) - t0
                cpu_op, cpu_emu = cpu_seconds(operator) - cpu_op, cpu_seconds(emulator) - cpu_emu
                print(f"{args.count} ProgramSets created at once ({args.parallel} concurrent POSTs, "
                      f"{len(namespaces)} namespaces): all POSTed after {t_posted:.2f} s, all ConfigMaps after "
                      f"{t_cms:.2f} s, all statuses after {t_status:.2f} s ({args.count / t_status:.0f} ProgramSets/s)")
                print(f"  CPU during the burst: operator {cpu_op:.2f} s ({cpu_op / args.count * 1000:.1f} ms per "
                      f"ProgramSet), emulated API server {cpu_emu:.2f} s")

                total = 1 + args.latency_samples + args.count
                stop(operator)
                t0 = time.perf_counter()
                operator = start_operator(kubeconfig, port, log)
                while await metric(session, port, 'progset_operator_reconciles_total{result="unchanged"}') < total:
                    await asyncio.sleep(0.05)
                t_resync = time.perf_counter() - t0
                writes = sum([await metric(session, port, f'progset_operator_reconciles_total{{result="{r}"}}')
                              for r in ("created", "updated")])
                print(f"restart with {total} ProgramSets: all resumed (unchanged) after {t_resync:.2f} s "
                      f"from process start (operator CPU {cpu_seconds(operator):.2f} s), "
                      f"ConfigMap writes: {writes:.0f}")
                for task in follows:
                    task.cancel()
        finally:
            stop(operator)
            assert emulator.stdin is not None
            emulator.stdin.close()
            emulator.wait(10)
        errors = [line for line in log.read_text().splitlines() if "Traceback" in line or "[ERROR" in line]
        print(f"operator log: {len(errors)} error lines")
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cpus, load {load[0]:.2f}, Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-samples", type=int, default=50)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--namespaces", type=int, default=5)
    parser.add_argument("--parallel", type=int, default=20, help="concurrent creates")
    parser.add_argument("--serve-emulator", nargs="*", metavar="NS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_emulator is not None:
        asyncio.run(serve_emulator(args.serve_emulator))
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
