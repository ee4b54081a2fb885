"""config_from_spec: defaults, every validation error, the content hash, and start order."""

from __future__ import annotations

import signal

import pytest

from progset_supervisor.config import Backoff, ConfigError, EnvVar, Program, Source, config_from_spec, parse_signal
from progset_supervisor.config.model import MAX_ARGS, MAX_PROGRAMS, path_text, spec_hash


def program(**fields) -> dict:
    return {"name": "a", "command": ["x"], **fields}


def problems(spec: object, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config_from_spec(spec, **kwargs)
    return [str(p) for p in info.value.problems]


# -- defaults and the canonical form ---------------------------------------------------------------


def test_minimal_program_gets_every_default():
    config = config_from_spec({"programs": [program()]}, origin="o.yaml")
    assert config.programs == (Program(
        name="a", command=("x",), env=(), working_dir=None, umask=None, user=None, group=None, restart="on-failure",
        backoff=Backoff(0.5, 30.0, 60.0), stop_signal="SIGTERM", stop_timeout_seconds=10.0, on_reload="restart",
        reload_signal=None, critical=False, depends_on=()),)
    assert (config.origin, config.ready_programs, config.config_map_name, config.source) == (
        "o.yaml", None, None, Source())
    assert config.programs[0].effective_reload_signal == "SIGHUP"


def test_to_spec_is_fully_defaulted():
    assert config_from_spec({"programs": [program()]}).to_spec() == {"programs": [{
        "name": "a", "command": ["x"], "env": [], "restart": "on-failure",
        "backoff": {"initialSeconds": 0.5, "maxSeconds": 30.0, "resetAfterSeconds": 60.0}, "stopSignal": "SIGTERM",
        "stopTimeoutSeconds": 10.0, "onReload": "restart", "critical": False, "dependsOn": []}]}


def test_every_field_is_read_and_normalised():
    spec = {"programs": [program(
        command=["sleep", "10"], env=[{"name": "A", "value": "1"}, {"name": "B", "value": None}, {"name": "C"}],
        workingDir="/srv", umask="022", user=1000, group="staff", restart="always",
        backoff={"initialSeconds": 1, "maxSeconds": 8}, stopSignal="int", stopTimeoutSeconds=0,
        onReload="signal", reloadSignal=10, critical=True, dependsOn=[])],
        "readyPrograms": ["a"], "configMapName": "web-programs"}
    config = config_from_spec(spec)
    assert config.to_spec() == {"programs": [{
        "name": "a", "command": ["sleep", "10"],
        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": ""}, {"name": "C", "value": ""}],
        "restart": "always", "backoff": {"initialSeconds": 1.0, "maxSeconds": 8.0, "resetAfterSeconds": 60.0},
        "stopSignal": "SIGINT", "stopTimeoutSeconds": 0.0, "onReload": "signal", "critical": True, "dependsOn": [],
        "workingDir": "/srv", "umask": "0022", "user": "1000", "group": "staff", "reloadSignal": "SIGUSR1"}],
        "readyPrograms": ["a"], "configMapName": "web-programs"}
    assert config.programs[0].umask == 0o22


def test_env_mapping_is_refused_with_the_list_form():
    """A pod spec's env is a list; a mapping here is a mix-up (issue 15.6), told with the fix."""
    with pytest.raises(ConfigError) as caught:
        config_from_spec({"programs": [program(env={"A": "1", "B": "2"})]})
    assert str(caught.value) == ("spec.programs[0].env: env must be a list of {name, value} entries (as in a pod "
                                 "spec), not a mapping; write '- {name: NAME, value: \"VALUE\"}' for each variable")


@pytest.mark.parametrize(("field", "value", "where", "shown"), [
    ("command", ["sleep", 10], "command[1]", "10"), ("env", [{"name": "A", "value": 8080}], "env[0].value", "8080"),
    ("workingDir", 7, "workingDir", "7"), ("command", ["sleep", 1.5], "command[1]", "1.5")])
def test_numbers_where_text_belongs_are_refused(field, value, where, shown):
    """YAML turns unquoted 8080 or 010 into numbers; the API server refuses them in a pod spec, so do we."""
    with pytest.raises(ConfigError) as caught:
        config_from_spec({"programs": [program(**{field: value})]})
    assert str(caught.value) == f"spec.programs[0].{where}: expected a string, got {shown}; quote it: \"{shown}\""


def test_numeric_user_and_group_stay_numbers():
    """user/group are int-or-string in the CRD: a numeric id is meant, not a mix-up."""
    config = config_from_spec({"programs": [program(user=1000, group=1000)]})
    assert (config.programs[0].user, config.programs[0].group) == ("1000", "1000")


@pytest.mark.parametrize(("value", "mode"), [("0022", 0o22), ("022", 0o22), ("0o27", 0o27), ("7", 0o7), ("00022", 0o22),
                                             ("0777", 0o777)])
def test_umask_forms(value, mode):
    assert config_from_spec({"programs": [program(umask=value)]}).programs[0].umask == mode


def test_a_spec_without_its_programs_list_is_refused_as_the_crd_refuses_it():
    """Defect 5 of issue 17: examples/invalid/missing-programs.yaml passed ``-c``."""
    with pytest.raises(ConfigError) as info:
        config_from_spec({})
    assert [str(p) for p in info.value.problems] == [
        "spec.programs: required: the list of programs (write 'programs: []' for none)"]
    assert config_from_spec({"programs": []}).programs == ()


@pytest.mark.parametrize(("value", "name"), [
    ("SIGTERM", "SIGTERM"), ("TERM", "SIGTERM"), ("term", "SIGTERM"), (" hup ", "SIGHUP"), (15, "SIGTERM"),
    ("9", "SIGKILL"),
])
def test_parse_signal(value, name):
    assert parse_signal(value) == signal.Signals[name]


@pytest.mark.parametrize(("value", "message"), [
    ("SIGFOO", "unknown signal 'SIGFOO'; use a name such as SIGTERM, SIGHUP, SIGUSR1"),
    (999, "999 is not a signal number"),
    (True, "expected a signal name such as SIGTERM, got True"),
    (1.5, "expected a signal name such as SIGTERM, got 1.5"),
])
def test_parse_signal_rejects(value, message):
    with pytest.raises(ValueError) as info:
        parse_signal(value)
    assert str(info.value) == message


def test_definition_ignores_fields_that_only_steer_the_supervisor():
    base = Program(name="a", command=("x",))
    steering = Program(name="a", command=("x",), restart="never", on_reload="keep", critical=True,
                       stop_signal="SIGINT", depends_on=("b",), backoff=Backoff(1, 2, 3))
    assert base.definition() == steering.definition()
    assert base.definition() != Program(name="a", command=("x", "-v")).definition()
    assert base.definition() != Program(name="a", command=("x",), env=(EnvVar("A", "1"),)).definition()
    assert base.definition() != Program(name="a", command=("x",), user="1000").definition()


def test_source_and_path_text():
    assert str(Source("ns", "web", 3)) == "ns/web@3"
    assert str(Source()) == ""
    assert path_text(("programs", 1, "env", 0, "name")) == "spec.programs[1].env[0].name"
    assert path_text(()) == "spec"


# -- every validation error ------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "expected"), [
    ([], "spec: spec must be a mapping with a 'programs' list"),
    ({"programs": [], "program": []}, "spec.program: unknown field 'program'; did you mean 'programs'?"),
    ({"programs": "a"}, "spec.programs: programs must be a list"),
    ({"programs": ["a"]}, "spec.programs[0]: each program must be a mapping with at least name and command, got 'a'"),
    ({"programs": [{"command": ["x"]}]}, "spec.programs[0]: missing 'name'"),
    ({"programs": [{"name": "a"}]},
     "spec.programs[0]: missing 'command' (an argv list such as [\"/usr/bin/app\", \"--flag\"])"),
    ({"programs": [program(stop_signal="TERM")]},
     "spec.programs[0].stop_signal: unknown field 'stop_signal'; did you mean 'stopSignal'?"),
    ({"programs": [program(frob=1)]},
     "spec.programs[0].frob: unknown field 'frob'; known fields: backoff, command, critical, dependsOn, "
     "dependsOnCondition, env, group, liveness, name, notify, notifyAccess, onReload, output, readiness, "
     "reloadSignal, restart, runtimeSocket, startup, stopSignal, stopTimeoutSeconds, umask, user, watchdogSeconds, "
     "workingDir"),
    ({"programs": [program(name="Web")]},
     "spec.programs[0].name: invalid program name 'Web': use lower-case letters, digits and '-', starting and ending "
     "with a letter or digit, at most 63 characters (e.g. 'web')"),
    ({"programs": [program(name="spoe_agent")]},  # an HAProxy name: the message proposes its Kubernetes form
     "spec.programs[0].name: invalid program name 'spoe_agent': use lower-case letters, digits and '-', starting and "
     "ending with a letter or digit, at most 63 characters (e.g. 'spoe-agent')"),
    ({"programs": [program(name="a" * 64)]}, f"spec.programs[0].name: invalid program name '{'a' * 64}': use "
     "lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters "
     f"(e.g. '{'a' * 63}')"),
    ({"programs": [program(name=7)]}, "spec.programs[0].name: invalid program name 7: use lower-case letters, digits "
     "and '-', starting and ending with a letter or digit, at most 63 characters"),
    ({"programs": [program(command="sleep 1")]}, "spec.programs[0].command: command must be a list of arguments, not "
     "a shell string; write [\"sh\", \"-c\", 'sleep 1'] to use a shell"),
    ({"programs": [program(command=[])]}, "spec.programs[0].command: command must be a non-empty list of arguments"),
    ({"programs": [program(command=["x"] * (MAX_ARGS + 1))]},
     f"spec.programs[0].command: too many arguments ({MAX_ARGS + 1} > {MAX_ARGS})"),
    ({"programs": [program(command=["x", None])]}, "spec.programs[0].command[1]: expected a string, got None"),
    ({"programs": [program(command=["", "y"])]}, "spec.programs[0].command[0]: must not be empty"),
    ({"programs": [program(env="A=1")]}, "spec.programs[0].env: env must be a list of {name, value}"),
    ({"programs": [program(env=[{"value": "1"}])]}, "spec.programs[0].env[0]: each env entry needs 'name' and 'value'"),
    ({"programs": [program(env=[{"name": "A", "valeu": "1"}])]},
     "spec.programs[0].env[0].valeu: unknown field 'valeu'; did you mean 'value'?"),
    ({"programs": [program(env=[{"name": "A-B", "value": "1"}])]},
     "spec.programs[0].env[0].name: invalid environment variable name 'A-B'"),
    ({"programs": [program(env=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}])]},
     "spec.programs[0].env[1].name: environment variable 'A' is set twice"),
    ({"programs": [program(env=[{"name": "A", "value": ["x"]}])]},
     "spec.programs[0].env[0].value: expected a string, got ['x']"),
    ({"programs": [program(workingDir="")]}, "spec.programs[0].workingDir: must not be empty"),
    ({"programs": [program(umask="0800")]}, "spec.programs[0].umask: expected an octal string such as \"0022\", "
                                             "got '0800'"),
    ({"programs": [program(umask=True)]},
     "spec.programs[0].umask: expected an octal string such as \"0022\", got True"),
    ({"programs": [program(umask="1000")]},
     "spec.programs[0].umask: expected an octal string such as \"0022\", got '1000'"),
    ({"programs": [program(umask=77)]}, "spec.programs[0].umask: expected an octal string such as \"0077\", got "
     "the number 77: YAML reads an unquoted umask as a number (77 is decimal, 0077 is 63); quote it"),
    ({"programs": [program(user=["root"])]}, "spec.programs[0].user: expected a string, got ['root']"),
    ({"programs": [program(group=True)]}, "spec.programs[0].group: expected a string, got True"),
    ({"programs": [program(restart="sometimes")]},
     "spec.programs[0].restart: must be one of always, on-failure, never; got 'sometimes'"),
    ({"programs": [program(backoff=5)]}, "spec.programs[0].backoff: backoff must be a mapping of initialSeconds, "
                                         "maxSeconds, resetAfterSeconds"),
    ({"programs": [program(backoff={"initial": 1})]},
     "spec.programs[0].backoff.initial: unknown field 'initial'; did you mean 'initialSeconds'?"),
    ({"programs": [program(backoff={"initialSeconds": 0})]},
     "spec.programs[0].backoff.initialSeconds: must be greater than 0, got 0"),
    ({"programs": [program(backoff={"resetAfterSeconds": "1m"})]},
     "spec.programs[0].backoff.resetAfterSeconds: expected a number of seconds, got '1m'"),
    ({"programs": [program(backoff={"initialSeconds": 60})]},
     "spec.programs[0].backoff.maxSeconds: maxSeconds (30) must be at least initialSeconds (60)"),
    ({"programs": [program(stopTimeoutSeconds=-1)]}, "spec.programs[0].stopTimeoutSeconds: must be at least 0, got -1"),
    ({"programs": [program(stopTimeoutSeconds=True)]},
     "spec.programs[0].stopTimeoutSeconds: expected a number of seconds, got True"),
    ({"programs": [program(stopTimeoutSeconds=float("nan"))]},
     "spec.programs[0].stopTimeoutSeconds: expected a number of seconds, got nan"),
    ({"programs": [program(backoff={"maxSeconds": float("inf")})]},
     "spec.programs[0].backoff.maxSeconds: expected a number of seconds, got inf"),
    ({"programs": [program(stopSignal="SIGFOO")]},
     "spec.programs[0].stopSignal: unknown signal 'SIGFOO'; use a name such as SIGTERM, SIGHUP, SIGUSR1"),
    ({"programs": [program(onReload="later")]},
     "spec.programs[0].onReload: must be one of restart, keep, signal; got 'later'"),
    ({"programs": [program(reloadSignal="SIGHUP")]}, "spec.programs[0].reloadSignal: reloadSignal only applies with "
                                                     "onReload: signal; remove it or set onReload: signal"),
    ({"programs": [program(critical="yes")]}, "spec.programs[0].critical: expected true or false, got 'yes'"),
    ({"programs": [program(dependsOn="b")]}, "spec.programs[0].dependsOn: dependsOn must be a list of program names"),
    ({"programs": [program(dependsOn=[1])]}, "spec.programs[0].dependsOn[0]: expected a program name, got 1"),
    ({"programs": [program(dependsOn=["a"])]}, "spec.programs[0].dependsOn[0]: program 'a' cannot depend on itself"),
    ({"programs": [program(name="web"), program(name="api", dependsOn=["wbe"])]},
     "spec.programs[1].dependsOn[0]: 'api' depends on unknown program 'wbe'; did you mean 'web'?"),
    ({"programs": [program(), program(command=["y"])]},
     "spec.programs[1].name: duplicate program name 'a' (first defined at spec.programs[0])"),
    ({"programs": [program()], "readyPrograms": "a"},
     "spec.readyPrograms: readyPrograms must be a list of program names"),
    ({"programs": [program()], "readyPrograms": ["b"]},
     "spec.readyPrograms[0]: readyPrograms names unknown program 'b'"),
    ({"programs": [program()], "readyPrograms": [{"a": 1}]},
     "spec.readyPrograms[0]: expected a program name, got {'a': 1}"),
    ({"programs": [program()], "configMapName": "Web_Programs"},
     "spec.configMapName: invalid ConfigMap name 'Web_Programs'"),
])
def test_validation_errors(spec, expected):
    assert problems(spec) == [expected]


