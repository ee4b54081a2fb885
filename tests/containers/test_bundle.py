"""progset in any image: the self-contained bundle added with one ``COPY --from=`` to an image that has
no Python, running HAProxy and a helper program as PID 1 (README, "Adding progset to your own image")."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .engine import build_derived, container, run
from .podlike import HAPROXY_CFG, HAPROXY_PROGRAMS, configmap_volume, http_body

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_recipe(base: str, bundle: str) -> str:
    """README's Dockerfile ("Adding progset to your own image") with the test's base and bundle: the
    base is Debian minbase + haproxy, without Python, as HAProxy's own image."""
    text = README.read_text()
    section = text[text.index("### Adding progset to your own image\n"):]
    recipe = section[section.index("```dockerfile\n") + 14:section.index("```", section.index("```dockerfile\n") + 14)]
    lines = recipe.splitlines()
    assert lines[0].startswith("FROM ") and lines[1].startswith("COPY --from=registry.example/progset/progset-bundle:")
    lines[0] = f"FROM {base}"
    lines[1] = f"COPY --from={bundle} /opt/progset /opt/progset"
    return "\n".join(lines) + "\n"


PROGRAMS = HAPROXY_PROGRAMS + """\
  - name: helper
    command:
      - sh
      - -c
      - 'echo "helper up [$LD_LIBRARY_PATH|$PYTHONHOME|$PYTHONPATH]"; while :; do sleep 1; done'
    dependsOn: [haproxy]
"""


@pytest.fixture
def image_with_bundle(progset_image_names: dict[str, str], debian_base_without_python: str, tmp_path: Path) -> str:
    context = tmp_path / "context"
    context.mkdir()
    return build_derived(readme_recipe(debian_base_without_python, progset_image_names["bundle"]), context,
                         "with-bundle")


def test_the_target_image_has_no_python(image_with_bundle: str) -> None:
    done = run("run", "--rm", "--network", "none", "--entrypoint", "sh", image_with_bundle, "-c",
               "command -v python3 python python3.11 || echo none; ls /usr/lib | grep -c '^python' || true")
    assert done.stdout.split() == ["none", "0"], done.stdout


def test_bundle_runs_haproxy_and_a_helper_as_pid1(image_with_bundle: str, tmp_path: Path, free_port: int) -> None:
    app = tmp_path / "haproxy"
    app.mkdir(mode=0o755)
    (app / "haproxy.cfg").write_text(HAPROXY_CFG.format(port=free_port, version="v1"))
    (app / "haproxy.cfg").chmod(0o644)
    config = configmap_volume(tmp_path / "config", {"programs.yaml": PROGRAMS}, "1")
    metrics = free_port + 1 if free_port < 65535 else free_port - 1
    options = ["--network", "host", "--user", "65532:65532", "--read-only", "--tmpfs", "/tmp",
               "--tmpfs", "/run/progset", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
               "-v", f"{app}:/etc/haproxy-app:ro", "-v", f"{config}:/etc/progset:ro"]
    with container(image_with_bundle, "-S", "/var/run/progset/master.sock",
                   "--metrics-address", f"127.0.0.1:{metrics}", options=options) as sup:
        sup.wait_http(metrics, "/readyz")
        # The programs see nothing of the bundle: no library path, no Python variables.
        sup.wait_for(r"helper up \[\|\|\]")
        sup.wait_http(free_port, "/")  # HAProxy's worker listens a moment after its master started
        assert http_body(free_port, "/") == "v1"
        assert "progset-supervisor" in sup.exec("cat", "/proc/1/cmdline").stdout
        # progsetctl from the bundle, and the programs see nothing of the bundle's libraries.
        programs = sup.exec("/opt/progset/bin/progsetctl", "show", "programs").stdout
        assert "haproxy" in programs and "helper" in programs
        # A reload by signal: the supervisor's SIGHUP becomes HAProxy's SIGUSR2.
        (app / "haproxy.cfg").write_text(HAPROXY_CFG.format(port=free_port, version="v2"))
        run("kill", "-s", "HUP", sup.name)
        deadline = time.monotonic() + 60
        while http_body(free_port, "/") != "v2":
            assert time.monotonic() < deadline, "HAProxy did not reload"
            time.sleep(0.2)
        exited, took = sup.stop(grace=20)
        assert exited.code == 0, exited.logs
        assert took < 20
