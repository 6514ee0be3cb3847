from __future__ import annotations

import pytest
from pydantic import ValidationError

from td_pipeline.infrastructure.payloads import (
    AgentResponseCompleted,
    AgentResponseFailed,
    DerivationCompletedPayload,
    DerivationFailedPayload,
    DerivationRequestedPayload,
    EventEnvelope,
    ProposalBody,
    ResponseConstraints,
)
from td_pipeline_tests.fixtures import fleet_message


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        # Missing, null or empty: no roles asked for, so the plan's roles are used.
        (None, []),
        ([], []),
        ("", []),
        ([" ", ""], []),
        ("qa", ["qa"]),
        (["developer", " qa ", ""], ["developer", "qa"]),
        (["DEV", "PO"], ["DEV", "PO"]),  # spellings are normalised later, by the decoder
    ],
)
def test_request_roles_in_any_accepted_shape(roles: object, expected: list[str]) -> None:
    payload = DerivationRequestedPayload.model_validate(
        {"plan_id": "P", "story_id": "S", "roles": roles}
    )
    assert payload.roles == expected


def test_request_without_roles_asks_for_none() -> None:
    payload = DerivationRequestedPayload.model_validate({"plan_id": "P", "story_id": "S"})
    assert payload.roles == []


def test_request_defaults_and_extras() -> None:
    payload = DerivationRequestedPayload.model_validate(
        {"plan_id": " P ", "story_id": "S", "deliberation_id": "d", "context_version": "v3"}
    )
    assert (payload.plan_id, payload.requested_by, payload.roles) == ("P", "unknown", [])
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


def test_agent_response_as_the_executor_really_publishes_it() -> None:
    response = AgentResponseCompleted.model_validate(fleet_message("agent_response_completed"))

    assert (response.task_id, response.agent_id, response.role) == (
        "td:d-0123456789abcdef:1",
        "task-deriver-001",
        "DEV",
    )
    assert (response.success, response.model, response.num_agents) == (True, "Qwen/Qwen3-8B", 1)
    assert (response.operations, response.artifacts, response.audit_trail) == ([], {}, [])
    assert isinstance(response.proposal, ProposalBody)
    assert response.proposal.content.startswith('{"tasks"')
    constraints = response.constraints
    assert (constraints.timeout_seconds, constraints.max_retries) == (600, 0)
    assert constraints.metadata["num_agents"] == 1  # an integer: not a string map on the wire
    assert constraints.metadata_text("task_type") == "TASK_DERIVATION"
    assert constraints.metadata_text("attempt") == "1"


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"attempt": "2", "num_agents": 1}, {"attempt": "2", "num_agents": 1}),
        ({"labels": ["a"], "nested": {"k": None}}, {"labels": ["a"], "nested": {"k": None}}),
        (None, {}),
        ("free text", {"original": "free text"}),  # the executor wraps a non-object
        (["a", 1], {"original": ["a", 1]}),
    ],
)
def test_response_metadata_takes_any_json(metadata: object, expected: dict[str, object]) -> None:
    assert ResponseConstraints.model_validate({"metadata": metadata}).metadata == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [("7", "7"), (7, "7"), (0, "0"), (True, None), (1.0, None), (None, None), (["7"], None)],
)
def test_our_metadata_keys_are_read_as_strings(value: object, text: str | None) -> None:
    constraints = ResponseConstraints.model_validate({"metadata": {"attempt": value}})
    assert constraints.metadata_text("attempt") == text
    assert constraints.metadata_text("missing") is None


def test_constraints_carry_timeout_seconds() -> None:
    constraints = ResponseConstraints.model_validate({"timeout_seconds": 120, "max_retries": 2})
    assert (constraints.timeout_seconds, constraints.max_retries) == (120, 2)
    older = ResponseConstraints.model_validate({"timeout": 600})
    assert older.timeout_seconds is None and older.model_extra == {"timeout": 600}


def test_agent_failure_as_the_executor_really_publishes_it() -> None:
    failure = AgentResponseFailed.model_validate(fleet_message("agent_response_failed"))

    assert (failure.task_id, failure.status, failure.success) == (
        "td:d-0123456789abcdef:1",
        "failed",
        False,
    )
    assert (failure.error, failure.error_type) == (
        "vLLM request timed out after 120s",
        "TimeoutError",
    )
    assert (failure.duration_ms, failure.num_agents) == (12, 1)
    assert failure.metadata == {"task_id": "td:d-0123456789abcdef:1"}
    # No constraints on the wire: an empty set, not a validation error.
    assert failure.constraints == ResponseConstraints()
    assert failure.constraints.metadata == {}


def test_agent_failure_metadata_that_is_not_an_object_is_wrapped() -> None:
    failure = AgentResponseFailed.model_validate({"metadata": "td:d-1:1"})
    assert failure.metadata == {"original": "td:d-1:1"}
    assert AgentResponseFailed.model_validate({"metadata": None}).metadata == {}


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
