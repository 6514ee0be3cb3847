"""What the instance knows about attempts, read without hidden limits: paged to the end, or
bounded by what is needed (a tag, a time window), never by a fixed number of runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pytest

from td_pipeline.orchestration import attempt_queries
from td_pipeline.orchestration.asset_steps import AssetStep
from td_pipeline.orchestration.attempt_queries import (
    batch_in_flight,
    derivation_runs,
    derive_config_of,
    latest_run,
    story_in_flight,
    story_of_derivation,
    story_runs,
    waiting_attempts,
)
from td_pipeline.orchestration.attempts import STEP_STAGES, Phase, attempt_tags, run_attempts
from td_pipeline.orchestration.instance_history import InstanceAttemptHistory
from td_pipeline.orchestration.run_requests import StoryWork, batch_run_key, batch_run_request
from td_pipeline_tests.instance_records import record_submission

STORY = "STORY-REFUNDS"


def add_run(
    instance: dg.DagsterInstance,
    story: str,
    phase: Phase,
    derivation: str,
    attempt: int = 1,
    status: dg.DagsterRunStatus = dg.DagsterRunStatus.SUCCESS,
    tagged: bool = True,
) -> None:
    step = "plan_context" if phase is Phase.DERIVE else "llm_proposal"
    config: dict[str, Any] = {"derivation_id": derivation, "attempt": attempt}
    if phase is Phase.DERIVE:
        config["plan_id"] = f"PLAN-{derivation}"
    instance.add_run(
        dg.DagsterRun(
            job_name=f"{phase.value}_tasks",
            status=status,
            run_config={"ops": {step: {"config": config}}},
            tags={
                "dagster/partition": story,
                **(attempt_tags(phase, derivation, attempt) if tagged else {}),
            },
        )
    )


def test_a_derivation_launched_by_hand_is_found_past_a_page_of_later_runs(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(attempt_queries, "RUNS_PAGE", 10)  # the same paging, on fewer runs
    # A derive run from `dagster job launch` (no td/ tags), then 25 later runs of the story:
    # more than two pages, as 250 runs would be with the real page size.
    add_run(instance, STORY, Phase.DERIVE, "d-by-hand", tagged=False)
    for number in range(25):
        add_run(instance, STORY, Phase.PERSIST, f"d-{number}")

    assert derive_config_of(instance, STORY, "d-by-hand") == {
        "derivation_id": "d-by-hand",
        "attempt": 1,
        "plan_id": "PLAN-d-by-hand",
    }
    latest = latest_run(instance, STORY)
    assert latest is not None and latest.derivation_id == "d-24"


def test_more_than_fifty_runs_of_one_story_still_find_the_derivation(
    instance: dg.DagsterInstance,
) -> None:
    add_run(instance, STORY, Phase.DERIVE, "d-first")
    for number in range(55):
        add_run(instance, STORY, Phase.PERSIST, "d-first", attempt=number % 3 + 1)

    config = derive_config_of(instance, STORY, "d-first")
    assert config is not None and config["plan_id"] == "PLAN-d-first"


def test_the_watchdog_reads_only_attempts_in_flight(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    finished = [f"STORY-DONE-{n}" for n in range(5_000)]
    instance.add_dynamic_partitions("stories", [*finished, "STORY-WAITING"])
    for story in finished[:20]:  # a few with their runs: submitted and answered
        record_submission(instance, story, f"d-{story}")
        add_run(instance, story, Phase.PERSIST, f"d-{story}")
    record_submission(instance, "STORY-WAITING", "d-waiting")

    reads: list[str] = []
    get_runs, fetch = instance.get_run_records, instance.fetch_materializations

    def counted_runs(*args: Any, **kwargs: Any) -> Any:
        reads.append("runs")
        return get_runs(*args, **kwargs)

    def counted_materializations(*args: Any, **kwargs: Any) -> Any:
        reads.append("materializations")
        return fetch(*args, **kwargs)

    monkeypatch.setattr(instance, "get_run_records", counted_runs)
    monkeypatch.setattr(instance, "fetch_materializations", counted_materializations)
    monkeypatch.setattr(
        instance, "get_dynamic_partitions", lambda *_: pytest.fail("read every story")
    )
    recent = datetime.now(UTC) - timedelta(hours=1)

    waiting = waiting_attempts(instance, since=recent).attempts
    reads_now = list(reads)
    later = waiting_attempts(instance, since=datetime.now(UTC) + timedelta(hours=1)).attempts

    assert [(s.story, s.derivation_id) for s in waiting] == [("STORY-WAITING", "d-waiting")]
    # One page of persist runs, one of submissions: no per-story reads.
    assert reads_now == ["runs", "materializations"]
    assert later == []  # attempts from before the window are not visited again


# Batched runs: one run serves many stories; each story's own lookups must still find it.

BATCHED = {"STORY-A": "d-a", "STORY-B": "d-b"}


def derive_work(story: str, derivation: str, attempt: int = 1) -> StoryWork:
    config = {
        "plan_id": f"PLAN-{story}",
        "roles": ["DEVELOPER"],
        "derivation_id": derivation,
        "attempt": attempt,
        "correlation_id": None,
    }
    return StoryWork(story, Phase.DERIVE, config, message_key=f"stream:{derivation}:1")


def add_batch(
    instance: dg.DagsterInstance,
    works: list[StoryWork],
    status: dg.DagsterRunStatus = dg.DagsterRunStatus.SUCCESS,
) -> dg.DagsterRun:
    """A batched run as the daemon creates it from the sensor's request."""
    request = batch_run_request(works, batch_run_key(works))
    assert request.job_name == "derive_tasks_batch"
    run = dg.DagsterRun(
        job_name=request.job_name,
        status=status,
        run_config=dict(request.run_config),
        tags=dict(request.tags),
    )
    instance.add_run(run)
    return run


