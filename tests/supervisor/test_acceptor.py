"""Out of file descriptors: the shared accept loop pauses instead of spinning, then serves again."""

from __future__ import annotations

import socket
from pathlib import Path

from .helpers import http_get, http_port, program, programs_config, started
from .peers import require


def test_out_of_descriptors_pauses_accepting_then_recovers(tmp_path: Path) -> None:
    prlimit = require("prlimit", "util-linux")
    with started(tmp_path) as start:
        # A hard limit of 64 descriptors: the supervisor cannot raise it, 80 clients exhaust it.
        sup = start(programs_config(program("idle", "sleep", "1000")), prefix=[prlimit, "--nofile=64:64", "--"],
                    metrics="127.0.0.1:0")
        port = http_port(sup)
        sup.wait_ready(1)
        clients = []
        try:
            for _ in range(80):
                clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            sup.wait_log(r"HTTP: cannot accept connections \(Too many open files\); retrying in 1s")
        finally:
            for client in clients:
                client.close()
        # The pause ends by itself and the server answers again (the program was never disturbed).
        assert http_get(port, "/healthz", timeout=10).status == 200
        assert sup.stop() == 0
