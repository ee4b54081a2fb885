"""The environment programs get from ``global``'s ``setenv``/``presetenv``/``resetenv``/``unsetenv``.

HAProxy applies these keywords to its own environment while it parses, and its programs inherit
that environment. The loader records them in order (:attr:`Config.env_ops`); the supervisor replays
them on the environment it started with at every load, so removing a ``setenv`` from the file and
reloading removes the variable too (HAProxy, re-executing itself with the changed environment, kept it).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence


def apply_env_ops(base: Mapping[str, str], ops: Sequence[tuple[str, ...]]) -> dict[str, str]:
    """``base`` changed by ``ops`` (``("setenv", name, value)``, ``("presetenv", ...)``, ``("unsetenv", *names)``,
    ``("resetenv", *names_kept)``) in order, as HAProxy's ``cfg_parse_global_env_opts`` does."""
    env = dict(base)
    for op in ops:
        kind, args = op[0], op[1:]
        if kind == "setenv":
            env[args[0]] = args[1]
        elif kind == "presetenv":
            env.setdefault(args[0], args[1])
        elif kind == "unsetenv":
            for name in args:
                env.pop(name, None)
        elif kind == "resetenv":
            keep = set(args)
            env = {name: value for name, value in env.items() if name in keep}
        else:
            raise ValueError(f"unknown environment operation {kind!r}")
    return env


class ProgramEnvironment:
    """Keeps ``target`` (the supervisor's ``os.environ``, which programs inherit) equal to the environment
    it had when this was made, changed by the ``env_ops`` of the config loaded last."""

    def __init__(self, target: MutableMapping[str, str]) -> None:
        self.target = target
        self.pristine = dict(target)

    def apply(self, ops: Sequence[tuple[str, ...]]) -> None:
        wanted = apply_env_ops(self.pristine, ops)
        for name in [n for n in self.target if n not in wanted]:
            del self.target[name]
        for name, value in wanted.items():
            if self.target.get(name) != value:
                self.target[name] = value