def batch_of(stories: dict[str, str]) -> list[StoryWork]:
    return [derive_work(story, derivation) for story, derivation in stories.items()]


def test_a_batched_run_is_one_attempt_per_story_with_the_storys_config(
    instance: dg.DagsterInstance,
) -> None:
    works = batch_of(BATCHED)
    run = add_batch(instance, works)

    found = run_attempts(run)

    assert [(a.story, a.derivation_id, a.attempt, a.phase) for a in found] == [
        ("STORY-A", "d-a", 1, Phase.DERIVE),
        ("STORY-B", "d-b", 1, Phase.DERIVE),
    ]
    assert [a.step_config for a in found] == [work.config for work in works]
    assert all(a.batched and a.run.run_id == run.run_id for a in found)


def test_a_storys_own_run_is_not_batched(instance: dg.DagsterInstance) -> None:
    add_run(instance, STORY, Phase.DERIVE, "d-own")

    own = latest_run(instance, STORY)

    assert own is not None and not own.batched
    assert [(a.story, a.derivation_id) for a in run_attempts(own.run)] == [(STORY, "d-own")]


def test_a_batched_persist_run_is_a_persist_attempt_per_story(
    instance: dg.DagsterInstance,
) -> None:
    works = [
        StoryWork(story, Phase.PERSIST, {"derivation_id": derivation, "attempt": 2}, f"m-{story}")
        for story, derivation in BATCHED.items()
    ]
    request = batch_run_request(works, batch_run_key(works))
    run = dg.DagsterRun(
        job_name=str(request.job_name),
        run_config=dict(request.run_config),
        tags=dict(request.tags),
    )

    assert request.job_name == "persist_tasks_batch"
    assert [(a.story, a.phase, a.attempt) for a in run_attempts(run)] == [
        ("STORY-A", Phase.PERSIST, 2),
        ("STORY-B", Phase.PERSIST, 2),
    ]


def test_the_story_of_a_batched_derivation_is_found(instance: dg.DagsterInstance) -> None:
    add_batch(instance, batch_of(BATCHED))

    assert story_of_derivation(instance, "d-a") == "STORY-A"
    assert story_of_derivation(instance, "d-b") == "STORY-B"
    assert story_of_derivation(instance, "d-elsewhere") is None


def test_a_batched_derivation_has_its_runs(instance: dg.DagsterInstance) -> None:
    run = add_batch(instance, batch_of(BATCHED))

    (found,) = derivation_runs(instance, "STORY-B", "d-b")

    assert (found.run.run_id, found.story, found.derivation_id) == (run.run_id, "STORY-B", "d-b")
    assert derivation_runs(instance, "STORY-B", "d-a") == []  # another story's derivation
    config = derive_config_of(instance, "STORY-B", "d-b")
    assert config is not None and config["plan_id"] == "PLAN-STORY-B"


def test_a_later_batch_is_the_storys_latest_run(instance: dg.DagsterInstance) -> None:
    add_run(instance, "STORY-A", Phase.DERIVE, "d-own")
    batch = add_batch(instance, batch_of(BATCHED))

    latest = latest_run(instance, "STORY-A")

    assert latest is not None
    assert (latest.run.run_id, latest.derivation_id) == (batch.run_id, "d-a")
    assert [a.derivation_id for a in story_runs(instance, "STORY-A")] == ["d-a", "d-own"]


def test_a_later_own_run_is_the_storys_latest_run(instance: dg.DagsterInstance) -> None:
    add_batch(instance, batch_of(BATCHED))
    add_run(instance, "STORY-A", Phase.DERIVE, "d-own")

    latest = latest_run(instance, "STORY-A")

    assert latest is not None and (latest.derivation_id, latest.batched) == ("d-own", False)
    assert [a.derivation_id for a in story_runs(instance, "STORY-A")] == ["d-own", "d-a"]
    # The other story of the batch is not taken over by STORY-A's own run.
    other = latest_run(instance, "STORY-B")
    assert other is not None and other.derivation_id == "d-b"


def test_a_batch_not_started_keeps_its_stories_in_flight(instance: dg.DagsterInstance) -> None:
    add_batch(instance, batch_of(BATCHED), dg.DagsterRunStatus.NOT_STARTED)

    assert story_in_flight(instance, "STORY-A")
    assert batch_in_flight(instance, "STORY-B")
    assert not story_in_flight(instance, "STORY-C")


def test_a_finished_batch_keeps_no_story_in_flight(instance: dg.DagsterInstance) -> None:
    add_batch(instance, batch_of(BATCHED), dg.DagsterRunStatus.SUCCESS)

    assert not story_in_flight(instance, "STORY-A")
    assert not batch_in_flight(instance, "STORY-B")


def test_a_storys_own_run_in_flight_is_no_batch_in_flight(instance: dg.DagsterInstance) -> None:
    add_run(instance, STORY, Phase.DERIVE, "d-own", status=dg.DagsterRunStatus.STARTED)

    assert story_in_flight(instance, STORY)
    assert not batch_in_flight(instance, STORY)


def test_each_batched_message_is_handled(instance: dg.DagsterInstance) -> None:
    works = batch_of(BATCHED)
    history = InstanceAttemptHistory(instance)
    assert not any(history.message_handled(work.message_key) for work in works)

    add_batch(instance, works, dg.DagsterRunStatus.NOT_STARTED)

    assert all(history.message_handled(work.message_key) for work in works)
    assert not history.message_handled("stream:d-c:1")


def test_every_step_of_the_asset_graph_has_a_failure_stage() -> None:
    # A step missing here would have its failures reported as "the run stopped before
    # finishing" rather than where it failed.
    assert set(STEP_STAGES) == set(AssetStep)
