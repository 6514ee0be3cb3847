"""The outcome events of a derivation: exactly what Planning waits for.

Serialisation to the wire lives in infrastructure; these only hold and check the facts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from td_pipeline.domain.values import DerivationId, PlanId, StoryId

MAX_REASON_LENGTH = 2_000


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("occurred_at must carry a time zone")
    return moment.astimezone(UTC)


def _reason(text: str, what: str) -> str:
    """A failure's reason, trimmed and kept within what an event carries."""
    reason = text.strip()
    if not reason:
        raise ValueError(f"{what} needs a reason")
    if len(reason) > MAX_REASON_LENGTH:
        reason = reason[: MAX_REASON_LENGTH - 1] + "…"
    return reason


def _message_id(derivation: DerivationId | None, plan: PlanId, story: StoryId, outcome: str) -> str:
    # A publish we retry lands once in JetStream's dedup window.
    subject = derivation.value if derivation else f"{plan.value}/{story.value}"
    return f"td-pipeline:{subject}:{outcome}"


@dataclass(frozen=True, slots=True)
class DerivationCompleted:
    plan_id: PlanId
    story_id: StoryId
    task_count: int
    occurred_at: datetime
    derivation_request_id: DerivationId | None

    def __post_init__(self) -> None:
        if isinstance(self.task_count, bool) or self.task_count < 0:
            raise ValueError(f"task_count must be a count, not {self.task_count!r}")
        object.__setattr__(self, "occurred_at", _utc(self.occurred_at))

    @property
    def outcome(self) -> str:
        return "completed"

    def message_id(self) -> str:
        return _message_id(self.derivation_request_id, self.plan_id, self.story_id, self.outcome)


@dataclass(frozen=True, slots=True)
class DerivationFailed:
    plan_id: PlanId
    story_id: StoryId
    reason: str
    requires_manual_review: bool
    occurred_at: datetime
    derivation_request_id: DerivationId | None
    attempt: int | None = None

    def __post_init__(self) -> None:
        if self.attempt is not None and self.attempt < 1:
            raise ValueError("attempts count from 1")
        object.__setattr__(self, "reason", _reason(self.reason, "a failed derivation"))
        object.__setattr__(self, "occurred_at", _utc(self.occurred_at))

    @property
    def outcome(self) -> str:
        return "failed"

    def message_id(self) -> str:
        # One failed event per attempt.
        outcome = self.outcome if self.attempt is None else f"{self.outcome}:{self.attempt}"
        return _message_id(self.derivation_request_id, self.plan_id, self.story_id, outcome)


@dataclass(frozen=True, slots=True)
class RequestRefused:
    """`task.derivation.failed` for a request no derivation could start from. Its ids are
    the request's exactly as sent: they may be unfit to name a story partition (a comma, a
    control character), which may be why the request was refused."""

    plan_id: str
    story_id: str
    reason: str
    occurred_at: datetime
    request_key: str  # which message: each refused one gets its own event

    def __post_init__(self) -> None:
        if not self.plan_id.strip() or not self.story_id.strip():
            raise ValueError("a refused request is answered only when its ids can be read")
        object.__setattr__(self, "reason", _reason(self.reason, "a refused request"))
        object.__setattr__(self, "occurred_at", _utc(self.occurred_at))

    @property
    def outcome(self) -> str:
        return "failed"

    @property
    def requires_manual_review(self) -> bool:
        return True  # no retry can fix the request

    def message_id(self) -> str:
        return f"td-pipeline:refused:{self.request_key}"


AttemptOutcome = DerivationCompleted | DerivationFailed  # recorded per story, published once
DerivationOutcome = AttemptOutcome | RequestRefused
