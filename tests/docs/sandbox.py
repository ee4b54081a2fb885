"""Run README commands exactly as written, in a sandbox where their fixed names are free.

The README's commands use fixed addresses a shared test machine cannot promise: ``localhost:9127``
and ``localhost:9128``, ``/var/run/progset/master.sock``. So each scenario runs in a child process in
its own network and mount namespaces (``unshare``; a user namespace too when not root): a loopback
of its own, and a tmpfs over ``/run`` (``/var/run`` points there). Nothing outside sees it, and no
other test or helper can take its ports.

Parent side: :func:`run`. Child side: ``python -m tests.docs.sandbox SCENARIO`` reads the commands as
JSON on stdin, prepares the scenario (a supervisor on the README's sockets, ``make run`` in a copy of
the repository, or kmock's API emulator with the operator's command line), runs each command with
``bash -c`` and prints the results as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
DEADLINE = float(os.environ.get("README_SANDBOX_DEADLINE", 60))


# -- parent side ------------------------------------------------------------------------------------
def unshare_prefix() -> list[str]:
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    return ["unshare", *user, "--net", "--mount", "--fork"]


def run(scenario: str, commands: list[dict[str, Any]], timeout: float = 240) -> list[dict[str, Any]]:
    """Run ``commands`` (dicts with ``text`` and optional ``typed``/``after``) in ``scenario``."""
    proc = subprocess.run([*unshare_prefix(), sys.executable, "-m", "tests.docs.sandbox", scenario],
                          input=json.dumps(commands), capture_output=True, text=True, timeout=timeout, cwd=PROJECT)
    if proc.returncode != 0:
        raise AssertionError(f"sandbox {scenario} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout)


# -- child side -------------------------------------------------------------------------------------
def wait_for(predicate: Any, what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def sh(text: str, cwd: Path, env: dict[str, str], typed: list[list[str]] | None = None) -> dict[str, Any]:
    """``bash -c text``; with ``typed``, on a terminal: each ``[after, line]`` typed once ``after`` shows."""
    if typed is None:
        # one pipe for both streams: the order they were written in is the order a terminal shows
        proc = subprocess.run(["bash", "-c", text], cwd=cwd, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=DEADLINE, stdin=subprocess.DEVNULL)
        return {"text": text, "rc": proc.returncode, "stdout": proc.stdout, "stderr": ""}
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(cwd)
        os.execve("/bin/bash", ["bash", "-c", text], env)
    screen = b""
    for after, line in typed:
        if after:
            screen += read_until(fd, after.encode())
        os.write(fd, line.encode() + b"\r")
    screen += read_until(fd, None)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return {"text": text, "rc": os.waitstatus_to_exitcode(status), "stdout": screen.decode(errors="replace"),
            "stderr": ""}


def read_until(fd: int, text: bytes | None) -> bytes:
    """Read the terminal until ``text`` appears in what is new (None: until it closes)."""
    out = b""
    deadline = time.monotonic() + DEADLINE
    while text is None or text not in out:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise SystemExit(f"terminal: timed out waiting for {text!r}; screen: {out!r}")
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if not data:
            if text is None:
                return out
            raise SystemExit(f"terminal closed waiting for {text!r}; screen: {out!r}")
        out += data
    return out


def trace(result: dict[str, Any]) -> dict[str, Any]:
    """Show each command's result on stderr as it happens: a scenario that fails later shows how far it got."""
    print(f"$ {result['text']}  (exit {result['rc']})\n{result['stdout'][-3000:]}{result['stderr'][-3000:]}",
          file=sys.stderr, flush=True)
    return result


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROGSET_", "HAPROXY_", "KUBECONFIG"))}
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


def prepare_namespace() -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run"], check=True)