def test_too_many_programs():
    spec = {"programs": [program(name=f"p{i}") for i in range(MAX_PROGRAMS + 1)]}
    assert problems(spec) == [f"spec.programs: too many programs ({MAX_PROGRAMS + 1} > {MAX_PROGRAMS})"]


def test_every_problem_is_collected():
    spec = {"programs": [program(restart="x", stopSignal="NOPE"), {"name": "B"}], "extra": 1}
    assert problems(spec) == [
        "spec.extra: unknown field 'extra'; known fields: configMapName, programs, readyPrograms",
        "spec.programs[0].restart: must be one of always, on-failure, never; got 'x'",
        "spec.programs[0].stopSignal: unknown signal 'NOPE'; use a name such as SIGTERM, SIGHUP, SIGUSR1",
        "spec.programs[1].name: invalid program name 'B': use lower-case letters, digits and '-', starting and ending "
        "with a letter or digit, at most 63 characters (e.g. 'b')",
        "spec.programs[1]: missing 'command' (an argv list such as [\"/usr/bin/app\", \"--flag\"])",
    ]


def test_locate_callback_names_the_location():
    def locate(path):
        return f"f.yaml:{len(path)}"
    assert problems({"programs": [program(restart="x")]}, locate=locate) == [
        "f.yaml:3: must be one of always, on-failure, never; got 'x'"]


