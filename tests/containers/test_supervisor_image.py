"""The supervisor image as a pod runs it: PID 1, a ConfigMap directory, a socket shared with another
container, reload through the kubelet's ``..data`` swap, ``docker stop``, exit codes, default config."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import pytest

from .engine import build_derived, container, run
from .podlike import HAPROXY_CFG, HAPROXY_PROGRAMS, configmap_volume, empty_dir, http_body

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
# The pod of examples/workload-sidecar.yaml: uid/gid 1000, fsGroup 1000 (a supplementary group of
# every container), a read-only root filesystem, no capabilities.
POD_UID, FS_GROUP = 1000, 1000
SOCKET_ARG = "/var/run/progset/master.sock,mode,660,level,operator"
HARDENED = ["--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
RUN_DIR = ["--tmpfs", "/var/run/progset"]  # the emptyDir for the socket, when no test shares it

PROGRAMS_V1 = """\
programs:
  - name: web
    command: ["sh", "-c", "echo web v1 up; exec sleep 100000"]
  - name: worker
    command: ["sleep", "100000"]
"""
PROGRAMS_V2 = PROGRAMS_V1 + """\
  - name: cache
    command: ["sh", "-c", "echo cache up; exec sleep 100000"]
"""


@pytest.fixture
def supervisor_image(progset_image_names: dict[str, str]) -> str:
    return progset_image_names["supervisor"]


def progsetctl(image: str, run_dir: Path, user: str, groups: list[int], *command: str) -> tuple[int, str]:
    """``progsetctl COMMAND`` from a second container (uid ``user``) sharing only the socket volume."""
    extra = [arg for group in groups for arg in ("--group-add", str(group))]
    done = run("run", "--rm", "--network", "none", "--user", user, *extra, *HARDENED,
               "-v", f"{run_dir}:/var/run/progset", "--entrypoint", "progsetctl", image, *command,
               check=False, timeout=120)
    return done.returncode, done.stdout + done.stderr


def test_pid1_with_a_configmap_dir_a_shared_socket_a_reload_and_a_clean_stop(
        supervisor_image: str, tmp_path: Path, free_port: int) -> None:
    config = configmap_volume(tmp_path / "config", {"programs.yaml": PROGRAMS_V1}, "2026_12_01_10_00_00.1")
    run_dir = empty_dir(tmp_path / "run", FS_GROUP)
    options = ["--network", "host", "--user", f"{POD_UID}:{POD_UID}", "--group-add", str(FS_GROUP), *HARDENED,
               "-v", f"{config}:/etc/progset:ro", "-v", f"{run_dir}:/var/run/progset"]
    with container(supervisor_image, "-f", "/etc/progset", "-S", SOCKET_ARG,
                   "--metrics-address", f"127.0.0.1:{free_port}", options=options) as sup:
        sup.wait_http(free_port, "/readyz")
        assert "progset-supervisor" in sup.exec("cat", "/proc/1/cmdline").stdout  # PID 1 is the supervisor
        sup.wait_for(r"web v1 up")

        # Another uid in the pod's fsGroup reaches the mode-660 socket; a uid outside the group does not.
        code, out = progsetctl(supervisor_image, run_dir, "1001:1001", [FS_GROUP], "show", "programs")
        assert code == 0 and "web" in out and "worker" in out and "cache" not in out, out
        code, out = progsetctl(supervisor_image, run_dir, "1002:1002", [], "show", "programs")
        assert code != 0 and "ermission denied" in out, out

        # The kubelet's update of the ConfigMap volume: a new ..data, swapped by rename.
        configmap_volume(config, {"programs.yaml": PROGRAMS_V2}, "2026_12_01_10_01_00.2")
        sup.wait_for(r"cache up")
        sup.wait_for(r"Loading success\.", count=2)
        code, out = progsetctl(supervisor_image, run_dir, "1001:1001", [FS_GROUP], "show", "programs")
        assert code == 0 and "cache" in out, out
        sup.wait_http(free_port, "/readyz")

        exited, took = sup.stop(grace=20)
        assert exited.code == 0, exited.logs
        assert took < 20, f"docker stop needed {took:.1f}s: the supervisor ignored SIGTERM until SIGKILL"


CRITICAL = """\
programs:
  - name: job
    command: ["sh", "-c", "echo job running; sleep 1; exit {code}"]
    restart: never
    critical: true
  - name: helper
    command: ["sleep", "100000"]
