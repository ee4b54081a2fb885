"""Checks and sd_notify in the contract: the model, its errors, the three loaders and the canonical form."""

from __future__ import annotations

import pytest

from progset_supervisor.config import ConfigError, config_from_spec, load_haproxy_text, load_yaml_text, render_document
from progset_supervisor.config.probes import Header, Probe


def program(**fields) -> dict:
    return {"name": "a", "command": ["x"], **fields}


def problems(spec: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config_from_spec(spec)
    return [str(p) for p in info.value.problems]


def test_kubernetes_defaults_and_canonical_form() -> None:
    config = config_from_spec({"programs": [program(readiness={"http": {"port": 8080}})]})
    probe = config.programs[0].readiness
    assert probe == Probe(kind="http", port=8080, host="127.0.0.1", path="/", scheme="HTTP", headers=(),
                          initial_delay_seconds=0.0, period_seconds=10.0, timeout_seconds=1.0, success_threshold=1,
                          failure_threshold=3)
    assert config.to_spec()["programs"][0]["readiness"] == {
        "http": {"port": 8080, "path": "/", "host": "127.0.0.1", "scheme": "HTTP", "headers": []},
        "initialDelaySeconds": 0.0, "periodSeconds": 10.0, "timeoutSeconds": 1.0, "successThreshold": 1,
        "failureThreshold": 3}
    assert config.programs[0].has_readiness_source


def test_every_check_field_is_read_and_round_trips() -> None:
    spec = {"programs": [
        program(name="db", command=["db"]),
        program(readiness={"http": {"port": "8443", "path": "/healthz", "host": "::1", "scheme": "https",
                                    "headers": [{"name": "Host", "value": "api.local"}]},
                           "initialDelaySeconds": 1, "periodSeconds": 0.5, "timeoutSeconds": 2,
                           "successThreshold": 2, "failureThreshold": 5},
                liveness={"tcp": {"port": 8080, "host": "localhost"}},
                startup={"exec": {"command": ["pg_isready", "-q"]}, "failureThreshold": 30},
                notify=True, notifyAccess="all", watchdogSeconds=3,
                dependsOn=["db"], dependsOnCondition={"db": "started"}),
    ]}
    config = config_from_spec(spec)
    a = config.programs[1]
    assert a.readiness == Probe("http", port=8443, host="::1", path="/healthz", scheme="HTTPS",
                                headers=(Header("Host", "api.local"),), initial_delay_seconds=1.0,
                                period_seconds=0.5, timeout_seconds=2.0, success_threshold=2, failure_threshold=5)
    assert a.liveness == Probe("tcp", port=8080, host="127.0.0.1")
    assert a.startup == Probe("exec", command=("pg_isready", "-q"), failure_threshold=30)
    assert (a.notify, a.notify_access, a.watchdog_seconds) == (True, "all", 3.0)
    assert a.condition_for("db") == "started" and a.condition_for("other") is None
    assert [level for level, _ in a.probes()] == ["readiness", "liveness", "startup"]
    again = config_from_spec(config.to_spec())
    assert again.programs == config.programs and again.hash == config.hash
    # The rendered JSON (what the operator writes) loads back to the same programs.
    assert load_yaml_text(render_document(config), "programs.json").programs == config.programs


def test_configs_without_checks_keep_their_canonical_form() -> None:
    assert set(config_from_spec({"programs": [program()]}).to_spec()["programs"][0]) == {
        "name", "command", "env", "restart", "backoff", "stopSignal", "stopTimeoutSeconds", "onReload", "critical",
        "dependsOn"}


def test_changing_a_check_is_not_a_new_definition_but_notify_is() -> None:
    base = config_from_spec({"programs": [program()]}).programs[0]
    checked = config_from_spec({"programs": [program(liveness={"tcp": {"port": 1}})]}).programs[0]
    notified = config_from_spec({"programs": [program(notify=True)]}).programs[0]
    assert checked.definition() == base.definition()
    assert notified.definition() != base.definition()  # NOTIFY_SOCKET is in its environment


@pytest.mark.parametrize(("fields", "expected"), [
    ({"readiness": {}}, "spec.programs[0].readiness: readiness needs exactly one of exec, http, tcp; got none"),
    ({"liveness": {"http": {"port": 1}, "tcp": {"port": 1}}},
     "spec.programs[0].liveness: liveness needs exactly one of exec, http, tcp; got http and tcp"),
    ({"readiness": {"tcp": {"port": 70000}}}, "spec.programs[0].readiness.tcp.port: port must be between 1 and "
                                               "65535, got 70000"),
    ({"readiness": {"tcp": {"port": "http"}}}, "spec.programs[0].readiness.tcp.port: expected a port number "
                                                "between 1 and 65535, got 'http'"),
    ({"readiness": {"tcp": {}}}, "spec.programs[0].readiness.tcp: tcp needs a port"),
    ({"liveness": {"tcp": {"port": 1}, "failureThreshold": 0}},
     "spec.programs[0].liveness.failureThreshold: must be between 1 and 1000000, got 0"),
    ({"readiness": {"tcp": {"port": 1}, "successThreshold": -1}},
     "spec.programs[0].readiness.successThreshold: must be between 1 and 1000000, got -1"),
    ({"startup": {"tcp": {"port": 1}, "successThreshold": 2}},
     "spec.programs[0].startup.successThreshold: successThreshold must be 1 for startup (as in Kubernetes): one "
     "success proves the program alive"),
    ({"readiness": {"tcp": {"port": 1}, "periodSeconds": 0}},
     "spec.programs[0].readiness.periodSeconds: must be greater than 0, got 0"),
    ({"readiness": {"tcp": {"port": 1}, "timeoutSeconds": -1}},
     "spec.programs[0].readiness.timeoutSeconds: must be greater than 0, got -1"),
    ({"readiness": {"tcp": {"port": 1, "host": "db.example"}}},
     "spec.programs[0].readiness.tcp.host: host must be an IP address such as 127.0.0.1 or ::1, got 'db.example': "
     "names are not resolved (that would block the supervisor); set a Host header with 'headers' if the program "
     "needs one"),
    ({"readiness": {"http": {"port": 1, "path": "healthz"}}},
     "spec.programs[0].readiness.http.path: path must start with '/' and contain no spaces, got 'healthz'"),
    ({"readiness": {"httpGet": {"port": 1}}},
     "spec.programs[0].readiness.httpGet: 'httpGet' is Kubernetes' name; progset writes 'http'"),
    ({"readiness": {"exec": {"command": "pg_isready -q"}}},
     "spec.programs[0].readiness.exec.command: command must be a list of arguments, not a shell string; write "
     "[\"sh\", \"-c\", 'pg_isready -q'] to use a shell"),
    ({"readiness": {"exec": {"command": []}}},
     "spec.programs[0].readiness.exec.command: exec needs a non-empty command list, e.g. [\"pg_isready\", \"-q\"]"),
    ({"readiness": {"http": {"port": 1, "headers": [{"name": "X: y", "value": "v"}]}}},
     "spec.programs[0].readiness.http.headers[0].name: invalid header name 'X: y'"),
    ({"notify": "yes"}, "spec.programs[0].notify: expected true or false, got 'yes'"),
    ({"watchdogSeconds": 5}, "spec.programs[0].watchdogSeconds: watchdogSeconds only applies with notify: true "
                             "(the program reports over NOTIFY_SOCKET); set notify: true or remove it"),
    ({"notify": True, "notifyAccess": "exec"},
     "spec.programs[0].notifyAccess: must be one of main, all; got 'exec'"),
    ({"dependsOnCondition": {"db": "started"}},
     "spec.programs[0].dependsOnCondition.db: dependsOnCondition names 'db', which is not in dependsOn; add it "
     "there"),
])
def test_bad_checks_are_named_where_they_are(fields: dict, expected: str) -> None:
    assert expected in problems({"programs": [program(**fields)]})


def test_yaml_errors_name_the_line() -> None:
    text = ("programs:\n  - name: a\n    command: [x]\n    readiness:\n      tcp:\n        port: 0\n")
    with pytest.raises(ConfigError) as info:
        load_yaml_text(text, "p.yaml")
    assert str(info.value) == "p.yaml:6 (spec.programs[0].readiness.tcp.port): port must be between 1 and 65535, got 0"


HAPROXY = """\
program web
  command python3 -m http.server 8080
  readiness-http 8080 /healthz host ::1 scheme https header Host example.org
  readiness-options period 500ms timeout 2s initial-delay 1s failure-threshold 2 success-threshold 3
  liveness-tcp 8080
  startup-exec /bin/check --now
  notify
  notify-access all
  watchdog 5s
program api
  command api
  depends-on web
  depends-on-condition web started
"""


def test_haproxy_keywords_reach_the_same_model() -> None:
    config = load_haproxy_text(HAPROXY, "h.cfg", {})
    web, api = config.programs
    assert web.readiness == Probe("http", port=8080, host="::1", path="/healthz", scheme="HTTPS",
                                  headers=(Header("Host", "example.org"),), initial_delay_seconds=1.0,
                                  period_seconds=0.5, timeout_seconds=2.0, success_threshold=3, failure_threshold=2)
    assert web.liveness == Probe("tcp", port=8080)
    assert web.startup == Probe("exec", command=("/bin/check", "--now"))
    assert (web.notify, web.notify_access, web.watchdog_seconds) == (True, "all", 5.0)
    assert api.depends_on_condition == (("web", "started"),)


@pytest.mark.parametrize(("text", "expected"), [
    ("program a\n command x\n readiness-tcp 8080\n readiness-http 8080\n",
     "h.cfg:4: 'readiness-http' conflicts with 'readiness-tcp' at h.cfg:3: both set readiness of program 'a'"),
    ("program a\n command x\n liveness-tcp 99999\n", "h.cfg:3 (liveness-tcp): port must be between 1 and 65535, "
                                                       "got 99999"),
    ("program a\n command x\n readiness-options period 1s\n",
     "h.cfg:3 (readiness-options): readiness needs exactly one of exec, http, tcp; got none"),
    ("program a\n command x\n readiness-tcp 1\n readiness-options perod 1s\n",
     "h.cfg:4: unknown 'readiness-options' option 'perod'; did you mean 'period'?"),
    ("program a\n command x\n liveness-tcp 1\n liveness-options failure-threshold 0\n",
     "h.cfg:4 (liveness-options): must be between 1 and 1000000, got 0"),
    ("program a\n command x\n liveness-tcp 1\n liveness-options failure-threshold many\n",
     "h.cfg:4: 'failure-threshold' expects a whole number of at least 1, got 'many'"),
    ("program a\n command x\n readiness-tcp 1 path /x\n",
     "h.cfg:3: 'readiness-tcp': unexpected 'path' (or its value is missing); options are host <ip>; usage: "
     "readiness-tcp <port> [host <ip>]"),
    ("program a\n command x\n readiness-http 1 /x scheme\n",
     "h.cfg:3: 'readiness-http': unexpected 'scheme' (or its value is missing); options are host <ip>, scheme "
     "http|https, header <name> <value>; usage: readiness-http <port> [</path>] [host <ip>] [scheme http|https] "
     "[header <name> <value>]..."),
    ("program a\n command x\n watchdog 5s\n", "h.cfg:3 (watchdog): watchdogSeconds only applies with notify: true "
                                               "(the program reports over NOTIFY_SOCKET); set notify: true or "
                                               "remove it"),
])
def test_haproxy_errors_name_the_line(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_haproxy_text(text, "h.cfg", {})
    assert expected in [str(p) for p in info.value.problems]
