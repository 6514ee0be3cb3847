from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from td_pipeline.gen.fleet.task_derivation.v1 import task_derivation_pb2 as pb
from td_pipeline.gen.fleet.task_derivation.v1 import task_derivation_pb2_grpc as pb_grpc
from td_pipeline.sandbox.planning import (
    PlanningFaults,
    PlanningStore,
    load_sample_stories,
    serve_planning,
    story_copies,
)

STORIES = load_sample_stories()
REFUNDS = next(s for s in STORIES if s.story_id == "STORY-REFUNDS")


@pytest.fixture
def faults() -> PlanningFaults:
    return PlanningFaults()


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


def command(title: str, plan: str = REFUNDS.plan_id) -> pb.TaskCreationCommand:
    return pb.TaskCreationCommand(
        plan_id=plan,
        story_id=REFUNDS.story_id,
        title=title,
        description="d",
        estimated_hours=3,
        priority=2,
        assigned_role="DEVELOPER",
    )


def code_of(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as raised:
        call()  # type: ignore[operator]
    return raised.value.code()  # type: ignore[attr-defined,no-any-return]


def test_seed_has_varied_realistic_stories() -> None:
    assert len(STORIES) >= 10
    assert len({s.plan_id for s in STORIES}) == len(STORIES)
    for story in STORIES:
        assert 2 <= len(story.acceptance_criteria) <= 6
        assert 1 <= len(story.roles) <= 3
        assert story.technical_notes and story.context["decisions"]


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
    assert [(t.task_id, t.title, t.assigned_role) for t in listed.tasks] == [
        (design, "Design", "DEVELOPER"),
        (build, "Build", "DEVELOPER"),
    ]
    assert [(d.from_task_id, d.to_task_id) for d in store.dependencies(REFUNDS.story_id)] == [
        (build, design)
    ]


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
    time.sleep(0.35)
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


def test_story_copies_get_their_own_ids() -> None:
    samples = load_sample_stories()
    copies = story_copies(samples, len(samples) + 3)

    assert len({c.story_id for c in copies}) == len({c.plan_id for c in copies}) == len(copies)
    assert copies[len(samples)].title == samples[0].title
    assert copies[0].story_id == f"{samples[0].story_id}-C1"
    with pytest.raises(ValueError, match="positive count"):
        story_copies(samples, 0)
