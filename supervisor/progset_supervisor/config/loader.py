"""Entry point for loading ``-f CONFIG``: a file in any of the three syntaxes, or a directory.

A directory is what the kubelet mounts for a ConfigMap: each key is a file (behind the ``..data``
symlink it swaps atomically). Every visible file with a known extension is loaded, in name order,
and their programs are merged; the same program name in two files is an error.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

from .errors import ConfigError, Problem
from .model import Config, Path

YAML_SUFFIXES = (".yaml", ".yml", ".json")
HAPROXY_SUFFIXES = (".cfg", ".conf")


def load_text(text: str, filename: str, *, check_references: bool = True) -> Config:
    """Pick the syntax by extension: YAML/JSON for .yaml/.yml/.json, HAProxy syntax otherwise.

    ``check_references=False`` lets ``dependsOn``/``readyPrograms`` name programs of other files.
    """
    # Each syntax's loader is imported on first use: a supervisor reading haproxy.cfg never pays for
    # PyYAML's import (~25 ms, several MB), one reading YAML never pays for the HAProxy tokenizer.
    if filename.endswith(YAML_SUFFIXES):
        from .manifest import load_yaml_text

        return load_yaml_text(text, filename, check_references=check_references)
    from .haproxy import load_haproxy_text

    return load_haproxy_text(text, filename, check_references=check_references)


def _read(path: str, read: list[tuple[str, bytes]]) -> str:
    """The file's text; its bytes are added to ``read``, for :attr:`Config.fingerprint`."""
    try:
        with open(path, "rb") as file:
            data = file.read()
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(Problem(path, f"not UTF-8 text (byte {exc.start}); is this the right file?")) from None
    except OSError as exc:
        raise ConfigError(Problem(path, f"cannot read: {exc.strerror}")) from None
    nul = data.find(b"\0")
    if nul >= 0:
        # C strings (and HAProxy's parser) end at a NUL: the rest of the line was silently cut off.
        line = data.count(b"\n", 0, nul) + 1
        column = nul - (data.rfind(b"\n", 0, nul) + 1) + 1
        raise ConfigError(Problem(f"{path}:{line}", f"NUL character at column {column}; a config is text, "
                                  "and everything after the NUL would be lost"))
    read.append((path, data))
    return text


def fingerprint(files: Iterable[tuple[str, bytes]]) -> bytes:
    """The names and bytes of the files a load read: what the config watcher compares to see a change.

    The bytes themselves, not a digest: a config is small (a ConfigMap holds at most 1 MiB), so
    keeping one copy costs less than hashing it and compares just as well.
    """
    return b"\0".join(part for name, data in files for part in (os.fsencode(os.path.basename(name)), data))


