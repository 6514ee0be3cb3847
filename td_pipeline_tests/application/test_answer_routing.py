"""Answer routing: every branch, without Dagster or NATS."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from td_pipeline.application.answer_routing import Route, route_answer
from td_pipeline.application.attempt_history import SubmittedAttempt
from td_pipeline.domain.derivation import LlmAnswer, LlmFailureReport
from td_pipeline.domain.values import DerivationId, PlanId, StoryId
from td_pipeline_tests.fakes import FakeAttemptHistory

STORY = "STORY-1"
CURRENT = SubmittedAttempt(
    STORY, "d-2", 2, "deliberation-td:d-2:2-1", datetime.now(UTC), "r-1", "P-1", ("QA",), 3, None
)


def answer(derivation: str | None = "d-2", attempt: int | None = 2) -> LlmAnswer:
    return LlmAnswer(
        PlanId("P-1"),
        StoryId(STORY),
        "{}",
        DerivationId(derivation) if derivation else None,
        attempt,
    )


def history(**changes: Any) -> FakeAttemptHistory:
    base = FakeAttemptHistory(stories={STORY}, submissions={STORY: CURRENT})
    return dataclasses.replace(base, **changes)


def test_the_current_attempts_answer_is_persisted() -> None:
    routed = route_answer(answer(), "m-1", history())
    assert (routed.route, routed.story, routed.attempt) == (Route.PERSIST, STORY, CURRENT)


@pytest.mark.parametrize(("derivation", "attempt"), [("d-1", 1), ("d-2", 1), ("d-other", None)])
def test_an_answer_for_another_attempt_is_superseded(derivation: str, attempt: int | None) -> None:
    routed = route_answer(answer(derivation, attempt), "m-1", history())
    assert routed.route is Route.SUPERSEDED and "d-2#2" in routed.why


def test_an_answer_ahead_of_its_submission_record_comes_back() -> None:
    racing = history(submitting={(STORY, "d-3", 3)})
    assert route_answer(answer("d-3", 3), "m-1", racing).route is Route.EARLY


def test_an_answer_without_attempt_number_counts_for_the_current_derivation() -> None:
    assert route_answer(answer("d-2", None), "m-1", history()).route is Route.PERSIST


@pytest.mark.parametrize("seen", [{"handled_messages": {"m-1"}}, {"answered": {(STORY, "d-2", 2)}}])
def test_a_repeated_answer_is_a_duplicate(seen: dict[str, Any]) -> None:
    assert route_answer(answer(), "m-1", history(**seen)).route is Route.DUPLICATE


def test_a_failure_naming_only_the_attempt_finds_its_story_by_the_derivation() -> None:
    failure = LlmFailureReport(None, None, "LLM failed: TimeoutError", DerivationId("d-2"), 2)
    known = history(derivation_stories={"d-2": STORY})

    assert route_answer(failure, "m-1", known).route is Route.PERSIST
    assert route_answer(failure, "m-1", history()).route is Route.UNKNOWN


def test_an_answer_for_a_story_never_requested_is_superseded() -> None:
    assert route_answer(answer(), "m-1", FakeAttemptHistory()).route is Route.SUPERSEDED
