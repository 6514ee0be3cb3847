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


@pytest.mark.parametrize("roles", [None, [], "", ["  "]])
def test_a_request_without_roles_asks_for_the_plans_roles(roles: object) -> None:
    fields = {"plan_id": "P", "story_id": "S"}
    request = decode_request(encoded({**fields, "roles": roles}))
    assert isinstance(request, DerivationRequest)
    assert request.roles == ()
    assert decode_request(encoded(fields)) == request


def test_the_fleets_role_spellings_are_normalised_and_deduplicated() -> None:
    request = decode_request(
        encoded({"plan_id": "P", "story_id": "S", "roles": ["DEV", "tester", "Developer", "PO"]})
    )
    assert isinstance(request, DerivationRequest)
    assert request.roles == (Role("DEVELOPER"), Role("QA"), Role("PRODUCT_OWNER"))


def test_a_role_no_agent_takes_is_refused_with_the_ids_to_answer() -> None:
    refused = decode_request(encoded({"plan_id": "P", "story_id": "S", "roles": ["QA", "bard"]}))
    widened = decode_request(
        encoded({"plan_id": "P", "story_id": "S", "roles": ["bard"]}),
        known_roles=frozenset({Role("BARD")}),
    )

    assert isinstance(refused, Refused)
    assert refused.reason.startswith("invalid request: unknown role(s) BARD (known: ARCHITECT")
    assert (refused.plan_id, refused.story_id, refused.correlation_id) == ("P", "S", None)
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
        (),
    )


def test_a_refused_enveloped_request_keeps_the_correlation_id_and_the_ids_as_sent() -> None:
    refused = decode_request(
        encoded(
            {
                "event_type": "task.derivation.requested",
                "payload": {"plan_id": " P ", "story_id": "S-1,S-2"},
                "correlation_id": "corr-8",
            }
        )
    )
    assert isinstance(refused, Refused)
    assert "contains a comma" in refused.reason
    assert (refused.plan_id, refused.story_id, refused.correlation_id) == (
        " P ",
        "S-1,S-2",
        "corr-8",
    )


