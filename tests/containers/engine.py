"""A container engine for tests: find it, make base images without a registry, build and run images.

Nothing is pulled: the Debian base images are made with ``mmdebstrap`` from the Debian mirror this
machine uses and loaded with ``docker import``; progset's images are built by ``images/build.py``
from a wheelhouse. Base tarballs are cached in ``$PROGSET_IMAGE_CACHE`` (default
``/var/cache/progset`` for root, else ``~/.cache/progset``) so a second run does not debootstrap
again; a fresh machine builds them (a few minutes). Built images are tagged with a hash of the
sources, so every pytest-xdist worker and every later run reuses them while the sources are unchanged.

Shared with the webhook/injection tests: :func:`require_engine`, :func:`base_image`,
:func:`progset_images` and :class:`Container` are the whole interface.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.supervisor.helpers import Lines

from .podlike import wait_http

REPO = Path(__file__).resolve().parents[2]
ENGINE = os.environ.get("CONTAINER_ENGINE", "docker")
TEST_LABEL = "io.progset.test=1"
PREFIX = "progset-test/"


def _problem(message: str) -> None:
    """Skip, or fail when CI demands every peer (``PROGSET_REQUIRE_PEERS=1``)."""
    if os.environ.get("PROGSET_REQUIRE_PEERS") == "1":
        pytest.fail(f"{message} (PROGSET_REQUIRE_PEERS=1: the container tests are required)", pytrace=False)
    pytest.skip(message)


_engine_state: dict[str, str | None] = {}


def engine_problem() -> str | None:
    """Why no container engine can be used, or None when ``docker info`` answers."""
    if "problem" not in _engine_state:
        if shutil.which(ENGINE) is None:
            problem: str | None = f"{ENGINE} is not installed (Debian package docker.io)"
        else:
            try:
                done = subprocess.run([ENGINE, "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                                      text=True, timeout=30)
                problem = None if done.returncode == 0 else (
                    f"'{ENGINE} info' failed, is dockerd running (.ci/run starts it)? {done.stderr.strip()[:300]}")
            except subprocess.TimeoutExpired:
                problem = f"'{ENGINE} info' did not answer within 30 s"
        _engine_state["problem"] = problem
    return _engine_state["problem"]


def require_engine() -> None:
    problem = engine_problem()
    if problem:
        _problem(f"no container engine: {problem}")


def run(*args: str, check: bool = True, timeout: float = 600, input: str | None = None,
        ) -> subprocess.CompletedProcess[str]:
    """``docker ARGS``; on failure the error names the command and shows its output."""
    done = subprocess.run([ENGINE, *args], capture_output=True, text=True, timeout=timeout, input=input)
    if check and done.returncode != 0:
        raise AssertionError(f"{ENGINE} {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def image_exists(name: str) -> bool:
    return run("image", "inspect", name, check=False).returncode == 0


def cache_dir() -> Path:
    default = "/var/cache/progset" if os.geteuid() == 0 else os.path.expanduser("~/.cache/progset")
    path = Path(os.environ.get("PROGSET_IMAGE_CACHE", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def locked(name: str) -> Iterator[None]:
    """One builder at a time across pytest-xdist workers (and concurrent runs)."""
    with open(cache_dir() / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def debian_suite_and_mirror() -> tuple[str, str]:
    """This machine's Debian release and mirror (the only package source reachable here)."""
    suite = "bookworm"
    with contextlib.suppress(OSError):
        found = re.search(r"^VERSION_CODENAME=(\w+)", Path("/etc/os-release").read_text(), re.M)
        suite = found.group(1) if found else suite
    mirror = "http://deb.debian.org/debian"
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        found = re.search(r"^URIs:\s*(\S+/debian)/?\s*$", path.read_text(), re.M)
        if found:
            mirror = found.group(1)
            break
    return suite, mirror


