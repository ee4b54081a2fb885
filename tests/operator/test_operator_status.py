"""Status computation: conditions, transition times, and the minimal /status patch."""

from __future__ import annotations

from progset_operator import status as st

T0, T1 = "2026-11-01T10:00:00Z", "2026-11-21T12:00:00Z"


def valid_observed(generation: int = 1, hash_: str = "sha256:aaaa") -> st.Observed:
    return st.Observed(generation, st.valid_condition(2), st.rendered_condition("web-programs", hash_),
                       config_map="web-programs", config_hash=hash_, programs=2)


def test_first_status_has_everything_and_fresh_transition_times() -> None:
    status = st.desired_status(None, valid_observed(), T0)
    assert status == {
        "observedGeneration": 1, "configMap": "web-programs", "configHash": "sha256:aaaa", "programs": 2,
        "conditions": [
            {"type": "Valid", "status": "True", "reason": "Valid", "message": "2 programs",
             "observedGeneration": 1, "lastTransitionTime": T0},
            {"type": "Rendered", "status": "True", "reason": "Rendered",
             "message": "ConfigMap web-programs holds sha256:aaaa", "observedGeneration": 1, "lastTransitionTime": T0},
        ],
    }


def test_a_resync_that_observes_the_same_thing_needs_no_patch() -> None:
    current = st.desired_status(None, valid_observed(), T0)
    assert st.status_patch(current, st.desired_status(current, valid_observed(), T1)) is None


def test_transition_time_moves_only_when_the_status_flips() -> None:
    current = st.desired_status(None, valid_observed(), T0)
    newer = st.desired_status(current, valid_observed(generation=2, hash_="sha256:bbbb"), T1)
    assert [c["lastTransitionTime"] for c in newer["conditions"]] == [T0, T0]  # still True, new message
    invalid = st.Observed(3, st.invalid_condition("spec.programs[0]: boom"),
                          st.not_rendered_condition("InvalidSpec", "the spec is invalid", newer))
    broken = st.desired_status(newer, invalid, T1)
    assert [(c["status"], c["lastTransitionTime"]) for c in broken["conditions"]] == [("False", T1), ("False", T1)]


def test_invalid_generation_keeps_describing_the_last_rendered_configmap() -> None:
    current = st.desired_status(None, valid_observed(), T0)
    observed = st.Observed(2, st.invalid_condition("boom"),
                           st.not_rendered_condition("InvalidSpec", "the spec is invalid", current))
    status = st.desired_status(current, observed, T1)
    assert (status["observedGeneration"], status["configHash"], status["programs"]) == (2, "sha256:aaaa", 2)
    rendered = status["conditions"][1]
    assert rendered["message"] == "the spec is invalid; ConfigMap web-programs keeps sha256:aaaa"
    patch = st.status_patch(current, status)
    assert set(patch["status"]) == {"observedGeneration", "conditions"}


def test_not_rendered_before_anything_was_rendered_says_only_why() -> None:
    condition = st.not_rendered_condition("InvalidSpec", "the spec is invalid", {})
    assert (condition.status, condition.message) == (False, "the spec is invalid")


def test_conditions_of_others_are_kept() -> None:
    current = {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": T0}]}
    status = st.desired_status(current, valid_observed(), T1)
    assert [c["type"] for c in status["conditions"]] == ["Valid", "Rendered", "Ready"]


def test_singular_message_for_one_program() -> None:
    assert st.valid_condition(1).message == "1 program"
