"""The Planning adapter: `PlanningPort` over `TaskDerivationPlanningService`."""

from __future__ import annotations

from collections.abc import Sequence

from td_pipeline.application.ports import PersistedEdge, PortError
from td_pipeline.domain.plan import PlannedTask, StoryPlan
from td_pipeline.domain.task_graph import TaskNode
from td_pipeline.domain.values import PlanId, StoryId
from td_pipeline.gen.fleet.task_derivation.v1 import task_derivation_pb2 as pb
from td_pipeline.gen.fleet.task_derivation.v1 import task_derivation_pb2_grpc as pb_grpc
from td_pipeline.infrastructure.grpc_channel import ChannelSettings, LazyChannel, call
from td_pipeline.infrastructure.planning_mappers import (
    creation_commands,
    dependency_edges,
    planned_task_from_proto,
    story_plan_from_proto,
)

SERVICE = pb.DESCRIPTOR.services_by_name["TaskDerivationPlanningService"].full_name
# CreateTasks is left out: retrying it after a partial failure would create tasks twice.
IDEMPOTENT_METHODS = ("GetPlanContext", "ListStoryTasks", "SaveTaskDependencies")


class GrpcPlanningClient:
    def __init__(self, settings: ChannelSettings) -> None:
        self._settings = settings
        self._channel = LazyChannel(settings, SERVICE, IDEMPOTENT_METHODS)

    def _stub(self) -> pb_grpc.TaskDerivationPlanningServiceStub:
        return pb_grpc.TaskDerivationPlanningServiceStub(self._channel.get())

    def get_plan(self, plan_id: PlanId) -> StoryPlan:
        request = pb.GetPlanContextRequest(plan_id=plan_id.value)
        answer = call(
            "GetPlanContext",
            self._settings,
            lambda timeout: self._stub().GetPlanContext(request, timeout=timeout),
        )
        if not answer.HasField("plan_context"):
            raise PortError(f"Planning answered no plan context for {plan_id.value}")
        return story_plan_from_proto(answer.plan_context)

    def list_story_tasks(self, story_id: StoryId) -> tuple[PlannedTask, ...]:
        request = pb.ListStoryTasksRequest(story_id=story_id.value)
        answer = call(
            "ListStoryTasks",
            self._settings,
            lambda timeout: self._stub().ListStoryTasks(request, timeout=timeout),
        )
        return tuple(planned_task_from_proto(task) for task in answer.tasks)

    def create_tasks(
        self, plan_id: PlanId, story_id: StoryId, tasks: Sequence[TaskNode]
    ) -> tuple[str, ...]:
        if not tasks:
            return ()
        request = pb.CreateTasksRequest(commands=creation_commands(plan_id, story_id, tasks))
        answer = call(
            "CreateTasks",
            self._settings,
            lambda timeout: self._stub().CreateTasks(request, timeout=timeout),
        )
        if len(answer.task_ids) != len(tasks):
            raise PortError(
                f"Planning returned {len(answer.task_ids)} ids for {len(tasks)} created tasks"
            )
        return tuple(answer.task_ids)

    def save_dependencies(
        self, plan_id: PlanId, story_id: StoryId, edges: Sequence[PersistedEdge]
    ) -> None:
        request = pb.SaveTaskDependenciesRequest(
            plan_id=plan_id.value, story_id=story_id.value, edges=dependency_edges(edges)
        )
        answer = call(
            "SaveTaskDependencies",
            self._settings,
            lambda timeout: self._stub().SaveTaskDependencies(request, timeout=timeout),
        )
        if not answer.success:
            raise PortError(f"Planning did not save the dependencies of {story_id.value}")

    def close(self) -> None:
        self._channel.close()
