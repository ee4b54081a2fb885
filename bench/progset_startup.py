#!/usr/bin/env python3
"""Where progset-supervisor's start-up time goes, phase by phase, for the lead who has to cut it.

``supervisor_bench.py`` says how long progset takes until N programs run, next to HAProxy and
supervisord; this script says why, by timing the phases of ``progset_supervisor.__main__.main`` on
their own with progset's own functions: interpreter and imports, ``find_library`` (each call runs
``ldconfig -p``), loading the YAML config (and what libyaml's parser would take for the same text),
and spawning N programs with and without the ``setpriv`` parent-death-signal exec chain. Each phase
is the minimum of a few repeats, so load from other work on the machine inflates it least.

    .venv/bin/python bench/progset_startup.py            # N = 200 and 1000
"""

from __future__ import annotations

import argparse
import ctypes.util
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from proctree import cmdline
from tools import PROJECT, Progset

sys.path.insert(0, str(PROJECT / "supervisor"))
from progset_supervisor.config import load_path
from progset_supervisor.spawn import spawn


def best_ms(action: Callable[[], object], repeats: int) -> float:
    """Minimum wall time of ``repeats`` runs, in milliseconds."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        action()
        times.append(time.perf_counter() - t)
    return min(times) * 1000


def python_ms(code: str, env: dict[str, str], repeats: int) -> float:
    python = str(PROJECT / ".venv" / "bin" / "python")
    return best_ms(lambda: subprocess.run([python, "-c", code], env=env, check=True), repeats)


def spawn_all(path: Path, pdeathsig: bool) -> tuple[float, float]:
    """Spawn every program of ``path`` as the master does; (parent ms per spawn, ms until all exec'd)."""
    config = load_path(str(path))
    env = dict(os.environ)
    children = []
    t0 = time.perf_counter()
    for program in config.programs:
        children.append(spawn(program, env, pdeathsig=pdeathsig))
    parent = (time.perf_counter() - t0) * 1000 / len(children)
    pending = {child.popen.pid for child in children}
    while pending:
        pending = {pid for pid in pending if os.path.basename((cmdline(pid) or [b""])[0]) != b"sleep"}
    everything = (time.perf_counter() - t0) * 1000
    for child in children:
        child.popen.kill()
        child.popen.wait()
        os.close(child.stdout_fd)
        os.close(child.stderr_fd)
    return parent, everything


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", dest="sizes", type=int, action="append", help="programs (default 200 and 1000)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="progset-startup-"))
    tool = Progset("progset", str(PROJECT / ".venv" / "bin" / "progset-supervisor"), restarts=True)
    env = tool.environment(scratch, bytecode_cache=True)
    raw_env = dict(os.environ)
    python_ms("import progset_supervisor.__main__", env, 1)  # fills the bytecode cache
    bare = python_ms("pass", env, args.repeats)
    rows = [("interpreter start (`python -c pass`)", f"{bare:.0f} ms"),
            ("imports of `progset_supervisor.__main__`, bytecode cached",
             f"{python_ms('import progset_supervisor.__main__', env, args.repeats) - bare:.0f} ms"),
            ("the same as this machine's environment has it (PYTHONDONTWRITEBYTECODE=1, editable install)",
             f"{python_ms('import progset_supervisor.__main__', raw_env, args.repeats) - bare:.0f} ms"),
            ("`ctypes.util.find_library('c')` (runs `ldconfig -p`; called twice at start-up)",
             f"{best_ms(lambda: ctypes.util.find_library('c'), args.repeats):.1f} ms")]
    for n in args.sizes or [200, 1000]:
        directory = scratch / str(n)
        directory.mkdir()
        path = Path(tool.write_config(directory, [["sleep", "86400", f"0.777{i:05d}"] for i in range(n)])[2])
        text = path.read_text()
        rows.append((f"N={n}: `load_path` of the YAML config",
                     f"{best_ms(lambda p=path: load_path(str(p)), max(2, args.repeats // 2)):.0f} ms"))
        rows.append((f"N={n}: of which composing the YAML (pure-Python `yaml.SafeLoader`)",
                     f"{best_ms(lambda t=text: yaml.SafeLoader(t).get_single_node(), 2):.0f} ms"))
        if yaml.__with_libyaml__:
            rows.append((f"N={n}: the same with libyaml (`yaml.CSafeLoader`, also gives line marks)",
                         f"{best_ms(lambda t=text: yaml.CSafeLoader(t).get_single_node(), 2):.0f} ms"))
        for pdeathsig, how in ((True, "with setpriv (not PID 1)"), (False, "without setpriv (PID 1)")):
            per_spawn, until_all = min(spawn_all(path, pdeathsig) for _ in range(3))
            rows.append((f"N={n}: spawn() {how}: parent time per program / until all exec'd `sleep`",
                         f"{per_spawn:.2f} ms / {until_all:.0f} ms"))
    subprocess.run(["rm", "-rf", str(scratch)], check=False)
    print("| phase | time (min of repeats) |\n|---|---:|")
    for label, value in rows:
        print(f"| {label} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
