"""The README's commands, run exactly as written (see :mod:`tests.docs.sandbox` for where).

Every command of every shell block (```sh, ```console) must be listed in ``COMMANDS`` below: either
run by one of the scenarios, or ``NotRun`` with the reason it cannot run here. A new block fails
:func:`test_every_readme_command_is_classified` with the line and a message telling its author
what to add, so the README and this test cannot drift apart silently. ``console`` blocks also show
output: each line shown must appear, in order, in what the command printed, with numbers (pids,
uptimes, ports) and runs of spaces matched loosely; a shown line ``...`` skips any lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tests.supervisor.peers import require

from . import sandbox
from .readme import Command, commands


@dataclass(frozen=True)
class Run:
    """Run by ``scenario``; ``check`` is how its output is compared with what the README shows."""

    scenario: str
    check: str = "shown"  # "shown": the console block's output; "ok": exit 0 and some output
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NotRun:
    reason: str


HELM = ("the Helm chart is rendered and checked by tests/chart (helm-python-sdk); installing it needs a real "
        "cluster and the images pushed to a registry")
IMAGES = "building and pushing images needs a registry and Docker; tests/containers builds them where Docker runs"
CLUSTER = "changes a real cluster; the emulator has no CRD lifecycle to show"
APPLY = ("kubectl apply first downloads the API server's OpenAPI documents, which kmock's emulator does not serve: "
         "the sandbox creates the same objects with a POST through the kubernetes client instead")
WEBHOOK = ("the injection webhook acts inside a real API server's admission chain, which kmock's emulator does not "
           "have; tests/operator/test_injection_webhook.py calls the webhook itself, and `progset-operator inject` "
           "below (run here) goes through the same code")
PROMPT = [["", "prompt"], ["> ", "show cli level"], ["> ", "prompt timed"], ["> ", "quit"]]
MASTER = "/var/run/progset/master.sock"

COMMANDS: dict[str, Run | NotRun] = {
    # Quick start: `make run` in a copy of the repository, then the commands of "In another terminal".
    "make run     # creates .venv, installs, runs the supervisor on examples/haproxy-programs.cfg": Run("quickstart"),
    "make test    # installs the test dependencies into .venv and runs the whole suite":
        NotRun("runs this very suite; .ci/run runs it in CI"),
    "echo 'show proc' | socat ./run/master.sock -          # HAProxy's format": Run("quickstart", "ok"),
    "echo 'show programs' | socat ./run/master.sock -      # state, restarts, last exit, backoff":
        Run("quickstart", "ok"),
    ".venv/bin/progsetctl -S ./run/master.sock             # interactive prompt with history":
        Run("quickstart", "ok", {"typed": [["> ", "show proc"], ["> ", "quit"]]}),
    "curl -s localhost:9127/metrics | grep ^progset_": Run("quickstart", "ok"),
    # Master CLI: a supervisor on the pod's sockets (see sandbox.POD_CONFIG), in the README's order.
    f"echo 'show proc' | socat {MASTER} -": Run("pod"),
    f"socat - {MASTER}": Run("pod", options={"typed": PROMPT}),
    f"echo 'show programs' | socat {MASTER} -":
        Run("pod", options={"wait_mark": ["api | GET /healthz 200", 1], "before": sandbox.BREAK_SPOA,
                            "before_mark": "Restarting program 'spoa-agent' in "}),
    f"echo 'show checks api' | socat {MASTER} -":  # the liveness check runs every 10 s: once passed, it shows
        Run("pod", options={"until": [f"echo 'show checks api' | socat {MASTER} -", "success tcp="]}),
    f"echo '@1 show info' | socat {MASTER} -     # HAProxy runs as a program: see below": Run("pod"),
    f"echo '@1 show info' | socat {MASTER} - | head -2": Run("pod"),
    "echo '@1 show cli level' | socat /var/run/progset-shared/status.sock -   # a level,user socket": Run("pod"),
    f"echo 'stop api' | socat -t30 {MASTER} -": Run("pod"),
    f"echo 'start api' | socat {MASTER} -": Run("pod"),
    f"echo 'restart spoa-agent' | socat -t30 {MASTER} -": Run("pod"),
    f"echo 'signal api SIGHUP' | socat {MASTER} -": Run("pod"),
    f"echo 'stop nosuch' | socat {MASTER} -": Run("pod"),
    f"echo 'show logs api 3' | socat {MASTER} -": Run("pod", options={"wait_mark": ["api | GET /healthz 200", 2]}),
    f"echo 'show env HAPROXY_MASTER_CLI' | socat {MASTER} -": Run("pod"),
    f"echo 'show cli sockets' | socat {MASTER} -": Run("pod"),
    "echo 'show proc' | socat /var/run/progset-shared/status.sock -      # a level,user socket": Run("pod"),
    f"echo '@3 show info' | socat {MASTER} -          # there is one worker: haproxy": Run("pod"),
    f"echo 'reload' | socat -t30 {MASTER} -": Run("pod"),
    f"echo 'reload' | socat -t30 {MASTER} -          # while another one runs":
        Run("pod", options={"wait_after": ["New program 'api'", "api | listening on :8080"],  # its TERM handler
                            "during": f"echo 'reload' | socat -t30 {MASTER} -",
                            "during_mark": "Reloading progset on master CLI"}),
    f"echo 'show info' | socat {MASTER} -": Run("pod", "keys"),  # the sandbox's config is not /etc/progset
    f"echo 'show prgrams' | socat {MASTER} -": Run("pod"),
    # The operator against kmock's API emulator, with kubectl.
    "make test                                  # or: python3 -m venv .venv && .venv/bin/pip install -e '.[operator]'":
        NotRun("runs this very suite; .ci/run runs it in CI"),
    ".venv/bin/progset-operator crd | kubectl apply -f -    # the CRD (also in charts/progset/crds/)":
        Run("kube", "ok", {"equivalent": "command:.venv/bin/progset-operator crd"}),
    "export KUBECONFIG=~/.kube/config                       # any cluster you can reach":
        NotRun("the sandbox points KUBECONFIG at the emulator instead of a cluster"),
    ".venv/bin/progset-operator run --standalone --namespace default": Run("kube", "ok", {"background": True}),
    "kubectl apply -f examples/programset-hello.yaml":
        Run("kube", "ok", {"equivalent": "examples/programset-hello.yaml"}),
    "kubectl get pset                                       # Programs 1, Rendered True, Hash sha256:...":
        Run("kube", "hello", {"wait_for": "kubectl get configmap hello-programs -o name"}),
    "kubectl get configmap hello-programs -o jsonpath='{.data.programs\\.json}'": Run("kube", "rendered"),
    "kubectl describe pset hello                            # conditions and events": Run("kube", "described"),
    "curl -s localhost:9128/metrics | grep ^progset_operator": Run("kube", "ok"),
    "kubectl -n progset-system rollout status deployment/progset":
        NotRun("needs a cluster that runs the operator's Deployment (the emulator runs no pods)"),
    "kubectl get crd programsets.progset.io": Run("kube", "ok"),
    "kubectl get programsets            # PROGRAMS, RENDERED, HASH": Run("kube", "hello"),
    # The injection webhook.
    "kubectl label namespace default progset.io/injection=enabled   # opt a namespace in, once": NotRun(WEBHOOK),
    "kubectl apply -f examples/programset-hello.yaml                  # the programs": NotRun(WEBHOOK),
    "kubectl apply -f examples/inject-deployment.yaml                 # pod template labelled progset.io/programset: "
    "hello": NotRun(WEBHOOK),
    "kubectl label namespace default progset.io/injection=enabled": NotRun(WEBHOOK),
    "progset-operator inject -f examples/inject-deployment.yaml": Run("repo"),
    # Images, Helm, upgrades: need a registry or a cluster.
    "REGISTRY=registry.example/progset   # your registry": NotRun(IMAGES),
    "kubectl apply --server-side --force-conflicts -f charts/progset/crds/programsets.progset.io.yaml": NotRun(CLUSTER),
    "helm upgrade progset charts/progset -n progset-system --reuse-values": NotRun(HELM),
    "helm uninstall progset -n progset-system": NotRun(HELM),
    "kubectl delete crd programsets.progset.io": NotRun(CLUSTER),
}
# Whole families that can never run here, matched by their start.
PATTERNS: tuple[tuple[re.Pattern[str], NotRun], ...] = (
    (re.compile(r"^helm install progset charts/progset"), NotRun(HELM)),
    (re.compile(r"^(docker (build|push) |make images\b)"), NotRun(IMAGES)),
)


def classify(command: Command) -> Run | NotRun | None:
    if command.text in COMMANDS:
        return COMMANDS[command.text]
    return next((kind for pattern, kind in PATTERNS if pattern.match(command.text)), None)


def test_every_readme_command_is_classified() -> None:
    missing = [c for c in commands() if classify(c) is None]
    assert not missing, "\n".join(
        f"README.md:{c.line} ({c.section}): the command {c.text!r} is not classified. Add it to COMMANDS in "
        "tests/docs/test_readme.py, exactly as written: Run(<scenario>) to run it (see tests/docs/sandbox.py), "
        "or NotRun('<why it cannot run here>')." for c in missing)
    texts = {c.text for c in commands()}
    stale = [text for text in COMMANDS if text not in texts]
    assert not stale, f"COMMANDS lists commands the README no longer shows (remove them): {stale}"


def normalize(line: str) -> str:
    return " ".join(re.sub(r"\d+", "N", line.replace("\r", "")).split())


def shows(shown: str, printed: str) -> str | None:
    """None if every shown line appears in ``printed`` in order (``...`` skips); else what is missing."""
    actual = [normalize(line) for line in printed.splitlines() if line.strip()]
    position = 0
    for line in shown.splitlines():
        want = normalize(line)
        if not want or want == "...":
            continue
        try:
            position = actual.index(want, position) + 1
        except ValueError:
            return want
    return None


def scenario_commands(scenario: str) -> list[tuple[Command, Run]]:
    return [(c, kind) for c in commands() if isinstance(kind := classify(c), Run) and kind.scenario == scenario]


def run_scenario(scenario: str) -> list[tuple[Command, Run, dict[str, Any]]]:
    planned = scenario_commands(scenario)
    assert planned, f"no README command runs in scenario {scenario!r}"
    results = sandbox.run(scenario, [{"text": c.text, **kind.options} for c, kind in planned])
    assert [r["text"] for r in results] == [c.text for c, _ in planned]
    return [(c, kind, result) for (c, kind), result in zip(planned, results, strict=True)]


def check(command: Command, kind: Run, result: dict[str, Any]) -> None:
    where = f"README.md:{command.line}: {command.text!r}"
    printed = result["stdout"] + result["stderr"]
    if kind.options.get("background"):
        return
    assert result["rc"] == 0, f"{where} exited {result['rc']}:\n{printed}"
    if kind.check == "shown" and command.shown is not None:
        missing = shows(command.shown, printed)
        assert missing is None, f"{where}: the README shows a line it did not print: {missing!r}\nprinted:\n{printed}"
    elif kind.check == "keys":  # 'Name: value' lines: the names, in order
        missing = shows("\n".join(line.split(":")[0] for line in command.shown.splitlines()),
                        "\n".join(line.split(":")[0] for line in printed.splitlines()))
        assert missing is None, f"{where}: the README shows a field it did not print: {missing!r}\nprinted:\n{printed}"
    elif kind.check == "hello":
        assert re.search(r"^hello\s", result["stdout"], re.M), f"{where}:\n{printed}"
    elif kind.check == "rendered":
        import json

        rendered = json.loads(result["stdout"])
        assert rendered["kind"] == "RenderedProgramSet" and rendered["spec"]["programs"][0]["name"] == "hello"
    elif kind.check == "described":
        assert "Conditions:" in result["stdout"] and "Rendered" in result["stdout"], f"{where}:\n{printed}"
    else:
        assert result["stdout"].strip(), f"{where} printed nothing:\n{printed}"


def need_sandbox() -> None:
    require("unshare", "util-linux")
    require("ip", "iproute2")
    require("socat", "socat")
    require("haproxy", "haproxy")


def check_all(scenario: str) -> None:
    """Every command of the scenario checked; all the differences reported at once."""
    failures = []
    for command, kind, result in run_scenario(scenario):
        try:
            check(command, kind, result)
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n\n".join(failures)


def test_master_cli_examples_as_written() -> None:
    need_sandbox()
    check_all("pod")


def test_quick_start_as_written() -> None:
    need_sandbox()
    require("curl", "curl")
    require("make", "make")
    for command, kind, result in run_scenario("quickstart"):
        if command.text.startswith("make run"):
            assert "Loading success." in result["stdout"], result["stdout"]
            assert result["rc"] is None, f"make run ended early:\n{result['stdout']}"
            continue
        check(command, kind, result)


def test_commands_that_need_nothing_running() -> None:
    need_sandbox()
    check_all("repo")


def test_operator_commands_against_the_emulator() -> None:
    need_sandbox()
    require("curl", "curl")
    require("kubectl", "kubernetes-client")
    check_all("kube")
