from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from td_pipeline.domain.events import DerivationCompleted, DerivationFailed
from td_pipeline.domain.values import DerivationId, PlanId, StoryId

PLAN, STORY = PlanId("P-1"), StoryId("S-1")
NOON_CET = datetime(2026, 11, 24, 12, 0, tzinfo=timezone(timedelta(hours=1)))


def completed(**changes: object) -> DerivationCompleted:
    fields: dict[str, object] = {
        "plan_id": PLAN,
        "story_id": STORY,
        "task_count": 5,
        "occurred_at": NOON_CET,
        "derivation_request_id": DerivationId("d-1"),
    }
    fields.update(changes)
    return DerivationCompleted(**fields)  # type: ignore[arg-type]


def failed(**changes: object) -> DerivationFailed:
    fields: dict[str, object] = {
        "plan_id": PLAN,
        "story_id": STORY,
        "reason": "  LLM timeout after 600s ",
        "requires_manual_review": False,
        "occurred_at": NOON_CET,
        "derivation_request_id": DerivationId("d-1"),
    }
    fields.update(changes)
    return DerivationFailed(**fields)  # type: ignore[arg-type]


def test_times_are_kept_in_utc() -> None:
    assert completed().occurred_at == datetime(2026, 11, 24, 11, 0, tzinfo=UTC)
    assert completed().occurred_at.tzinfo is UTC


def test_naive_times_are_rejected() -> None:
    with pytest.raises(ValueError, match="time zone"):
        completed(occurred_at=datetime(2026, 11, 24, 12, 0))


@pytest.mark.parametrize("count", [-1, True])
def test_task_count_must_be_a_count(count: object) -> None:
    with pytest.raises(ValueError, match="count"):
        completed(task_count=count)


def test_failed_reason_is_trimmed_and_required() -> None:
    assert failed().reason == "LLM timeout after 600s"
    assert len(failed(reason="x" * 5_000).reason) == 2_000
    with pytest.raises(ValueError, match="reason"):
        failed(reason="  ")


def test_message_ids_name_the_attempt_and_the_outcome() -> None:
    assert completed().message_id() == "td-pipeline:d-1:completed"
    assert failed().message_id() == "td-pipeline:d-1:failed"
    assert failed(attempt=2).message_id() == "td-pipeline:d-1:failed:2"
    assert failed(attempt=3).message_id() != failed(attempt=2).message_id()
    assert failed(derivation_request_id=DerivationId("d-2")).message_id() != failed().message_id()
    assert failed(derivation_request_id=None).message_id() == "td-pipeline:P-1/S-1:failed"
    # Two refused requests for the same story are two events, not one deduplicated.
    refused = failed(derivation_request_id=None, request_key="task_derivation:7:123")
    assert refused.message_id() == "td-pipeline:P-1/S-1:failed:task_derivation:7:123"


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="count from 1"):
        failed(attempt=0)
