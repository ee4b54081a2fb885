"""The C library, for the few Linux calls the stdlib lacks (prctl, inotify).

``CDLL(None)`` is the already-loaded process image, libc included: no ``find_library`` (which runs
``ldconfig -p`` in a subprocess, twice per start) and no second copy of libc. ctypes is imported on
first use: a supervisor running as PID 1 first needs it for the config watcher, after its programs
were started.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ctypes


@functools.cache
def libc() -> ctypes.CDLL:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)
