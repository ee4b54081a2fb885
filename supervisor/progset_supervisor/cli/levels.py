"""Access levels of a CLI session: user < operator < admin, as in HAProxy.

A socket's ``level`` option sets the starting level of its sessions; ``operator`` and ``user`` can only
lower it, so a socket shared with an application container (``level,user``) can never be used to
reload or stop programs.
"""

from __future__ import annotations

import enum


class Level(enum.IntEnum):
    USER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        """The word HAProxy prints for ``show cli level`` and ``show cli sockets``."""
        return self.name.lower()


def parse_level(text: str) -> Level:
    try:
        return Level[text.upper()]
    except KeyError:
        raise ValueError(f"'level' only supports 'user', 'operator', and 'admin' (got '{text}')") from None
