from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from td_pipeline.gen.fleet.task_derivation.v1 import task_derivation_pb2 as pb
from td_pipeline.gen.fleet.task_derivation.v1 import task_derivation_pb2_grpc as pb_grpc
from td_pipeline.sandbox.planning import (
    MAX_DESCRIPTION_CHARACTERS,
    MAX_TITLE_CHARACTERS,
    PlanningFaults,
    planning_role,
    serve_planning,
)
from td_pipeline.sandbox.planning_store import PlanningStore, load_sample_stories
from td_pipeline_tests.support import wait_until

STORIES = load_sample_stories()
REFUNDS = next(s for s in STORIES if s.story_id == "STORY-REFUNDS")


@pytest.fixture
def store() -> PlanningStore:
    store = PlanningStore()
    store.seed(STORIES)
    return store


@pytest.fixture
def channel(store: PlanningStore, faults: PlanningFaults) -> Iterator[grpc.Channel]:
    running = serve_planning(store, faults)
    try:
        with grpc.insecure_channel(running.address) as channel:
            yield channel
    finally:
        running.stop()


@pytest.fixture
def planning(channel: grpc.Channel) -> pb_grpc.TaskDerivationPlanningServiceStub:
    return pb_grpc.TaskDerivationPlanningServiceStub(channel)


def command(
    title: str,
    plan: str = REFUNDS.plan_id,
    *,
    description: str = "d",
    priority: int = 2,
    role: str = "DEVELOPER",
) -> pb.TaskCreationCommand:
    return pb.TaskCreationCommand(
        plan_id=plan,
        story_id=REFUNDS.story_id,
        title=title,
        description=description,
        estimated_hours=3,
        priority=priority,
        assigned_role=role,
    )


def code_of(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as raised:
        call()  # type: ignore[operator]
    return raised.value.code()


def test_get_plan_context(planning: pb_grpc.TaskDerivationPlanningServiceStub) -> None:
    plan = planning.GetPlanContext(pb.GetPlanContextRequest(plan_id=REFUNDS.plan_id), timeout=5)
    context = plan.plan_context
    assert (context.plan_id, context.story_id, context.title) == (
        REFUNDS.plan_id,
        REFUNDS.story_id,
        REFUNDS.title,
    )
    assert tuple(context.acceptance_criteria) == REFUNDS.acceptance_criteria
    assert tuple(context.roles) == REFUNDS.roles
    assert context.technical_notes == REFUNDS.technical_notes


def test_error_codes(planning: pb_grpc.TaskDerivationPlanningServiceStub) -> None:
    get = planning.GetPlanContext
    assert code_of(lambda: get(pb.GetPlanContextRequest(plan_id="nope"), timeout=5)) == (
        grpc.StatusCode.NOT_FOUND
    )
    assert code_of(lambda: get(pb.GetPlanContextRequest(plan_id=" "), timeout=5)) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    create = planning.CreateTasks
    assert code_of(lambda: create(pb.CreateTasksRequest(), timeout=5)) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert code_of(lambda: create(pb.CreateTasksRequest(commands=[command("")]), timeout=5)) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    unknown_plan = pb.CreateTasksRequest(commands=[command("x", plan="nope")])
    assert code_of(lambda: create(unknown_plan, timeout=5)) == grpc.StatusCode.NOT_FOUND
    listing = pb.ListStoryTasksRequest(story_id="")
    assert code_of(lambda: planning.ListStoryTasks(listing, timeout=5)) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )


def test_tasks_and_dependencies_round_trip(
    planning: pb_grpc.TaskDerivationPlanningServiceStub, store: PlanningStore
) -> None:
    created = planning.CreateTasks(
        pb.CreateTasksRequest(commands=[command("Design"), command("Build")]), timeout=5
    )
    design, build = created.task_ids
    saved = planning.SaveTaskDependencies(
        pb.SaveTaskDependenciesRequest(
            plan_id=REFUNDS.plan_id,
            story_id=REFUNDS.story_id,
            edges=[pb.DependencyEdge(from_task_id=build, to_task_id=design, reason="r")],
        ),
        timeout=5,
    )
    listed = planning.ListStoryTasks(pb.ListStoryTasksRequest(story_id=REFUNDS.story_id), timeout=5)

    assert design.startswith("T-") and build.startswith("T-") and design != build
    assert saved.success
    assert [(t.task_id, t.title, t.priority, t.assigned_role) for t in listed.tasks] == [
        (design, "Design", 2, "DEV"),
        (build, "Build", 2, "DEV"),
    ]
    assert [(d.from_task_id, d.to_task_id) for d in store.dependencies(REFUNDS.story_id)] == [
        (build, design)
    ]


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("DEVELOPER", "DEV"),
        ("DEV", "DEV"),
        ("QA", "QA"),
        ("TESTER", "QA"),
        ("ARCHITECT", "ARCHITECT"),
        ("ARCH", "ARCHITECT"),
        ("PO", "PO"),
        ("PRODUCT_OWNER", "PO"),
        (" qa ", "QA"),
        ("DEVOPS", "DEV"),  # Planning's mapper: anything else is DEV
        ("DATA_ENGINEER", "DEV"),
        ("SYSTEM", "DEV"),
    ],
)
def test_roles_are_stored_through_planning_s_role_mapper(
    planning: pb_grpc.TaskDerivationPlanningServiceStub,
    store: PlanningStore,
    sent: str,
    stored: str,
) -> None:
    assert planning_role(sent) == stored
    planning.CreateTasks(pb.CreateTasksRequest(commands=[command("A", role=sent)]), timeout=5)

    listed = planning.ListStoryTasks(pb.ListStoryTasksRequest(story_id=REFUNDS.story_id), timeout=5)
    assert [t.assigned_role for t in listed.tasks] == [stored]
    assert [t.assigned_role for t in store.tasks(REFUNDS.story_id)] == [stored]


