"""Entry point for loading ``-f CONFIG``: a file in any of the three syntaxes, or a directory.

A directory is what the kubelet mounts for a ConfigMap: each key is a file (behind the ``..data``
symlink it swaps atomically). Every visible file with a known extension is loaded, in name order,
and their programs are merged; the same program name in two files is an error.
"""

from __future__ import annotations

import os
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
    read.append((path, data))
    return text


def fingerprint(files: Iterable[tuple[str, bytes]]) -> bytes:
    """The names and bytes of the files a load read: what the config watcher compares to see a change.

    The bytes themselves, not a digest: a config is small (a ConfigMap holds at most 1 MiB), so
    keeping one copy costs less than hashing it and compares just as well.
    """
    return b"\0".join(part for name, data in files for part in (os.fsencode(os.path.basename(name)), data))


def config_files(directory: str) -> list[str]:
    """Visible files with a known extension, sorted; hidden entries (``..data``, ``..2026_...``) skipped."""
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise ConfigError(Problem(directory, f"cannot list directory: {exc.strerror}")) from None
    return [os.path.join(directory, n) for n in names
            if not n.startswith(".") and n.endswith(YAML_SUFFIXES + HAPROXY_SUFFIXES)
            and os.path.isfile(os.path.join(directory, n))]


def load_path(path: str | os.PathLike[str]) -> Config:
    """Load ``-f``: one file, or every config file of a directory merged in name order."""
    target = os.fspath(path)
    if not os.path.exists(target):
        raise ConfigError(Problem(target, "no such file or directory"))
    read: list[tuple[str, bytes]] = []
    config = _load_directory(target, read) if os.path.isdir(target) else load_text(_read(target, read), target)
    config.fingerprint = fingerprint(read)
    return config


def _load_directory(target: str, read: list[tuple[str, bytes]]) -> Config:
    files = config_files(target)
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
    return merge_configs(configs, target)


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
