"""Bad configs are refused with a message naming the place, never half-read (issue 15, items 3 and 6).

Each case once loaded "successfully" into something else than what the file says: an empty file into
"stop every program", a NUL byte into a shorter command, a duplicate key into its last value, a
FIFO or a broken symlink into nothing at all, and a YAML alias bomb into seconds of a blocked loop.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from progset_supervisor.config import ConfigError, load_path
from progset_supervisor.config.loader import NO_PROGRAMS
from progset_supervisor.config.yamlfile import MAX_NODES
from progset_supervisor.load_notes import load_notes

from .helpers import program, programs_config

ONE = programs_config(program("a", "sleep", "1"))


def problems(path: Path, **kwargs: bool) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_path(path, **kwargs)
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize(("name", "text"), [
    ("empty.cfg", ""), ("comments.cfg", "# programs were here\nglobal\n  log stdout local0\n"),
    ("null.yaml", "programs:\n"), ("spec.yaml", "apiVersion: progset.io/v1alpha1\nkind: ProgramSet\n"
                                                 "metadata: {name: x}\nspec:\n  programs:\n")])
def test_a_config_without_programs_is_refused(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    assert problems(path) == [f"{path}: {NO_PROGRAMS}"]
    assert load_path(path, allow_no_programs=True).programs == ()


@pytest.mark.parametrize("text", ["programs: []\n", '{"programs": []}\n',
                                  "apiVersion: progset.io/v1alpha1\nkind: ProgramSet\nmetadata: {name: x}\n"
                                  "spec:\n  programs: []\n"])
def test_programs_written_as_an_empty_list_mean_none_on_purpose(tmp_path: Path, text: str) -> None:
    path = tmp_path / "none.yaml"
    path.write_text(text)
    assert load_path(path).programs == ()


def test_a_directory_of_empty_files_is_refused_unless_one_says_so(tmp_path: Path) -> None:
    (tmp_path / "a.cfg").write_text("# emptied\n")
    (tmp_path / "b.cfg").write_text("global\n")
    assert problems(tmp_path) == [f"{tmp_path}: {NO_PROGRAMS}"]
    (tmp_path / "c.yaml").write_text("programs: []\n")
    assert load_path(tmp_path).programs == ()


def test_the_supervisor_refuses_to_start_without_programs(tmp_path: Path) -> None:
    path = tmp_path / "haproxy.cfg"
    path.write_text("global\n  daemon\n")
    run = subprocess.run([sys.executable, "-m", "progset_supervisor", "-c", "-f", str(path)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 1
    assert "defines no programs" in run.stderr and "--allow-no-programs" in run.stderr
    run = subprocess.run([sys.executable, "-m", "progset_supervisor", "-c", "-f", str(path), "--allow-no-programs"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("Configuration file is valid (0 programs")


def test_a_nul_byte_in_a_cfg_line_is_an_error_naming_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "haproxy.cfg"
    path.write_bytes(b"program api\n  command /bin/sleep\x00 10\n")
    assert problems(path) == [f"{path}:2: NUL character at column 21; a config is text, and everything after "
                              "the NUL would be lost"]


def test_a_yaml_alias_bomb_is_refused_by_counting_not_by_expanding(tmp_path: Path) -> None:
    rows = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        rows.append(f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]")
    rows.append("programs: *i")  # 9^9 = 387,420,489 strings once expanded
    path = tmp_path / "lol.yaml"
    path.write_text("\n".join(rows) + "\n")
    assert problems(path) == [f"{path}:1: more than {MAX_NODES} values once aliases are expanded (a YAML alias "
                              "bomb?); refused"]


def test_aliases_of_reasonable_size_still_work(tmp_path: Path) -> None:
    path = tmp_path / "anchors.yaml"
    path.write_text("programs:\n  - {name: a, command: &cmd [sleep, '60']}\n  - {name: b, command: *cmd}\n")
    assert [p.command for p in load_path(path).programs] == [("sleep", "60")] * 2


def test_a_duplicate_key_is_refused_with_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("programs:\n  - name: a\n    command: [sleep, '1']\n    restart: always\n    restart: never\n")
    assert problems(path) == [f"{path}:5: duplicate key 'restart' (first at line 4); YAML keeps only the last "
                              "one, so one of them is a mistake"]


def test_deep_nesting_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("programs: " + "[" * 5000 + "]" * 5000 + "\n")
    found = problems(path)
    assert len(found) == 1 and found[0].startswith(str(path))


def test_unreadable_config_entries_of_a_directory_are_errors(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(ONE)
    os.symlink(tmp_path / "gone.yaml", tmp_path / "b.yaml")
    os.mkfifo(tmp_path / "c.cfg")  # opening it would block until a writer comes: never opened
    (tmp_path / "d.yaml").mkdir()
    assert problems(tmp_path) == [
        f"{tmp_path / 'b.yaml'}: cannot be read as a config file: broken symbolic link (to "
        f"{str(tmp_path / 'gone.yaml')!r} that does not exist)",
        f"{tmp_path / 'c.cfg'}: cannot be read as a config file: a FIFO, not a regular file",
        f"{tmp_path / 'd.yaml'}: cannot be read as a config file: a subdirectory (subdirectories are not read)"]


def test_other_odd_entries_are_skipped_with_a_note(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(ONE)
    (tmp_path / "README").write_text("not a config\n")  # a regular file of another kind: silently skipped
    os.symlink("/nonexistent/target", tmp_path / "old-link")
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "errors").mkdir()
    (tmp_path / "..data").mkdir()  # the kubelet's: hidden, silently skipped
    config = load_path(tmp_path)
    assert [p.name for p in config.programs] == ["a"]
    assert config.notes == [
        f"{tmp_path / 'errors'}: skipped: a subdirectory (subdirectories are not read)",
        f"{tmp_path / 'old-link'}: skipped: broken symbolic link (to '/nonexistent/target' that does not exist)",
        f"{tmp_path / 'pipe'}: skipped: a FIFO, not a regular file"]
    assert load_notes(config) == config.notes


def test_the_supervisor_logs_the_skipped_entries(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(programs_config(program("a", "sleep", "60")))
    os.mkfifo(tmp_path / "pipe")
    run = subprocess.Popen([sys.executable, "-m", "progset_supervisor", "-f", str(tmp_path), "--metrics-address",
                            "off", "--no-watch"], stderr=subprocess.PIPE, text=True)
    try:
        assert run.stderr is not None
        for line in run.stderr:
            if "skipped" in line:
                assert line.startswith("[WARNING]") and "pipe: skipped: a FIFO, not a regular file" in line
                break
    finally:
        run.terminate()
        run.wait(30)


def unused_uid() -> int:
    import pwd

    taken = {entry.pw_uid for entry in pwd.getpwall()}
    return next(uid for uid in range(70000, 80000) if uid not in taken)


def test_a_numeric_user_without_passwd_entry_is_announced(tmp_path: Path) -> None:
    uid = unused_uid()
    path = tmp_path / "p.yaml"
    path.write_text(programs_config(program("a", "true", user=str(uid)), program("b", "true", user=str(uid),
                                                                                   group="0")))
    assert load_notes(load_path(path)) == [
        f"Program 'a': user {uid} has no passwd entry and no group is given: it runs with group {os.getegid()} "
        "(the supervisor's), as Docker and OpenShift do for such ids; set 'group' to choose another"]
