"""In-memory twins of the ports, for unit tests of the layers above them."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from td_pipeline.application.attempt_history import SubmittedAttempt
from td_pipeline.application.ports import PersistedEdge, Unavailable
from td_pipeline.domain.plan import PlannedTask, StoryPlan
from td_pipeline.domain.task_graph import TaskNode
from td_pipeline.domain.values import PlanId, StoryId, Title


@dataclass
class FakePlanning:
    """Behaves like Planning: creates one by one, can fail part-way, dedups edges."""

    plans: dict[PlanId, StoryPlan] = field(default_factory=dict)
    tasks: dict[StoryId, list[PlannedTask]] = field(default_factory=dict)
    edges: dict[StoryId, list[PersistedEdge]] = field(default_factory=dict)
    fail_after_creates: int | None = None
    calls: list[str] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def get_plan(self, plan_id: PlanId) -> StoryPlan:
        self.calls.append("get_plan")
        return self.plans[plan_id]

    def list_story_tasks(self, story_id: StoryId) -> tuple[PlannedTask, ...]:
        self.calls.append("list_story_tasks")
        return tuple(self.tasks.get(story_id, []))

    def create_tasks(
        self, plan_id: PlanId, story_id: StoryId, tasks: Sequence[TaskNode]
    ) -> tuple[str, ...]:
        self.calls.append("create_tasks")
        created = []
        for task in tasks:
            if self.fail_after_creates is not None:
                if self.fail_after_creates == 0:
                    self.fail_after_creates = None
                    raise Unavailable("fake Planning failed part-way")
                self.fail_after_creates -= 1
            task_id = f"T-{next(self._ids)}"
            self.tasks.setdefault(story_id, []).append(
                PlannedTask(task_id, Title(task.title.value), 1, task.role.value)
            )
            created.append(task_id)
        return tuple(created)

    def save_dependencies(
        self, plan_id: PlanId, story_id: StoryId, edges: Sequence[PersistedEdge]
    ) -> None:
        self.calls.append("save_dependencies")
        known = {task.task_id for task in self.tasks.get(story_id, [])}
        for edge in edges:
            assert {edge.dependent_id, edge.prerequisite_id} <= known, f"unknown task in {edge}"
        saved = self.edges.setdefault(story_id, [])
        saved.extend(edge for edge in edges if edge not in saved)


@dataclass
class FakeAttemptHistory:
    """What the instance would know, as plain data (`AttemptHistory`)."""

    stories: set[str] = field(default_factory=set)
    handled_messages: set[str] = field(default_factory=set)
    derivation_stories: dict[str, str] = field(default_factory=dict)
    submissions: dict[str, SubmittedAttempt] = field(default_factory=dict)
    submitting: set[tuple[str, str, int | None]] = field(default_factory=set)
    answered: set[tuple[str, str, int]] = field(default_factory=set)

    def story_exists(self, story: str) -> bool:
        return story in self.stories

    def message_handled(self, message_key: str) -> bool:
        return message_key in self.handled_messages

    def story_of_derivation(self, derivation_id: str) -> str | None:
        return self.derivation_stories.get(derivation_id)

    def current_submission(self, story: str) -> SubmittedAttempt | None:
        return self.submissions.get(story)

    def still_submitting(self, story: str, derivation_id: str, attempt: int | None) -> bool:
        return (story, derivation_id, attempt) in self.submitting

    def answer_handled(self, story: str, derivation_id: str, attempt: int) -> bool:
        return (story, derivation_id, attempt) in self.answered
