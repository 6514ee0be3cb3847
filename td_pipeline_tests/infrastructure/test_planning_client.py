"""The Planning adapter against the sandbox's Planning server, over a real socket."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from td_pipeline.application.ports import NotFound, PersistedEdge, Rejected, Unavailable
from td_pipeline.domain.planning_limits import PRIORITY_WHEN_UNSET
from td_pipeline.domain.task_graph import TaskNode
from td_pipeline.domain.values import (
    Description,
    EstimatedHours,
    PlanId,
    Priority,
    Role,
    StoryId,
    TaskKey,
    Title,
)
from td_pipeline.infrastructure.grpc_channel import ChannelSettings
from td_pipeline.infrastructure.planning_client import GrpcPlanningClient
from td_pipeline.infrastructure.planning_mappers import creation_commands
from td_pipeline.sandbox.planning import PlanningFaults, serve_planning
from td_pipeline.sandbox.planning_store import PlanningStore, load_sample_stories

PLAN, STORY = PlanId("PLAN-PAY-1"), StoryId("STORY-REFUNDS")


def task(
    key: str,
    title: str,
    hours: int | None = 2,
    role: str = "DEVELOPER",
    priority: int | None = 1,
) -> TaskNode:
    return TaskNode(
        key=TaskKey(key),
        title=Title(title),
        description=Description(f"Do {title}"),
        role=Role(role),
        estimated_hours=EstimatedHours(hours) if hours else None,
        priority=Priority(priority) if priority else None,
        covers=(1,),
    )


@pytest.fixture
def store() -> PlanningStore:
    store = PlanningStore()
    store.seed(load_sample_stories())
    return store


@pytest.fixture
def client(store: PlanningStore, faults: PlanningFaults) -> Iterator[GrpcPlanningClient]:
    running = serve_planning(store, faults)
    client = GrpcPlanningClient(ChannelSettings(running.address, timeout_seconds=2))
    yield client
    client.close()
    running.stop()


def test_plan_is_mapped_to_the_domain(client: GrpcPlanningClient) -> None:
    plan = client.get_plan(PLAN)
    assert (plan.plan_id, plan.story_id) == (PLAN, STORY)
    # Planning stores its own role names (DEV, QA): read back as the canonical roles.
    assert plan.roles == (Role("DEVELOPER"), Role("QA"))
    assert len(plan.acceptance_criteria) == 4


def test_create_list_and_link_tasks(client: GrpcPlanningClient, store: PlanningStore) -> None:
    ids = client.create_tasks(PLAN, STORY, [task("T1", "Design"), task("T2", "Build", None)])
    client.save_dependencies(PLAN, STORY, [PersistedEdge(ids[1], ids[0], "needs the design")])

    listed = client.list_story_tasks(STORY)
    assert [(t.task_id, t.title.value, t.role) for t in listed] == [
        (ids[0], "Design", "DEV"),
        (ids[1], "Build", "DEV"),
    ]
    assert [(d.from_task_id, d.to_task_id) for d in store.dependencies(STORY.value)] == [
        (ids[1], ids[0])
    ]
    assert store.tasks(STORY.value)[1].estimated_hours == 0  # unknown estimate sent as 0


@pytest.mark.parametrize(
    ("role", "planning_role"),
    [
        ("DEVELOPER", "DEV"),
        ("QA", "QA"),
        ("ARCHITECT", "ARCHITECT"),
        ("PRODUCT_OWNER", "PO"),
        ("DEVOPS", "DEV"),  # Planning has no such role: its mapper would store DEV anyway
        ("DATA_ENGINEER", "DEV"),
        ("SECURITY", "DEV"),
    ],
)
def test_tasks_are_sent_with_planning_s_role_names(
    client: GrpcPlanningClient, store: PlanningStore, role: str, planning_role: str
) -> None:
    (command,) = creation_commands(PLAN, STORY, [task("T1", "Design", role=role)])
    assert command.assigned_role == planning_role

    client.create_tasks(PLAN, STORY, [task("T1", "Design", role=role)])
    assert [t.assigned_role for t in store.tasks(STORY.value)] == [planning_role]


def test_an_unknown_priority_is_never_sent_as_zero(
    client: GrpcPlanningClient, store: PlanningStore
) -> None:
    tasks = [task("T1", "Urgent", priority=1), task("T2", "Whenever", priority=None)]
    commands = creation_commands(PLAN, STORY, tasks)
    # Planning reads 0 as "unset" and stores it as 1, the highest: medium is sent instead.
    assert [c.priority for c in commands] == [1, PRIORITY_WHEN_UNSET.value] == [1, 3]

    client.create_tasks(PLAN, STORY, tasks)
    assert [t.priority for t in store.tasks(STORY.value)] == [1, 3]


def test_create_tasks_past_planning_s_limits_is_rejected_part_way(
    client: GrpcPlanningClient, store: PlanningStore
) -> None:
    # Shortening is the caller's job (persistence); Planning refuses, and is not atomic.
    too_long = task("T2", "T" * 201)
    with pytest.raises(Rejected, match=r"commands\[1\]\.title is longer than 200"):
        client.create_tasks(PLAN, STORY, [task("T1", "A"), too_long, task("T3", "C")])

    assert [t.title for t in store.tasks(STORY.value)] == ["A"]


def test_status_codes_become_port_errors(client: GrpcPlanningClient) -> None:
    with pytest.raises(NotFound, match=r"GetPlanContext .* NOT_FOUND"):
        client.get_plan(PlanId("PLAN-NOPE"))
    with pytest.raises(Rejected, match="INVALID_ARGUMENT"):
        client.save_dependencies(PLAN, STORY, [PersistedEdge("T-a", "T-b", "")])


def test_idempotent_calls_ride_out_a_short_outage(
    client: GrpcPlanningClient, faults: PlanningFaults
) -> None:
    faults.unavailable_for(0.3)
    assert client.get_plan(PLAN).plan_id == PLAN  # retried with backoff inside the channel


def test_create_tasks_is_not_retried_after_a_partial_failure(
    client: GrpcPlanningClient, faults: PlanningFaults, store: PlanningStore
) -> None:
    faults.fail_after_creates = 1

    with pytest.raises(Unavailable):
        client.create_tasks(PLAN, STORY, [task("T1", "A"), task("T2", "B"), task("T3", "C")])

    assert [t.title for t in store.tasks(STORY.value)] == ["A"]


def test_a_dead_server_fails_fast_as_unavailable() -> None:
    client = GrpcPlanningClient(ChannelSettings("127.0.0.1:1", timeout_seconds=2, retry_attempts=1))
    with pytest.raises(Unavailable, match="UNAVAILABLE"):
        client.list_story_tasks(STORY)


@pytest.mark.parametrize(
    "fields",
    [
        {"address": "nowhere"},
        {"address": "127.0.0.1:1", "timeout_seconds": 0},
        {"address": "127.0.0.1:1", "retry_attempts": 9},
        {"address": "127.0.0.1:1", "tls_cert_path": "cert.pem"},
    ],
)
def test_bad_channel_settings_are_rejected(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ChannelSettings(**fields)  # type: ignore[arg-type]
