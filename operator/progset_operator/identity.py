"""The operator's identity for kopf: never from a passwd entry.

kopf names the running operator ``$POD_ID`` or, without it, ``getpass.getuser()@host``, which raises
``KeyError: 'getpwuid(): uid not found'`` when the process runs as a uid without a passwd entry (the
image's 65532 under a read-only root filesystem, or any ``runAsUser`` a cluster picks). The chart sets
``POD_ID`` from the pod name (downward API); this module makes the operator start without it too.
"""

from __future__ import annotations

import os
import pwd
import socket


def own_identity(environ: dict[str, str] | None = None) -> str:
    """``$POD_ID`` when set (kopf's convention), else ``user@host/pid`` with the numeric uid for a
    user that has no name. (A plain str: kopf's ``Identity`` is a NewType of str it does not export.)"""
    env = os.environ if environ is None else environ
    pod = env.get("POD_ID")
    if pod:
        return pod
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = f"uid-{uid}"
    return f"{user}@{socket.gethostname()}/{os.getpid()}"
