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
