"""Failure classes and the stream tally behind the metrics."""

from __future__ import annotations

import pytest

from td_pipeline.application.derivation_metrics import (
    LATENCY_BUCKETS,
    MAX_OPEN_REQUESTS,
    Completed,
    DerivationTally,
    Failed,
    FailureClass,
    Requested,
    failure_class,
)
from td_pipeline.application.retries import (
    AttemptFailure,
    Stage,
    after_failure,
    failure_reason,
)


def reason(stage: Stage, attempt: int, description: str, retryable: bool = True) -> str:
    failure = AttemptFailure(stage, attempt, retryable, description)
    return failure_reason(failure, after_failure(failure, 3), 3)


@pytest.mark.parametrize(
    ("stage", "expected"),
    [
        (Stage.SUBMISSION, FailureClass.PEER_UNAVAILABLE),
        (Stage.ANSWER, FailureClass.LLM),
        (Stage.VALIDATION, FailureClass.VALIDATION),
        (Stage.PERSISTENCE, FailureClass.PEER_UNAVAILABLE),
    ],
)
def test_a_failure_that_will_be_retried_is_classed_by_its_stage(
    stage: Stage, expected: FailureClass
) -> None:
    assert failure_class(reason(stage, 1, "it broke"), False) is expected


def test_the_executor_failing_a_submission_at_once_is_the_llm() -> None:
    text = reason(Stage.SUBMISSION, 1, "the executor failed the job at once: no GPU")
    assert failure_class(text, False) is FailureClass.LLM


def test_giving_up_after_the_last_attempt_is_manual_review_whatever_the_stage() -> None:
    for stage in Stage:
        text = reason(stage, 3, "it broke")
        assert "needs manual review" in text
        assert failure_class(text, True) is FailureClass.MANUAL_REVIEW


def test_input_no_retry_can_fix_and_refused_requests_are_bad_requests() -> None:
    final = reason(Stage.SUBMISSION, 1, "plan PLAN-X not found", retryable=False)
    assert failure_class(final, True) is FailureClass.BAD_REQUEST
    refused = "invalid request: story_id: Field required"
    assert failure_class(refused, True) is FailureClass.BAD_REQUEST


def test_the_tally_counts_outcomes_and_measures_request_to_completed() -> None:
    tally = DerivationTally()
    tally.observe(Requested("d-1", 100.0), 1)
    tally.observe(Requested("d-2", 101.0), 2)
    tally.observe(None, 3)  # another subject in the stream
    tally.observe(Failed("d-1", reason(Stage.ANSWER, 1, "timeout"), False, 105.0), 4)
    tally.observe(Completed("d-1", 112.0), 5)  # retried, then completed: 12 s in all
    tally.observe(Completed(None, 113.0), 6)  # no derivation id: counted, no latency

    snapshot = tally.snapshot()

    assert (snapshot.requested, snapshot.completed, snapshot.last_sequence) == (2, 2, 6)
    assert snapshot.failed[FailureClass.LLM] == 1
    assert sum(snapshot.failed.values()) == 1
    latency = snapshot.latency
    assert latency.count == 1 and latency.total_seconds == pytest.approx(12.0)
    assert latency.bounds == LATENCY_BUCKETS
    twenty = LATENCY_BUCKETS.index(20)
    assert latency.cumulative[twenty - 1] == 0 and latency.cumulative[twenty] == 1
    assert latency.cumulative[-1] == 1


def test_a_derivation_given_up_is_forgotten_and_old_requests_do_not_pile_up() -> None:
    tally = DerivationTally()
    tally.observe(Requested("d-1", 0.0), 1)
    tally.observe(Failed("d-1", reason(Stage.ANSWER, 3, "timeout"), True, 5.0), 2)
    tally.observe(Completed("d-1", 9.0), 3)  # a late, unexpected completion: no latency
    assert tally.snapshot().latency.count == 0

    for index in range(MAX_OPEN_REQUESTS + 10):
        tally.observe(Requested(f"r-{index}", 0.0), 10 + index)
    tally.observe(Completed("r-0", 1.0), 10**7)  # the oldest was forgotten
    tally.observe(Completed(f"r-{MAX_OPEN_REQUESTS}", 1.0), 10**7 + 1)
    assert tally.snapshot().latency.count == 1
