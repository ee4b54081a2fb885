"""Build progset's container images offline: wheels fetched on the host, installed with ``--no-index``.

Why this shape: a build that downloads is neither reproducible nor possible where no package index is
reachable from inside the build (CI machines here; air-gapped build farms). So pip runs on the host
and fills a wheelhouse for the image's Python; the wheelhouse is the whole build context; the
Dockerfiles install from it and never touch the network.

    python3 images/build.py [--base IMAGE] [--python X.Y] [--tag TAG] [--prefix NAME] [KIND...]

KIND is ``supervisor``, ``operator`` or ``bundle`` (default: all three). The tests call :func:`build`
with the local Debian base; ``make images`` runs this with the Dockerfiles' default base.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO / "images" / "requirements"
DEFAULT_BASE = "python:3.11.13-slim-bookworm"
DEFAULT_PYTHON = "3.11"


@dataclass(frozen=True)
class Kind:
    """One image: its Dockerfile and what goes into its build context besides the wheelhouse."""

    dockerfile: Path
    extra: tuple[Path, ...] = ()


KINDS = {
    "supervisor": Kind(REPO / "supervisor" / "Dockerfile"),
    "operator": Kind(REPO / "operator" / "Dockerfile"),
    "bundle": Kind(REPO / "images" / "bundle" / "Dockerfile", (REPO / "images" / "bundle" / "make_bundle.py",)),
}


def version() -> str:
    """The package version (the images' default tag), read from pyproject.toml."""
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def cache_dir() -> Path:
    """Where downloaded wheels are kept between builds (keyed by requirements and Python)."""
    root = os.environ.get("PROGSET_IMAGE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "progset")
    return Path(root)


def _platforms() -> list[str]:
    machine = platform.machine()
    tags = [f"manylinux{v}_{machine}" for v in ("1", "2010", "2014")]
    tags += [f"manylinux_2_{minor}_{machine}" for minor in range(5, 37)]
    return [*tags, f"linux_{machine}"]


def download_wheels(python: str, dest: Path) -> None:
    """Binary wheels of every pinned requirement (and their dependencies) for CPython ``python``.

    Cached by the requirement files' content: a second build, or the second test run, is offline.
    """
    files = sorted(REQUIREMENTS.glob("*.txt"))
    key = hashlib.sha256(b"".join(f.read_bytes() for f in files) + python.encode()
                         + platform.machine().encode()).hexdigest()[:16]
    cached = cache_dir() / "wheels" / key
    if not (cached / ".complete").exists():
        partial = Path(tempfile.mkdtemp(prefix="wheels-", dir=cached.parent if cached.parent.exists() else None))
        try:
            for requirements, deps in (("operator.txt", True), ("tools.txt", False)):
                command = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                           "--only-binary=:all:", "--python-version", python, "--implementation", "cp",
                           "-d", str(partial), "-r", str(REQUIREMENTS / requirements)]
                command += [] if deps else ["--no-deps"]
                for tag in _platforms():
                    command += ["--platform", tag]
                subprocess.run(command, check=True)
            (partial / ".complete").touch()
            cached.parent.mkdir(parents=True, exist_ok=True)
            try:
                partial.rename(cached)
            except OSError:  # another build finished first: theirs is as good
                shutil.rmtree(partial, ignore_errors=True)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    for wheel in cached.glob("*.whl"):
        shutil.copy2(wheel, dest / wheel.name)


def build_progset_wheel(dest: Path) -> None:
    """progset's own wheel from this checkout (pure Python: one wheel for every image)."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps",
                    "-w", str(dest), str(REPO)], check=True)


def context(python: str, directory: Path, kinds: list[str]) -> Path:
    """A build context: ``wheels/``, ``requirements/`` and what the kinds' Dockerfiles copy."""
    wheels = directory / "wheels"
    wheels.mkdir(parents=True)
    download_wheels(python, wheels)
    build_progset_wheel(wheels)
    shutil.copytree(REQUIREMENTS, directory / "requirements")
    for kind in kinds:
        for path in KINDS[kind].extra:
            shutil.copy2(path, directory / path.name)
    return directory


def image_name(prefix: str, kind: str, tag: str) -> str:
    return f"{prefix}progset-{kind}:{tag}"


def build(kinds: list[str], base: str = DEFAULT_BASE, python: str = DEFAULT_PYTHON, tag: str | None = None,
          prefix: str = "", engine: str = "docker", quiet: bool = False) -> dict[str, str]:
    """Build ``kinds`` FROM ``base`` (whose Python must be ``python``); returns kind -> image name."""
    tag = tag or version()
    built = {}
    with tempfile.TemporaryDirectory(prefix="progset-images-") as tmp:
        ctx = context(python, Path(tmp) / "context", kinds)
        for kind in kinds:
            name = image_name(prefix, kind, tag)
            command = [engine, "build", "-f", str(KINDS[kind].dockerfile), "--build-arg", f"BASE_IMAGE={base}",
                       "-t", name]
            command += ["-q"] if quiet else []
            subprocess.run([*command, str(ctx)], check=True,
                           stdout=subprocess.DEVNULL if quiet else None)
            built[kind] = name
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kinds", nargs="*", metavar="KIND", help="supervisor, operator and/or bundle (default: all)")
    parser.add_argument("--base", default=DEFAULT_BASE, help=f"base image with Python (default {DEFAULT_BASE})")
    parser.add_argument("--python", default=DEFAULT_PYTHON,
                        help=f"the base image's Python version, for the wheels (default {DEFAULT_PYTHON})")
    parser.add_argument("--tag", help="image tag (default: the package version)")
    parser.add_argument("--prefix", default="", help="repository prefix, e.g. registry.example.com/team/")
    parser.add_argument("--engine", default=os.environ.get("CONTAINER_ENGINE", "docker"))
    args = parser.parse_args(argv)
    unknown = [k for k in args.kinds if k not in KINDS]
    if unknown:
        parser.error(f"unknown image kind(s) {', '.join(unknown)}; choose from {', '.join(KINDS)}")
    for kind, name in build(args.kinds or list(KINDS), args.base, args.python, args.tag, args.prefix,
                            args.engine).items():
        print(f"{kind}: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