def test_check_references_false_leaves_cross_references_to_the_merge():
    spec = {"programs": [program(dependsOn=["elsewhere"])], "readyPrograms": ["elsewhere"]}
    config = config_from_spec(spec, check_references=False)
    assert config.programs[0].depends_on == ("elsewhere",)
    assert config.ready_programs == ("elsewhere",)
    assert problems({"programs": [program()], "readyPrograms": [3]}, check_references=False) == [
        "spec.readyPrograms[0]: expected a program name, got 3"]


# -- dependsOn cycles and start order --------------------------------------------------------------


def chain(*pairs: tuple[str, list[str]]) -> dict:
    return {"programs": [program(name=name, dependsOn=deps) for name, deps in pairs]}


@pytest.mark.parametrize(("spec", "expected"), [
    (chain(("a", ["b"]), ("b", ["a"])), "spec.programs[0].dependsOn: dependsOn cycle: a -> b -> a"),
    (chain(("a", ["b"]), ("b", ["c"]), ("c", ["a"])), "spec.programs[0].dependsOn: dependsOn cycle: a -> b -> c -> a"),
    # 'd' only hangs off the cycle: the message shows the cycle itself, found from the first stuck program
    (chain(("d", ["a"]), ("a", ["b"]), ("b", ["a"])), "spec.programs[1].dependsOn: dependsOn cycle: a -> b -> a"),
    (chain(("x", []), ("a", ["x", "b"]), ("b", ["x", "a"])),
     "spec.programs[1].dependsOn: dependsOn cycle: a -> b -> a"),
])
def test_cycle_messages(spec, expected):
    assert problems(spec) == [expected]


