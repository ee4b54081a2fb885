"""Reload semantics as a pure function: every onReload value, changes, additions, removals."""

from __future__ import annotations

from progset_supervisor.config import config_from_spec
from progset_supervisor.core.plan import plan


def cfg(*programs: dict) -> object:
    return config_from_spec({"programs": list(programs)})


def kinds(actions) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(a.kind, a.name) for a in actions]


def test_first_load_starts_everything_in_dependency_order() -> None:
    new = cfg({"name": "web", "command": ["w"], "dependsOn": ["db"]}, {"name": "db", "command": ["d"]})
    assert kinds(plan(None, new)) == [("start", "db"), ("start", "web")]


def test_each_on_reload_value_when_unchanged() -> None:
    old = cfg({"name": "r", "command": ["a"]}, {"name": "k", "command": ["b"], "onReload": "keep"},
              {"name": "s", "command": ["c"], "onReload": "signal", "reloadSignal": "SIGUSR1"})
    actions = plan(old, old)
    assert kinds(actions) == [("restart", "r"), ("keep", "k"), ("signal", "s")]
    assert actions[2].reason == "onReload: signal SIGUSR1"


def test_changed_definition_restarts_whatever_on_reload_says() -> None:
    old = cfg({"name": "k", "command": ["b"], "onReload": "keep"},
              {"name": "s", "command": ["c"], "onReload": "signal"},
              {"name": "e", "command": ["c"], "onReload": "keep", "env": [{"name": "A", "value": "1"}]})
    new = cfg({"name": "k", "command": ["b", "--new"], "onReload": "keep"},
              {"name": "s", "command": ["c"], "onReload": "signal", "user": "nobody"},
              {"name": "e", "command": ["c"], "onReload": "keep", "env": [{"name": "A", "value": "2"}]})
    actions = plan(old, new)
    assert kinds(actions) == [("restart", "k"), ("restart", "s"), ("restart", "e")]
    assert {a.reason for a in actions} == {"definition changed"}


def test_policy_only_changes_do_not_restart_kept_programs() -> None:
    old = cfg({"name": "k", "command": ["b"], "onReload": "keep", "restart": "always"})
    new = cfg({"name": "k", "command": ["b"], "onReload": "keep", "restart": "never", "stopTimeoutSeconds": 3,
               "critical": True})
    assert kinds(plan(old, new)) == [("keep", "k")]


def test_added_and_removed_programs() -> None:
    old = cfg({"name": "a", "command": ["a"], "onReload": "keep"}, {"name": "gone", "command": ["g"]},
              {"name": "gone2", "command": ["g"], "dependsOn": ["gone"]})
    new = cfg({"name": "a", "command": ["a"], "onReload": "keep"},
              {"name": "fresh", "command": ["f"], "onReload": "keep"})
    # removed ones stop first, dependents before their dependencies; a new kept program still starts
    assert kinds(plan(old, new)) == [("stop", "gone2"), ("stop", "gone"), ("keep", "a"), ("start", "fresh")]


def test_hard_reload_restarts_kept_and_signalled_programs() -> None:
    old = cfg({"name": "k", "command": ["b"], "onReload": "keep"},
              {"name": "s", "command": ["c"], "onReload": "signal"})
    assert kinds(plan(old, old, hard=True)) == [("restart", "k"), ("restart", "s")]


def test_plan_carries_the_new_definition() -> None:
    old = cfg({"name": "k", "command": ["b"], "onReload": "keep", "stopSignal": "SIGTERM"})
    new = cfg({"name": "k", "command": ["b"], "onReload": "keep", "stopSignal": "SIGINT"})
    (action,) = plan(old, new)
    assert action.program is not None and action.program.stop_signal == "SIGINT"


# -- runtime facts: the rules that used to live in the master ------------------------------------------
def test_a_program_stopped_by_a_command_stays_stopped_even_if_its_definition_changed() -> None:
    from progset_supervisor.core.plan import Facts

    old = cfg({"name": "a", "command": ["a"]})
    new = cfg({"name": "a", "command": ["a", "--new"]})
    actions = plan(old, new, {"a": Facts(running=False, manually_stopped=True)})
    assert kinds(actions) == [("keep", "a")] and actions[0].reason == "stays stopped (stopped by a command)"
    assert plan(old, new, {"a": Facts(running=True, manually_stopped=True, definition=old.programs[0])})[0].kind \
        == "keep"


