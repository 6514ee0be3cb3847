"""A derivation request and the LLM's answer to one attempt, as the pipeline sees them."""

from __future__ import annotations

from dataclasses import dataclass

from td_pipeline.domain.values import DerivationId, PlanId, Role, StoryId


@dataclass(frozen=True, slots=True)
class DerivationRequest:
    plan_id: PlanId
    story_id: StoryId
    roles: tuple[Role, ...]
    requested_by: str
    correlation_id: str | None = None

    def __post_init__(self) -> None:
        # No roles: the plan's roles are used (then the developer role).
        if len(set(self.roles)) != len(self.roles):
            object.__setattr__(self, "roles", tuple(dict.fromkeys(self.roles)))


@dataclass(frozen=True, slots=True)
class LlmAnswer:
    """The executor's answer for one of our attempts (ids as found in the response)."""

    plan_id: PlanId
    story_id: StoryId
    text: str
    derivation_id: DerivationId | None
    attempt: int | None


@dataclass(frozen=True, slots=True)
class LlmFailureReport:
    """A failed LLM job of ours. The executor's failure names only our task id, so plan and
    story are known only from older shapes; the attempt tells the rest."""

    plan_id: PlanId | None
    story_id: StoryId | None
    reason: str
    derivation_id: DerivationId
    attempt: int | None
    timed_out: bool = False  # the executor's `error_type` TimeoutError: the LLM was too busy


@dataclass(frozen=True, slots=True)
class DerivationAttempt:
    """One attempt at deriving a story's tasks: what each run of its partition carries."""

    plan_id: PlanId
    story_id: StoryId
    roles: tuple[Role, ...]
    derivation_id: DerivationId
    attempt: int
    correlation_id: str | None = None

    def __post_init__(self) -> None:
        if not self.roles:
            raise ValueError("an attempt needs at least one role")
        if self.attempt < 1:
            raise ValueError("attempts count from 1")


@dataclass(frozen=True, slots=True)
class Refused:
    """An inbound message no retry can fix. Plan and story ids are set, exactly as sent, when
    they could be read (even when they cannot name a partition), so that a failed event can
    still answer the requester."""

    reason: str
    plan_id: str | None = None
    story_id: str | None = None
    correlation_id: str | None = None  # the request envelope's, carried into the failed event


@dataclass(frozen=True, slots=True)
class NotOurs:
    """An agent response for another task type: acknowledged and ignored."""

    task_type: str
