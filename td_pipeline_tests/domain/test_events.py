from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from td_pipeline.domain.events import DerivationCompleted, DerivationFailed, RequestRefused
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


def refused(**changes: object) -> RequestRefused:
    fields: dict[str, object] = {
        "plan_id": "P-1",
        "story_id": "S-1,S-2",
        "reason": "  invalid request: story id 'S-1,S-2' contains a comma ",
        "occurred_at": NOON_CET,
        "request_key": "task_derivation:7:123",
    }
    fields.update(changes)
    return RequestRefused(**fields)  # type: ignore[arg-type]


def test_a_refused_request_keeps_its_ids_exactly_as_sent() -> None:
    event = refused(plan_id="P\t1", story_id=" S-1,S-2 ")
    assert (event.plan_id, event.story_id) == ("P\t1", " S-1,S-2 ")
    assert event.reason == "invalid request: story id 'S-1,S-2' contains a comma"
    assert event.occurred_at == datetime(2026, 11, 24, 11, 0, tzinfo=UTC)
    assert (event.outcome, event.requires_manual_review) == ("failed", True)


def test_each_refused_request_is_its_own_event() -> None:
    assert refused().message_id() == "td-pipeline:refused:task_derivation:7:123"
    # Two refused requests for the same story are two events, not one deduplicated.
    assert refused(request_key="task_derivation:7:124").message_id() != refused().message_id()
    assert refused(story_id="S-9").message_id() == refused().message_id()


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"plan_id": " "}, "ids can be read"),
        ({"story_id": ""}, "ids can be read"),
        ({"reason": " \n "}, "reason"),
        ({"occurred_at": datetime(2026, 11, 24, 12, 0)}, "time zone"),
    ],
)
def test_a_refused_request_needs_ids_a_reason_and_a_time(
    changes: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        refused(**changes)


def test_a_refused_requests_reason_is_capped() -> None:
    reason = refused(reason="x" * 5_000).reason
    assert len(reason) == 2_000 and reason.endswith("…")


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="count from 1"):
        failed(attempt=0)
