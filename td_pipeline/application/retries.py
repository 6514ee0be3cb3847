"""What happens after an attempt fails, and how a step rides out a short outage.

One decision backs the failed event (`requires_manual_review`), the retry schedule and
`td-pipeline retry-failed`, so they can never disagree."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from td_pipeline.application.ports import Unavailable

T = TypeVar("T")


class Stage(StrEnum):
    """Where an attempt failed."""

    SUBMISSION = "submission"  # plan, context, prompt or the hand-over to the executor
    ANSWER = "answer"  # the executor failed, lost the job or never answered
    VALIDATION = "validation"  # the answer is unusable
    PERSISTENCE = "persistence"  # creating the tasks in Planning

    @property
    def doing(self) -> str:
        return {
            Stage.SUBMISSION: "submitting to the LLM",
            Stage.ANSWER: "waiting for the LLM",
            Stage.VALIDATION: "reading the LLM's answer",
            Stage.PERSISTENCE: "creating the tasks in Planning",
        }[self]


NO_RETRY_CAN_FIX = "no retry can fix this"  # why td-pipeline gives up on input at once
# A submission the executor answered with a failed job: an LLM failure, not a peer outage.
EXECUTOR_FAILED_AT_ONCE = "the executor failed the job at once"


class Restart(StrEnum):
    RESUBMIT = "resubmit"  # ask the LLM again, from the plan
    REPERSIST = "repersist"  # persist the stored answer again; the LLM is not called


@dataclass(frozen=True, slots=True)
class AttemptFailure:
    stage: Stage
    attempt: int
    retryable: bool  # False when no retry can fix it (unknown plan, invalid input)
    description: str

    def __post_init__(self) -> None:
        if self.attempt < 1:
            raise ValueError("attempts count from 1")


@dataclass(frozen=True, slots=True)
class Retry:
    restart: Restart
    next_attempt: int


@dataclass(frozen=True, slots=True)
class GiveUp:
    why: str


def after_failure(failure: AttemptFailure, max_attempts: int) -> Retry | GiveUp:
    if not failure.retryable:
        return GiveUp(NO_RETRY_CAN_FIX)
    if failure.attempt >= max_attempts:
        return GiveUp(f"{failure.attempt} of {max_attempts} attempts failed")
    # Only a failure to persist can reuse the answer; anything earlier needs a new one.
    restart = Restart.REPERSIST if failure.stage is Stage.PERSISTENCE else Restart.RESUBMIT
    return Retry(restart, failure.attempt + 1)


def failure_reason(failure: AttemptFailure, decision: Retry | GiveUp, max_attempts: int) -> str:
    """The failed event's reason: what went wrong, and what happens next."""
    then = (
        f"will retry (attempt {decision.next_attempt} of {max_attempts})"
        if isinstance(decision, Retry)
        else f"needs manual review: {decision.why}"
    )
    return f"{_failed_while(failure.stage)} {failure.description}; {then}"


def failed_stage(reason: str) -> Stage | None:
    """The stage a failed event's reason names (`failure_reason`); None for a reason of
    another kind (a refused request)."""
    return next((stage for stage in Stage if reason.startswith(_failed_while(stage))), None)


def _failed_while(stage: Stage) -> str:
    return f"failed while {stage.doing}:"


def retry_transient(
    call: Callable[[], T],
    budget_seconds: float,
    *,
    first_delay_seconds: float = 0.5,
    max_delay_seconds: float = 8.0,
    on_retry: Callable[[Unavailable, float], None] = lambda error, delay: None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """`call()`, again with exponential backoff while a service is unavailable, for up to
    `budget_seconds`. Only for calls that are safe to repeat (persistence lists first)."""
    deadline = clock() + budget_seconds
    delay = first_delay_seconds
    while True:
        try:
            return call()
        except Unavailable as error:
            if clock() + delay > deadline:
                raise
            on_retry(error, delay)
            sleep(delay)
            delay = min(delay * 2, max_delay_seconds)
