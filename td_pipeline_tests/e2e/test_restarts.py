"""Restarts end to end: the NATS server restarted mid-run, and the dagster-daemon killed
with SIGKILL three times during a stream of 30 requests. Nothing is lost, nothing is done
twice."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import nats
import pytest

from td_pipeline.devtools.dagster_processes import DagsterProcesses
from td_pipeline.sandbox.fleet import LocalFleet
from td_pipeline.sandbox.planning_store import load_sample_stories, story_copies
from td_pipeline_tests.e2e.test_daemon import request_and_collect
from td_pipeline_tests.support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.runs_for(115)]

STORIES = story_copies(load_sample_stories(), 30)
FIVE_MINUTES = 300.0


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[LocalFleet]:
    with LocalFleet(tmp_path / "fleet", stories=STORIES) as fleet:
        yield fleet


# The default `dagster` (e2e/conftest.py), with the default retry schedule (every 15 minutes):
# nothing here may wait for it. A run lost with a killed daemon is relaunched by Dagster's run
# retries, not retried by us.


def request(story_index: int) -> dict[str, Any]:
    story = STORIES[story_index]
    return {"plan_id": story.plan_id, "story_id": story.story_id}


async def publish(url: str, bodies: list[dict[str, Any]], every_seconds: float = 0.0) -> None:
    connection = await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        for body in bodies:
            await connection.jetstream().publish(
                "task.derivation.requested", json.dumps(body).encode()
            )
            await asyncio.sleep(every_seconds)
    finally:
        await connection.close()


def assert_each_story_derived_once(
    fleet: LocalFleet, events: list[tuple[str, dict[str, Any]]], stories: list[str]
) -> None:
    completed = [body["story_id"] for subject, body in events if subject.endswith("completed")]
    assert sorted(completed) == sorted(stories), events
    given_up = [b for s, b in events if s.endswith("failed") and b["requires_manual_review"]]
    assert given_up == []
    store = fleet.store
    assert store is not None
    for story in stories:
        titles = [task.title for task in store.tasks(story)]
        edges = [(e.from_task_id, e.to_task_id) for e in store.dependencies(story)]
        assert titles and len(titles) == len(set(titles)), story
        assert len(edges) == len(set(edges)), story


def test_sensors_recover_from_a_nats_restart_and_lose_nothing(
    fleet: LocalFleet, dagster: DagsterProcesses
) -> None:
    assert fleet.nats is not None
    url = fleet.environment()["NATS_URL"]
    asyncio.run(publish(url, [request(i) for i in range(3)]))
    instance = dg.DagsterInstance.from_config(str(dagster.home))
    wait_until(lambda: instance.get_run_ids(limit=1), 60, "runs under way", 0.2)
    fleet.nats.restart(down_seconds=3)
    asyncio.run(publish(url, [request(i) for i in range(3, 5)]))

    events = asyncio.run(request_and_collect(url, [], want=5, timeout=300))

    assert_each_story_derived_once(fleet, events, [s.story_id for s in STORIES[:5]])


@pytest.mark.timeout(400)  # the test's own deadline (5 minutes after the last kill) comes first
def test_a_daemon_killed_three_times_during_30_requests_loses_and_duplicates_nothing(
    fleet: LocalFleet, dagster: DagsterProcesses
) -> None:
    url = fleet.environment()["NATS_URL"]
    publisher = threading.Thread(
        target=lambda: asyncio.run(publish(url, [request(i) for i in range(30)], 0.5))
    )
    publisher.start()
    for _ in range(3):
        time.sleep(6)
        dagster.kill_daemon()
        time.sleep(1)
        dagster.start_daemon()
    last_kill = time.monotonic()
    publisher.join()

    # Every story completes within 5 minutes of the last kill, with the default retry schedule:
    # a run the daemon was launching when it died is relaunched by Dagster, not left to it.
    remaining = FIVE_MINUTES - (time.monotonic() - last_kill)
    events = asyncio.run(request_and_collect(url, [], want=30, timeout=remaining))

    assert_each_story_derived_once(fleet, events, [s.story_id for s in STORIES])
