"""Request intake: every branch, without Dagster or NATS."""

from __future__ import annotations

from datetime import UTC, datetime

from td_pipeline.application.request_intake import (
    AlreadyStarted,
    RefuseRequest,
    StartDerivation,
    derivation_id_for,
    take_request,
)
from td_pipeline.domain.derivation import DerivationRequest, Refused
from td_pipeline.domain.values import PlanId, Role, StoryId
from td_pipeline_tests.fakes import FakeAttemptHistory

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
REQUEST = DerivationRequest(PlanId("P-1"), StoryId("S-1"), (Role("QA"),), "planning", "c-1")


def test_a_valid_request_starts_a_derivation_named_after_its_message() -> None:
    decision = take_request(REQUEST, "stream:7:1", FakeAttemptHistory(), NOW)

    assert decision == StartDerivation(REQUEST, derivation_id_for("stream:7:1"), new_story=True)
    assert derivation_id_for("stream:7:1") == derivation_id_for("stream:7:1")  # redeliveries
    assert derivation_id_for("stream:7:1") != derivation_id_for("stream:7:2")


def test_a_story_seen_before_adds_no_partition() -> None:
    decision = take_request(REQUEST, "stream:8:1", FakeAttemptHistory(stories={"S-1"}), NOW)
    assert isinstance(decision, StartDerivation) and not decision.new_story


def test_a_redelivered_request_whose_run_exists_starts_nothing() -> None:
    history = FakeAttemptHistory(handled_messages={"stream:7:1"})
    assert take_request(REQUEST, "stream:7:1", history, NOW) == AlreadyStarted()


def test_a_refused_request_is_answered_with_its_ids_as_sent() -> None:
    refused = Refused("story id 'S,1' contains a comma", "P-1", "S,1", "c-9")

    decision = take_request(refused, "stream:9:1", FakeAttemptHistory(), NOW)

    assert isinstance(decision, RefuseRequest) and decision.answer is not None
    assert (decision.answer.plan_id, decision.answer.story_id) == ("P-1", "S,1")
    assert decision.answer.requires_manual_review and decision.correlation_id == "c-9"
    assert decision.answer.message_id() == "td-pipeline:refused:stream:9:1"


def test_a_refused_request_without_readable_ids_gets_no_event() -> None:
    decision = take_request(
        Refused("payload is not JSON"), "stream:10:1", FakeAttemptHistory(), NOW
    )
    assert decision == RefuseRequest("payload is not JSON", None, None)