def test_priority_zero_means_unset_and_is_stored_as_the_highest(
    planning: pb_grpc.TaskDerivationPlanningServiceStub, store: PlanningStore
) -> None:
    commands = [command("A", priority=0), command("B", priority=1), command("C", priority=4)]
    planning.CreateTasks(pb.CreateTasksRequest(commands=commands), timeout=5)

    assert [t.priority for t in store.tasks(REFUNDS.story_id)] == [1, 1, 4]
    negative = pb.CreateTasksRequest(commands=[command("D", priority=-1)])
    assert code_of(lambda: planning.CreateTasks(negative, timeout=5)) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )


def test_titles_and_descriptions_within_planning_s_limits_are_stored(
    planning: pb_grpc.TaskDerivationPlanningServiceStub, store: PlanningStore
) -> None:
    assert (MAX_TITLE_CHARACTERS, MAX_DESCRIPTION_CHARACTERS) == (200, 2_000)
    longest = command("T" * 200, description="D" * 2_000)
    planning.CreateTasks(pb.CreateTasksRequest(commands=[longest]), timeout=5)

    (task,) = store.tasks(REFUNDS.story_id)
    assert (len(task.title), len(task.description)) == (200, 2_000)


INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("bad", "code", "message"),
    [
        (command("T" * 201), INVALID, "commands[1].title is longer than 200 characters"),
        (
            command("B", description="D" * 2_001),
            INVALID,
            "commands[1].description is longer than 2000 characters",
        ),
        (command(""), INVALID, "commands[1].title is required"),
        (command("B", plan="nope"), grpc.StatusCode.NOT_FOUND, "plan nope not found"),
    ],
)
def test_a_bad_command_part_way_leaves_the_earlier_tasks_created(
    planning: pb_grpc.TaskDerivationPlanningServiceStub,
    store: PlanningStore,
    bad: pb.TaskCreationCommand,
    code: grpc.StatusCode,
    message: str,
) -> None:
    # As the fleet's Planning: commands are checked one by one as they are created.
    request = pb.CreateTasksRequest(commands=[command("A"), bad, command("C")])
    with pytest.raises(grpc.RpcError) as raised:
        planning.CreateTasks(request, timeout=5)

    assert raised.value.code() == code
    assert raised.value.details() == message
    assert [t.title for t in store.tasks(REFUNDS.story_id)] == ["A"]


def test_edges_naming_unknown_tasks_are_rejected(
    planning: pb_grpc.TaskDerivationPlanningServiceStub, store: PlanningStore
) -> None:
    (known,) = planning.CreateTasks(
        pb.CreateTasksRequest(commands=[command("A")]), timeout=5
    ).task_ids
    request = pb.SaveTaskDependenciesRequest(
        plan_id=REFUNDS.plan_id,
        story_id=REFUNDS.story_id,
        edges=[pb.DependencyEdge(from_task_id=known, to_task_id="T-local-2")],
    )

    assert code_of(lambda: planning.SaveTaskDependencies(request, timeout=5)) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert store.dependencies(REFUNDS.story_id) == ()


def test_fail_after_n_creates_leaves_the_first_n(
    planning: pb_grpc.TaskDerivationPlanningServiceStub,
    store: PlanningStore,
    faults: PlanningFaults,
) -> None:
    faults.fail_after_creates = 2
    request = pb.CreateTasksRequest(commands=[command(t) for t in ("A", "B", "C", "D")])

    assert code_of(lambda: planning.CreateTasks(request, timeout=5)) == grpc.StatusCode.UNAVAILABLE
    assert [t.title for t in store.tasks(REFUNDS.story_id)] == ["A", "B"]
    # The knob fires once: the next call works.
    assert len(planning.CreateTasks(request, timeout=5).task_ids) == 4


def test_unavailable_for_a_while_then_back(
    planning: pb_grpc.TaskDerivationPlanningServiceStub, faults: PlanningFaults
) -> None:
    request = pb.GetPlanContextRequest(plan_id=REFUNDS.plan_id)
    faults.unavailable_for(0.3)

    assert code_of(lambda: planning.GetPlanContext(request, timeout=5)) == (
        grpc.StatusCode.UNAVAILABLE
    )
    # Back once the fault's time is up (the test waits for that time to pass, no more).
    wait_until(lambda: time.monotonic() >= faults.unavailable_until, 5, "the outage ending")
    assert planning.GetPlanContext(request, timeout=5).plan_context.plan_id == REFUNDS.plan_id


def test_added_latency_trips_a_deadline(
    planning: pb_grpc.TaskDerivationPlanningServiceStub, faults: PlanningFaults
) -> None:
    faults.latency_seconds = 0.3
    request = pb.GetPlanContextRequest(plan_id=REFUNDS.plan_id)

    assert code_of(lambda: planning.GetPlanContext(request, timeout=0.1)) == (
        grpc.StatusCode.DEADLINE_EXCEEDED
    )


def test_health_service_reports_serving(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    answer = health.Check(
        health_pb2.HealthCheckRequest(
            service="fleet.task_derivation.v1.TaskDerivationPlanningService"
        ),
        timeout=5,
    )
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
