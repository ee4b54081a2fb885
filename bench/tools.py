"""The three process managers under test, each given the same N programs in its own config syntax.

Every tool runs the same program, ``sleep 86400 MARKER``, restarted whenever it exits (HAProxy cannot
restart), with its output not written to disk (progset passes it to its own stdout, which the bench
sends to a file; supervisord is told ``NONE``), so the configs ask each tool for the same work.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
PROJECT_PYTHON = PROJECT / ".venv" / "bin" / "python"
EDITABLE = PROJECT / ".venv" / "bin" / "progset-supervisor"  # the dev install: ``pip install -e .``


@dataclass(frozen=True)
class Tool:
    """How to configure, start and describe one process manager."""

    name: str
    executable: str
    restarts: bool  # False for HAProxy: a program that dies stays dead until the next reload
    wrapper: tuple[str, ...] = ()  # launched through this; the supervisor is then the wrapper's child
    # With its monitoring surfaces on, as deployed (see Monitor): written into the config by write_config.
    monitored: bool = False

    def write_config(self, directory: Path, commands: list[list[str]]) -> list[str]:
        """Write the config for these program commands into ``directory``; return the argv to launch."""
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError

    def monitor(self, directory: Path) -> Monitor:
        """How to query an instance configured ``monitored`` by ``write_config(directory / "config", ...)``:
        its sockets and the description of them are in ``directory``, beside its config directory."""
        return Monitor(json.loads((directory / MONITOR_FILE).read_text()))

    def environment(self, scratch: Path, bytecode_cache: bool) -> dict[str, str]:
        """The environment to launch with: the bench's own, unless the tool needs it adjusted."""
        return dict(os.environ)


MONITOR_FILE = "monitor.json"
METRICS_REUSE_SECONDS = 0.25  # progset_supervisor.http.server's, not imported: the bench may measure another tree


class Monitor:
    """What watches a running tool: a Prometheus scrape, or what stands in for one, and a CLI query.

    - progset: ``GET /metrics``; the CLI query is ``show proc`` on its Master CLI socket;
    - HAProxy's master has no metrics of its programs: its monitoring surface is the master CLI, so
      both are ``show proc`` on the master socket (``-S``);
    - supervisord has no metrics either: exporters and ``supervisorctl status`` call its XML-RPC
      ``supervisor.getAllProcessInfo`` over its control socket, so both are that call.

    Every query is a new connection, read to the end, as a scraper or a script does it. ``reuse``:
    the tool answers the same scrape again for that long (progset reuses a ``/metrics`` body for 0.25 s,
    or four render times if longer); a scraper paced past it gets a fresh render every time, as
    Prometheus does scraping every 15 s.
    """

    def __init__(self, spec: dict[str, str]) -> None:
        self.spec = spec
        self.reuse = float(spec.get("reuse", 0))

    def scrape(self) -> bytes:
        kind = self.spec["scrape"]
        if kind == "http":
            return _http(self.spec["host"], int(self.spec["port"]), "GET", "/metrics", b"")
        if kind == "xmlrpc":
            return _xmlrpc(self.spec["socket"])
        return _unix_command(self.spec["socket"], b"show proc\n")

    def cli(self) -> bytes:
        if self.spec["cli"] == "xmlrpc":
            return _xmlrpc(self.spec["socket"])
        return _unix_command(self.spec["cli_socket"], b"show proc\n")


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=60)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(self.path)


def _http(host: str, port: int, method: str, path: str, body: bytes, unix: str | None = None) -> bytes:
    conn = _UnixHTTPConnection(unix) if unix else http.client.HTTPConnection(host, port, timeout=60)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "text/xml"} if body else {})
        reply = conn.getresponse()
        data = reply.read()
        if reply.status != 200:
            raise RuntimeError(f"{method} {path}: HTTP {reply.status}")
        return data
    finally:
        conn.close()


def _xmlrpc(path: str) -> bytes:
    request = xmlrpc.client.dumps((), "supervisor.getAllProcessInfo").encode()
    return _http("localhost", 0, "POST", "/RPC2", request, unix=path)