@pytest.mark.parametrize(
    ("data", "reason", "ids"),
    [
        (b"{not json", "not JSON", (None, None)),
        (b"\xff\xfe", "not JSON", (None, None)),
        (b"[1, 2]", "JSON list, not an object", (None, None)),
        (encoded({"story_id": "S"}), "plan_id", (None, "S")),
        (encoded({"plan_id": "P", "story_id": 7}), "story_id", ("P", None)),
        (encoded({"plan_id": "P", "story_id": "  "}), "story_id", ("P", None)),
        # Ids that cannot name a partition are still read, exactly as sent, to answer with.
        (encoded({"plan_id": "P", "story_id": "S1,S2"}), "comma", ("P", "S1,S2")),
        (encoded({"plan_id": "P", "story_id": "S\u0007"}), "control character", ("P", "S\u0007")),
        (encoded({"plan_id": "P\n2", "story_id": "S"}), "control character", ("P\n2", "S")),
        (encoded({"plan_id": "P" * 201, "story_id": "S"}), "longer than 200", ("P" * 201, "S")),
        # Too long to carry back, or not encodable as UTF-8: not read.
        (encoded({"plan_id": "P", "story_id": "S" * 1_001}), "longer than 200", ("P", None)),
        (b'{"plan_id": "P\\ud800", "story_id": "S"}', "plan id", (None, "S")),
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
    assert (refused.plan_id, refused.story_id) == ids


FLEET_RESPONSE = {
    "task_id": "td:d-1:2",
    "agent_id": "task-deriver-001",
    "role": "DEV",
    "status": "completed",
    "duration_ms": 5,
    "timestamp": "t",
    "num_agents": 1,
    "proposal": {"content": '{"tasks": []}', "model": "m"},
    "success": True,
    "constraints": {
        "story_id": "S",
        "plan_id": "P",
        "timeout_seconds": 600,
        "max_retries": 0,
        "metadata": {
            "task_type": " task_derivation ",
            "derivation_id": "d-1",
            "attempt": "2",
            "task_id": "td:d-1:2",
            "num_agents": 1,
        },
    },
}
ANSWER = LlmAnswer(PlanId("P"), StoryId("S"), '{"tasks": []}', DerivationId("d-1"), 2)


def with_metadata(**metadata: object) -> dict[str, Any]:
    constraints = FLEET_RESPONSE["constraints"]
    assert isinstance(constraints, dict)
    return {**FLEET_RESPONSE, "constraints": {**constraints, "metadata": metadata}}


def test_fleet_shaped_answer() -> None:
    assert decode_agent_response(encoded(FLEET_RESPONSE)) == ANSWER


def test_an_attempt_given_as_a_json_number_is_read() -> None:
    response = with_metadata(task_type="TASK_DERIVATION", derivation_id="d-1", attempt=2)
    assert decode_agent_response(encoded({**response, "task_id": "other"})) == ANSWER


def test_an_answer_is_tied_to_its_attempt_by_our_task_id_alone() -> None:
    # No task type, no correlation keys: the td: task id says it is ours and which attempt.
    response = with_metadata(num_agents=1)
    assert decode_agent_response(encoded(response)) == ANSWER
    bare = {"task_id": "td:d-7:3", "plan_id": "P", "story_id": "S", "proposal": "text"}
    assert decode_agent_response(encoded(bare)) == LlmAnswer(
        PlanId("P"), StoryId("S"), "text", DerivationId("d-7"), 3
    )


def test_unreadable_correlation_metadata_falls_back_to_the_task_id() -> None:
    response = with_metadata(task_type="TASK_DERIVATION", derivation_id="d,1", attempt="²")
    assert decode_agent_response(encoded(response)) == ANSWER
    unknown = decode_agent_response(encoded({**response, "task_id": "derive-P"}))
    assert isinstance(unknown, LlmAnswer)
    assert (unknown.derivation_id, unknown.attempt) == (None, None)


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


@pytest.mark.parametrize(
    ("metadata", "task_type"),
    [({"task_type": "CODE_REVIEW"}, "CODE_REVIEW"), ({}, ""), ({"task_type": 7}, "")],
)
@pytest.mark.parametrize(
    "task_id",
    [
        "derive-P",  # Planning's own legacy derivations
        "story-1:task-extraction",
        "ceremony-1:role-DEV",
        "td:d-1",  # no attempt
        "td:d-1:0",  # attempts count from 1
        "td:d,1:1",  # not a derivation id
        None,
    ],
)
def test_other_agents_responses_are_not_ours(
    metadata: dict[str, object], task_type: str, task_id: str | None
) -> None:
    response = {**FLEET_RESPONSE, "task_id": task_id, "constraints": {"metadata": metadata}}
    assert decode_agent_response(encoded(response)) == NotOurs(task_type)


def test_our_response_without_ids_or_text_is_refused() -> None:
    no_ids = {"proposal": "x", "constraints": {"metadata": {"task_type": "TASK_DERIVATION"}}}
    only_task_id = {"task_id": "td:d-1:1", "proposal": "x"}
    no_text = {**FLEET_RESPONSE, "proposal": None}
    for response in (no_ids, only_task_id):
        refused = decode_agent_response(encoded(response))
        assert isinstance(refused, Refused) and "without usable ids" in refused.reason
    refused = decode_agent_response(encoded(no_text))
    assert isinstance(refused, Refused) and "no answer text" in refused.reason
    assert (refused.plan_id, refused.story_id) == ("P", "S")


FLEET_FAILURE = {
    "task_id": "td:d-1:2",
    "agent_id": "task-deriver-001",
    "role": "DEV",
    "status": "failed",
    "duration_ms": 12,
    "timestamp": "t",
    "error": "vLLM request timed out after 120s",
    "error_type": "TimeoutError",
    "success": False,
    "model": "m",
    "num_agents": 1,
    "metadata": {"task_id": "td:d-1:2"},
}


def test_the_executors_failure_is_tied_to_its_attempt_by_the_task_id() -> None:
    assert decode_agent_failure(encoded(FLEET_FAILURE)) == LlmFailureReport(
        None,
        None,
        "LLM failed: TimeoutError: vLLM request timed out after 120s",
        DerivationId("d-1"),
        2,
        timed_out=True,  # the LLM was too busy: the window shrinks
    )


@pytest.mark.parametrize(
    ("task_id", "metadata", "attempt"),
    [
        ("td:d-1:2", {}, ("d-1", 2)),  # no metadata: the task id
        ("ray-job-17", {"task_id": "td:d-1:2"}, ("d-1", 2)),  # the original in metadata
        ("td:d-9:9", {"task_id": "td:d-1:2"}, ("d-1", 2)),  # metadata.task_id first
        ("td:d-1:2", {"task_id": "derive-P"}, ("d-1", 2)),  # then task_id
        ("td:d-1:2", "td:d-1:2", ("d-1", 2)),  # metadata not an object: wrapped, task_id read
    ],
)
def test_a_failure_is_found_by_metadata_task_id_then_task_id(
    task_id: str, metadata: object, attempt: tuple[str, int]
) -> None:
    failure = decode_agent_failure(
        encoded({**FLEET_FAILURE, "task_id": task_id, "metadata": metadata})
    )
    assert isinstance(failure, LlmFailureReport)
    assert (failure.derivation_id, failure.attempt) == (DerivationId(attempt[0]), attempt[1])


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"error": "boom", "error_type": "RuntimeError"}, "LLM failed: RuntimeError: boom"),
        (
            {"error": "TimeoutError: 120s", "error_type": "TimeoutError"},
            "LLM failed: TimeoutError: 120s",
        ),
        ({"error": "  ", "error_type": None, "message": "gone"}, "LLM failed: gone"),
        ({"error": None, "error_type": " "}, "LLM failed: the LLM job failed"),
        ({"error": None, "error_type": "ValueError"}, "LLM failed: ValueError: the LLM job failed"),
    ],
)
def test_a_failures_reason_names_the_error_and_its_type(
    fields: dict[str, object], reason: str
) -> None:
    failure = decode_agent_failure(encoded({**FLEET_FAILURE, **fields}))
    assert isinstance(failure, LlmFailureReport)
    assert failure.reason == reason


