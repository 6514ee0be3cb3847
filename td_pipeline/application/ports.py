"""The ports the use-case steps need, as Protocols; adapters live in infrastructure.

Errors are part of the port: adapters translate their transport's failures into these, so
the steps can decide what is retried and what asks for a person's review."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from td_pipeline.domain.plan import PlannedTask, StoryPlan
from td_pipeline.domain.prompt import RoleContext
from td_pipeline.domain.task_graph import TaskNode
from td_pipeline.domain.values import DerivationId, PlanId, Role, StoryId


class PortError(Exception):
    """A peer could not do what was asked."""


class NotFound(PortError):
    """The peer does not know the thing asked for (e.g. an unknown plan); no retry helps."""


class Rejected(PortError):
    """The peer found the request invalid; no retry helps."""


class Unavailable(PortError):
    """The peer could not be reached or answered too late; a retry may help."""


@dataclass(frozen=True, slots=True)
class PersistedEdge:
    """A dependency between two tasks under Planning's ids: `dependent` waits for `prerequisite`."""

    dependent_id: str
    prerequisite_id: str
    reason: str


class PlanningPort(Protocol):
    def get_plan(self, plan_id: PlanId) -> StoryPlan: ...

    def list_story_tasks(self, story_id: StoryId) -> tuple[PlannedTask, ...]: ...

    def create_tasks(
        self, plan_id: PlanId, story_id: StoryId, tasks: Sequence[TaskNode]
    ) -> tuple[str, ...]:
        """Planning's ids of the created tasks, in the order given."""
        ...

    def save_dependencies(
        self, plan_id: PlanId, story_id: StoryId, edges: Sequence[PersistedEdge]
    ) -> None: ...


class ContextPort(Protocol):
    def get_context(self, story_id: StoryId, role: Role, phase: str = "PLAN") -> RoleContext: ...


@dataclass(frozen=True, slots=True)
class ExecutorSubmission:
    """One attempt at a derivation, handed to the Ray Executor. What the answer must be
    correlated with (derivation id, attempt) travels in the submission's metadata."""

    derivation_id: DerivationId
    attempt: int
    plan_id: PlanId
    story_id: StoryId
    role: Role
    prompt: str
    timeout_seconds: int
    model: str = ""
    vllm_url: str = ""

    def __post_init__(self) -> None:
        if self.attempt < 1:
            raise ValueError("attempts count from 1")
        if not self.prompt.strip():
            raise ValueError("a submission needs a prompt")
        if self.timeout_seconds < 1:
            raise ValueError("timeout_seconds must be positive")


@dataclass(frozen=True, slots=True)
class SubmissionReceipt:
    deliberation_id: str
    accepted: bool  # the executor took the job; False when it answered "failed" at once
    message: str


@dataclass(frozen=True, slots=True)
class DeliberationStatus:
    """What the executor says of a job: running, completed, failed or not_found. The fleet's
    executor answers `completed` for a job whose LLM call failed, with an empty proposal."""

    status: str
    has_proposal: bool = False
    error: str = ""

    @property
    def failed_silently(self) -> bool:
        return self.status == "completed" and not self.has_proposal


class ExecutorPort(Protocol):
    def submit(self, submission: ExecutorSubmission) -> SubmissionReceipt: ...

    def deliberation_status(self, deliberation_id: str) -> DeliberationStatus: ...
