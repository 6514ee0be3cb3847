from __future__ import annotations

import pytest

from td_pipeline.application.ports import NotFound, Unavailable
from td_pipeline.application.retries import (
    AttemptFailure,
    GiveUp,
    Restart,
    Retry,
    Stage,
    after_failure,
    failure_reason,
    retry_transient,
)


def failure(
    stage: Stage = Stage.PERSISTENCE, attempt: int = 1, retryable: bool = True
) -> AttemptFailure:
    return AttemptFailure(stage, attempt, retryable, "Planning at 127.0.0.1:1: UNAVAILABLE")


@pytest.mark.parametrize(
    ("stage", "restart"),
    [
        (Stage.SUBMISSION, Restart.RESUBMIT),
        (Stage.ANSWER, Restart.RESUBMIT),
        (Stage.VALIDATION, Restart.RESUBMIT),
        (Stage.PERSISTENCE, Restart.REPERSIST),
    ],
)
def test_only_a_persistence_failure_reuses_the_answer(stage: Stage, restart: Restart) -> None:
    assert after_failure(failure(stage), max_attempts=3) == Retry(restart, next_attempt=2)


def test_attempts_are_capped() -> None:
    assert after_failure(failure(attempt=2), max_attempts=3) == Retry(Restart.REPERSIST, 3)
    assert after_failure(failure(attempt=3), max_attempts=3) == GiveUp("3 of 3 attempts failed")


def test_what_no_retry_can_fix_is_given_up_at_once() -> None:
    decision = after_failure(failure(Stage.SUBMISSION, retryable=False), max_attempts=3)
    assert isinstance(decision, GiveUp)


def test_the_reason_says_what_failed_and_what_happens_next() -> None:
    retried = failure_reason(failure(), Retry(Restart.REPERSIST, 2), 3)
    given_up = failure_reason(failure(attempt=3), GiveUp("3 of 3 attempts failed"), 3)

    assert retried == (
        "failed while creating the tasks in Planning: Planning at 127.0.0.1:1: UNAVAILABLE; "
        "will retry (attempt 2 of 3)"
    )
    assert given_up.endswith("needs manual review: 3 of 3 attempts failed")


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="count from 1"):
        failure(attempt=0)


class Flaky:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise Unavailable("down")
        return "ok"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_transient_errors_are_retried_with_backoff_within_the_budget() -> None:
    clock, call = FakeClock(), Flaky(failures=4)

    result = retry_transient(call, 60, sleep=clock.sleep, clock=lambda: clock.now)

    assert result == "ok" and call.calls == 5
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0]


def test_the_last_error_is_raised_once_the_budget_is_spent() -> None:
    clock, call = FakeClock(), Flaky(failures=100)

    with pytest.raises(Unavailable):
        retry_transient(call, 10, sleep=clock.sleep, clock=lambda: clock.now)

    assert clock.now <= 10 and clock.sleeps[-1] <= 8.0


def test_other_errors_are_not_retried() -> None:
    calls = []

    def missing() -> None:
        calls.append(1)
        raise NotFound("plan P not found")

    with pytest.raises(NotFound):
        retry_transient(missing, 60, sleep=lambda _: None)
    assert calls == [1]
