"""Both jobs, in process, against the sandbox fleet over real sockets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import grpc
import pytest

from td_pipeline.application.ports import PersistedEdge, PlanningPort
from td_pipeline.domain.plan import PlannedTask, StoryPlan
from td_pipeline.domain.task_graph import TaskNode
from td_pipeline.domain.values import PlanId, StoryId
from td_pipeline.gen.fleet.ray_executor.v1 import ray_executor_pb2 as executor_pb2
from td_pipeline.gen.fleet.ray_executor.v1 import ray_executor_pb2_grpc as executor_grpc
from td_pipeline.orchestration.asset_steps import DERIVE_STEPS
from td_pipeline.orchestration.attempts import Phase
from td_pipeline.orchestration.batch_fallback_sensor import batch_fallback_sensor
from td_pipeline.orchestration.definitions import defs
from td_pipeline.orchestration.partitions import STORIES, story_partitions
from td_pipeline.orchestration.resources import (
    ContextResource,
    DerivationSettings,
    NatsResource,
    PlanningResource,
    RayExecutorResource,
)
from td_pipeline.orchestration.run_requests import StoryWork, batch_run_key, batch_run_request
from td_pipeline.sandbox.fleet import LocalFleet
from td_pipeline.sandbox.planning_store import load_sample_stories
from td_pipeline_tests.support import stored_bodies, wait_until

pytestmark = pytest.mark.pipeline  # Dagster runs: in `make e2e`, not the fast tier

STORY, PLAN = "STORY-REFUNDS", "PLAN-PAY-1"


@pytest.fixture
def instance(instance: dg.DagsterInstance) -> dg.DagsterInstance:
    """The shared empty instance (conftest.py), knowing the story."""
    instance.add_dynamic_partitions(story_partitions.name, [STORY])
    return instance


def fleet_settings(fleet: LocalFleet, **overrides: Any) -> DerivationSettings:
    """Settings as a deployment against this fleet has them (the executor refuses a
    submission without VLLM_URL and VLLM_MODEL)."""
    env = fleet.environment()
    values: dict[str, Any] = {"min_tasks": 2, "max_tasks": 12, **overrides}
    return DerivationSettings(vllm_url=env["VLLM_URL"], vllm_model=env["VLLM_MODEL"], **values)


def resources(fleet: LocalFleet) -> dict[str, Any]:
    env = fleet.environment()
    return {
        "planning": PlanningResource(address=env["PLANNING_SERVICE_ADDRESS"]),
        "context_service": ContextResource(address=env["CONTEXT_SERVICE_ADDRESS"]),
        "executor": RayExecutorResource(address=env["RAY_EXECUTOR_ADDRESS"]),
        "settings": fleet_settings(fleet),
        "nats": NatsResource(url=env["NATS_URL"]),
    }


def run(
    job_name: str, fleet: LocalFleet, instance: dg.DagsterInstance, ops: dict[str, Any]
) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def(job_name)
    return job.execute_in_process(
        run_config={"ops": ops},
        instance=instance,
        partition_key=STORY,
        resources=resources(fleet),
        raise_on_error=False,
    )


def answer_of(fleet: LocalFleet, deliberation_id: str) -> str:
    request = executor_pb2.GetDeliberationStatusRequest(deliberation_id=deliberation_id)
    with grpc.insecure_channel(fleet.environment()["RAY_EXECUTOR_ADDRESS"]) as channel:
        stub = executor_grpc.RayExecutorServiceStub(channel)
        status = wait_until(
            lambda: (
                (answer := stub.GetDeliberationStatus(request, timeout=5)).status == "completed"
                and answer
            ),
            5,
            "the executor answering",
        )
    return status.result.proposal


def answer_config(text: str, derivation: str, plan: str = PLAN) -> dict[str, Any]:
    """A persist run's config as the result sensor writes it from the submission's record."""
    story = next(s for s in load_sample_stories() if s.plan_id == plan)
    return {
        "llm_proposal": {
            "config": {
                "text": text,
                "derivation_id": derivation,
                "plan_id": plan,
                "roles": ["DEVELOPER", "QA"],
                "acceptance_criteria": len(story.acceptance_criteria),
            }
        }
    }


def derive_config(derivation: str) -> dict[str, Any]:
    return {
        "plan_context": {
            "config": {"plan_id": PLAN, "roles": ["DEVELOPER", "QA"], "derivation_id": derivation}
        }
    }


def test_definitions_load() -> None:
    dg.Definitions.validate_loadable(defs)
    assert {job.name for job in defs.resolve_all_job_defs()} >= {"derive_tasks", "persist_tasks"}


def test_derive_then_persist_against_the_fleet(
    fleet: LocalFleet, instance: dg.DagsterInstance
) -> None:
    derived = run("derive_tasks", fleet, instance, derive_config("d-1"))
    assert derived.success
    submission = derived.output_for_node("executor_submission")
    assert submission.derivation_id == "d-1" and submission.deliberation_id

    answer = answer_of(fleet, submission.deliberation_id)
    proposal = answer_config(answer, "d-1")
    persisted = run("persist_tasks", fleet, instance, proposal)
    again = run("persist_tasks", fleet, instance, proposal)

    assert persisted.success and again.success
    first, second = (r.output_for_node("planning_tasks") for r in (persisted, again))
    assert len(first.created) >= 4 and second.created == ()
    assert first.task_ids == second.task_ids
    assert len(fleet.store.tasks(STORY)) == len(first.task_ids)  # type: ignore[union-attr]
    assert len(fleet.store.dependencies(STORY)) == len(first.edges)  # type: ignore[union-attr]
    events = asyncio.run(
        stored_bodies(fleet.environment()["NATS_URL"], "task.derivation.completed")
    )
    ours = [e for e in events if e["derivation_request_id"] == "d-1"]
    assert len(ours) == 1  # published by both runs, stored once (Nats-Msg-Id)
    assert ours[0]["task_count"] == len(first.task_ids)
    assert (ours[0]["plan_id"], ours[0]["story_id"], ours[0]["status"]) == (PLAN, STORY, "success")
    assert ours[0]["occurred_at"].endswith("Z")
    checks = persisted.get_asset_check_evaluations()
    assert {(c.check_name, c.passed) for c in checks} == {
        ("acceptance_criteria_covered", True),
        ("tasks_in_planning", True),
    }


def test_unknown_plan_fails_without_retry(fleet: LocalFleet, instance: dg.DagsterInstance) -> None:
    config = derive_config("d-2")
    config["plan_context"]["config"]["plan_id"] = "PLAN-NOPE"

    result = run("derive_tasks", fleet, instance, config)

    assert not result.success
    failure = result.get_step_failure_events()[0]
    assert "NOT_FOUND" in str(failure.step_failure_data.error)


def test_unusable_answer_fails_with_its_issues(
    fleet: LocalFleet, instance: dg.DagsterInstance
) -> None:
    assert run("derive_tasks", fleet, instance, derive_config("d-3")).success
    proposal = answer_config("I'm sorry, I can't.", "d-3")

    result = run("persist_tasks", fleet, instance, proposal)

    assert not result.success
    assert "unparseable" in str(result.get_step_failure_events()[0].step_failure_data.error)


@pytest.mark.parametrize("required", [False, True])
def test_context_is_best_effort_unless_required(
    fleet: LocalFleet, instance: dg.DagsterInstance, required: bool
) -> None:
    job = defs.resolve_job_def("derive_tasks")
    result = job.execute_in_process(
        run_config={"ops": derive_config(f"d-context-{required}")},
        instance=instance,
        partition_key=STORY,
        resources={
            **resources(fleet),
            # Nothing listens there: UNAVAILABLE, and no time to ride it out.
            "context_service": ContextResource(address="127.0.0.1:1", timeout_seconds=0.5),
            "settings": fleet_settings(fleet, transient_retry_seconds=0, context_required=required),
        },
        raise_on_error=False,
    )

    assert result.success is not required
    if not required:
        (materialization,) = [
            m
            for m in result.asset_materializations_for_node("story_context")
            if m.partition == STORY
        ]
        missing = str(materialization.metadata["missing_context"].value)
        assert "DEVELOPER:" in missing and "QA:" in missing
        prompt = result.output_for_node("derivation_prompt").text
        assert "<role_context" not in prompt  # built without it, and submitted
        assert result.output_for_node("executor_submission").deliberation_id


@dataclass
class ForgetfulPlanning:
    """Planning that answers CreateTasks with ids, then lists one task fewer."""

    planning: PlanningPort

    def get_plan(self, plan_id: PlanId) -> StoryPlan:
        return self.planning.get_plan(plan_id)

    def list_story_tasks(self, story_id: StoryId) -> tuple[PlannedTask, ...]:
        return self.planning.list_story_tasks(story_id)[:-1]  # the newest is lost

    def create_tasks(
        self, plan_id: PlanId, story_id: StoryId, tasks: Sequence[TaskNode]
    ) -> tuple[str, ...]:
        return self.planning.create_tasks(plan_id, story_id, tasks)

    def save_dependencies(
        self, plan_id: PlanId, story_id: StoryId, edges: Sequence[PersistedEdge]
    ) -> None:
        self.planning.save_dependencies(plan_id, story_id, edges)


class ForgetfulPlanningResource(PlanningResource):
    def client(self) -> PlanningPort:
        return ForgetfulPlanning(super().client())


LOSSY = "d-lossy"


def test_the_planning_check_fails_when_planning_lost_a_task(
    fleet: LocalFleet, instance: dg.DagsterInstance
) -> None:
    derived = run("derive_tasks", fleet, instance, derive_config(LOSSY))
    answer = answer_of(fleet, derived.output_for_node("executor_submission").deliberation_id)
    result = defs.resolve_job_def("persist_tasks").execute_in_process(
        run_config={"ops": answer_config(answer, LOSSY)},
        instance=instance,
        partition_key=STORY,
        resources={
            **resources(fleet),
            "planning": ForgetfulPlanningResource(
                address=fleet.environment()["PLANNING_SERVICE_ADDRESS"]
            ),
        },
        raise_on_error=False,
    )

    assert not result.success
    (check,) = [
        c for c in result.get_asset_check_evaluations() if c.check_name == "tasks_in_planning"
    ]
    assert not check.passed and check.metadata["missing"].value != "none"
    events = asyncio.run(
        stored_bodies(fleet.environment()["NATS_URL"], "task.derivation.completed")
    )
    assert not [e for e in events if e["derivation_request_id"] == LOSSY]


def test_a_persist_run_needs_nothing_of_the_derive_runs_storage(
    fleet: LocalFleet, instance: dg.DagsterInstance
) -> None:
    derived = run("derive_tasks", fleet, instance, derive_config("d-elsewhere"))
    answer = answer_of(fleet, derived.output_for_node("executor_submission").deliberation_id)

    # Another instance, another storage: as on another host, after the derive run's files.
    with dg.instance_for_test() as elsewhere:
        elsewhere.add_dynamic_partitions(story_partitions.name, [STORY])
        persisted = run("persist_tasks", fleet, elsewhere, answer_config(answer, "d-elsewhere"))

    assert persisted.success
    assert persisted.output_for_node("planning_tasks").task_ids


# Batched runs: many stories in one run, each story's events on its own partition.

DERIVE_ASSETS = tuple(step.value for step in DERIVE_STEPS)
PLAN_OF = {story.story_id: story.plan_id for story in load_sample_stories()}


def batch_item(story: str, derivation: str, plan: str | None = None, **more: Any) -> StoryWork:
    config = {
        "plan_id": plan or PLAN_OF[story],
        "roles": ["DEVELOPER", "QA"],
        "derivation_id": derivation,
        **more,
    }
    return StoryWork(story, Phase.DERIVE, config, message_key=f"stream:{derivation}:1")


def run_batch(
    fleet: LocalFleet,
    instance: dg.DagsterInstance,
    works: list[StoryWork],
    **resource_overrides: Any,
) -> dg.ExecuteInProcessResult:
    """A batched run as a sensor asks for it (its config and tags), with no partition."""
    request = batch_run_request(works, batch_run_key(works))
    instance.add_dynamic_partitions(STORIES, [work.story for work in works])
    return defs.resolve_job_def(str(request.job_name)).execute_in_process(
        run_config=request.run_config,
        instance=instance,
        resources={**resources(fleet), **resource_overrides},
        tags=request.tags,
        raise_on_error=False,
    )


def materializations(
    instance: dg.DagsterInstance, asset: str, story: str
) -> list[dg.AssetMaterialization]:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[story]), limit=10
    ).records
    return [r.asset_materialization for r in records if r.asset_materialization is not None]


def own_run_metadata_keys(fleet: LocalFleet) -> dict[str, set[str]]:
    """The metadata keys a story's own derive run records on each asset (but the IO manager's
    `path`: a batch stores no output, its steps hand their values on in memory)."""
    with dg.instance_for_test() as own:
        own.add_dynamic_partitions(STORIES, [STORY])
        assert run("derive_tasks", fleet, own, derive_config("d-own-keys")).success
        return {
            asset: set(materializations(own, asset, STORY)[0].metadata) - {"path"}
            for asset in DERIVE_ASSETS
        }


GOOD = ("STORY-REFUNDS", "STORY-MFA")
BAD = "STORY-DARK-MODE"  # given another story's plan: its first step fails


def test_a_batched_derive_run_reports_each_story_and_runs_a_failed_one_again_alone(
    fleet: LocalFleet, instance: dg.DagsterInstance
) -> None:
    stories = [
        batch_item(GOOD[0], "d-batch-refunds"),
        batch_item(BAD, "d-batch-bad", plan=PLAN, attempt=2),
        batch_item(GOOD[1], "d-batch-mfa"),  # after the failed one: still derived
    ]

    result = run_batch(fleet, instance, stories)

    assert not result.success
    own_keys = own_run_metadata_keys(fleet)
    for story, work in zip(GOOD, (stories[0], stories[2]), strict=True):
        for asset in DERIVE_ASSETS:
            (materialization,) = materializations(instance, asset, story)
            assert set(materialization.metadata) == own_keys[asset], (story, asset)
        (submission,) = materializations(instance, "executor_submission", story)
        assert submission.metadata["derivation_id"].value == work.derivation_id
        assert submission.metadata["deliberation_id"].value
    for asset in DERIVE_ASSETS:
        assert materializations(instance, asset, BAD) == [], asset
    (failure,) = result.get_step_failure_events()
    user = failure.step_failure_data.user_failure_data
    assert user is not None and user.metadata["failed_stories"].value == BAD

    requests = fallback(instance, result.run_id, fleet_settings(fleet))

    (request,) = requests  # the bad story alone; the good ones are done
    assert (request.job_name, request.partition_key) == ("derive_tasks", BAD)
    assert request.run_key == f"fallback:{result.run_id}:{BAD}"
    config = request.run_config["ops"]["plan_context"]["config"]
    assert (config["derivation_id"], config["attempt"], config["plan_id"]) == (
        "d-batch-bad",
        2,
        PLAN,
    )
    assert (request.tags["td/derivation_id"], request.tags["td/attempt"]) == ("d-batch-bad", "2")


def test_a_peer_outage_fails_the_rest_of_a_batch_at_once_for_each_to_run_alone(
    fleet: LocalFleet, instance: dg.DagsterInstance
) -> None:
    """The first story rides the outage out in vain; the others are not made to wait as long
    one after the other, but named failed, so that each is run alone, in parallel (where each
    rides it out on its own)."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nobody = f"127.0.0.1:{closed.getsockname()[1]}"
    works = [batch_item(story, f"d-outage-{n}") for n, story in enumerate((*GOOD, BAD))]

    result = run_batch(
        fleet,
        instance,
        works,
        planning=PlanningResource(address=nobody),
        settings=fleet_settings(fleet, transient_retry_seconds=1.0),
    )

    (failure,) = result.get_step_failure_events()
    user = failure.step_failure_data.user_failure_data
    assert user is not None
    assert user.metadata["failed_stories"].value.splitlines() == [w.story for w in works]
    logged = [entry.user_message for entry in instance.all_logs(result.run_id)]
    for later in works[1:]:
        assert f"{later.story}: not tried: a peer was out for {GOOD[0]}" in logged
    requests = fallback(instance, result.run_id, fleet_settings(fleet))
    assert sorted(r.partition_key or "" for r in requests) == sorted(w.story for w in works)
    assert {r.job_name for r in requests} == {"derive_tasks"}