def test_fatal_programs_are_retried_on_reload_whatever_on_reload_says() -> None:
    from progset_supervisor.core.plan import Facts

    old = cfg({"name": "k", "command": ["k"], "onReload": "keep"},
              {"name": "s", "command": ["s"], "onReload": "signal"})
    facts = {"k": Facts(fatal=True), "s": Facts(fatal=True)}
    actions = plan(old, old, facts)
    assert kinds(actions) == [("start", "k"), ("start", "s")]
    assert {a.reason for a in actions} == {"FATAL: retried on reload"}


def test_a_restart_of_a_program_that_does_not_run_is_a_start() -> None:
    from progset_supervisor.core.plan import Facts

    old = cfg({"name": "r", "command": ["r"]}, {"name": "c", "command": ["c"]})
    new = cfg({"name": "r", "command": ["r"]}, {"name": "c", "command": ["c", "2"]})
    actions = plan(old, new, {"r": Facts(), "c": Facts()}, hard=True)
    assert [(a.kind, a.name, a.reason) for a in actions] == [("start", "r", "hard reload"),
                                                               ("start", "c", "definition changed")]


def test_signal_and_keep_leave_a_program_that_does_not_run_alone() -> None:
    from progset_supervisor.core.plan import Facts

    old = cfg({"name": "k", "command": ["k"], "onReload": "keep"},
              {"name": "s", "command": ["s"], "onReload": "signal"})
    assert kinds(plan(old, old, {"k": Facts(), "s": Facts()})) == [("keep", "k"), ("keep", "s")]


def test_the_definition_compared_is_the_one_the_process_runs() -> None:
    """After a reload whose new definition could not start (the old process was kept), the next reload
    with the same file compares with what runs, so it tries again (defect 8 of issue 17)."""
    from progset_supervisor.core.plan import Facts

    running = cfg({"name": "a", "command": ["/bin/old"], "onReload": "keep"})
    wanted = cfg({"name": "a", "command": ["/bin/new"], "onReload": "keep"})
    actions = plan(wanted, wanted, {"a": Facts(running=True, definition=running.programs[0])})
    assert [(a.kind, a.reason) for a in actions] == [("restart", "definition changed")]


# -- stop order ----------------------------------------------------------------------------------------
def test_stop_lanes_put_dependents_first_also_through_programs_that_keep_running() -> None:
    from progset_supervisor.core.shutdown import stop_lanes, with_dependents

    graph = {"db": (), "cache": (), "api": ("db", "cache"), "web": ("api",), "worker": ("db",)}
    assert stop_lanes(graph, set(graph)) == [["web", "worker"], ["api"], ["db", "cache"]]
    assert stop_lanes(graph, {"db", "web"}) == [["web"], ["db"]]  # through api, which keeps running
    assert stop_lanes(graph, {"db", "cache"}) == [["db", "cache"]]
    assert stop_lanes({"a": (), "b": ()}, {"a", "b", "removed"}) == [["a", "b", "removed"]]
    assert with_dependents(graph, "db") == ["db", "api", "web", "worker"]
    assert with_dependents(graph, "web") == ["web"]


def test_run_lanes_waits_for_each_lane() -> None:
    from progset_supervisor.core.shutdown import run_lanes

    pending: dict[str, object] = {}
    events: list[str] = []

    def stop(name: str, done) -> bool:  # type: ignore[no-untyped-def]
        events.append(f"stop {name}")
        if name == "idle":
            return False
        pending[name] = done
        return True
    run_lanes([["a", "idle", "b"], ["c"]], stop, lambda: events.append("finished"))
    assert events == ["stop a", "stop idle", "stop b"]
    pending.pop("a")()  # type: ignore[operator]
    assert events[-1] == "stop b"
    pending.pop("b")()  # type: ignore[operator]
    assert events[-1] == "stop c"
    pending.pop("c")()  # type: ignore[operator]
    assert events[-1] == "finished"
