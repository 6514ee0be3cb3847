from __future__ import annotations

import pytest
from pydantic import ValidationError

from td_pipeline.infrastructure.payloads import (
    AgentResponseCompleted,
    DerivationCompletedPayload,
    DerivationFailedPayload,
    DerivationRequestedPayload,
    EventEnvelope,
    ProposalBody,
)


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        (None, ["DEVELOPER"]),
        ([], ["DEVELOPER"]),
        ("qa", ["qa"]),
        (["developer", " qa ", ""], ["developer", "qa"]),
    ],
)
def test_request_roles_in_any_accepted_shape(roles: object, expected: list[str]) -> None:
    payload = DerivationRequestedPayload.model_validate(
        {"plan_id": "P", "story_id": "S", "roles": roles}
    )
    assert payload.roles == expected


def test_request_defaults_and_extras() -> None:
    payload = DerivationRequestedPayload.model_validate(
        {"plan_id": " P ", "story_id": "S", "deliberation_id": "d", "context_version": "v3"}
    )
    assert (payload.plan_id, payload.requested_by, payload.roles) == ("P", "unknown", ["DEVELOPER"])
    assert payload.model_extra == {"deliberation_id": "d", "context_version": "v3"}


@pytest.mark.parametrize(
    "raw",
    [
        {"story_id": "S"},
        {"plan_id": " ", "story_id": "S"},
        {"plan_id": 5, "story_id": "S"},
        {"plan_id": "P", "story_id": "S", "roles": [1, 2]},
    ],
)
def test_bad_requests_are_rejected(raw: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        DerivationRequestedPayload.model_validate(raw)


def test_envelope() -> None:
    envelope = EventEnvelope.model_validate(
        {
            "event_type": "task.derivation.requested",
            "payload": {"plan_id": "P", "story_id": "S"},
            "idempotency_key": "k",
            "correlation_id": "c-1",
            "timestamp": "2026-11-24T10:00:00Z",
            "producer": "planning",
            "metadata": {},
        }
    )
    assert envelope.correlation_id == "c-1"
    assert DerivationRequestedPayload.model_validate(envelope.payload).story_id == "S"


def test_agent_response_in_the_fleet_shape_and_the_legacy_shapes() -> None:
    fleet = AgentResponseCompleted.model_validate(
        {
            "task_id": "derive-P",
            "agent_id": "a",
            "role": "DEVELOPER",
            "status": "completed",
            "duration_ms": 12,
            "timestamp": "t",
            "num_agents": 1,
            "proposal": {"content": "{}", "model": "m", "tokens": 3},
            "constraints": {"story_id": "S", "plan_id": "P", "metadata": {"task_type": "X"}},
        }
    )
    older = AgentResponseCompleted.model_validate({"proposal": "text"})
    legacy = AgentResponseCompleted.model_validate(
        {"plan_id": "P", "story_id": "S", "role": "DEV", "result": {"proposal": "text"}}
    )

    assert isinstance(fleet.proposal, ProposalBody) and fleet.proposal.content == "{}"
    assert fleet.constraints.metadata == {"task_type": "X"}
    assert older.proposal == "text"
    assert legacy.result is not None and legacy.result.proposal == "text"


def test_published_events_have_exactly_the_contract_fields() -> None:
    completed = DerivationCompletedPayload(
        plan_id="P",
        story_id="S",
        task_count=5,
        occurred_at="2026-11-24T10:30:00Z",
        derivation_request_id="d-1",
    )
    failed = DerivationFailedPayload(
        plan_id="P",
        story_id="S",
        reason="LLM timeout after 600s",
        requires_manual_review=True,
        occurred_at="2026-11-24T10:30:00Z",
        derivation_request_id=None,
    )
    assert completed.model_dump() == {
        "plan_id": "P",
        "story_id": "S",
        "task_count": 5,
        "status": "success",
        "occurred_at": "2026-11-24T10:30:00Z",
        "derivation_request_id": "d-1",
    }
    assert set(failed.model_dump()) == {
        "plan_id",
        "story_id",
        "status",
        "reason",
        "requires_manual_review",
        "occurred_at",
        "derivation_request_id",
    }
    with pytest.raises(ValidationError):
        DerivationFailedPayload.model_validate({**failed.model_dump(), "extra": 1})