@contextmanager
def process(argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def run_commands(commands: list[dict[str, Any]], cwd: Path, env: dict[str, str], log: Path | None) -> list[dict]:
    results = []
    for command in commands:
        if command.get("wait_mark"):  # [text, count]: until the log shows it that often
            text, count = command["wait_mark"]
            assert log is not None
            wait_for(lambda: log.read_text().count(text) >= count, text)  # noqa: B023
        if command.get("until"):  # [command, text]: until what the command prints shows text
            check, text = command["until"]
            wait_for(lambda: text in sh(check, cwd, env)["stdout"], f"{text!r} from {check}")  # noqa: B023
        if command.get("wait_after"):  # [a, b]: until b shows in the log after the last a (a fork started)
            a, b = command["wait_after"]
            assert log is not None
            wait_for(lambda: log.read_text().rfind(b) > log.read_text().rfind(a), f"{b} after {a}")  # noqa: B023
        if command.get("before"):  # bring the programs into the state the README's example shows
            assert log is not None
            start = log.read_text().count(command["before_mark"])
            subprocess.run(["bash", "-c", command["before"]], cwd=cwd, env=env, check=True, timeout=DEADLINE)
            wait_for(lambda: log.read_text().count(command["before_mark"]) > start,  # noqa: B023
                     command["before_mark"])
        background = None
        if command.get("during"):  # another command must be under way first (e.g. a second reload)
            background = subprocess.Popen(["bash", "-c", command["during"]], cwd=cwd, env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            mark = command["during_mark"]
            assert log is not None
            start = log.read_text().count(mark)
            wait_for(lambda: log.read_text().count(mark) > start, mark)  # noqa: B023
        results.append(trace(sh(command["text"], cwd, env, command.get("typed"))))
        if background is not None:
            background.wait(DEADLINE)
        if command.get("settle"):
            time.sleep(command["settle"])
    return results


# A pod's programs, shaped so the README's Master CLI examples show what they say. 'api' is a small
# HTTP server on 127.0.0.1:8080 (free: the namespace is ours) with the README's readiness and liveness
# checks: it answers its first /healthz 503 and then 200, prints the three lines of the 'show logs'
# example, ignores SIGHUP and takes a second to stop on SIGTERM (so a second reload finds the first one
# running). 'spoa-agent' runs until /run/spoa-broken exists and a line arrives on /run/spoa-crash,
# then fails at every start and waits in BACKOFF. 'haproxy' is HAProxy with its stats socket as the
# program's runtime socket, for the '@1' examples.
API = """\
import http.server, os, signal, sys, time

def term(*_):
    time.sleep(1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)

signal.signal(signal.SIGHUP, signal.SIG_IGN)
signal.signal(signal.SIGTERM, term)
answers = []

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 200 if answers else 503
        answers.append(code)
        if answers.count(200) == 1 and code == 200:
            print("GET /healthz 200", flush=True)
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args):
        pass

server = http.server.HTTPServer(("127.0.0.1", 8080), Handler)
print("listening on :8080", flush=True)
time.sleep(0.3)
print("warning: cache disabled", file=sys.stderr, flush=True)
server.serve_forever()
"""
HAPROXY_CFG = """\
global
    stats socket /run/haproxy/admin.sock level admin
defaults
    mode tcp
    timeout connect 1s
    timeout client 1s
    timeout server 1s
frontend fe
    bind 127.0.0.1:8081
"""
POD_CONFIG = """\
programs:
  - name: haproxy
    command: ["haproxy", "-db", "-f", "{haproxy}"]
    runtimeSocket: /run/haproxy/admin.sock
    onReload: keep
  - name: api
    command: ["python3", "{api}"]
    readiness:
      http: {{port: 8080, path: /healthz}}
      periodSeconds: 1
    liveness:
      tcp: {{port: 8080}}
      initialDelaySeconds: 3  # the server is listening by then
  - name: spoa-agent
    command: ["sh", "-c", "[ -e /run/spoa-broken ] && exit 1; read line < /run/spoa-crash; exit 1"]
    backoff: {{initialSeconds: 30, maxSeconds: 60}}
"""
BREAK_SPOA = "touch /run/spoa-broken && echo crash > /run/spoa-crash"


def pod(commands: list[dict[str, Any]]) -> list[dict]:
    """The supervisor as the README's pod runs it, with the shared level,user socket of 'Sockets: -S'."""
    work = Path(tempfile.mkdtemp(prefix="readme-pod-", dir="/run"))
    config = work / "programs.yaml"
    (work / "api.py").write_text(API)
    (work / "haproxy.cfg").write_text(HAPROXY_CFG)
    os.makedirs("/run/haproxy")
    config.write_text(POD_CONFIG.format(api=work / "api.py", haproxy=work / "haproxy.cfg"))
    log = work / "supervisor.log"
    argv = [str(VENV_BIN / "progset-supervisor"), "-f", str(config), "-S", "/var/run/progset/master.sock",
            "-S", "/var/run/progset-shared/status.sock,mode,666,level,user"]
    env = base_env()
    os.mkfifo("/run/spoa-crash")
    with process(argv, work, env, log):
        wait_for(lambda: log.read_text().count(" forked") >= 3, "the three programs")
        wait_for(lambda: os.path.exists("/run/haproxy/admin.sock"), "HAProxy's stats socket")
        return run_commands(commands, work, env, log)


def quickstart(commands: list[dict[str, Any]]) -> list[dict]:
    """``make run`` in a copy of the repository, then the Quick start's commands in it.

    The copy's ``.venv`` holds links to this venv's commands and make's stamp, so ``make run`` runs as
    it does on a machine where it ran before (creating a venv here would take minutes)."""
    work = Path(tempfile.mkdtemp(prefix="readme-quickstart-", dir="/run"))
    files = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT, capture_output=True, check=True).stdout
    for name in files.decode().split("\0"):
        if name and (PROJECT / name).is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT / name, work / name)
    (work / ".venv/bin").mkdir(parents=True)
    for tool in ("python", "progset-supervisor", "progsetctl"):
        (work / ".venv/bin" / tool).symlink_to(VENV_BIN / tool)
    (work / ".venv/.installed-run").touch()
    env = base_env()
    env["PROGSETCTL_HISTORY"] = str(work / "history")
    log = work / "make-run.log"
    first, rest = commands[0], commands[1:]
    with process(["bash", "-c", first["text"]], work, env, log) as make:
        wait_for(lambda: "Loading success." in log.read_text() or make.poll() is not None, "make run")
        wait_for(lambda: (work / "run/master.sock").exists() or make.poll() is not None, "the socket")
        results = [{"text": first["text"], "rc": make.poll(), "stdout": log.read_text(), "stderr": ""}]
        results += run_commands(rest, work, env, log)
    return results


