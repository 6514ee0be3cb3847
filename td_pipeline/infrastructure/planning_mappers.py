"""Planning's protobuf messages <-> the domain."""

from __future__ import annotations

from collections.abc import Sequence

from td_pipeline.application.ports import PersistedEdge
from td_pipeline.domain.plan import PlannedTask, StoryPlan
from td_pipeline.domain.planning_limits import PRIORITY_WHEN_UNSET
from td_pipeline.domain.roles import planning_role_name, role_from_text
from td_pipeline.domain.task_graph import TaskNode
from td_pipeline.domain.values import PlanId, StoryId, Title
from td_pipeline.gen.fleet.task_derivation.v1 import task_derivation_pb2 as pb


def story_plan_from_proto(context: pb.PlanContext) -> StoryPlan:
    return StoryPlan(
        plan_id=PlanId(context.plan_id),
        story_id=StoryId(context.story_id),
        title=context.title,
        description=context.description,
        acceptance_criteria=tuple(c for c in context.acceptance_criteria if c.strip()),
        technical_notes=context.technical_notes,
        roles=tuple(dict.fromkeys(role_from_text(r) for r in context.roles if r.strip())),
    )


def planned_task_from_proto(task: pb.TaskSummary) -> PlannedTask:
    return PlannedTask(
        task_id=task.task_id,
        title=Title(task.title),
        priority=task.priority,
        role=task.assigned_role,
    )


def creation_commands(
    plan_id: PlanId, story_id: StoryId, tasks: Sequence[TaskNode]
) -> list[pb.TaskCreationCommand]:
    # Planning's fields are plain int32: an unknown estimate is sent as 0 ("unset"); an
    # unknown priority as medium, since Planning reads 0 as the highest.
    return [
        pb.TaskCreationCommand(
            plan_id=plan_id.value,
            story_id=story_id.value,
            title=task.title.value,
            description=task.description.value,
            estimated_hours=task.estimated_hours.value if task.estimated_hours else 0,
            priority=(task.priority or PRIORITY_WHEN_UNSET).value,
            assigned_role=planning_role_name(task.role),
        )
        for task in tasks
    ]


def dependency_edges(edges: Sequence[PersistedEdge]) -> list[pb.DependencyEdge]:
    return [
        pb.DependencyEdge(
            from_task_id=edge.dependent_id, to_task_id=edge.prerequisite_id, reason=edge.reason
        )
        for edge in edges
    ]
