"""progset-supervisor: an in-pod process manager with HAProxy's program sections and Master CLI."""

__version__ = "0.1.0"
