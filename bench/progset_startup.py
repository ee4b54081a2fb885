#!/usr/bin/env python3
"""Where progset-supervisor's start-up time goes, phase by phase, for the lead who has to cut it.

``supervisor_bench.py`` says how long progset takes until N programs run, next to HAProxy and
supervisord; this script says why, by timing the phases of ``progset_supervisor.__main__.main`` on
their own with progset's own functions: interpreter and imports, loading the config as a pod gets
it (the operator's JSON rendering) and as a hand-written YAML file (in a fresh interpreter, so the
parser's import counts), and spawning N programs with and without the ``setpriv`` parent-death-signal
exec chain. Each phase is the minimum of a few repeats, so load from other work on the machine
inflates it least. It uses the project's .venv with a bytecode cache, not the wheel install that
``supervisor_bench.py`` measures, so its interpreter start is slower by the editable install's .pth.

    .venv/bin/python bench/progset_startup.py            # N = 200 and 1000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from proctree import cmdline
from tools import PROJECT, Progset

sys.path.insert(0, str(PROJECT / "supervisor"))
from progset_supervisor.config import load_path
from progset_supervisor.core.spawn import spawn


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
    children = []
    t0 = time.perf_counter()
    for program in config.programs:
        children.append(spawn(program, None, pdeathsig=pdeathsig))  # None: inherit, as the supervisor does
    parent = (time.perf_counter() - t0) * 1000 / len(children)
    pending = {pid for pid, _, _ in children}
    while pending:
        pending = {pid for pid in pending if os.path.basename((cmdline(pid) or [b""])[0]) != b"sleep"}
    everything = (time.perf_counter() - t0) * 1000
    for pid, stdout_fd, stderr_fd in children:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(stdout_fd)
        os.close(stderr_fd)
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
             f"{python_ms('import progset_supervisor.__main__', raw_env, args.repeats) - bare:.0f} ms")]
    load = "import progset_supervisor.__main__; from progset_supervisor.config import load_path; load_path({!r})"
    before = python_ms("import progset_supervisor.__main__", env, args.repeats)
    for n in args.sizes or [200, 1000]:
        commands = [["sleep", "86400", f"0.777{i:05d}"] for i in range(n)]
        rendered, hand_written = scratch / f"{n}-rendered", scratch / f"{n}-yaml"
        rendered.mkdir()
        hand_written.mkdir()
        path = Path(tool.write_config(rendered, commands)[2])
        yaml_path = Path(Progset("yaml", tool.executable, True, config_format="yaml").write_config(
            hand_written, commands)[2])
        for label, target in (("the operator's JSON rendering (json module)", path),
                              ("a bare programs: YAML file (PyYAML with libyaml)", yaml_path)):
            rows.append((f"N={n}: parser import + `load_path` of {label}, fresh interpreter",
                         f"{python_ms(load.format(str(target)), env, args.repeats) - before:.0f} ms"))
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
