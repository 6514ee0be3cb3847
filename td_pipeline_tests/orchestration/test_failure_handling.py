"""Failure handling one layer at a time, in process, against the sandbox fleet: the failure
sensor, the outcome record, the watchdog, executor failures and the retry schedule's decisions.
(The e2e tests run the same pieces through a real daemon.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import dagster as dg
import nats
import pytest

from td_pipeline.application.llm_window import LlmWindow, room
from td_pipeline.application.ports import (
    DeliberationStatus,
    ExecutorPort,
    ExecutorSubmission,
    SubmissionReceipt,
)
from td_pipeline.application.retries import GiveUp, Restart, Retry, Stage
from td_pipeline.domain.events import DerivationCompleted
from td_pipeline.domain.values import DerivationId, PlanId, StoryId
from td_pipeline.orchestration import watchdog_sensor
from td_pipeline.orchestration.asset_steps import DERIVE_STEPS
from td_pipeline.orchestration.attempt_queries import latest_submission
from td_pipeline.orchestration.attempts import RESUBMIT, RESUBMIT_TAG
from td_pipeline.orchestration.definitions import defs
from td_pipeline.orchestration.failure_sensor import derivation_failure_sensor
from td_pipeline.orchestration.llm_admission import write_window
from td_pipeline.orchestration.outcomes import publish_outcome_once, published_outcomes
from td_pipeline.orchestration.request_sensor import derivation_request_sensor
from td_pipeline.orchestration.resources import (
    DerivationSettings,
    NatsResource,
    RayExecutorResource,
)
from td_pipeline.orchestration.retry_schedule import (
    failed_derivation_retries,
    failed_stories,
    retry_launch,
)
from td_pipeline.orchestration.watchdog_sensor import llm_watchdog_sensor
from td_pipeline.sandbox.fleet import LocalFleet
from td_pipeline.sandbox.replay_llm import ReplayLlm
from td_pipeline_tests.orchestration.test_jobs import (
    PLAN,
    STORY,
    answer_config,
    answer_of,
    derive_config,
    fleet_settings,
    resources,
)
from td_pipeline_tests.support import stored_bodies

pytestmark = pytest.mark.pipeline  # Dagster runs: in `make e2e`, not the fast tier

ANSWER_LOST = "STORY-MFA"  # the replayed LLM never answers this one


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    answers = tmp_path_factory.mktemp("answers")
    (answers / f"{ANSWER_LOST}.txt").write_text("@never\n")
    with LocalFleet(tmp_path_factory.mktemp("fleet"), backend=ReplayLlm(answers)) as fleet:
        yield fleet


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("stories", [STORY, ANSWER_LOST])
        yield instance


def run(
    fleet: LocalFleet,
    instance: dg.DagsterInstance,
    job_name: str,
    ops: dict[str, Any],
    story: str = STORY,
    settings: DerivationSettings | None = None,
    assets: list[str] | None = None,
    tags: dict[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def(job_name)
    if assets is not None:
        job = job.get_subset(asset_selection={dg.AssetKey(name) for name in assets})
    return job.execute_in_process(
        run_config={"ops": ops},
        instance=instance,
        partition_key=story,
        resources={**resources(fleet), **({"settings": settings} if settings else {})},
        raise_on_error=False,
        tags=tags,
    )


def events(fleet: LocalFleet, subject: str) -> list[dict[str, Any]]:
    return asyncio.run(stored_bodies(fleet.environment()["NATS_URL"], subject))


async def publish(fleet: LocalFleet, subject: str, bodies: list[dict[str, Any]]) -> None:
    connection = await nats.connect(fleet.environment()["NATS_URL"])
    try:
        for body in bodies:
            await connection.jetstream().publish(subject, json.dumps(body).encode())
    finally:
        await connection.close()


def fail_sensor(
    fleet: LocalFleet,
    instance: dg.DagsterInstance,
    result: dg.ExecuteInProcessResult,
    settings: DerivationSettings,
) -> None:
    run_record = instance.get_run_by_id(result.run_id)
    assert run_record is not None
    failure_event = next(
        entry.dagster_event
        for entry in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        if entry.dagster_event is not None
    )
    context = dg.build_run_status_sensor_context(
        sensor_name=derivation_failure_sensor.name,
        dagster_event=failure_event,
        dagster_instance=instance,
        dagster_run=run_record,
    ).for_run_failure()
    derivation_failure_sensor(
        context, nats=NatsResource(url=fleet.environment()["NATS_URL"]), settings=settings
    )


def test_a_planning_outage_is_retried_from_the_stored_answer_and_announced_once(
    fleet: LocalFleet, instance: dg.DagsterInstance
) -> None:
    settings = fleet_settings(fleet, transient_retry_seconds=0)
    assert run(fleet, instance, "derive_tasks", derive_config("d-outage")).success
    submission = latest_submission(instance, STORY)
    assert submission is not None
    answer = answer_of(fleet, submission.deliberation_id)
    proposal = answer_config(answer, "d-outage")
    fleet.faults.unavailable_for(30)
    try:
        failed = run(fleet, instance, "persist_tasks", proposal, settings=settings)
    finally:
        fleet.faults.unavailable_until = 0.0
    assert not failed.success

    fail_sensor(fleet, instance, failed, settings)
    fail_sensor(fleet, instance, failed, settings)  # a second look publishes nothing new
    (found,) = failed_stories(instance, max_attempts=3)
    launch = retry_launch(instance, found)

    mine = [
        e
        for e in events(fleet, "task.derivation.failed")
        if e["derivation_request_id"] == "d-outage"
    ]
    assert len(mine) == 1 and mine[0]["requires_manual_review"] is False
    assert (
        "creating the tasks in Planning" in mine[0]["reason"] and "UNAVAILABLE" in mine[0]["reason"]
    )
    assert (found.failure.stage, found.decision) == (Stage.PERSISTENCE, Retry(Restart.REPERSIST, 2))
    assert launch is not None and launch.assets == ("llm_proposal", "task_graph", "planning_tasks")
    assert launch.run_config["ops"]["llm_proposal"]["config"]["text"] == answer  # no new LLM call

    retried = run(
        fleet,
        instance,
        "retry_derivation",
        launch.run_config["ops"],
        assets=list(launch.assets),
        tags=launch.tags,
        settings=settings,
    )
    assert retried.success
    assert failed_stories(instance, max_attempts=3) == []
    titles = [t.title for t in fleet.store.tasks(STORY)]  # type: ignore[union-attr]
    assert len(titles) == len(set(titles))


def test_an_outcome_is_published_once_however_late_the_repeat(
    fleet: LocalFleet, instance: dg.DagsterInstance
) -> None:
    nats_resource = NatsResource(url=fleet.environment()["NATS_URL"])
    event = DerivationCompleted(
        PlanId(PLAN), StoryId(STORY), 3, datetime.now(UTC), DerivationId("d-once")
    )

    first = publish_outcome_once(instance, nats_resource, STORY, event, None)
    second = publish_outcome_once(instance, nats_resource, STORY, event, None)

    assert (first, second) == (True, False)
    assert event.message_id() in published_outcomes(instance, STORY)


def test_an_unknown_plan_is_left_for_review_at_once(
    fleet: LocalFleet, instance: dg.DagsterInstance
) -> None:
    config = derive_config("d-unknown")
    config["plan_context"]["config"]["plan_id"] = "PLAN-NOPE"
    failed = run(fleet, instance, "derive_tasks", config)
    settings = DerivationSettings()

    fail_sensor(fleet, instance, failed, settings)
    (found,) = failed_stories(instance, max_attempts=3)

    assert isinstance(found.decision, GiveUp) and retry_launch(instance, found) is None
    mine = [
        e
        for e in events(fleet, "task.derivation.failed")
        if e["derivation_request_id"] == "d-unknown"
    ]
    assert len(mine) == 1 and mine[0]["requires_manual_review"] is True
    assert "NOT_FOUND" in mine[0]["reason"] and "needs manual review" in mine[0]["reason"]


class _TwoSecondsLater(datetime):
    """The watchdog's clock two seconds on: the LLM timeout (1 s) passed without an answer."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> datetime:  # type: ignore[override]
        return datetime.now(tz) + timedelta(seconds=2)


