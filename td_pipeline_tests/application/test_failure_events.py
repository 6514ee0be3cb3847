"""Whether a failed run gets its task.derivation.failed event."""

from __future__ import annotations

from td_pipeline.application.failure_events import NoEvent, why_no_failed_event


def test_a_failed_attempt_whose_derive_run_is_known_is_announced() -> None:
    assert why_no_failed_event("r-1", "s-1", True, False, True) is None


def test_a_run_without_an_attempt_is_none_of_ours() -> None:
    assert why_no_failed_event("r-1", "s-1", False, False, False) == NoEvent(
        "run r-1 is not a derivation attempt"
    )


def test_a_run_without_a_story_is_none_of_ours() -> None:
    assert why_no_failed_event("r-1", None, True, True, True) == NoEvent(
        "run r-1 is not a derivation attempt"
    )


def test_a_run_dagster_relaunches_is_not_a_failed_attempt() -> None:
    assert why_no_failed_event("r-1", "s-1", True, True, True) == NoEvent(
        "s-1: the run died before any step failed; Dagster relaunches it"
    )


def test_an_attempt_without_a_known_derive_run_is_not_announced_and_warns() -> None:
    assert why_no_failed_event("r-1", "s-1", True, False, False) == NoEvent(
        "no derive run known for s-1; failed event not published", warn=True
    )
