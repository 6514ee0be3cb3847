"""Persisting a derived task graph in Planning without ever duplicating a task or an edge.

Planning creates tasks one by one and a failure can stop it part-way; a result can also be
delivered twice, or an operator can re-run the step. So every run starts from what Planning
already holds: tasks are matched by title (case and white space ignored), only the missing
ones are created, and dependencies are saved under Planning's real ids. Tasks are shortened
to Planning's limits first (`planning_limits`), so the titles compared are the ones stored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from td_pipeline.application.ports import PersistedEdge, PlanningPort
from td_pipeline.domain.plan import PlannedTask
from td_pipeline.domain.planning_limits import fit_for_planning
from td_pipeline.domain.task_graph import TaskGraph
from td_pipeline.domain.values import PlanId, StoryId, TaskKey


@dataclass(frozen=True, slots=True)
class PersistedGraph:
    task_ids: dict[TaskKey, str]  # graph key -> Planning's id
    created: tuple[TaskKey, ...]
    reused: tuple[TaskKey, ...]
    edges: tuple[PersistedEdge, ...]


def persist_task_graph(
    planning: PlanningPort, plan_id: PlanId, story_id: StoryId, graph: TaskGraph
) -> PersistedGraph:
    # Compared and created as Planning stores them (shortened to its limits).
    nodes = fit_for_planning(graph.nodes).nodes
    existing = {task.title.normalized: task.task_id for task in planning.list_story_tasks(story_id)}
    reused = tuple(node.key for node in nodes if node.title.normalized in existing)
    missing = [node for node in nodes if node.title.normalized not in existing]
    new_ids = planning.create_tasks(plan_id, story_id, missing) if missing else ()

    task_ids = {node.key: existing[node.title.normalized] for node in nodes if node.key in reused}
    task_ids.update({node.key: task_id for node, task_id in zip(missing, new_ids, strict=True)})
    edges = tuple(
        PersistedEdge(
            dependent_id=task_ids[edge.dependent],
            prerequisite_id=task_ids[edge.prerequisite],
            reason=edge.reason,
        )
        for edge in graph.edges
    )
    if edges:
        planning.save_dependencies(plan_id, story_id, edges)
    return PersistedGraph(
        task_ids=task_ids,
        created=tuple(node.key for node in missing),
        reused=reused,
        edges=edges,
    )


def missing_from_planning(
    persisted: PersistedGraph, held: Sequence[PlannedTask]
) -> tuple[str, ...]:
    """Planning's ids recorded for the graph that Planning does not hold (any at all is a
    fault: it answered CreateTasks with ids it then lost)."""
    held_ids = {task.task_id for task in held}
    return tuple(
        sorted(task_id for task_id in persisted.task_ids.values() if task_id not in held_ids)
    )
