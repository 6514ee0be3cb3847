"""Planning stand-in: `TaskDerivationPlanningService` over the SQLite store (`planning_store`),
behaving like the fleet's: it maps roles and enforces Planning's limits as the fleet's does.

Like the real one it creates tasks one by one (a failure part-way leaves the first ones), answers
NOT_FOUND for an unknown plan and INVALID_ARGUMENT for bad input. Fault knobs let tests
simulate outages, slowness and partial failures.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import grpc

from td_pipeline.gen.fleet.task_derivation.v1 import task_derivation_pb2 as pb
from td_pipeline.gen.fleet.task_derivation.v1 import task_derivation_pb2_grpc as pb_grpc
from td_pipeline.sandbox.grpc_server import RunningServer, ServerTls, start_grpc_server
from td_pipeline.sandbox.planning_store import PlanningStore, StoredDependency, StoredTask


@dataclass
class PlanningFaults:
    """Knobs for tests. Mutable on purpose: a test turns them while the server runs."""

    fail_after_creates: int | None = None  # UNAVAILABLE once this many more tasks were created
    latency_seconds: float = 0.0
    unavailable_until: float = 0.0  # time.monotonic() deadline
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def unavailable_for(self, seconds: float) -> None:
        self.unavailable_until = time.monotonic() + seconds

    def before_call(self, context: grpc.ServicerContext) -> None:
        if self.latency_seconds:
            time.sleep(self.latency_seconds)
        if time.monotonic() < self.unavailable_until:
            context.abort(grpc.StatusCode.UNAVAILABLE, "planning is unavailable (fault knob)")

    def before_create(self, context: grpc.ServicerContext) -> None:
        with self._lock:
            if self.fail_after_creates is None:
                return
            if self.fail_after_creates <= 0:
                self.fail_after_creates = None
                context.abort(grpc.StatusCode.UNAVAILABLE, "planning failed mid-way (fault knob)")
            self.fail_after_creates -= 1


def _require(context: grpc.ServicerContext, condition: bool, message: str) -> None:
    if not condition:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)


MAX_TITLE_CHARACTERS = 200
MAX_DESCRIPTION_CHARACTERS = 2_000
# Planning's role mapper (contracts §1.3b): these spellings, anything else stored as DEV.
_PLANNING_ROLES = {
    "DEVELOPER": "DEV",
    "DEV": "DEV",
    "QA": "QA",
    "TESTER": "QA",
    "ARCHITECT": "ARCHITECT",
    "ARCH": "ARCHITECT",
    "PO": "PO",
    "PRODUCT_OWNER": "PO",
}


def planning_role(name: str) -> str:
    return _PLANNING_ROLES.get(name.strip().upper(), "DEV")


class PlanningServicer(pb_grpc.TaskDerivationPlanningServiceServicer):
    def __init__(self, store: PlanningStore, faults: PlanningFaults) -> None:
        self._store = store
        self._faults = faults

    def _check_command(
        self, context: grpc.ServicerContext, index: int, command: pb.TaskCreationCommand
    ) -> None:
        for name, value in (
            ("plan_id", command.plan_id),
            ("story_id", command.story_id),
            ("title", command.title),
            ("assigned_role", command.assigned_role),
        ):
            _require(context, bool(value.strip()), f"commands[{index}].{name} is required")
        _require(
            context,
            len(command.title) <= MAX_TITLE_CHARACTERS,
            f"commands[{index}].title is longer than {MAX_TITLE_CHARACTERS} characters",
        )
        _require(
            context,
            len(command.description) <= MAX_DESCRIPTION_CHARACTERS,
            f"commands[{index}].description is longer than {MAX_DESCRIPTION_CHARACTERS} characters",
        )
        _require(context, command.estimated_hours >= 0, f"commands[{index}].estimated_hours < 0")
        _require(context, command.priority >= 0, f"commands[{index}].priority < 0")
        if self._store.story_of_plan(command.plan_id) is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"plan {command.plan_id} not found")

    def GetPlanContext(
        self, request: pb.GetPlanContextRequest, context: grpc.ServicerContext
    ) -> pb.GetPlanContextResponse:
        self._faults.before_call(context)
        _require(context, bool(request.plan_id.strip()), "plan_id is required")
        story = self._store.story_of_plan(request.plan_id)
        if story is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"plan {request.plan_id} not found")
        return pb.GetPlanContextResponse(
            plan_context=pb.PlanContext(
                plan_id=story.plan_id,
                story_id=story.story_id,
                title=story.title,
                description=story.description,
                acceptance_criteria=story.acceptance_criteria,
                technical_notes=story.technical_notes,
                roles=story.roles,
            )
        )

    def CreateTasks(
        self, request: pb.CreateTasksRequest, context: grpc.ServicerContext
    ) -> pb.CreateTasksResponse:
        self._faults.before_call(context)
        _require(context, len(request.commands) > 0, "commands must not be empty")
        task_ids = []
        # One by one, each checked as it comes, not atomic: as the fleet's Planning, an
        # invalid command part-way leaves the earlier tasks created.
        for index, command in enumerate(request.commands):
            self._check_command(context, index, command)
            self._faults.before_create(context)
            task_id = f"T-{uuid.uuid4()}"
            self._store.add_task(
                StoredTask(
                    task_id=task_id,
                    plan_id=command.plan_id,
                    story_id=command.story_id,
                    title=command.title,
                    description=command.description,
                    estimated_hours=command.estimated_hours,
                    priority=command.priority or 1,  # 0 means unset: stored as the highest
                    assigned_role=planning_role(command.assigned_role),
                )
            )
            task_ids.append(task_id)
        return pb.CreateTasksResponse(task_ids=task_ids)

    def ListStoryTasks(
        self, request: pb.ListStoryTasksRequest, context: grpc.ServicerContext
    ) -> pb.ListStoryTasksResponse:
        self._faults.before_call(context)
        _require(context, bool(request.story_id.strip()), "story_id is required")
        return pb.ListStoryTasksResponse(
            tasks=[
                pb.TaskSummary(
                    task_id=task.task_id,
                    title=task.title,
                    priority=task.priority,
                    assigned_role=task.assigned_role,
                )
                for task in self._store.tasks(request.story_id)
            ]
        )

    def SaveTaskDependencies(
        self, request: pb.SaveTaskDependenciesRequest, context: grpc.ServicerContext
    ) -> pb.SaveTaskDependenciesResponse:
        self._faults.before_call(context)
        _require(context, bool(request.plan_id.strip()), "plan_id is required")
        _require(context, bool(request.story_id.strip()), "story_id is required")
        named = {e.from_task_id for e in request.edges} | {e.to_task_id for e in request.edges}
        unknown = named - self._store.known_task_ids(named) if named else set()
        _require(context, not unknown, f"edges name unknown tasks: {sorted(unknown)}")
        for edge in request.edges:
            _require(
                context, edge.from_task_id != edge.to_task_id, f"{edge.from_task_id} -> itself"
            )
        self._store.save_dependencies(
            request.plan_id,
            request.story_id,
            [StoredDependency(e.from_task_id, e.to_task_id, e.reason) for e in request.edges],
        )
        return pb.SaveTaskDependenciesResponse(success=True)


def serve_planning(
    store: PlanningStore,
    faults: PlanningFaults | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: ServerTls | None = None,
) -> RunningServer:
    servicer = PlanningServicer(store, faults or PlanningFaults())

    def register(server: Any) -> None:
        pb_grpc.add_TaskDerivationPlanningServiceServicer_to_server(servicer, server)

    service = pb.DESCRIPTOR.services_by_name["TaskDerivationPlanningService"].full_name
    return start_grpc_server([register], [service], host=host, port=port, tls=tls)
