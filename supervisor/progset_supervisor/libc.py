"""The C library, for the few Linux calls the stdlib lacks (prctl, inotify).

``CDLL(None)`` is the already-loaded process image, libc included: no ``find_library`` (which runs
``ldconfig -p`` in a subprocess, twice per start) and no second copy of libc.
"""

from __future__ import annotations

import ctypes
import functools


@functools.cache
def libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)
