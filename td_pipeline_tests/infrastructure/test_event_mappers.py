from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from td_pipeline.domain.events import DerivationCompleted, DerivationFailed, RequestRefused
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
        "task-derivation-service",
    )
    assert body["idempotency_key"] == message.message_id == "td-pipeline:d-1:completed"
    assert body["timestamp"] == body["payload"]["occurred_at"] == "2026-11-24T10:30:00Z"
    assert body["payload"]["task_count"] == 1


def test_envelope_without_a_request_correlation_id_gets_a_fresh_one() -> None:
    event = DerivationFailed(PlanId("P"), StoryId("S"), "boom", True, AT, DerivationId("d-1"))
    first, second = (
        json.loads(outbound_message(event, envelope=True, correlation_id=None).body)
        for _ in range(2)
    )
    assert first["producer"] == "task-derivation-service"
    assert uuid.UUID(first["correlation_id"]) and uuid.UUID(second["correlation_id"])
    assert first["correlation_id"] != second["correlation_id"]
    assert first["payload"]["status"] == "failed"


def test_a_refused_request_is_answered_with_its_ids_exactly_as_sent() -> None:
    event = RequestRefused(
        "P-1", "S-1,S-2", "invalid request: story id contains a comma", AT, "task_derivation:7"
    )
    message = outbound_message(event)
    assert message.subject == "task.derivation.failed"
    assert message.message_id == "td-pipeline:refused:task_derivation:7"
    assert json.loads(message.body) == {
        "plan_id": "P-1",
        "story_id": "S-1,S-2",
        "status": "failed",
        "reason": "invalid request: story id contains a comma",
        "requires_manual_review": True,
        "occurred_at": "2026-11-24T10:30:00Z",
        "derivation_request_id": None,
    }
    enveloped = json.loads(outbound_message(event, envelope=True, correlation_id="corr-9").body)
    assert (enveloped["event_type"], enveloped["correlation_id"]) == (
        "task.derivation.failed",
        "corr-9",
    )
    assert enveloped["idempotency_key"] == "td-pipeline:refused:task_derivation:7"
    assert enveloped["payload"]["story_id"] == "S-1,S-2"
