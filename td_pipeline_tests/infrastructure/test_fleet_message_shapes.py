"""The decoders against every real message shape of the fleet (contracts.md §1.2, §1.3, §1.3b).

The fixtures in td_pipeline_tests/fixtures/fleet_messages are what the fleet's peers really
send; the sandbox stand-ins are tested against the same files, so the two cannot drift."""

from __future__ import annotations

import json

import pytest

from td_pipeline.domain.derivation import DerivationRequest, LlmAnswer, LlmFailureReport
from td_pipeline.domain.roles import agent_role_name, planning_role_name, role_from_text
from td_pipeline.domain.values import DerivationId, PlanId, Role, StoryId
from td_pipeline.infrastructure.nats_mappers import (
    Refused,
    decode_agent_failure,
    decode_agent_response,
    decode_request,
)
from td_pipeline_tests.fixtures import FLEET_MESSAGES, fleet_message, fleet_message_bytes

PLAN, STORY = PlanId("PLAN-PAY-1"), StoryId("STORY-REFUNDS")
DERIVATION = DerivationId("d-0123456789abcdef")
ANSWER_TEXT = json.dumps(
    {
        "tasks": [
            {
                "id": "T1",
                "title": "Add the refund endpoint",
                "role": "DEV",
                "estimated_hours": 4,
                "priority": 1,
                "depends_on": [],
            }
        ]
    }
)

COMPLETED = (
    "agent_response_completed",
    "agent_response_completed_string_proposal",
    "agent_response_completed_envelope_result",
)
FAILED = ("agent_response_failed",)
REQUESTS = {
    "task_derivation_requested_event_type": ((Role("DEVELOPER"), Role("QA")), None),
    "task_derivation_requested_bare": ((Role("DEVELOPER"),), None),
    "task_derivation_requested_envelope": ((Role("PRODUCT_OWNER"),), "corr-7"),
}


def test_every_fixture_file_is_decoded_here() -> None:
    files = {path.stem for path in FLEET_MESSAGES.glob("*.json")}
    assert files == {*COMPLETED, *FAILED, *REQUESTS}


@pytest.mark.parametrize("name", COMPLETED)
def test_every_completed_shape_is_the_same_answer(name: str) -> None:
    answer = decode_agent_response(fleet_message_bytes(name))
    assert answer == LlmAnswer(PLAN, STORY, ANSWER_TEXT, DERIVATION, 1)


def test_the_executors_answer_has_integers_in_its_metadata() -> None:
    # What made the string-map reading of `constraints.metadata` refuse every real answer.
    metadata = fleet_message("agent_response_completed")["constraints"]["metadata"]
    assert isinstance(metadata["num_agents"], int)


@pytest.mark.parametrize("name", FAILED)
def test_the_executors_failure_names_its_attempt_by_the_task_id(name: str) -> None:
    message = fleet_message(name)
    assert "constraints" not in message and "plan_id" not in message

    report = decode_agent_failure(fleet_message_bytes(name))

    assert isinstance(report, LlmFailureReport)
    assert (report.derivation_id, report.attempt) == (DERIVATION, 1)
    assert (report.plan_id, report.story_id) == (None, None)  # the attempt tells the rest
    assert "vLLM request timed out after 120s" in report.reason
    assert "TimeoutError" in report.reason


@pytest.mark.parametrize("name", REQUESTS)
def test_every_request_shape_is_decoded(name: str) -> None:
    roles, correlation_id = REQUESTS[name]
    request = decode_request(fleet_message_bytes(name))
    assert request == DerivationRequest(PLAN, STORY, roles, "planning-service", correlation_id)


# Every spelling of contracts §1.3b, with its canonical role.
SPELLINGS = [
    ("DEV", "DEVELOPER"),
    ("DEVELOPER", "DEVELOPER"),
    ("QA", "QA"),
    ("TESTER", "QA"),
    ("ARCHITECT", "ARCHITECT"),
    ("ARCH", "ARCHITECT"),
    ("PO", "PRODUCT_OWNER"),
    ("PRODUCT_OWNER", "PRODUCT_OWNER"),
    ("SYSTEM", "SYSTEM"),
    ("DEVOPS", "DEVOPS"),
    ("DATA", "DATA_ENGINEER"),
]
# The canonical roles, with the name Planning stores and the executor agent that derives.
PEER_NAMES = {
    "DEVELOPER": ("DEV", "DEV"),
    "QA": ("QA", "QA"),
    "ARCHITECT": ("ARCHITECT", "ARCHITECT"),
    "PRODUCT_OWNER": ("PO", "DEV"),
    "SYSTEM": ("DEV", "DEV"),  # Planning's mapper stores anything but DEV/QA/ARCHITECT/PO as DEV
    "DEVOPS": ("DEV", "DEVOPS"),
    "DATA_ENGINEER": ("DEV", "DATA"),
}


@pytest.mark.parametrize(("spelling", "canonical"), SPELLINGS)
def test_every_role_spelling_of_the_fleet_is_normalised(spelling: str, canonical: str) -> None:
    for sent in (spelling, spelling.lower(), f" {spelling.title()} "):
        request = decode_request(
            json.dumps({"plan_id": "P", "story_id": "S", "roles": [sent]}).encode()
        )
        assert isinstance(request, DerivationRequest), request
        assert request.roles == (Role(canonical),)


@pytest.mark.parametrize("canonical", sorted(PEER_NAMES))
def test_each_peer_gets_back_the_role_names_it_knows(canonical: str) -> None:
    role = Role(canonical)
    planning_name, agent_name = PEER_NAMES[canonical]

    assert (planning_role_name(role), agent_role_name(role)) == (planning_name, agent_name)
    # A name sent out reads back as a role the peer names the same way.
    assert planning_role_name(role_from_text(planning_name)) == planning_name
    assert agent_role_name(role_from_text(agent_name)) == agent_name


def test_the_table_covers_every_canonical_role_of_the_spellings() -> None:
    assert {canonical for _, canonical in SPELLINGS} == set(PEER_NAMES)


def test_an_unknown_role_is_refused_with_readable_ids() -> None:
    refused = decode_request(
        json.dumps(
            {"plan_id": "PLAN-PAY-1", "story_id": "STORY-REFUNDS", "roles": ["ASTRONAUT"]}
        ).encode()
    )
    assert isinstance(refused, Refused)
    assert "unknown role(s) ASTRONAUT" in refused.reason
    assert (refused.plan_id, refused.story_id) == ("PLAN-PAY-1", "STORY-REFUNDS")


def test_a_story_id_with_a_comma_is_refused_with_the_ids_exactly_as_sent() -> None:
    message = fleet_message("task_derivation_requested_envelope")
    message["payload"]["story_id"] = "STORY-REFUNDS,STORY-SEARCH"

    refused = decode_request(json.dumps(message).encode())

    assert isinstance(refused, Refused)
    assert "contains a comma" in refused.reason
    assert (refused.plan_id, refused.story_id, refused.correlation_id) == (
        "PLAN-PAY-1",
        "STORY-REFUNDS,STORY-SEARCH",
        "corr-7",
    )