def _unix_command(path: str, command: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(60)
        sock.connect(path)
        sock.sendall(command)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    data = b"".join(chunks)
    if not data:
        raise RuntimeError(f"{path}: empty answer to {command!r}")
    return data


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _shebang_python(script: str) -> str:
    """The interpreter a Debian script runs under (supervisord runs on the system Python)."""
    try:
        with open(script, "rb") as handle:
            line = handle.readline().decode().strip()
    except OSError:
        return "unknown"
    if not line.startswith("#!"):
        return "unknown"
    return _first_line([*line[2:].split(), "-V"])


@dataclass(frozen=True)
class Progset(Tool):
    # "rendered": what the operator writes into the ConfigMap (JSON, every field defaulted), in a
    # directory passed as -f, as a pod mounts it; "yaml": a hand-written bare programs: YAML file.
    config_format: str = "rendered"

    def write_config(self, directory: Path, commands: list[list[str]]) -> list[str]:
        # resetAfterSeconds 1: the bench kills each program at most once a second, and with the default
        # (60 s) a second kill of the same program would be a crash loop and back off on purpose.
        # supervisord with startsecs=0 never backs off, so this asks both for the same thing.
        if self.config_format == "rendered":
            from progset_supervisor.config import Source, config_from_spec, render_document

            spec = {"programs": [{"name": f"p{i}", "command": argv, "restart": "always",
                                  "backoff": {"initialSeconds": 0.5, "maxSeconds": 30, "resetAfterSeconds": 1}}
                                 for i, argv in enumerate(commands)]}
            config = config_from_spec(spec, source=Source("bench", "bench", 1))
            (directory / "programs.json").write_text(render_document(config))
            target = directory
        else:
            lines = ["programs:"]
            for i, argv in enumerate(commands):
                quoted = ", ".join(f'"{arg}"' for arg in argv)
                lines += [f"  - name: p{i}", f"    command: [{quoted}]", "    restart: always",
                          "    backoff: {initialSeconds: 0.5, maxSeconds: 30, resetAfterSeconds: 1}"]
            target = directory / "progset.yaml"
            target.write_text("\n".join(lines) + "\n")
        if not self.monitored:
            return [*self.wrapper, self.executable, "-f", str(target), "--metrics-address", "off"]
        port, sock = _free_port(), str(directory.parent / "master.sock")
        (directory.parent / MONITOR_FILE).write_text(json.dumps(
            {"scrape": "http", "host": "127.0.0.1", "port": str(port), "cli": "unix", "cli_socket": sock,
             "reuse": str(METRICS_REUSE_SECONDS)}))
        return [*self.wrapper, self.executable, "-f", str(target), "--metrics-address", f"127.0.0.1:{port}",
                "-S", f"{sock},level,admin"]

    def environment(self, scratch: Path, bytecode_cache: bool) -> dict[str, str]:
        """Give progset compiled bytecode, as an installed wheel or a Debian package has.

        Only for ``--editable`` or ``--progset PATH`` (the wheel :func:`install_wheel` makes is
        compiled at install, so it runs with the environment as it is): the project is installed
        editable and these machines set PYTHONDONTWRITEBYTECODE=1, so every start would compile all
        of progset from source, a cost no deployed image pays (pip compiles a wheel at install;
        supervisord's Debian package ships .pyc). The cache goes to the bench's scratch directory
        (PYTHONPYCACHEPREFIX), never into the source tree; the warm-up run fills it.
        """
        env = dict(os.environ)
        if bytecode_cache:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(scratch / "pycache")
        return env

    def version(self) -> str:
        commit = _first_line(["git", "-C", str(PROJECT), "rev-parse", "--short", "HEAD"])
        dirty = subprocess.run(["git", "-C", str(PROJECT), "diff", "--quiet", "HEAD", "--", "supervisor"],
                               capture_output=True, check=False).returncode
        return f"{_first_line([self.executable, '-v'])} (git {commit}{', supervisor/ modified' if dirty else ''})"


class Supervisord(Tool):
    def write_config(self, directory: Path, commands: list[list[str]]) -> list[str]:
        # minfds: supervisord keeps three pipe ends per program; it raises its own soft limit to this.
        lines = ["[supervisord]", "nodaemon=true", f"logfile={directory.parent / 'supervisord.log'}",
                 "logfile_maxbytes=0", f"pidfile={directory.parent / 'supervisord.pid'}",
                 f"childlogdir={directory.parent}",
                 f"minfds={max(1024, 4 * len(commands) + 256)}", "user=root" if _is_root() else "", ""]
        if self.monitored:  # its control socket, as supervisorctl and exporters use it
            sock = str(directory.parent / "supervisor.sock")
            lines += ["[unix_http_server]", f"file={sock}", "", "[rpcinterface:supervisor]",
                      "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", ""]
            (directory.parent / MONITOR_FILE).write_text(json.dumps({"scrape": "xmlrpc", "cli": "xmlrpc",
                                                                     "socket": sock}))
        for i, argv in enumerate(commands):
            lines += [f"[program:p{i}]", f"command={' '.join(argv)}", "autostart=true", "autorestart=true",
                      "startsecs=0", "startretries=1000000", "stdout_logfile=NONE", "stderr_logfile=NONE",
                      "stopwaitsecs=10", ""]
        path = directory / "supervisord.conf"
        path.write_text("\n".join(lines))
        return [self.executable, "-n", "-c", str(path)]

    def version(self) -> str:
        return f"supervisord {_first_line([self.executable, '--version'])} on {_shebang_python(self.executable)}"


class Haproxy(Tool):
    def write_config(self, directory: Path, commands: list[list[str]]) -> list[str]:
        # The smallest config a real deployment has: a master, one worker with one loopback frontend.
        lines = ["global", "    master-worker", "    maxconn 256", "", "defaults", "    mode http",
                 "    timeout connect 5s", "    timeout client 5s", "    timeout server 5s", "",
                 "frontend bench", f"    bind 127.0.0.1:{_free_port()}", "    http-request return status 200", ""]
        for i, argv in enumerate(commands):
            lines += [f"program p{i}", f"    command {' '.join(argv)}", ""]
        path = directory / "haproxy.cfg"
        path.write_text("\n".join(lines))
        if not self.monitored:
            return [self.executable, "-W", "-db", "-f", str(path)]
        sock = str(directory.parent / "master.sock")
        (directory.parent / MONITOR_FILE).write_text(json.dumps({"scrape": "unix", "socket": sock, "cli": "unix",
                                                                 "cli_socket": sock}))
        return [self.executable, "-W", "-db", "-f", str(path), "-S", sock]

    def version(self) -> str:
        return _first_line([self.executable, "-v"])


def _is_root() -> bool:
    """As root, ``user=root`` states the intent, so supervisord does not log a CRIT line about it."""
    return os.geteuid() == 0


def _free_port() -> int:
    """A loopback port nobody listens on now (the kernel picks it; a race with others is harmless here)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Install:
    """A progset-supervisor installed by :func:`install_wheel`, and how, for the report."""

    executable: Path
    description: str


def install_wheel(scratch: Path) -> Install:
    """Install progset into a new venv under ``scratch`` as supervisor/Dockerfile does, but leaner.

    The project's ``.venv`` has progset installed editable: at every interpreter start its ``.pth``
    files run (the editable finder, setuptools' ``distutils-precedence.pth``), about 20 ms here that no image
    pays. The image installs a wheel into a venv and compiles it; this does the same with a venv
    made ``--without-pip`` (the image uninstalls pip; setuptools is never in it), the interpreter
    of the project's ``.venv``, the project's pip (``pip --python``), and the PyYAML and
    prometheus-client versions the ``.venv`` has (the image pins its own; these are what the tests
    ran with). The wheel is built from a copy of what the image copies (``pyproject.toml``,
    ``README.md``, ``supervisor/progset_supervisor``), so the build's ``build/`` and ``*.egg-info``
    land in ``scratch``, and a stale ``build/lib`` in the source tree cannot leak into the wheel.
    Raises ``subprocess.CalledProcessError`` with pip's output if a step fails.
    """
    t0 = time.perf_counter()
    probe = subprocess.run(
        [str(PROJECT_PYTHON), "-c", "import sys, importlib.metadata as m; print(sys._base_executable); "
         "print(m.version('PyYAML')); print(m.version('prometheus-client'))"],
        capture_output=True, text=True, check=True)
    base, pyyaml, prometheus = probe.stdout.splitlines()
    source = scratch / "progset-src"
    (source / "supervisor").mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(PROJECT / name, source / name)
    shutil.copytree(PROJECT / "supervisor" / "progset_supervisor", source / "supervisor" / "progset_supervisor",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    venv = scratch / "progset-venv"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    for argv in ([base, "-m", "venv", "--without-pip", str(venv)],
                 [str(PROJECT_PYTHON), "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                  "--no-deps", f"PyYAML=={pyyaml}", f"prometheus-client=={prometheus}", str(source)],
                 # Bytecode, as the image has it: pip compiles what it installs, but not ``python -m venv``'s own
                 # files, and with PYTHONDONTWRITEBYTECODE=1 (set here and in the image) nothing is written later.
                 [str(venv / "bin" / "python"), "-m", "compileall", "-q", str(venv)],
                 # Fail now, not at every launch, if the tree does not import (say, caught in the middle of an edit).
                 [str(venv / "bin" / "progset-supervisor"), "-v"]):
        subprocess.run(argv, capture_output=True, text=True, check=True, env=env)
    version = _first_line([str(venv / "bin" / "python"), "-V"])
    return Install(venv / "bin" / "progset-supervisor",
                   f"wheel in a scratch venv without pip/setuptools (as supervisor/Dockerfile), built from the "
                   f"working tree; {version} ({base}), PyYAML {pyyaml}, prometheus-client {prometheus}; "
                   f"installed in {time.perf_counter() - t0:.1f} s")


def default_tools(progset: str | None, supervisord: str | None, haproxy: str | None, pid1: bool,
                  progset_config: str = "rendered") -> list[Tool]:
    """progset from ``progset`` (default: the project's editable venv), the other two from Debian's on PATH.

    ``pid1`` adds progset as PID 1 of a new pid namespace, as in a pod: no ``setpriv`` in the exec
    chain then (a PID 1 needs no parent-death signal), so each spawn is one exec instead of two.
    Both progset tools run the same executable.
    """
    progset = progset or str(EDITABLE)
    extra = []
    if pid1:
        unshare = shutil.which("unshare") or "/usr/bin/unshare"
        extra.append(Progset("progset-pid1", progset, restarts=True,
                             wrapper=(unshare, "--pid", "--fork", "--kill-child"), config_format=progset_config))
    return [
        Progset("progset", progset, restarts=True, config_format=progset_config),
        *extra,
        Supervisord("supervisord", supervisord or shutil.which("supervisord") or "/usr/bin/supervisord",
                    restarts=True),
        Haproxy("haproxy", haproxy or shutil.which("haproxy") or "/usr/sbin/haproxy", restarts=False),
    ]