def _not_a_file(path: str) -> str | None:
    """Why ``path`` cannot be read as a config file (None: it is a regular file, maybe via a symlink).

    Checked without opening it: opening a FIFO would block the loop until a writer comes.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return f"broken symbolic link (to {os.readlink(path)!r} that does not exist)"
        return "vanished while the directory was read"
    except OSError as exc:
        return f"cannot inspect: {exc.strerror}"
    if stat.S_ISREG(info.st_mode):
        return None
    if stat.S_ISDIR(info.st_mode):
        return "a subdirectory (subdirectories are not read)"
    kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a socket" if stat.S_ISSOCK(info.st_mode) else "a device"
    return f"{kind}, not a regular file"


def scan_directory(directory: str) -> tuple[list[str], list[str]]:
    """Config files of ``directory`` (visible, known extension, sorted) and notes on entries skipped.

    Hidden entries (the kubelet's ``..data``, ``..2026_...``) and regular files of other extensions (a
    README) are skipped silently. A broken symlink, FIFO or subdirectory is skipped with a note (a
    warning in the log) when its name has another extension, and is an error when its name says it
    is a config file: ``api.yaml`` that cannot be read must not mean "no programs from api.yaml".
    """
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise ConfigError(Problem(directory, f"cannot list directory: {exc.strerror}")) from None
    files: list[str] = []
    notes: list[str] = []
    problems: list[Problem] = []
    for name in names:
        if name.startswith("."):
            continue
        path = os.path.join(directory, name)
        why = _not_a_file(path)
        if name.endswith(YAML_SUFFIXES + HAPROXY_SUFFIXES):
            if why is None:
                files.append(path)
            else:
                problems.append(Problem(path, f"cannot be read as a config file: {why}"))
        elif why is not None:
            notes.append(f"{path}: skipped: {why}")
    if problems:
        raise ConfigError(problems)
    return files, notes


def config_files(directory: str) -> list[str]:
    """The config files :func:`scan_directory` finds (errors for unreadable ones included)."""
    return scan_directory(directory)[0]


NO_PROGRAMS = ("the configuration defines no programs (an empty or comment-only file, 'programs:' with nothing "
               "under it, or HAProxy syntax without a 'program' section?); refused, so that a ConfigMap emptied "
               "by mistake cannot stop every program. Write 'programs: []' to run none on purpose, or start "
               "the supervisor with --allow-no-programs")


def load_path(path: str | os.PathLike[str], *, allow_no_programs: bool = False) -> Config:
    """Load ``-f``: one file, or every config file of a directory merged in name order.

    A result without programs is an error unless the config says ``programs: []`` or
    ``allow_no_programs`` (``--allow-no-programs``) is given: see :data:`NO_PROGRAMS`.
    """
    target = os.fspath(path)
    if not os.path.exists(target):
        raise ConfigError(Problem(target, "no such file or directory"))
    read: list[tuple[str, bytes]] = []
    notes: list[str] = []
    directory = os.path.isdir(target)
    config = _load_directory(target, read, notes) if directory else load_text(_read(target, read), target)
    if not config.programs and not config.no_programs_ok and not allow_no_programs:
        raise ConfigError(Problem(target, NO_PROGRAMS))
    config.fingerprint = fingerprint(read)
    config.notes = notes
    return config


def _load_directory(target: str, read: list[tuple[str, bytes]], notes: list[str]) -> Config:
    files, skipped = scan_directory(target)
    notes.extend(skipped)
    if not files:
        raise ConfigError(Problem(target, "directory holds no config file (*.yaml, *.yml, *.json, *.cfg, "
                                  "*.conf)"))
    if len(files) == 1:
        return load_text(_read(files[0], read), files[0])
    configs: list[Config] = []
    problems: list[Problem] = []
    for file in files:
        try:
            # references are checked once all files are merged: dependsOn may name another file's program
            configs.append(load_text(_read(file, read), file, check_references=False))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    merged = merge_configs(configs, target)
    merged.no_programs_ok = any(c.no_programs_ok for c in configs)
    return merged


def merge_configs(configs: list[Config], origin: str) -> Config:
    """Concatenate programs; names must stay unique and ``dependsOn`` may cross files."""
    from .model import config_from_spec

    seen: dict[str, str] = {}
    problems: list[Problem] = []
    programs = []
    origins: list[str] = []
    ready: list[str] | None = None
    for config in configs:
        for program in config.programs:
            if program.name in seen:
                problems.append(Problem(config.origin, f"duplicate program name '{program.name}' "
                                        f"(also defined in {seen[program.name]})"))
            seen[program.name] = config.origin
            programs.append(program.to_spec())
            origins.append(f"{config.origin} (program '{program.name}')")
        if config.ready_programs is not None:
            ready = [*(ready or []), *config.ready_programs]
    if problems:
        raise ConfigError(problems)
    spec: dict[str, object] = {"programs": programs}
    if ready is not None:
        spec["readyPrograms"] = ready
    sources = [c.source for c in configs if c.source.name]

    def locate(path: Path) -> str:
        """Only cross-file checks can fail here: name the file of the program concerned."""
        if len(path) >= 2 and path[0] == "programs" and isinstance(path[1], int):
            return origins[path[1]]
        return origin

    return config_from_spec(spec, locate, origin=origin, source=sources[0] if sources else None)