def watchdog_gives_up_on_a_lost_job(
    fleet: LocalFleet, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> tuple[dg.RunRequest, DerivationSettings]:
    config = derive_config("d-lost")
    config["plan_context"]["config"]["plan_id"] = "PLAN-AUTH-1"
    assert run(fleet, instance, "derive_tasks", config, story=ANSWER_LOST).success
    settings = fleet_settings(fleet, llm_timeout_seconds=1)
    monkeypatch.setattr(watchdog_sensor, "datetime", _TwoSecondsLater)
    resources_for_tick = {
        "executor": resources(fleet)["executor"],
        "nats": resources(fleet)["nats"],
        "settings": settings,
    }
    with dg.build_sensor_context(instance=instance, resources=resources_for_tick) as context:
        result = llm_watchdog_sensor(context)
    (request,) = result.run_requests or []
    return request, settings


def test_the_watchdog_fails_an_unanswered_attempt_once(
    fleet: LocalFleet, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    request, settings = watchdog_gives_up_on_a_lost_job(fleet, instance, monkeypatch)

    config_sent = request.run_config["ops"]["llm_proposal"]["config"]
    assert request.partition_key == ANSWER_LOST and request.run_key == "watchdog:d-lost:1"
    assert config_sent["executor_error"].startswith("LLM timeout after 1s")
    # The failed event goes out with the tick, before the failing run is even started...
    announced = [
        e for e in events(fleet, "task.derivation.failed") if e["derivation_request_id"] == "d-lost"
    ]
    assert [e["requires_manual_review"] for e in announced] == [False]
    failed = run(fleet, instance, "persist_tasks", request.run_config["ops"], story=ANSWER_LOST)
    assert not failed.success
    (found,) = [f for f in failed_stories(instance, 3) if f.story == ANSWER_LOST]
    assert found.failure.stage is Stage.ANSWER and found.decision == Retry(Restart.RESUBMIT, 2)
    # ...and the run's failure does not announce it again.
    fail_sensor(fleet, instance, failed, settings)
    again = [
        e for e in events(fleet, "task.derivation.failed") if e["derivation_request_id"] == "d-lost"
    ]
    assert again == announced


def run_attempts_of(runs: list[dg.RunRequest]) -> list[str]:
    """The stories the run requests start: a batch's, or a story's own."""
    return [
        str(item["story"])
        for run in runs
        for item in run.run_config["ops"]
        .get("derive_stories", {})
        .get("config", {})
        .get("stories", [{"story": run.partition_key}])
    ]


def request_tick(
    fleet: LocalFleet, instance: dg.DagsterInstance, settings: DerivationSettings
) -> dg.SensorResult:
    resources_for_tick = {"nats": resources(fleet)["nats"], "settings": settings}
    with dg.build_sensor_context(instance=instance, resources=resources_for_tick) as context:
        result = derivation_request_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def test_a_lost_job_is_asked_again_by_the_next_request_tick_ahead_of_new_requests(
    fleet: LocalFleet, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    request, settings = watchdog_gives_up_on_a_lost_job(fleet, instance, monkeypatch)
    assert request.tags[RESUBMIT_TAG] == RESUBMIT
    failed = run(
        fleet, instance, "persist_tasks", request.run_config["ops"], ANSWER_LOST, tags=request.tags
    )
    assert not failed.success
    write_window(instance, LlmWindow(limit=1))
    free = room(LlmWindow(limit=1), in_flight=0, cap=settings.llm_max_in_flight)
    stories = [f"STORY-NEW-{n}" for n in range(free)]
    # One more request than the room leaves after the resubmission stays in the stream.
    requests = [{"plan_id": PLAN, "story_id": story} for story in stories]
    asyncio.run(publish(fleet, "task.derivation.requested", requests))

    first = request_tick(fleet, instance, settings)

    again, *new = first.run_requests or []
    assert (again.job_name, again.partition_key, again.run_key) == (
        "retry_derivation",
        ANSWER_LOST,
        "retry:d-lost:2",
    )
    assert again.run_config["ops"]["plan_context"]["config"]["attempt"] == 2
    assert again.asset_selection == [step.key for step in DERIVE_STEPS]
    for stored in first.run_requests or []:  # as the daemon stores them (plain names only)
        assert dg.deserialize_value(dg.serialize_value(stored), dg.RunRequest) == stored
    batch = run_attempts_of(new)
    assert batch == stories[: free - 1]
    # The retry schedule leaves it to the request sensor: the two never start it both.
    with dg.build_schedule_context(instance=instance, resources={"settings": settings}) as context:
        assert isinstance(failed_derivation_retries(context), dg.SkipReason)


class FailingAtOnce:
    """An executor that answers ExecuteDeliberation with status `failed`."""

    def submit(self, submission: ExecutorSubmission) -> SubmissionReceipt:
        return SubmissionReceipt("delib-0", accepted=False, message="GPU pool exhausted")

    def deliberation_status(self, deliberation_id: str) -> DeliberationStatus:
        return DeliberationStatus("failed")


class FailingExecutorResource(RayExecutorResource):
    def client(self) -> ExecutorPort:
        return FailingAtOnce()


def test_an_executor_that_fails_the_job_at_once_fails_the_attempt_for_a_retry(
    fleet: LocalFleet, instance: dg.DagsterInstance
) -> None:
    job = defs.resolve_job_def("derive_tasks")
    result = job.execute_in_process(
        run_config={"ops": derive_config("d-gpu")},
        instance=instance,
        partition_key=STORY,
        resources={**resources(fleet), "executor": FailingExecutorResource(address="unused")},
        raise_on_error=False,
    )
    settings = DerivationSettings()

    fail_sensor(fleet, instance, result, settings)
    (found,) = failed_stories(instance, max_attempts=3)

    assert not result.success
    assert (found.failure.stage, found.decision) == (Stage.SUBMISSION, Retry(Restart.RESUBMIT, 2))
    mine = [
        e for e in events(fleet, "task.derivation.failed") if e["derivation_request_id"] == "d-gpu"
    ]
    assert len(mine) == 1 and mine[0]["requires_manual_review"] is False
    assert "GPU pool exhausted" in mine[0]["reason"]


def test_a_run_dagster_relaunches_is_no_failed_attempt(
    fleet: LocalFleet, instance: dg.DagsterInstance
) -> None:
    """A run that died before any step failed (its worker never started, the daemon was
    killed) is launched again by Dagster's run retries: no failed event, no retry of ours."""
    config = derive_config("d-relaunched")
    config["plan_context"]["config"]["plan_id"] = "PLAN-NOPE"
    died = run(fleet, instance, "derive_tasks", config)
    instance.add_run_tags(died.run_id, {"dagster/will_retry": "true"})  # as Dagster marks it

    fail_sensor(fleet, instance, died, DerivationSettings())

    mine = [
        e
        for e in events(fleet, "task.derivation.failed")
        if e["derivation_request_id"] == "d-relaunched"
    ]
    assert mine == []
    assert not [f for f in failed_stories(instance, 3) if f.latest.derivation_id == "d-relaunched"]