def test_a_batch_that_died_runs_its_first_undone_story_alone_and_batches_the_rest(
    instance: dg.DagsterInstance,
) -> None:
    """A worker killed mid-batch names no failure: the story it was working on may be the
    cause, so it runs alone, and a story that kills its worker cannot loop batch after batch."""
    works = [batch_item(story, f"d-died-{n}") for n, story in enumerate((*GOOD, BAD))]
    request = batch_run_request(works, batch_run_key(works))
    instance.add_dynamic_partitions(STORIES, [work.story for work in works])
    run = instance.add_run(
        dg.DagsterRun(
            job_name=str(request.job_name),
            run_config=dict(request.run_config),
            tags=dict(request.tags),
            status=dg.DagsterRunStatus.STARTED,
        )
    )
    instance.report_run_failed(run, "the run worker died")

    alone, batch = fallback(instance, run.run_id, DerivationSettings())

    assert (alone.job_name, alone.partition_key) == ("derive_tasks", GOOD[0])
    assert alone.run_key == f"fallback:{run.run_id}:{GOOD[0]}"
    assert batch.job_name == "derive_tasks_batch"
    items = batch.run_config["ops"]["derive_stories"]["config"]["stories"]
    assert [item["story"] for item in items] == [GOOD[1], BAD]