async def _kube(commands: list[dict[str, Any]]) -> list[dict]:
    """kmock's API emulator on localhost, the operator's command line against it, then kubectl."""
    import kmock
    import yaml
    from kmock._internal import parsing

    from tests.operator.emulator import Emulator, parse_path_with_namespaces
    from tests.operator.fixtures import NAMESPACES, PROGRAMSETS, _Server

    class KubectlEmulator(Emulator):
        """What kubectl needs on top of the operator tests' emulator: kmock 0.8 answers /api/v1 with
        ``groupVersion: /v1``, which kubectl cannot parse (so it finds no core resource type at all), and
        lists without ``kind``/``apiVersion``, which kubectl refuses. A real API server has both."""

        async def _serve_version(self, request: Any) -> Any:
            payload = await super()._serve_version(request)
            payload["groupVersion"] = payload["groupVersion"].lstrip("/")
            return payload

        async def _serve_list(self, request: Any) -> Any:
            payload = await super()._serve_list(request)
            items = payload.get("items") or [{}]
            payload.setdefault("kind", items[0]["kind"] + "List" if "kind" in items[0] else "List")
            payload.setdefault("apiVersion", items[0].get("apiVersion", "v1"))
            return payload

    parsing.parse_path = parse_path_with_namespaces(parsing.parse_path)
    emu = KubectlEmulator()
    emu.resources.load_bundled()
    emu.resources[PROGRAMSETS] = kmock.ResourceInfo(
        kind="ProgramSet", singular="programset", namespaced=True, subresources={"status"},
        shortnames={"pset"}, verbs={"get", "list", "watch", "create", "patch", "update", "delete"})
    for ns in NAMESPACES:
        emu.objects["v1/namespaces", None, ns] = {"apiVersion": "v1", "kind": "Namespace",
                                                  "metadata": {"name": ns, "resourceVersion": "0"}}
    work = Path(tempfile.mkdtemp(prefix="readme-kube-", dir="/run"))
    async with emu, kmock.Server(emu, server_cls=_Server):
        kubeconfig = work / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": str(emu.url).rstrip("/")}}],
            "users": [{"name": "tester", "user": {"token": "not-checked"}}],
            "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester"}}]}))
        env = {**base_env(), "KUBECONFIG": str(kubeconfig), "HOME": str(work)}
        results: list[dict] = []
        operators: list[asyncio.subprocess.Process] = []
        try:
            for command in commands:
                results.append(trace(await _kube_command(command, env, work, operators)))
        finally:
            for operator in operators:
                if operator.returncode is None:
                    os.killpg(operator.pid, signal.SIGTERM)
                    await asyncio.wait_for(operator.wait(), 20)
        return results


