from __future__ import annotations

import json
from typing import Any

import pytest

from td_pipeline.domain.derivation import DerivationRequest, LlmAnswer, LlmFailureReport
from td_pipeline.domain.values import DerivationId, PlanId, Role, StoryId
from td_pipeline.infrastructure.nats_mappers import (
    NotOurs,
    Refused,
    decode_agent_failure,
    decode_agent_response,
    decode_request,
)


def encoded(value: Any) -> bytes:
    return json.dumps(value).encode()


def test_bare_request() -> None:
    request = decode_request(
        encoded({"plan_id": "P", "story_id": "S", "roles": ["developer", "qa"]})
    )
    assert request == DerivationRequest(
        PlanId("P"), StoryId("S"), (Role("DEVELOPER"), Role("QA")), "unknown", None
    )


def test_a_role_no_agent_takes_is_refused_with_the_ids_to_answer() -> None:
    refused = decode_request(encoded({"plan_id": "P", "story_id": "S", "roles": ["QA", "bard"]}))
    widened = decode_request(
        encoded({"plan_id": "P", "story_id": "S", "roles": ["bard"]}),
        known_roles=frozenset({Role("BARD")}),
    )

    assert isinstance(refused, Refused)
    assert refused.reason.startswith("invalid request: unknown role(s) BARD (known: ARCHITECT")
    assert (refused.plan_id, refused.story_id) == (PlanId("P"), StoryId("S"))
    assert isinstance(widened, DerivationRequest)


def test_enveloped_request_keeps_the_correlation_id() -> None:
    request = decode_request(
        encoded(
            {
                "event_type": "task.derivation.requested",
                "payload": {"plan_id": "P", "story_id": "S", "requested_by": "planner"},
                "idempotency_key": "k",
                "correlation_id": "corr-7",
                "timestamp": "2026-11-24T10:00:00Z",
                "producer": "planning",
                "metadata": {},
            }
        )
    )
    assert isinstance(request, DerivationRequest)
    assert (request.correlation_id, request.requested_by, request.roles) == (
        "corr-7",
        "planner",
        (Role("DEVELOPER"),),
    )


@pytest.mark.parametrize(
    ("data", "reason", "ids"),
    [
        (b"{not json", "not JSON", (None, None)),
        (b"\xff\xfe", "not JSON", (None, None)),
        (b"[1, 2]", "JSON list, not an object", (None, None)),
        (encoded({"story_id": "S"}), "plan_id", (None, "S")),
        (encoded({"plan_id": "P", "story_id": 7}), "story_id", ("P", None)),
        (encoded({"plan_id": "P", "story_id": "S1,S2"}), "comma", ("P", None)),
        (encoded({"plan_id": "P", "story_id": "S\u0007"}), "control character", ("P", None)),
        (
            encoded({"plan_id": "P", "story_id": "S", "roles": ["QA!"]}),
            "not a role name",
            ("P", "S"),
        ),
        (encoded({"plan_id": "P", "story_id": "S", "roles": {"a": 1}}), "roles", ("P", "S")),
        (encoded({"event_type": "x", "payload": "nope"}), "malformed envelope", (None, None)),
        (
            b'{"plan_id": "P", "story_id": "S", "pad": "' + b"x" * 1_100_000 + b'"}',
            "limit",
            (None, None),
        ),
    ],
)
def test_refused_requests_say_why_and_keep_readable_ids(
    data: bytes, reason: str, ids: tuple[str | None, str | None]
) -> None:
    refused = decode_request(data)
    assert isinstance(refused, Refused)
    assert reason in refused.reason
    plan, story = ids
    assert refused.plan_id == (PlanId(plan) if plan else None)
    assert refused.story_id == (StoryId(story) if story else None)


FLEET_RESPONSE = {
    "task_id": "derive-P",
    "agent_id": "a",
    "role": "DEVELOPER",
    "status": "completed",
    "duration_ms": 5,
    "timestamp": "t",
    "num_agents": 1,
    "proposal": {"content": '{"tasks": []}', "model": "m"},
    "constraints": {
        "story_id": "S",
        "plan_id": "P",
        "timeout": 600,
        "max_retries": 0,
        "metadata": {"task_type": " task_derivation ", "derivation_id": "d-1", "attempt": "2"},
    },
}


def test_fleet_shaped_answer() -> None:
    assert decode_agent_response(encoded(FLEET_RESPONSE)) == LlmAnswer(
        PlanId("P"), StoryId("S"), '{"tasks": []}', DerivationId("d-1"), 2
    )


def test_ids_and_text_are_found_in_the_documented_order() -> None:
    response = {
        "plan_id": "P-top",
        "proposal": "older string shape",
        "constraints": {"metadata": {"task_type": "TASK_DERIVATION", "story_id": "S-meta"}},
    }
    answer = decode_agent_response(encoded(response))
    assert isinstance(answer, LlmAnswer)
    assert (answer.plan_id.value, answer.story_id.value, answer.text) == (
        "P-top",
        "S-meta",
        "older string shape",
    )
    assert (answer.derivation_id, answer.attempt) == (None, None)
    legacy = {**response, "result": {"proposal": "legacy text"}}
    assert decode_agent_response(encoded(legacy)).text == "legacy text"  # type: ignore[union-attr]


@pytest.mark.parametrize("metadata", [{"task_type": "CODE_REVIEW"}, {}])
def test_other_agents_responses_are_not_ours(metadata: dict[str, str]) -> None:
    response = {**FLEET_RESPONSE, "constraints": {"metadata": metadata}}
    assert isinstance(decode_agent_response(encoded(response)), NotOurs)


def test_our_response_without_ids_or_text_is_refused() -> None:
    no_ids = {"proposal": "x", "constraints": {"metadata": {"task_type": "TASK_DERIVATION"}}}
    no_text = {**FLEET_RESPONSE, "proposal": None}
    assert "ids" in decode_agent_response(encoded(no_ids)).reason  # type: ignore[union-attr]
    refused = decode_agent_response(encoded(no_text))
    assert isinstance(refused, Refused) and refused.story_id == StoryId("S")


def test_agent_failure() -> None:
    failure = {
        "task_id": "derive-P",
        "status": "failed",
        "error": "CUDA out of memory",
        "constraints": FLEET_RESPONSE["constraints"],
    }
    assert decode_agent_failure(encoded(failure)) == LlmFailureReport(
        PlanId("P"), StoryId("S"), "LLM failed: CUDA out of memory", DerivationId("d-1"), 2
    )
    other = {**failure, "constraints": {"metadata": {"task_type": "OTHER"}}}
    assert isinstance(decode_agent_failure(encoded(other)), NotOurs)