@pytest.mark.parametrize(("pairs", "order"), [
    ((("a", []), ("b", []), ("c", [])), ["a", "b", "c"]),
    ((("app", ["db"]), ("db", [])), ["db", "app"]),
    ((("top", ["left", "right"]), ("left", ["base"]), ("right", ["base"]), ("base", [])),
     ["base", "left", "right", "top"]),
    ((("c", ["a"]), ("b", []), ("a", [])), ["b", "a", "c"]),  # config order breaks ties among the ready ones
])
def test_start_order(pairs, order):
    assert [p.name for p in config_from_spec(chain(*pairs)).start_order()] == order


# -- content hash ----------------------------------------------------------------------------------


def test_hash_is_pinned():
    # Changing the canonical form changes every deployed ConfigMap's hash: do it on purpose only.
    assert spec_hash({"programs": []}) == "sha256:17db87a1cbdc9a71"
    assert config_from_spec({"programs": [program()]}).hash == "sha256:f7e3b866493e2be7"


def test_hash_ignores_key_order_and_defaults_spelled_out():
    short = config_from_spec({"programs": [{"command": ["x"], "name": "a"}]})
    spelled = config_from_spec({"programs": [program(restart="on-failure", stopSignal="TERM", env=[],
                                                     backoff={"maxSeconds": 30})]})
    assert short.hash == spelled.hash
    assert spec_hash({"b": 1, "a": [1, 2]}) == spec_hash({"a": [1, 2], "b": 1})