async def _kube_command(command: dict[str, Any], env: dict[str, str], work: Path,
                        operators: list[asyncio.subprocess.Process]) -> dict[str, Any]:
    if command.get("background"):  # the operator: it runs until the scenario ends
        log = work / "operator.log"
        with log.open("wb") as out:
            operators.append(await asyncio.create_subprocess_exec(
                "bash", "-c", command["text"], cwd=PROJECT, env=env, stdout=out, stderr=out, start_new_session=True))
        await _until(lambda: "Initial authentication has finished" in log.read_text(), command["text"])
        return {"text": command["text"], "rc": None, "stdout": log.read_text(), "stderr": ""}
    if command.get("equivalent"):
        return await _apply_equivalent(command, env)
    if command.get("wait_for"):
        await _kubectl_until(command["wait_for"], env)
    proc = await asyncio.create_subprocess_exec("bash", "-c", command["text"], cwd=PROJECT, env=env,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), DEADLINE)
    return {"text": command["text"], "rc": proc.returncode, "stdout": stdout.decode(), "stderr": stderr.decode()}


async def _apply_equivalent(command: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """``kubectl apply`` first downloads the server's OpenAPI documents, which kmock's emulator does not
    serve: the same objects are created with a POST of the kubernetes client instead."""
    import kubernetes
    import yaml

    source = command["equivalent"]
    if source.startswith("command:"):
        text = subprocess.run(["bash", "-c", source[len("command:"):]], cwd=PROJECT, env=env, check=True,
                              capture_output=True, text=True).stdout
    else:
        text = (PROJECT / source).read_text()
    client = kubernetes.config.new_client_from_config(env["KUBECONFIG"])
    created = []
    for body in yaml.safe_load_all(text):
        if not body:
            continue
        group, _, version = body["apiVersion"].rpartition("/")
        plural = body["kind"].lower() + ("es" if body["kind"].endswith("s") else "s")
        namespace = body["metadata"].get("namespace", "default") if body["kind"] == "ProgramSet" else None
        path = (f"/apis/{group}/{version}" if group else f"/api/{version}") + \
            (f"/namespaces/{namespace}" if namespace else "") + f"/{plural}"
        request = client.param_serialize("POST", path, body=body, auth_settings=["BearerToken"],
                                         header_params={"Content-Type": "application/json",
                                                        "Accept": "application/json"})
        response = await asyncio.to_thread(client.call_api, *request)
        response.read()
        name = f"{body['kind'].lower()}/{body['metadata']['name']}"
        if response.status == 409:  # applied before: apply would find nothing to change
            created.append(f"{name} unchanged (POST {path}: already exists)")
            continue
        if response.status >= 300:
            raise SystemExit(f"POST {path}: {response.status} {response.data!r}")
        created.append(f"{name} created (POST {path})")
    return {"text": command["text"], "rc": 0, "stdout": "\n".join(created) + "\n", "stderr": "",
            "equivalent": True}


async def _until(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def _kubectl_until(check: str, env: dict[str, str]) -> None:
    """Until a kubectl check (the operator's work is asynchronous) prints something."""
    deadline = time.monotonic() + DEADLINE
    while True:
        proc = await asyncio.create_subprocess_exec("bash", "-c", check, cwd=PROJECT, env=env,
                                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stdout, stderr = await proc.communicate()
        if proc.returncode == 0 and stdout.strip():
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for: {check}; last answer: {stdout!r} {stderr!r}")
        await asyncio.sleep(0.2)


def repo(commands: list[dict[str, Any]]) -> list[dict]:
    """Commands that need nothing running: in the repository, with this venv's commands on PATH."""
    return run_commands(commands, PROJECT, base_env(), None)


SCENARIOS = {"repo": repo, "pod": pod, "quickstart": quickstart, "kube": lambda commands: asyncio.run(_kube(commands))}


def main() -> None:
    scenario = sys.argv[1]
    commands = json.load(sys.stdin)
    prepare_namespace()
    results = SCENARIOS[scenario](commands)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