def test_an_older_failure_shape_with_our_constraints() -> None:
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


def test_a_failure_with_our_task_id_keeps_the_plan_and_story_it_names() -> None:
    failure = {**FLEET_FAILURE, "constraints": {"plan_id": "P", "story_id": "S\t1"}}
    report = decode_agent_failure(encoded(failure))
    assert isinstance(report, LlmFailureReport)
    # An unusable story id is dropped, not a reason to lose the failure.
    assert (report.plan_id, report.story_id) == (PlanId("P"), None)
    assert (report.derivation_id, report.attempt) == (DerivationId("d-1"), 2)


@pytest.mark.parametrize(
    "failure",
    [
        {**FLEET_FAILURE, "task_id": "derive-P", "metadata": {"task_id": "derive-P"}},
        {**FLEET_FAILURE, "task_id": "td:d-1:0", "metadata": {}},
        {"task_id": "task-9", "status": "failed", "error": "x", "constraints": {"metadata": {}}},
        {"status": "failed", "error": "x"},
    ],
)
def test_other_agents_failures_are_not_ours(failure: dict[str, object]) -> None:
    assert isinstance(decode_agent_failure(encoded(failure)), NotOurs)


def test_a_derivation_failure_that_names_no_attempt_of_ours_is_refused() -> None:
    failure = {
        "task_id": "derive-P",
        "status": "failed",
        "error": "CUDA out of memory",
        "constraints": {
            "plan_id": "P",
            "story_id": "S",
            "metadata": {"task_type": "TASK_DERIVATION"},
        },
    }
    refused = decode_agent_failure(encoded(failure))
    assert isinstance(refused, Refused)
    assert "names no attempt of ours" in refused.reason
