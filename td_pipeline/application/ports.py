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
from td_pipeline.domain.values import PlanId, Role, StoryId


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
