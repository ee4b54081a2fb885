"""The Dockerfiles read as text: what the container tests (tests/containers) cannot show by running them.

Offline builds (no network step at all), pins equal to pyproject's dependencies, a numeric non-root
user, the entrypoints and default commands, and the chart running the operator as the image's user.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib

import pytest

from .helpers import REPO, objects, one

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
REQUIREMENTS = REPO / "images" / "requirements"
DOCKERFILES = {"supervisor": REPO / "supervisor" / "Dockerfile", "operator": REPO / "operator" / "Dockerfile",
               "bundle": REPO / "images" / "bundle" / "Dockerfile"}
EXTRAS = {"supervisor": [], "operator": ["operator"]}
# What images/build.py puts in the build context.
CONTEXT = {"wheels", "requirements", "make_bundle.py"}


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in DOCKERFILES[name].read_text().splitlines():
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


def requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def pins(path_name: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in (REQUIREMENTS / path_name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found |= pins(line[3:].strip())
        elif line:
            name, _, version = line.partition("==")
            found[requirement_name(name)] = version
    return found


@pytest.mark.parametrize("name", DOCKERFILES)
def test_base_image_is_a_build_argument_defaulting_to_a_pinned_slim_python(name: str) -> None:
    (arg,) = [a for op, a in instructions(name) if op == "ARG" and a.startswith("BASE_IMAGE=")]
    assert re.fullmatch(r"python:3\.(1[1-9])\.\d+-slim-[a-z]+", arg.split("=", 1)[1]), arg
    bases = [a.split()[0] for op, a in instructions(name) if op == "FROM"]
    assert bases[0] == "${BASE_IMAGE}"
    assert all(base in ("${BASE_IMAGE}", "scratch") for base in bases)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_the_build_never_uses_the_network(name: str) -> None:
    runs = [a for op, a in instructions(name) if op == "RUN"]
    assert not [r for r in runs if re.search(r"\b(apt-get|apt|curl|wget|git|ADD)\b", r)]
    assert not [op for op, a in instructions(name) if op == "ADD"]
    for command in runs:
        for install in re.findall(r'"\$PIP" install[^&]*', command):
            assert "--no-index" in install and "--find-links /wheels" in install, install
    if name == "bundle":
        script = (REPO / "images" / "bundle" / "make_bundle.py").read_text()
        assert script.count('"--no-index"') == script.count('"install"') == 2


@pytest.mark.parametrize("name", DOCKERFILES)
def test_copied_files_are_what_the_build_context_holds(name: str) -> None:
    for op, args in instructions(name):
        if op == "COPY" and not args.startswith("--from"):
            sources = shlex.split(args)[:-1]
            assert set(sources) <= CONTEXT, sources
    assert "make_bundle.py" in (REPO / "images" / "build.py").read_text()


@pytest.mark.parametrize("name", ["supervisor", "operator"])
def test_final_stage_runs_as_a_numeric_non_root_user(name: str) -> None:
    users = [a for op, a in final_stage(name) if op == "USER"]
    assert users, "no USER in the final stage"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0 and (not gid or gid.isdigit())
    after = final_stage(name)[[op for op, _ in final_stage(name)].index("USER"):]
    assert not [a for op, a in after if op == "RUN"]


def test_supervisor_default_command_and_config_when_flags_replace_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """``docker run IMAGE --log-format json`` replaces CMD: $PROGSET_CONFIG (set by the image) keeps
    the config; an explicit -f replaces it (several -f are one configuration, so it must not add)."""
    from progset_supervisor.__main__ import parse_args

    (entrypoint,) = [json.loads(a) for op, a in final_stage("supervisor") if op == "ENTRYPOINT"]
    (command,) = [json.loads(a) for op, a in final_stage("supervisor") if op == "CMD"]
    assert entrypoint == ["progset-supervisor"] and entrypoint[0] in PYPROJECT["project"]["scripts"]
    envs = " ".join(a for op, a in final_stage("supervisor") if op == "ENV")
    (config,) = re.findall(r"PROGSET_CONFIG=(\S+)", envs)
    monkeypatch.setenv("PROGSET_CONFIG", config)
    default = parse_args(command)
    assert default.config == ["/etc/progset"] and default.sockets == [
        "/var/run/progset/master.sock,mode,660,level,operator"]
    assert parse_args(["--log-format", "json"]).config == ["/etc/progset"]
    assert parse_args(["-f", "/other.cfg"]).config == ["/other.cfg"]
    assert parse_args(["-f/other.cfg", "-c"]).config == ["/other.cfg"]
    monkeypatch.delenv("PROGSET_CONFIG")
    with pytest.raises(SystemExit):
        parse_args(["--log-format", "json"])  # outside the image -f stays required


def test_operator_entrypoint_and_default_command() -> None:
    from progset_operator.__main__ import options_from, parser

    (entrypoint,) = [json.loads(a) for op, a in final_stage("operator") if op == "ENTRYPOINT"]
    assert entrypoint == ["progset-operator"] and entrypoint[0] in PYPROJECT["project"]["scripts"]
    (command,) = [json.loads(a) for op, a in final_stage("operator") if op == "CMD"]
    options = options_from(parser().parse_args(command))
    assert options.standalone and options.liveness == "http://0.0.0.0:8080/healthz"


@pytest.mark.parametrize("name", ["supervisor", "operator"])
def test_only_the_needed_dependencies_pinned(name: str) -> None:
    wanted = {requirement_name(r) for r in PYPROJECT["project"]["dependencies"]}
    for extra in EXTRAS[name]:
        wanted |= {requirement_name(r) for r in PYPROJECT["project"]["optional-dependencies"][extra]}
    assert set(pins(f"{name}.txt")) == wanted
    assert all(re.fullmatch(r"\d+(\.\d+)+", version) for version in pins(f"{name}.txt").values())
    runs = " ".join(a for op, a in instructions(name) if op == "RUN")
    assert f"-r /requirements/{name}.txt" in runs


def test_supervisor_image_has_a_socket_directory_for_any_uid_and_no_pip() -> None:
    runs = " ".join(a for op, a in final_stage("supervisor") if op == "RUN")
    assert "install -d -m 1777 /run/progset" in runs
    envs = " ".join(a for op, a in final_stage("supervisor") if op == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in envs and "HOME=/tmp" in envs
    # setuptools' distutils-precedence.pth would run at every start: pip runs from its wheel instead.
    assert any("venv --without-pip /opt/progset" in a for op, a in instructions("supervisor") if op == "RUN")


def test_chart_runs_the_operator_as_the_images_user() -> None:
    user = [a for op, a in final_stage("operator") if op == "USER"][-1]
    context = one(objects(), "Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert f"{context['runAsUser']}:{context['runAsGroup']}" == user


def test_chart_names_the_operator_after_its_pod() -> None:
    """kopf's identity from the downward API (the operator also starts without it: tests/containers)."""
    (container,) = one(objects(), "Deployment")["spec"]["template"]["spec"]["containers"]
    assert {"name": "POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in container["env"]
