"""The Master CLI: HAProxy's master socket protocol on Unix sockets, served from the supervisor's loop.

Modules, smallest first: :mod:`.levels` (user < operator < admin), :mod:`.sockets` (``-S`` specs and
binding), :mod:`.protocol` (``;``/newline splitting, ``\\`` escapes, words), :mod:`.fuzzy` (HAProxy's
"maybe one of the following" matcher), :mod:`.render` (``show proc`` and friends), :mod:`.commands`
(the command table with levels and help), :mod:`.session` (one client), :mod:`.server` (listeners,
limits, ``start_cli``).
"""
