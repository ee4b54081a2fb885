"""YAML loaders (ProgramSet, RenderedProgramSet, bare programs:) and directory loading as the kubelet mounts it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from progset_supervisor.config import (
    ConfigError,
    Source,
    config_from_spec,
    load_path,
    load_text,
    load_yaml_text,
    render_document,
)

PROGRAMSET = """\
apiVersion: progset.io/v1alpha1
kind: ProgramSet
metadata:
  name: web
  namespace: shop
  generation: 4
spec:
  programs:
    - name: api
      command: ["/bin/api", "--port", "8080"]
      env:
        - name: MODE
          value: prod
    - name: worker
      command: [/bin/worker]
      restart: always
      dependsOn: [api]
"""


def problems(text: str, filename: str = "p.yaml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_yaml_text(text, filename)
    return [str(p) for p in info.value.problems]


def path_problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_path(path)
    return [str(p) for p in info.value.problems]


def test_programset_manifest():
    config = load_yaml_text(PROGRAMSET, "p.yaml")
    assert config.origin == "p.yaml"
    assert config.source == Source("shop", "web", 4)
    assert [(p.name, p.command, p.restart, p.depends_on) for p in config.programs] == [
        ("api", ("/bin/api", "--port", "8080"), "on-failure", ()),
        ("worker", ("/bin/worker",), "always", ("api",)),
    ]
    assert [(e.name, e.value) for e in config.programs[0].env] == [("MODE", "prod")]


def test_other_documents_are_skipped():
    text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n---\n" + PROGRAMSET + "---\n"
    assert [p.name for p in load_yaml_text(text, "all.yaml").programs] == ["api", "worker"]


def test_bare_programs_file():
    config = load_yaml_text("programs:\n  - name: a\n    command: [x]\n", "bare.yaml")
    assert (config.source, [p.name for p in config.programs]) == (Source(), ["a"])


def test_json_is_yaml():
    config = load_text('{"programs": [{"name": "a", "command": ["x"]}]}', "p.json")
    assert config.programs[0].command == ("x",)


@pytest.mark.parametrize(("text", "expected"), [
    (PROGRAMSET.replace("restart: always", "restart: sometimes"),
     "p.yaml:16 (spec.programs[1].restart): must be one of always, on-failure, never; got 'sometimes'"),
    (PROGRAMSET.replace("dependsOn: [api]", "dependsOn: [apj]"),
     "p.yaml:17 (spec.programs[1].dependsOn[0]): 'worker' depends on unknown program 'apj'; did you mean 'api'?"),
    (PROGRAMSET.replace("          value: prod", "          valu: prod"),
     "p.yaml:13 (spec.programs[0].env[0].valu): unknown field 'valu'; did you mean 'value'?"),
    (PROGRAMSET.replace('      command: ["/bin/api", "--port", "8080"]\n', ""),
     "p.yaml:9 (spec.programs[0]): missing 'command' (an argv list such as [\"/usr/bin/app\", \"--flag\"])"),
    (PROGRAMSET.replace("apiVersion: progset.io/v1alpha1", "apiVersion: progset.io/v2"),
     "p.yaml:1: unsupported apiVersion 'progset.io/v2'; this supervisor reads progset.io/v1alpha1"),
    ("apiVersion: progset.io/v1alpha1\nkind: ProgramSet\nmetadata: [x]\nspec: {}\n",
     "p.yaml:3: metadata must be a mapping"),
    ("apiVersion: progset.io/v1alpha1\nkind: ProgramSet\nmetadata: {name: x}\n", "p.yaml:1: ProgramSet has no 'spec'"),
    (PROGRAMSET + "---\n" + PROGRAMSET,
     "p.yaml:19: more than one ProgramSet in one file; put each in its own file or merge their programs"),
    ("apiVersion: v1\nkind: ConfigMap\n", "p.yaml: no ProgramSet found: expected a document with 'apiVersion: "
     "progset.io/v1alpha1' and 'kind: ProgramSet' (or a top-level 'programs:' list); found kinds ['ConfigMap']"),
    ("", "p.yaml: no ProgramSet found: expected a document with 'apiVersion: progset.io/v1alpha1' and 'kind: "
         "ProgramSet' (or a top-level 'programs:' list); found kinds none"),
    ("programs:\n  - name: a\n    command: [x\n",
     "p.yaml:4: YAML syntax error: did not find expected ',' or ']'"),
])
def test_errors_name_file_and_line(text, expected):
    assert problems(text) == [expected]


# -- rendered config -------------------------------------------------------------------------------


def test_render_document_round_trip():
    config = load_yaml_text(PROGRAMSET, "p.yaml")
    text = render_document(config)
    lines = text.splitlines()
    assert lines[:7] == ["{", '  "apiVersion": "progset.io/v1alpha1",', '  "kind": "RenderedProgramSet",',
                         '  "metadata": {"namespace": "shop", "name": "web", "generation": 4},',
                         f'  "hash": "{config.hash}",', '  "spec": {', '    "programs": [']
    # one program per line, so a diff of two renderings shows one line per changed program
    assert [json.loads(line.strip().rstrip(","))["name"] for line in lines[7:9]] == ["api", "worker"]
    assert json.loads(text) == yaml.safe_load(text)  # JSON, and the same document read as YAML
    again = load_yaml_text(text, "programs.json")
    assert again.programs == config.programs
    assert again.source == Source("shop", "web", 4)
    assert again.hash == config.hash
    assert render_document(again) == text


def test_render_document_with_explicit_source():
    config = config_from_spec({"programs": [{"name": "a", "command": ["x"]}]})
    text = render_document(config, Source("ns", "other", 9))
    assert load_yaml_text(text, "r.yaml").source == Source("ns", "other", 9)


def test_rendered_hash_mismatch_is_detected():
    """Read as JSON first; the error is found again by the YAML reading, which knows the line."""
    text = render_document(load_yaml_text(PROGRAMSET, "p.yaml")).replace('"/bin/worker"', '"/bin/evil"')
    assert '"/bin/evil"' in text
    lines = text.splitlines()
    hash_line = next(i for i, line in enumerate(lines, 1) if line.startswith('  "hash": '))
    stated = json.loads("{" + lines[hash_line - 1].rstrip(",") + "}")["hash"]
    assert problems(text, "programs.json") == [
        f"programs.json:{hash_line}: content hash {stated} does not match the spec; the rendered file was edited or "
        "truncated: re-render it with progset-operator"]


def test_rendered_without_hash_is_accepted():
    text = render_document(load_yaml_text(PROGRAMSET, "p.yaml"))
    text = "\n".join(line for line in text.splitlines() if not line.startswith('  "hash": '))
    assert [p.name for p in load_yaml_text(text, "r.json").programs] == ["api", "worker"]


# -- files and directories -------------------------------------------------------------------------

APP_YAML = "programs:\n  - name: app\n    command: [/bin/app]\n    dependsOn: [db]\n"
DB_CFG = "program db\n    command /bin/db\n"


def kubelet_layout(root: Path, files: dict[str, str]) -> Path:
    """What the kubelet makes of a ConfigMap volume: a timestamped dir, '..data' -> it, key -> '..data/key'."""
    stamp = root / "..2026_11_21_21_40_00.123456789"
    stamp.mkdir(parents=True)
    for name, text in files.items():
        (stamp / name).write_text(text)
    os.symlink(stamp.name, root / "..data")
    for name in files:
        os.symlink(f"..data/{name}", root / name)
    return root


def test_kubelet_layout_with_one_key(tmp_path):
    root = kubelet_layout(tmp_path / "config", {"programs.yaml": render_document(load_yaml_text(PROGRAMSET, "p"))})
    config = load_path(root)
    assert config.origin == str(root / "programs.yaml")
    assert [p.name for p in config.programs] == ["api", "worker"]
    assert config.source == Source("shop", "web", 4)


def test_kubelet_layout_after_an_update(tmp_path):
    root = kubelet_layout(tmp_path / "config", {"programs.yaml": "programs:\n  - name: old\n    command: [x]\n"})
    newer = root / "..2026_11_21_21_45_00.000000001"
    newer.mkdir()
    (newer / "programs.yaml").write_text("programs:\n  - name: new\n    command: [x]\n")
    os.symlink(newer.name, root / "..data_tmp")
    os.replace(root / "..data_tmp", root / "..data")  # the kubelet's atomic swap
    assert [p.name for p in load_path(root).programs] == ["new"]


def test_directory_merges_files_in_name_order_across_syntaxes(tmp_path):
    root = kubelet_layout(tmp_path / "config", {"b-app.yaml": APP_YAML, "a-db.cfg": DB_CFG, "notes.txt": "ignored"})
    config = load_path(root)
    assert config.origin == str(root)
    assert [p.name for p in config.programs] == ["db", "app"]
    assert [p.name for p in config.start_order()] == ["db", "app"]


def test_depends_on_may_cross_files(tmp_path):
    (tmp_path / "app.yaml").write_text(APP_YAML)
    (tmp_path / "db.cfg").write_text(DB_CFG)
    assert [p.name for p in load_path(tmp_path).start_order()] == ["db", "app"]


def test_unknown_dependency_across_files_names_the_file(tmp_path):
    (tmp_path / "app.yaml").write_text(APP_YAML)
    (tmp_path / "other.cfg").write_text("program other\n  command x\n")
    assert path_problems(tmp_path) == [
        f"{tmp_path / 'app.yaml'} (program 'app'): 'app' depends on unknown program 'db'"]


def test_duplicate_program_across_files(tmp_path):
    (tmp_path / "a.yaml").write_text("programs:\n  - name: web\n    command: [x]\n")
    (tmp_path / "b.cfg").write_text("program web\n  command y\n")
    assert path_problems(tmp_path) == [
        f"{tmp_path / 'b.cfg'}: duplicate program name 'web' (also defined in {tmp_path / 'a.yaml'})"]


def test_problems_of_every_file_are_reported(tmp_path):
    (tmp_path / "a.yaml").write_text("programs:\n  - name: a\n    command: [x]\n    restart: no\n")
    (tmp_path / "b.cfg").write_text("program b\n  command y\n  bogus\n")
    assert path_problems(tmp_path) == [
        f"{tmp_path / 'a.yaml'}:4 (spec.programs[0].restart): must be one of always, on-failure, never; got False",
        f"{tmp_path / 'b.cfg'}:3: unknown keyword 'bogus' in 'program' section; known keywords: command, user, group, "
        "option, restart, on-reload, reload-signal, stop-signal, stop-timeout, backoff-initial, backoff-max, "
        "backoff-reset, env, directory, umask, critical, depends-on, runtime-socket, output, depends-on-condition, "
        "notify, "
        "notify-access, watchdog, readiness-|liveness-|startup- http|tcp|exec|options",
    ]


def test_hidden_files_and_unknown_extensions_are_ignored(tmp_path):
    (tmp_path / ".hidden.yaml").write_text("not: [valid")
    (tmp_path / "README.md").write_text("# notes")
    (tmp_path / "p.yml").write_text("programs:\n  - name: a\n    command: [x]\n")
    assert [p.name for p in load_path(tmp_path).programs] == ["a"]


def test_empty_directory(tmp_path):
    assert path_problems(tmp_path) == [
        f"{tmp_path}: directory holds no config file (*.cfg, *.yaml, *.yml, *.json)"]


def test_missing_path(tmp_path):
    assert path_problems(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}: no such file or directory"]


def test_non_utf8_file(tmp_path):
    path = tmp_path / "p.cfg"
    path.write_bytes(b"program a\n  command \xff\n")
    assert path_problems(path) == [f"{path}: not UTF-8 text (byte 20); is this the right file?"]


# -- JSON documents ----------------------------------------------------------------------------------


def test_json_config_errors_still_name_the_line():
    """JSON is read with the json module (no lines); an invalid one is read again as YAML for them."""
    text = json.dumps({"programs": [{"name": "ok", "command": ["true"]}, {"name": "bad", "command": "sleep 1"}]},
                      indent=1)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if '"sleep 1"' in row)
    (problem,) = problems(text, "programs.json")
    assert problem.startswith(f"programs.json:{line} (spec.programs[1].command): command must be a list")


def test_json_has_json_semantics_and_reads_what_pyyaml_cannot():
    # 1e3 is a number in JSON (a string in YAML 1.1); a surrogate-pair escape is JSON that PyYAML refuses
    text = json.dumps({"programs": [{"name": "a", "command": ["x"], "stopTimeoutSeconds": 1000,
                                     "env": [{"name": "FACE", "value": "\U0001F600"}]}]}, ensure_ascii=True)
    text = text.replace("1000", "1e3")
    (program,) = load_yaml_text(text, "p.yaml").programs
    assert program.stop_timeout_seconds == 1000.0 and program.env[0].value == "\U0001F600"
    # ... and when such a file is invalid, the JSON reading's problems are reported (with the path)
    bad = text.replace('"command": ["x"]', '"command": "x"')
    assert problems(bad, "p.json") == ["p.json (spec.programs[0].command): command must be a list of arguments, "
                                       "not a shell string; write [\"sh\", \"-c\", 'x'] to use a shell"]


def test_invalid_json_file_is_a_json_error_and_flow_yaml_still_loads():
    assert problems('{\n  "programs": [\n    {"name": "a",}\n  ]\n}\n', "p.json") == [
        "p.json:3: JSON syntax error: Expecting property name enclosed in double quotes (column 18)"]
    assert problems("programs: []\n", "p.json") == ["p.json: JSON syntax error: expected an object ({...})"]
    # a .yaml file in YAML flow style that is not JSON goes to PyYAML
    assert [p.name for p in load_yaml_text("{programs: [{name: a, command: [x]}]}", "p.yaml").programs] == ["a"]


def test_loading_a_rendered_json_document_does_not_import_pyyaml(tmp_path: Path):
    """What a pod loads at start-up; PyYAML's import alone is ~20 ms, so it must stay out of it."""
    import subprocess
    import sys

    config = load_yaml_text(PROGRAMSET, "p.yaml")
    (tmp_path / "programs.json").write_text(render_document(config))
    code = ("import sys; from progset_supervisor.config import load_path; "
            f"c = load_path({str(tmp_path)!r}); print(len(c.programs), 'yaml' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["2", "False"]