"""


@pytest.mark.parametrize("code", [0, 7])
def test_a_critical_programs_exit_code_is_the_containers(supervisor_image: str, tmp_path: Path, code: int) -> None:
    """The Job shape: the supervisor as the main container ends with its critical program, stopping the rest."""
    config = configmap_volume(tmp_path / "config", {"programs.yaml": CRITICAL.format(code=code)}, "1")
    with container(supervisor_image, options=["--network", "none", *HARDENED, *RUN_DIR,
                                              "-v", f"{config}:/etc/progset:ro"]) as sup:
        exited = sup.wait_exit(timeout=90)
        assert exited.code == code, exited.logs
        assert "job running" in exited.logs


def readme_docker_run_lines() -> list[list[str]]:
    text = README.read_text()
    section = text[text.index("### Building the images\n"):text.index("### Adding progset to your own image\n")]
    return [shlex.split(line) for line in section.splitlines() if line.strip().startswith("docker run ")]


def test_documented_docker_run_lines_work_as_written(supervisor_image: str) -> None:
    """README's ``docker run`` lines, with the built image's name: flags after the image name replace
    the default command but keep the config ($PROGSET_CONFIG), ``-c`` checks it."""
    lines = readme_docker_run_lines()
    assert len(lines) >= 3 and any(line[-1] == "-c" for line in lines)
    for argv in lines:
        argv = [arg.replace("$PWD", str(REPO)) for arg in argv]
        at = argv.index("progset-supervisor:0.1.0")
        argv[at] = supervisor_image
        if argv[-1] == "-c":
            done = run(*argv[1:2], "--network", "none", *argv[2:])
            assert "Configuration file is valid (1 programs" in done.stdout, done.stdout + done.stderr
            continue
        options = [arg for arg in argv[2:at] if arg != "--rm"]
        with container(supervisor_image, *argv[at + 1:], options=["--network", "none", *options]) as sup:
            sup.wait_for(r"hello, world")
            if "json" in argv[at + 1:]:
                sup.wait_for(r'^\{.*hello, world')
            exited, _ = sup.stop(grace=20)
            assert exited.code == 0, exited.logs


DERIVED = """\
FROM {image}
# Your image: the supervisor image plus your programs (HAProxy here, from the test base).
COPY programs.yaml /etc/progset/programs.yaml
"""


def test_an_image_from_the_supervisor_image_runs_haproxy_reloaded_by_signal(
        supervisor_image: str, tmp_path: Path, free_port: int) -> None:
    context = tmp_path / "context"
    context.mkdir()
    (context / "programs.yaml").write_text(HAPROXY_PROGRAMS)
    image = build_derived(DERIVED.format(image=supervisor_image), context, "derived-haproxy")
    app = tmp_path / "haproxy"
    app.mkdir(mode=0o755)
    (app / "haproxy.cfg").write_text(HAPROXY_CFG.format(port=free_port, version="v1"))
    (app / "haproxy.cfg").chmod(0o644)
    metrics = free_port + 1 if free_port < 65535 else free_port - 1
    with container(image, "-S", SOCKET_ARG, "--metrics-address", f"127.0.0.1:{metrics}",
                   options=["--network", "host", *HARDENED, *RUN_DIR, "-v", f"{app}:/etc/haproxy-app:ro"]) as sup:
        sup.wait_http(free_port, "/")
        assert http_body(free_port, "/") == "v1"
        before = sup.exec("progsetctl", "show", "proc").stdout
        (app / "haproxy.cfg").write_text(HAPROXY_CFG.format(port=free_port, version="v2"))
        run("kill", "-s", "HUP", sup.name)  # reload the supervisor: HAProxy gets SIGUSR2, not a restart
        deadline = time.monotonic() + 60
        while http_body(free_port, "/") != "v2":
            assert time.monotonic() < deadline, "HAProxy did not reload its configuration"
            time.sleep(0.2)
        after = sup.exec("progsetctl", "show", "proc").stdout
        haproxy_pid = [line.split()[0] for line in before.splitlines() if "haproxy" in line]
        assert haproxy_pid and haproxy_pid == [line.split()[0] for line in after.splitlines() if "haproxy" in line]
        exited, _ = sup.stop(grace=20)
        assert exited.code == 0, exited.logs