# Packages on top of Debian's minbase for the base the Dockerfiles build FROM: python3, and HAProxy,
# which a derived image would apt-get install (no package index is reachable inside a build here).
PYTHON_BASE_PACKAGES = ("python3", "python3-venv", "haproxy")
# The "any image" of the bundle tests: that base with every Python package purged (apt works offline
# for removals), flattened by export/import so no layer keeps Python. One debootstrap instead of two
# saves minutes on a fresh CI machine.
WITHOUT_PYTHON = """\
FROM {base}
RUN apt-get purge -y -qq $(dpkg-query -W -f '${{Package}}\\n' | grep -E '^(lib)?python3') >/dev/null \\
    && rm -rf /usr/lib/python3* /usr/local/lib/python3* /usr/share/python3* /var/cache/apt/* /var/lib/apt/lists/*
"""


def base_image(name: str) -> str:
    """``progset-test/debian-python:SUITE`` (mmdebstrap, from a cached tarball) or
    ``progset-test/debian-haproxy:SUITE`` (the same without Python)."""
    suite, mirror = debian_suite_and_mirror()
    image = f"{PREFIX}debian-{name}:{suite}"
    if image_exists(image):
        return image
    if name == "haproxy":
        python_base = base_image("python")
        with locked("base"):
            if not image_exists(image):
                with tempfile.TemporaryDirectory() as tmp:
                    purged = build_derived(WITHOUT_PYTHON.format(base=python_base), Path(tmp), "purging-python")
                box = run("create", purged, "true").stdout.strip()  # never started: only exported
                try:
                    exported = subprocess.Popen([ENGINE, "export", box], stdout=subprocess.PIPE)
                    done = subprocess.run([ENGINE, "import", "-", image], stdin=exported.stdout, capture_output=True,
                                          text=True, timeout=600)
                    exported.wait(60)
                    assert done.returncode == 0 and exported.returncode == 0, done.stderr
                finally:
                    run("rm", "-f", box, check=False)
                    run("rmi", purged, check=False)
        return image
    assert name == "python", name
    with locked("base"):
        if image_exists(image):
            return image
        tarball = cache_dir() / f"debian-{name}-{suite}.tar"
        if not tarball.exists():
            if shutil.which("mmdebstrap") is None:
                _problem("mmdebstrap is not installed (Debian package mmdebstrap): it makes the test base image")
            partial = tarball.with_suffix(".partial.tar")
            done = subprocess.run(
                ["mmdebstrap", "--variant=minbase", "--include=" + ",".join(PYTHON_BASE_PACKAGES),
                 suite, str(partial), mirror],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1500)
            if done.returncode != 0:
                partial.unlink(missing_ok=True)
                raise AssertionError(f"mmdebstrap failed for the {name} base:\n{done.stderr[-3000:]}")
            partial.rename(tarball)
        run("import", str(tarball), image)
    return image


def python_version(image: str) -> str:
    """X.Y of the image's python3, for the wheelhouse."""
    return run("run", "--rm", "--network", "none", "--entrypoint", "python3", image, "-c",
               "import sys; print('%d.%d' % sys.version_info[:2])").stdout.strip()