def test_hash_changes_with_content():
    base = config_from_spec({"programs": [program()]}).hash
    assert config_from_spec({"programs": [program(command=["x", "-v"])]}).hash != base
    assert config_from_spec({"programs": [program(restart="always")]}).hash != base
    assert config_from_spec({"programs": [program(), program(name="b")]}).hash != base


def test_signal_reload_gets_its_default_signal():
    program_ = config_from_spec({"programs": [program(onReload="signal")]}).programs[0]
    assert (program_.reload_signal, program_.effective_reload_signal) == ("SIGHUP", "SIGHUP")


def test_to_spec_round_trips():
    config = config_from_spec({"programs": [program(umask="027", onReload="signal", user=0, workingDir="/",
                                                    env=[{"name": "A", "value": "1"}]),
                                            program(name="b", dependsOn=["a"])]})
    again = config_from_spec(config.to_spec())
    assert again.programs == config.programs
    assert again.hash == config.hash


@pytest.mark.parametrize(("field", "value", "message"), [
    ("command", ["sleep\x00", "1"], "spec.programs[0].command[0]: must not contain a NUL byte"),
    ("workingDir", "/tmp\x00x", "spec.programs[0].workingDir: must not contain a NUL byte"),
    ("user", "4294967295", "spec.programs[0].user: numeric user id must be at most 4294967294, got 4294967295"),
    ("group", "9" * 30, f"spec.programs[0].group: numeric group id must be at most 4294967294, got {'9' * 30}"),
    ("stopTimeoutSeconds", 1e308, "spec.programs[0].stopTimeoutSeconds: must be at most 31622400 seconds (a year), "
                                  "got 1e+308"),
])
def test_values_exec_or_timers_could_not_use_are_refused(field: str, value: object, message: str) -> None:
    """Each of these once got past validation and would have failed at spawn time or in the event loop."""
    program = {"name": "a", "command": ["sleep", "1"], field: value}
    with pytest.raises(ConfigError) as caught:
        config_from_spec({"programs": [program]})
    assert [str(p) for p in caught.value.problems] == [message]


def test_spec_hash_is_sha256_of_the_canonical_json() -> None:
    """The hash is computed without hashlib's OpenSSL (start-up cost); it must still be plain SHA-256."""
    import hashlib
    import json

    from progset_supervisor.config import spec_hash

    spec = {"programs": [{"name": "a", "command": ["x", "é"]}], "readyPrograms": ["a"]}
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert spec_hash(spec) == "sha256:" + hashlib.sha256(canonical).hexdigest()[:16]


@pytest.mark.parametrize("spec", [
    {"programs": [{"name": "api\n", "command": ["x"]}]},
    {"programs": [{"name": "a", "command": ["x"], "env": [{"name": "X\n", "value": "1"}]}]},
    {"programs": [], "configMapName": "cm\n"},
])
def test_a_name_with_a_final_newline_is_refused(spec: dict[str, object]) -> None:
    """Python's $ matches before a final newline; the CRD's (RE2) does not. The model must agree."""
    with pytest.raises(ConfigError):
        config_from_spec(spec)
