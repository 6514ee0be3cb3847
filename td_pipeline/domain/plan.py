"""What Planning knows about a story: its plan, and the tasks it already holds."""

from __future__ import annotations

from dataclasses import dataclass

from td_pipeline.domain.values import PlanId, Role, StoryId, Title


@dataclass(frozen=True, slots=True)
class StoryPlan:
    plan_id: PlanId
    story_id: StoryId
    title: str
    description: str
    acceptance_criteria: tuple[str, ...]
    technical_notes: str
    roles: tuple[Role, ...]

    def __post_init__(self) -> None:
        if not self.title.strip():
            raise ValueError(f"plan {self.plan_id.value} has a story without a title")


@dataclass(frozen=True, slots=True)
class PlannedTask:
    """A task Planning already holds for a story, under Planning's own id."""

    task_id: str
    title: Title
    priority: int
    role: str

    def __post_init__(self) -> None:
        if not self.task_id.strip():
            raise ValueError("a planned task needs Planning's id")
