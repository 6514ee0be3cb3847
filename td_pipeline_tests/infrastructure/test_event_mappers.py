from __future__ import annotations

import json
from datetime import UTC, datetime

from td_pipeline.domain.events import DerivationCompleted, DerivationFailed
from td_pipeline.domain.values import DerivationId, PlanId, StoryId
from td_pipeline.infrastructure.event_mappers import outbound_message

AT = datetime(2026, 11, 24, 10, 30, tzinfo=UTC)


def test_completed_event_is_exactly_the_contract() -> None:
    message = outbound_message(
        DerivationCompleted(PlanId("P"), StoryId("S"), 5, AT, DerivationId("d-1"))
    )
    assert message.subject == "task.derivation.completed"
    assert json.loads(message.body) == {
        "plan_id": "P",
        "story_id": "S",
        "task_count": 5,
        "status": "success",
        "occurred_at": "2026-11-24T10:30:00Z",
        "derivation_request_id": "d-1",
    }
    assert message.message_id == "td-pipeline:d-1:completed"


def test_failed_event_before_any_attempt_has_a_null_derivation() -> None:
    message = outbound_message(
        DerivationFailed(PlanId("P"), StoryId("S"), "plan P not found", True, AT, None)
    )
    body = json.loads(message.body)
    assert message.subject == "task.derivation.failed"
    assert body["derivation_request_id"] is None
    assert (body["status"], body["requires_manual_review"], body["reason"]) == (
        "failed",
        True,
        "plan P not found",
    )


def test_envelope_carries_the_correlation_id() -> None:
    message = outbound_message(
        DerivationCompleted(PlanId("P"), StoryId("S"), 1, AT, DerivationId("d-1")),
        envelope=True,
        correlation_id="corr-7",
    )
    body = json.loads(message.body)
    assert (body["event_type"], body["correlation_id"], body["producer"]) == (
        "task.derivation.completed",
        "corr-7",
        "td-pipeline",
    )
    assert body["payload"]["task_count"] == 1
