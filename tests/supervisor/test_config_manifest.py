"""YAML loaders (ProgramSet, RenderedProgramSet, bare programs:) and directory loading as the kubelet mounts it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
    assert text.startswith("# Rendered by progset-operator; edits are overwritten.\napiVersion: progset.io/v1alpha1\n"
                           "kind: RenderedProgramSet\nmetadata:\n  namespace: shop\n  name: web\n  generation: 4\n"
                           f"hash: {config.hash}\nspec:\n")
    again = load_yaml_text(text, "programs.yaml")
    assert again.programs == config.programs
    assert again.source == Source("shop", "web", 4)
    assert again.hash == config.hash
    assert render_document(again) == text


def test_render_document_with_explicit_source():
    config = config_from_spec({"programs": [{"name": "a", "command": ["x"]}]})
    text = render_document(config, Source("ns", "other", 9))
    assert load_yaml_text(text, "r.yaml").source == Source("ns", "other", 9)


def test_rendered_hash_mismatch_is_detected():
    text = render_document(load_yaml_text(PROGRAMSET, "p.yaml")).replace("- /bin/worker", "- /bin/evil")
    lines = text.splitlines()
    hash_line = next(i for i, line in enumerate(lines, 1) if line.startswith("hash: "))
    stated = lines[hash_line - 1].removeprefix("hash: ")
    assert problems(text, "programs.yaml") == [
        f"programs.yaml:{hash_line}: content hash {stated} does not match the spec; the rendered file was edited or "
        "truncated: re-render it with progset-operator"]


def test_rendered_without_hash_is_accepted():
    text = render_document(load_yaml_text(PROGRAMSET, "p.yaml"))
    text = "\n".join(line for line in text.splitlines() if not line.startswith("hash: "))
    assert [p.name for p in load_yaml_text(text, "r.yaml").programs] == ["api", "worker"]


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
    with pytest.raises(ConfigError) as info:
        load_path(tmp_path)
    assert [str(p) for p in info.value.problems] == [
        f"{tmp_path / 'app.yaml'} (program 'app'): 'app' depends on unknown program 'db'"]


def test_duplicate_program_across_files(tmp_path):
    (tmp_path / "a.yaml").write_text("programs:\n  - name: web\n    command: [x]\n")
    (tmp_path / "b.cfg").write_text("program web\n  command y\n")
    with pytest.raises(ConfigError) as info:
        load_path(tmp_path)
    assert [str(p) for p in info.value.problems] == [
        f"{tmp_path / 'b.cfg'}: duplicate program name 'web' (also defined in {tmp_path / 'a.yaml'})"]


def test_problems_of_every_file_are_reported(tmp_path):
    (tmp_path / "a.yaml").write_text("programs:\n  - name: a\n    command: [x]\n    restart: no\n")
    (tmp_path / "b.cfg").write_text("program b\n  command y\n  bogus\n")
    with pytest.raises(ConfigError) as info:
        load_path(tmp_path)
    assert [str(p) for p in info.value.problems] == [
        f"{tmp_path / 'a.yaml'}:4 (spec.programs[0].restart): must be one of always, on-failure, never; got False",
        f"{tmp_path / 'b.cfg'}:3: unknown keyword 'bogus' in 'program' section; known keywords: command, user, group, "
        "option, restart, on-reload, reload-signal, stop-signal, stop-timeout, backoff-initial, backoff-max, "
        "backoff-reset, env, directory, umask, critical, depends-on",
    ]


def test_hidden_files_and_unknown_extensions_are_ignored(tmp_path):
    (tmp_path / ".hidden.yaml").write_text("not: [valid")
    (tmp_path / "README.md").write_text("# notes")
    (tmp_path / "p.yml").write_text("programs:\n  - name: a\n    command: [x]\n")
    assert [p.name for p in load_path(tmp_path).programs] == ["a"]


def test_empty_directory(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_path(tmp_path)
    assert str(info.value) == f"{tmp_path}: directory holds no config file (*.yaml, *.yml, *.json, *.cfg, *.conf)"


def test_missing_path(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_path(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: no such file or directory"


def test_non_utf8_file(tmp_path):
    path = tmp_path / "p.cfg"
    path.write_bytes(b"program a\n  command \xff\n")
    with pytest.raises(ConfigError) as info:
        load_path(path)
    assert str(info.value) == f"{path}: not UTF-8 text (byte 20); is this the right file?"
