"""A burst of 50 requests is served by batched runs; the worker of a derive batch and the
daemon are SIGKILLed in the middle of it. Every story still completes once, within five
minutes of the kill, with the default retry schedule, and nothing is created twice."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from td_pipeline.devtools.dagster_processes import DagsterProcesses, prepare_home
from td_pipeline.orchestration.attempts import BATCH_TAG, PHASE_TAG, Phase, run_attempts
from td_pipeline.orchestration.submission_records import SUBMISSION_ASSET
from td_pipeline.sandbox.fleet import LocalFleet
from td_pipeline.sandbox.planning_store import load_sample_stories, story_copies
from td_pipeline_tests.e2e.test_daemon import request_and_collect
from td_pipeline_tests.e2e.test_restarts import assert_each_story_derived_once, publish
from td_pipeline_tests.support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.runs_for(180)]

STORIES = story_copies(load_sample_stories(), 50)
FIVE_MINUTES = 300.0
WORKER_PID = re.compile(r"Started process for run \(pid: (\d+)\)")


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[LocalFleet]:
    with LocalFleet(tmp_path / "fleet", stories=STORIES) as fleet:
        yield fleet


def submissions_in(instance: dg.DagsterInstance, run_id: str) -> int:
    return sum(
        1
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        if entry.asset_materialization and entry.asset_materialization.asset_key == SUBMISSION_ASSET
    )


def derive_batch_under_way(instance: dg.DagsterInstance) -> tuple[dg.DagsterRun, int] | None:
    """A derive batch that has submitted some of its stories but not all, and its worker."""
    for run in instance.get_runs(
        filters=dg.RunsFilter(
            tags={PHASE_TAG: Phase.DERIVE.value}, statuses=[dg.DagsterRunStatus.STARTED]
        )
    ):
        if BATCH_TAG not in run.tags:
            continue
        if not 3 <= submissions_in(instance, run.run_id) < int(run.tags[BATCH_TAG]) - 3:
            continue
        for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            if found := WORKER_PID.search(entry.message or ""):
                return run, int(found.group(1))
    return None


@pytest.mark.timeout(480)  # the test's own deadline (5 minutes after the kill) comes first
def test_a_batch_worker_and_the_daemon_killed_mid_batch_lose_and_duplicate_nothing(
    fleet: LocalFleet, dagster: DagsterProcesses
) -> None:
    url = fleet.environment()["NATS_URL"]
    instance = dg.DagsterInstance.from_config(str(dagster.home))
    asyncio.run(publish(url, [{"plan_id": s.plan_id, "story_id": s.story_id} for s in STORIES]))

    batch, worker = wait_until(
        lambda: derive_batch_under_way(instance), 180, "a derive batch half done", 0.05
    )
    os.kill(worker, signal.SIGKILL)
    dagster.kill_daemon()
    dagster.start_daemon()
    killed_at = time.monotonic()

    remaining = FIVE_MINUTES - (time.monotonic() - killed_at)
    events = asyncio.run(request_and_collect(url, [], want=len(STORIES), timeout=remaining))

    assert_each_story_derived_once(fleet, events, [s.story_id for s in STORIES])
    # The kill really cut the batch short, and its undone stories were derived in later runs.
    ended = instance.get_run_by_id(batch.run_id)
    assert ended is not None and ended.status == dg.DagsterRunStatus.FAILURE
    served = {attempt.story for attempt in run_attempts(batch)}
    later = [
        attempt.story
        for run in instance.get_runs(filters=dg.RunsFilter(tags={PHASE_TAG: "derive"}))
        if run.run_id != batch.run_id
        for attempt in run_attempts(run)
    ]
    assert served & set(later), "no story of the killed batch was derived again"


def test_batch_size_one_gives_every_story_its_own_run(fleet: LocalFleet, tmp_path: Path) -> None:
    """TD_BATCH_SIZE=1, set as a user would: a burst is served as before batching."""
    home = prepare_home(tmp_path / "home_unbatched")
    environment = {**fleet.environment(), "TD_BATCH_SIZE": "1"}
    stories = STORIES[:6]
    url = environment["NATS_URL"]
    with DagsterProcesses(home, environment, tmp_path / "logs_unbatched"):
        instance = dg.DagsterInstance.from_config(str(home))
        asyncio.run(publish(url, [{"plan_id": s.plan_id, "story_id": s.story_id} for s in stories]))
        events = asyncio.run(request_and_collect(url, [], want=len(stories), timeout=240))

        assert_each_story_derived_once(fleet, events, [s.story_id for s in stories])
        runs = instance.get_runs()
        assert not [run for run in runs if BATCH_TAG in run.tags]
        derived = [
            run.tags.get("dagster/partition", "") for run in runs if run.job_name == "derive_tasks"
        ]
        assert sorted(derived) == sorted(s.story_id for s in stories)
