"""``progset-supervisor -c``: every problem in one run, and warnings (errors with --strict) for what
cannot start on this machine (issue 17 defect 6)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .helpers import program, programs_config


def check(config: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "progset_supervisor", "-c", *flags, "-f", str(config)],
                          capture_output=True, text=True, timeout=60)


def test_every_problem_in_one_run_including_unknown_dependencies_and_cycles(tmp_path: Path) -> None:
    config = tmp_path / "p.yaml"
    config.write_text(programs_config(program("a", "sleep", "1", restart="sometimes"),
                                      program("b", "sleep", "1", dependsOn=["nosuch"]),
                                      program("c", "sleep", "1", dependsOn=["d"]),
                                      program("d", "sleep", "1", dependsOn=["c"])))
    result = check(config)
    assert result.returncode == 1
    assert "(spec.programs[0].restart): must be one of always, on-failure, never; got 'sometimes'" in result.stderr
    assert "(spec.programs[1].dependsOn[0]): 'b' depends on unknown program 'nosuch'" in result.stderr
    assert "(spec.programs[2].dependsOn): dependsOn cycle: c -> d -> c" in result.stderr


def test_what_cannot_start_here_is_a_warning_and_an_error_with_strict(tmp_path: Path) -> None:
    config = tmp_path / "p.yaml"
    config.write_text(programs_config(program("agent", "/usr/local/bin/agent-v2-nosuch"),
                                      program("web", "nosuchbinary-xyz", user="nosuchuser-xyz"),
                                      program("cwd", "sleep", "1", workingDir=str(tmp_path / "nosuchdir")),
                                      program("fine", "sleep", "1")))
    result = check(config)
    assert result.returncode == 0
    warnings = [line.split(" : ", 1)[1] for line in result.stderr.splitlines() if line.startswith("[WARNING]")]
    assert warnings == [
        "Program 'agent' cannot start on this machine: cannot execute /usr/local/bin/agent-v2-nosuch: no such file",
        "Program 'web' cannot start on this machine: unknown user 'nosuchuser-xyz' (not in the passwd database); "
        "use a known name or a numeric uid",
        warnings[2],
        f"Program 'cwd' cannot start on this machine: working directory {tmp_path / 'nosuchdir'} does not exist",
    ]
    assert warnings[2].startswith("Program 'web' cannot start on this machine: cannot execute nosuchbinary-xyz: "
                                  "not found in PATH")
    assert result.stdout.startswith("Configuration file is valid (4 programs, ")
    assert result.stdout.rstrip().endswith("; 3 cannot start on this machine")
    strict = check(config, "--strict")
    assert strict.returncode == 1
    assert "3 program(s) cannot start on this machine (--strict)." in strict.stderr
