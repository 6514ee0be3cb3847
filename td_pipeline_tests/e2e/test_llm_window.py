"""The LLM window end to end: a burst bigger than a small GPU cluster, the daemon SIGKILLed twice
in it. Every story completes once, no job times out, the executor never holds much more than
it serves, and afterwards no slot is held: the count of jobs in flight is back to 0."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from td_pipeline.devtools.dagster_processes import DagsterProcesses
from td_pipeline.orchestration.llm_admission import llm_jobs_in_flight
from td_pipeline.sandbox.fleet import LocalFleet
from td_pipeline.sandbox.llm_capacity import LlmCapacity, peak_in_flight
from td_pipeline.sandbox.planning_store import load_sample_stories, story_copies
from td_pipeline_tests.e2e.test_daemon import request_and_collect
from td_pipeline_tests.e2e.test_restarts import assert_each_story_derived_once, publish

pytestmark = [pytest.mark.e2e, pytest.mark.runs_for(70)]

STORIES = story_copies(load_sample_stories(), 24)
SLOTS = 2


@pytest.fixture(scope="module")
def llm_capacity() -> LlmCapacity:
    """Two slots of a second each: 24 stories at once would wait 12 s in the LLM's queue."""
    return LlmCapacity(slots=SLOTS, service_seconds=1.0, timeout_seconds=10.0)


@pytest.fixture
def fleet(tmp_path: Path, llm_capacity: LlmCapacity) -> Iterator[LocalFleet]:
    with LocalFleet(tmp_path / "fleet", stories=STORIES, llm_capacity=llm_capacity) as fleet:
        yield fleet


@pytest.mark.timeout(400)
def test_a_capacity_limited_burst_survives_two_daemon_kills_and_frees_every_slot(
    fleet: LocalFleet, dagster: DagsterProcesses
) -> None:
    url = fleet.environment()["NATS_URL"]
    requests = [{"plan_id": s.plan_id, "story_id": s.story_id} for s in STORIES]
    publisher = threading.Thread(target=lambda: asyncio.run(publish(url, requests)))
    publisher.start()
    for _ in range(2):
        time.sleep(8)  # the scenario: kills while the window is admitting the burst
        dagster.kill_daemon()
        dagster.start_daemon()
    publisher.join()

    events = asyncio.run(request_and_collect(url, [], want=len(STORIES), timeout=300))

    assert_each_story_derived_once(fleet, events, [s.story_id for s in STORIES])
    assert [body for subject, body in events if subject.endswith("failed")] == []
    assert fleet.executor is not None
    plans = fleet.executor.servicer.plans()
    assert len(plans) == len(STORIES) and not any(plan.timed_out for plan in plans)
    # Without the window all 24 would have been at the executor at once.
    assert peak_in_flight(plans) < len(STORIES)
    with dg.DagsterInstance.from_config(str(dagster.home)) as instance:
        assert llm_jobs_in_flight(instance, datetime.now(UTC), llm_timeout_seconds=600) == 0
