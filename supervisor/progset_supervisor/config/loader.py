"""Entry point for loading ``-f CONFIG`` (repeatable): files in any of the three syntaxes, or directories.

A directory is what the kubelet mounts for a ConfigMap: each key is a file (behind the ``..data``
symlink it swaps atomically), or HAProxy's ``conf.d``. Every visible ``*.cfg`` (HAProxy's rule) and
``*.yaml``/``*.yml``/``*.json`` file is loaded, in name order. As in HAProxy, all ``-f`` are read in the
order given, and the HAProxy-syntax files among them are one configuration: ``global``'s ``setenv`` in
the first file is seen by the next ones. Programs are merged; the same program name twice is an error.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from .errors import ConfigError, Problem
from .model import Config, Path

if TYPE_CHECKING:
    from .haproxy_version import HAProxyTarget

YAML_SUFFIXES = (".yaml", ".yml", ".json")
HAPROXY_SUFFIXES = (".cfg", ".conf")
DIRECTORY_SUFFIXES = (*YAML_SUFFIXES, ".cfg")  # HAProxy reads only *.cfg of a directory


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
    """Config files of ``directory`` (visible ``*.cfg``, ``*.yaml``, ``*.yml``, ``*.json``, sorted) and notes
    on entries skipped.

    Hidden entries (the kubelet's ``..data``, ``..2026_...``) and regular files of other extensions (a
    README, HAProxy skips a ``conf.d/README.conf`` as well) are skipped silently. A broken symlink, FIFO
    or subdirectory is skipped with a note (a warning in the log) when its name has another extension,
    and is an error when its name says it is a config file: ``api.yaml`` that cannot be read must not
    mean "no programs from api.yaml".
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
        if name.endswith(DIRECTORY_SUFFIXES):
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
    """Load one ``-f``: a file, or every config file of a directory merged in name order."""
    return load_paths([os.fspath(path)], allow_no_programs=allow_no_programs)


def expand_paths(paths: Sequence[str], notes: list[str] | None = None) -> list[str]:
    """The files ``-f`` names, in HAProxy's order: each ``-f`` in turn, a directory's files in name order.

    What a directory holds that is skipped with a note (see :func:`scan_directory`) goes to ``notes``.
    """
    files: list[str] = []
    problems: list[Problem] = []
    for target in paths:
        if not os.path.exists(target):
            problems.append(Problem(target, "no such file or directory"))
        elif os.path.isdir(target):
            try:
                found, skipped = scan_directory(target)
                if notes is not None:
                    notes.extend(skipped)
            except ConfigError as exc:
                problems.extend(exc.problems)
                continue
            if not found:
                problems.append(Problem(target, "directory holds no config file (*.cfg, *.yaml, *.yml, *.json)"))
            files.extend(found)
        else:
            files.append(target)
    if problems:
        raise ConfigError(problems)
    return files


def load_paths(paths: Sequence[str], *, environ: Mapping[str, str] | None = None,
               target: HAProxyTarget | None = None, allow_no_programs: bool = False) -> Config:
    """Load every ``-f`` as one configuration (see the module docstring); ``environ`` and ``target`` go
    to the HAProxy-syntax loader (``"${VAR}"``, ``.if``).

    A result without programs is an error unless a file says ``programs: []`` or ``allow_no_programs``
    (``--allow-no-programs``) is given: see :data:`NO_PROGRAMS`.
    """
    notes: list[str] = []
    files = expand_paths(paths, notes)
    read: list[tuple[str, bytes]] = []
    texts: list[tuple[str, str]] = []
    problems: list[Problem] = []
    for file in files:
        try:
            texts.append((file, _read(file, read)))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    haproxy = [(name, text) for name, text in texts if not name.endswith(YAML_SUFFIXES)]
    only_haproxy = len(haproxy) == len(texts)  # then the HAProxy load is the whole config: check it whole
    configs: list[Config] = []
    haproxy_config: Config | None = None
    for name, text in texts:  # in file order; the HAProxy files load together, where the first one is
        try:
            if not name.endswith(YAML_SUFFIXES):
                if name == haproxy[0][0]:
                    from .haproxy import load_haproxy_files

                    haproxy_config = load_haproxy_files(haproxy, environ, check_references=only_haproxy,
                                                        target=target)
                    configs.append(haproxy_config)
            else:
                configs.append(load_text(text, name, check_references=len(texts) == 1))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    config = configs[0] if len(configs) == 1 else merge_configs(configs, ", ".join(paths))
    if haproxy_config is not None and len(configs) > 1:
        config.messages, config.env_ops = haproxy_config.messages, haproxy_config.env_ops
    if not config.programs and not allow_no_programs and not any(c.no_programs_ok for c in configs):
        raise ConfigError(Problem(", ".join(paths), NO_PROGRAMS))
    config.fingerprint = fingerprint(read)
    config.notes = notes
    return config


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

    # names were checked by each file's loader (HAProxy files keep HAProxy's names); only merging is checked here
    return config_from_spec(spec, locate, origin=origin, source=sources[0] if sources else None, haproxy_names=True)
