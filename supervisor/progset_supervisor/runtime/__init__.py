"""Plumbing that knows nothing of programs: the event loop, accepting sockets, output pipes, logging, libc."""
