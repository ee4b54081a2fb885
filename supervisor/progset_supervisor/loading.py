"""Loading ``-f`` the way an HAProxy master does, for the first start and for every reload.

One object keeps what every load needs: the ``-f`` paths in order, the HAProxy version ``.if``
conditions are evaluated as, and the environment the supervisor started with. A load logs the
config's ``.notice``/``.warning``/``.diag`` lines and reports problems in HAProxy's words
(``config : parsing [h.cfg:14]: ...``). After a successful load, :meth:`ConfigLoader.apply_environment`
replays ``global``'s ``setenv``/``presetenv``/``resetenv``/``unsetenv`` on the starting environment and
makes it the supervisor's own, which the programs inherit (as HAProxy's programs inherit its own),
with ``HAPROXY_CFGFILES``: the files read, ``;``-separated, as HAProxy exports it (the Data Plane API
reads it to find the configuration).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping, Sequence

from .config import Config, ConfigError, load_paths
from .config.environment import ProgramEnvironment
from .config.errors import haproxy_wording
from .config.haproxy_version import HAProxyTarget
from .config.loader import expand_paths
from .runtime.log import Logger


class ConfigLoader:
    def __init__(self, paths: Sequence[str], target: HAProxyTarget, log: Logger,
                 environ: MutableMapping[str, str] | None = None, *, allow_no_programs: bool = False) -> None:
        self.paths = list(paths)
        self.allow_no_programs = allow_no_programs  # --allow-no-programs (see ``loader.NO_PROGRAMS``)
        self.target = target
        self.log = log
        self.environment = ProgramEnvironment(os.environ if environ is None else environ)
        self.files: list[str] = []  # what the last successful load read

    def snapshot(self) -> None:
        """Take the current environment as the starting one (once ``HAPROXY_MWORKER`` and the Master
        CLI's ``HAPROXY_MASTER_CLI`` are set, before the first programs start)."""
        self.environment.pristine = dict(self.environment.target)

    def load(self) -> Config:
        """Read every ``-f``; raise :class:`ConfigError` whose problems are worded as HAProxy's alerts."""
        try:
            config = load_paths(self.paths, environ=self.environment.pristine, target=self.target,
                                allow_no_programs=self.allow_no_programs)
        except ConfigError as exc:
            raise ConfigError([haproxy_wording(p) for p in exc.problems]) from None
        for message in config.messages:
            self.log.log(message.level, f"config : {message.text}")
        try:
            self.files = expand_paths(self.paths)
        except ConfigError:  # gone since: keep what the previous load read
            pass
        return config

    def apply_environment(self, config: Config) -> None:
        self.environment.apply(config.env_ops)
        if self.files:
            self.environment.target["HAPROXY_CFGFILES"] = ";".join(self.files)
