"""Outcome-once: an event goes out unless its message id went out before."""

from __future__ import annotations

from datetime import UTC, datetime

from td_pipeline.application.outcome_once import should_publish
from td_pipeline.domain.events import DerivationCompleted, DerivationFailed
from td_pipeline.domain.values import DerivationId, PlanId, StoryId


def test_an_outcome_goes_out_once_per_attempt() -> None:
    now = datetime.now(UTC)
    completed = DerivationCompleted(PlanId("P-1"), StoryId("S-1"), 3, now, DerivationId("d-1"))
    failed = DerivationFailed(
        PlanId("P-1"), StoryId("S-1"), "LLM timeout", False, now, DerivationId("d-1"), attempt=2
    )

    assert should_publish(completed, set())
    assert not should_publish(completed, {completed.message_id()})
    assert should_publish(failed, {completed.message_id()})  # another outcome of the attempt
