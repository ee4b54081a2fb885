"""Imported first by ``__main__``: reload signals must not kill a supervisor that is still starting.

SIGHUP's and SIGUSR2's default action is to terminate; a reload request sent while the interpreter
imports our modules (about 0.1 s) would end the supervisor before it had a handler. They are ignored
from here until the event loop installs its handlers, which happens before any program is spawned,
so programs still start with the default dispositions.
"""

import signal

for _signum in (signal.SIGHUP, signal.SIGUSR2):
    signal.signal(_signum, signal.SIG_IGN)
