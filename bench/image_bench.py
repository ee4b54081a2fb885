"""Image sizes, and the time from ``docker run`` to all programs running, for progset's images.

    python bench/image_bench.py [-n PROGRAMS] [--rounds R]

Three containers run the same N programs from the same HAProxy-syntax file (``program`` sections;
progset reads HAProxy's syntax): the supervisor image (Python venv on a Debian base), a Debian image
without Python plus the self-contained bundle (README's recipe), and HAProxy 2.6's own master in that
image. Each program is ``sh -c ': > /ready/NAME; exec sleep 86400'`` with /ready a host directory,
so "all running" is the moment the N-th file exists, seen from the host (polled every 2 ms); the
clock starts just before ``docker run -d``, so the engine's own container set-up is included (the
same for all three). Rounds are interleaved between the tools; the table shows medians.

Images are built like the container tests build them (tests/containers/engine.py): FROM Debian
minbase images made with mmdebstrap, nothing pulled. Needs dockerd and root.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.containers import engine  # the same image-making code as the tests

RECIPE = """\
FROM {base}
COPY --from={bundle} /opt/progset /opt/progset
ENV PROGSET_CONFIG=/etc/progset
ENTRYPOINT ["/opt/progset/bin/progset-supervisor"]
"""


def config(programs: int) -> str:
    text = ("global\n    master-worker\ndefaults\n    mode tcp\n    timeout connect 1s\n    timeout client 1s\n"
            "    timeout server 1s\nfrontend fe\n    bind unix@/tmp/fe.sock\n")
    for i in range(programs):
        text += f"program p{i}\n    command sh -c ': > /ready/p{i}; exec sleep 86400'\n"
    return text


def size(image: str) -> int:
    return int(engine.run("image", "inspect", "--format", "{{.Size}}", image).stdout)


def start_time(image: str, args: list[str], programs: int, work: Path, entrypoint: str | None = None) -> float:
    """Seconds from just before ``docker run -d`` until every program has written its file."""
    ready = work / "ready"
    ready.mkdir(mode=0o777)
    ready.chmod(0o777)
    name = f"progset-bench-{os.getpid()}-{time.monotonic_ns()}"
    options = ["--network", "none", "--user", "65532:65532", "--tmpfs", "/tmp", "--tmpfs", "/run/progset",
               "-v", f"{ready}:/ready", "-v", f"{work / 'config'}:/etc/progset:ro"]
    if entrypoint:
        options += ["--entrypoint", entrypoint]
    started = time.monotonic()
    subprocess.run(["docker", "run", "-d", "--name", name, *options, image, *args], check=True,
                   stdout=subprocess.DEVNULL)
    try:
        deadline = started + 120
        while sum(1 for _ in os.scandir(ready)) < programs:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{image}: not all programs ran:\n" + engine.run("logs", name).stderr)
            time.sleep(0.002)
        return time.monotonic() - started
    finally:
        subprocess.run(["docker", "rm", "-f", name], check=False, capture_output=True)
        subprocess.run(["rm", "-rf", str(ready)], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--programs", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if engine.engine_problem():
        raise SystemExit(f"image_bench: {engine.engine_problem()}")
    images = engine.progset_images()
    python_base, plain_base = engine.base_image("python"), engine.base_image("haproxy")
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp) / "context"
        context.mkdir()
        with_bundle = engine.build_derived(RECIPE.format(base=plain_base, bundle=images["bundle"]), context,
                                           "bench-with-bundle")
    tools = {
        "progset (supervisor image)": (images["supervisor"], ["-f", "/etc/progset/haproxy.cfg"], None),
        "progset (bundle, no Python)": (with_bundle, ["-f", "/etc/progset/haproxy.cfg"], None),
        "HAProxy 2.6 master": (plain_base, ["-W", "-db", "-f", "/etc/progset/haproxy.cfg"], "haproxy"),
    }
    times: dict[str, list[float]] = {tool: [] for tool in tools}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        (work / "config").mkdir(mode=0o755)
        (work / "config" / "haproxy.cfg").write_text(config(args.programs))
        (work / "config" / "haproxy.cfg").chmod(0o644)
        for _ in range(args.rounds):
            for tool, (image, command, entrypoint) in tools.items():
                times[tool].append(start_time(image, command, args.programs, work, entrypoint))
    print(f"# image_bench: {args.programs} programs, {args.rounds} rounds, {os.cpu_count()} CPUs, "
          f"{platform.platform()}")
    print("\n| image | size | over its base |\n|---|---|---|")
    rows = [("Debian minbase + python3 + haproxy (test base)", python_base, None),
            ("progset-supervisor", images["supervisor"], python_base),
            ("progset-operator", images["operator"], python_base),
            ("Debian minbase + haproxy, no Python", plain_base, None),
            ("progset-bundle (FROM scratch: /opt/progset only)", images["bundle"], None),
            ("that image + the bundle (README recipe)", with_bundle, plain_base)]
    for label, image, base in rows:
        over = f"+{(size(image) - size(base)) / 2**20:.1f} MiB" if base else ""
        print(f"| {label} | {size(image) / 2**20:.1f} MiB | {over} |")
    haproxy = statistics.median(times["HAProxy 2.6 master"])
    print(f"\n| {args.programs} programs: docker run to all running | median | min | max | / HAProxy |\n"
          "|---|---|---|---|---|")
    for tool, values in times.items():
        median = statistics.median(values)
        print(f"| {tool} | {median:.3f} s | {min(values):.3f} s | {max(values):.3f} s | {median / haproxy:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
