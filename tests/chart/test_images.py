"""The Dockerfiles, read statically (no container runtime here): pinned, minimal, non-root, right entrypoints."""

from __future__ import annotations

import json
import re
import shlex
import tomllib

import pytest

from .helpers import REPO, objects, one

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
IMAGES = {
    "supervisor": {"entrypoint": "progset-supervisor", "extras": [], "packages": ["supervisor/progset_supervisor"]},
    "operator": {"entrypoint": "progset-operator", "extras": ["operator"],
                 "packages": ["supervisor/progset_supervisor", "operator/progset_operator"]},
}


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (REPO / name / "Dockerfile").read_text()
    logical, current = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in logical]


def final_stage(name: str) -> list[tuple[str, str]]:
    steps = instructions(name)
    last = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last:]


PIP_INSTALL = re.compile(r"pip (--python \S+ )?install")


def pins(name: str) -> dict[str, str]:
    found = {}
    for op, args in instructions(name):
        if op == "RUN" and PIP_INSTALL.search(args):
            for requirement in re.findall(r'"([A-Za-z0-9_.-]+)==([^"]+)"', args):
                found[requirement[0].lower().replace("_", "-")] = requirement[1]
    return found


def requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


@pytest.mark.parametrize("name", IMAGES)
def test_base_image_is_a_pinned_slim_python(name: str) -> None:
    (arg,) = [a for op, a in instructions(name) if op == "ARG" and a.startswith("PYTHON_IMAGE=")]
    image = arg.split("=", 1)[1]
    assert re.fullmatch(r"python:3\.(1[1-9])\.\d+-slim-[a-z]+", image), image
    assert all(a.split()[0] == "${PYTHON_IMAGE}" for op, a in instructions(name) if op == "FROM")


@pytest.mark.parametrize("name", IMAGES)
def test_final_stage_runs_as_a_numeric_non_root_user(name: str) -> None:
    users = [a for op, a in final_stage(name) if op == "USER"]
    assert users, "no USER in the final stage"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0 and (not gid or gid.isdigit())
    # Anything after USER must not need root.
    after = final_stage(name)[[op for op, _ in final_stage(name)].index("USER"):]
    assert not [a for op, a in after if op == "RUN"]


@pytest.mark.parametrize("name", IMAGES)
def test_entrypoint_is_the_packaged_command_and_the_default_command_parses(name: str) -> None:
    (entrypoint,) = [json.loads(a) for op, a in final_stage(name) if op == "ENTRYPOINT"]
    assert entrypoint == [IMAGES[name]["entrypoint"]]
    assert IMAGES[name]["entrypoint"] in PYPROJECT["project"]["scripts"]
    (command,) = [json.loads(a) for op, a in final_stage(name) if op == "CMD"]
    if name == "supervisor":
        from progset_supervisor.__main__ import parse_args

        assert parse_args(command).config == ["/etc/progset"]
    else:
        from progset_operator.__main__ import options_from, parser

        options = options_from(parser().parse_args(command))
        assert options.standalone and options.liveness == "http://0.0.0.0:8080/healthz"


@pytest.mark.parametrize("name", IMAGES)
def test_only_the_needed_dependencies_pinned(name: str) -> None:
    wanted = {requirement_name(r) for r in PYPROJECT["project"]["dependencies"]}
    for extra in IMAGES[name]["extras"]:
        wanted |= {requirement_name(r) for r in PYPROJECT["project"]["optional-dependencies"][extra]}
    assert set(pins(name)) == wanted
    assert all(re.fullmatch(r"\d+(\.\d+)+", version) for version in pins(name).values())
    # The package itself must not pull anything unpinned in.
    assert any(re.search(r"pip (--python \S+ )?install --no-deps \.", a) for op, a in instructions(name) if op == "RUN")


@pytest.mark.parametrize("name", IMAGES)
def test_copied_sources_exist_and_pass_the_context_filter(name: str) -> None:
    copied = []
    for op, args in instructions(name):
        if op == "COPY" and not args.startswith("--from"):
            copied.extend(shlex.split(args)[:-1])
    assert set(IMAGES[name]["packages"]) <= set(copied)
    ignore = (REPO / name / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:] for line in ignore if line.startswith("!")}
    for path in copied:
        assert path in allowed, f"{path} is filtered out of the build context"
        assert (REPO / path).exists(), path


def test_supervisor_image_has_socat_and_a_socket_directory_for_any_uid() -> None:
    runs = " ".join(a for op, a in final_stage("supervisor") if op == "RUN")
    assert "socat" in runs and "install -d -m 1777 /run/progset" in runs
    envs = " ".join(a for op, a in final_stage("supervisor") if op == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in envs and "HOME=/tmp" in envs


def test_chart_runs_the_operator_as_the_images_user() -> None:
    user = [a for op, a in final_stage("operator") if op == "USER"][-1]
    context = one(objects(), "Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert f"{context['runAsUser']}:{context['runAsGroup']}" == user



def test_supervisor_venv_has_no_pip_or_setuptools() -> None:
    """setuptools' distutils-precedence.pth runs at every interpreter start: the supervisor's venv is
    made without pip (so without setuptools) and filled by the base image's pip."""
    runs = [a for op, a in instructions("supervisor") if op == "RUN"]
    assert any("venv --without-pip /opt/progset" in a for a in runs)
    assert not any("/opt/progset/bin/pip " in a for a in runs)