def fallback(
    instance: dg.DagsterInstance, run_id: str, settings: DerivationSettings
) -> list[dg.RunRequest]:
    """batch_fallback_sensor's answer to the failed run, as the daemon would ask it."""
    run_record = instance.get_run_by_id(run_id)
    assert run_record is not None
    failure_event = next(
        entry.dagster_event
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        if entry.dagster_event is not None
    )
    context = dg.build_run_status_sensor_context(
        sensor_name=batch_fallback_sensor.name,
        dagster_event=failure_event,
        dagster_instance=instance,
        dagster_run=run_record,
    ).for_run_failure()
    requests = batch_fallback_sensor(context, settings=settings)
    assert isinstance(requests, list)
    return requests


PERSISTED = ("STORY-PRODUCT-SEARCH", "STORY-PUSH-ORDERS")


def test_a_batched_persist_run_persists_each_story(
    fleet: LocalFleet, instance: dg.DagsterInstance
) -> None:
    derivations = {story: f"d-persist-{story.lower()}" for story in PERSISTED}
    derived = run_batch(
        fleet,
        instance,
        [batch_item(story, derivation) for story, derivation in derivations.items()],
    )
    assert derived.success
    answers = []
    for story, derivation in derivations.items():
        (submission,) = materializations(instance, "executor_submission", story)
        text = answer_of(fleet, str(submission.metadata["deliberation_id"].value))
        config = answer_config(text, derivation, PLAN_OF[story])["llm_proposal"]["config"]
        answers.append(StoryWork(story, Phase.PERSIST, config, f"answer:{derivation}"))

    persisted = run_batch(fleet, instance, answers)

    assert persisted.success
    for story in PERSISTED:
        for asset in ("llm_proposal", "task_graph", "planning_tasks"):
            assert len(materializations(instance, asset, story)) == 1, (story, asset)
        (tasks,) = materializations(instance, "planning_tasks", story)
        assert tasks.metadata["derivation_id"].value == derivations[story]
        created = tasks.metadata["created"].value
        assert created == len(fleet.store.tasks(story)) >= 2  # type: ignore[union-attr]
        assert tasks.metadata["dependencies"].value == len(
            fleet.store.dependencies(story)  # type: ignore[union-attr]
        )
    checks = {
        (c.check_name, c.partition, c.passed) for c in persisted.get_asset_check_evaluations()
    }
    assert checks == {
        (name, story, True)
        for name in ("acceptance_criteria_covered", "tasks_in_planning")
        for story in PERSISTED
    }
    events = asyncio.run(
        stored_bodies(fleet.environment()["NATS_URL"], "task.derivation.completed")
    )
    for story, derivation in derivations.items():
        (event,) = [e for e in events if e["derivation_request_id"] == derivation]
        assert (event["story_id"], event["status"]) == (story, "success")