def sources_hash() -> str:
    """Everything an image is built from: rebuild exactly when one of these changes."""
    digest = hashlib.sha256()
    # README.md (the wheel's long description) is left out: it changes often and never changes behaviour.
    paths = [REPO / "pyproject.toml"]
    for directory in ("supervisor", "operator", "images"):
        paths += [p for p in (REPO / directory).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    for path in sorted(paths):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def _builder():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("progset_images_build", REPO / "images" / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def progset_images(kinds: Sequence[str] = ("supervisor", "operator", "bundle")) -> dict[str, str]:
    """progset's images built from this checkout FROM the Debian python base: kind -> image name."""
    base = base_image("python")
    tag = "src-" + sources_hash()
    builder = _builder()
    names = {kind: builder.image_name(PREFIX, kind, tag) for kind in kinds}
    missing = [kind for kind, name in names.items() if not image_exists(name)]
    if missing:
        with locked(f"images-{tag}"):  # per source state: checkouts sharing the engine never wait on each other
            missing = [kind for kind, name in names.items() if not image_exists(name)]
            if missing:
                builder.build(missing, base=base, python=python_version(base), tag=tag, prefix=PREFIX, quiet=True)
                remove_stale_images(names)
    return names


STALE_AFTER = 6 * 3600  # seconds: other checkouts (worktrees, CI jobs) may be using younger ones


def remove_stale_images(current: dict[str, str]) -> None:
    """Untag images of other source states once they are hours old (one set per edit would fill the
    disk; younger ones may belong to another checkout sharing this engine, which would rebuild them),
    and prune the build stages left dangling. Only this module's own repositories are touched."""
    import json
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    for name in current.values():
        repository = name.rsplit(":", 1)[0]
        listed = run("images", "--format", "{{.Repository}}:{{.Tag}}", repository, check=False).stdout.split()
        for image in listed:
            if image == name:
                continue
            created = json.loads(run("image", "inspect", "--format", "{{json .Created}}", image, check=False).stdout
                                 or "null")
            # RFC 3339 with nanoseconds: the seconds are enough.
            if created and (now - datetime.fromisoformat(created[:19] + "+00:00")).total_seconds() > STALE_AFTER:
                run("rmi", image, check=False)
    run("image", "prune", "-f", "--filter", "label=io.progset.build-stage=1", "--filter", f"until={STALE_AFTER}s",
        check=False)


def build_derived(dockerfile: str, context: Path, tag_hint: str) -> str:
    """``docker build`` of a test's own Dockerfile text (FROM one of the images above)."""
    (context / "Dockerfile").write_text(dockerfile)
    digest = hashlib.sha256(dockerfile.encode())
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        digest.update(path.name.encode() + path.read_bytes())
    name = f"{PREFIX}{tag_hint}:{digest.hexdigest()[:12]}"
    if not image_exists(name):
        with locked(name.replace("/", "_").replace(":", "_")):
            if not image_exists(name):
                run("build", "-q", "-t", name, str(context))
    return name


@dataclass
class Exited:
    code: int
    logs: str


class Container:
    """One ``docker run -d`` container, its output followed line by line, removed at :meth:`remove`."""

    def __init__(self, image: str, *args: str, options: Sequence[str] = ()) -> None:
        self.name = f"progset-test-{uuid.uuid4().hex[:10]}"
        run("run", "-d", "--name", self.name, "--label", TEST_LABEL, *options, image, *args)
        self.output = Lines()
        self._follow = subprocess.Popen([ENGINE, "logs", "-f", self.name], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self.output.feed, args=(self._follow.stdout,), daemon=True).start()

    def wait_for(self, pattern: str, timeout: float = 60, **kwargs: int) -> list[re.Match[str]]:
        return self.output.wait_for(pattern, timeout=timeout, **kwargs)

    def wait_http(self, port: int, path: str, timeout: float = 90) -> None:
        """:func:`podlike.wait_http`, failing with the container's output (and at once if it exited)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                wait_http(port, path, timeout=min(5.0, max(0.1, deadline - time.monotonic())))
                return
            except AssertionError as exc:
                running = self.state().get("Running")
                if not running or time.monotonic() >= deadline:
                    why = "exited" if not running else "timed out"
                    raise AssertionError(f"{exc} ({why}); container output:\n"
                                         + "\n".join(self.output.lines[-40:])) from None

    def exec(self, *args: str, user: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        options = ["--user", user] if user else []
        return run("exec", *options, self.name, *args, check=check, timeout=60)

    def state(self) -> dict[str, object]:
        import json

        return json.loads(run("inspect", "--format", "{{json .State}}", self.name).stdout)

    def wait_exit(self, timeout: float = 60) -> Exited:
        """The container's exit code once it has stopped by itself."""
        code = int(run("wait", self.name, timeout=timeout).stdout.strip())
        return Exited(code, run("logs", self.name).stdout + run("logs", self.name).stderr)

    def stop(self, grace: int = 10) -> tuple[Exited, float]:
        """``docker stop -t GRACE``: its exit code and how long the stop took."""
        started = time.monotonic()
        run("stop", "-t", str(grace), self.name, timeout=grace + 60)
        took = time.monotonic() - started
        return self.wait_exit(), took

    def remove(self) -> None:
        run("rm", "-f", "-v", self.name, check=False)
        if self._follow.poll() is None:
            self._follow.kill()
        self._follow.wait()
        if self._follow.stdout:
            self._follow.stdout.close()


@contextlib.contextmanager
def container(image: str, *args: str, options: Sequence[str] = ()) -> Iterator[Container]:
    """A :class:`Container` removed when the block ends, whatever happens in it."""
    box = Container(image, *args, options=options)
    try:
        yield box
    finally:
        box.remove()
