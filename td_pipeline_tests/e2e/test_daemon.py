"""End to end: real NATS, the sandbox services, and a real dagster-daemon running the sensors
and launching runs in a temporary DAGSTER_HOME."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dagster as dg
import nats
import nats.errors
import pytest

from td_pipeline.devtools.dagster_processes import DagsterProcesses
from td_pipeline.orchestration.attempts import PHASE_TAG, Phase, run_attempts
from td_pipeline.sandbox.fleet import LocalFleet
from td_pipeline_tests.support import wait_until

STORIES = {
    "STORY-REFUNDS": "PLAN-PAY-1",
    "STORY-MFA": "PLAN-AUTH-1",
    "STORY-DARK-MODE": "PLAN-UX-1",
}

pytestmark = [pytest.mark.e2e, pytest.mark.runs_for(110)]


async def request_and_collect(
    url: str,
    requests: list[dict[str, Any]],
    want: int,
    timeout: float,
    seconds_after_request: list[float] | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """Publish the requests, then collect outcome events until `want` arrived (and a few
    seconds more, to catch a duplicate). `seconds_after_request` receives each event's delay."""
    connection = await nats.connect(url)
    started = time.monotonic()
    try:
        jetstream = connection.jetstream()
        subscription = await jetstream.subscribe("task.derivation.*", ordered_consumer=True)
        for body in requests:
            await jetstream.publish("task.derivation.requested", json.dumps(body).encode())
        events: list[tuple[str, dict[str, Any]]] = []
        deadline = time.monotonic() + timeout
        while len(events) < want and time.monotonic() < deadline:
            try:
                message = await subscription.next_msg(timeout=1)
            except nats.errors.TimeoutError:
                continue
            if message.subject != "task.derivation.requested":
                events.append((message.subject, json.loads(message.data)))
                if seconds_after_request is not None:
                    seconds_after_request.append(time.monotonic() - started)
        # Anything else that would arrive shortly (a duplicate) is caught too.
        end = time.monotonic() + 3
        while time.monotonic() < end:
            try:
                message = await subscription.next_msg(timeout=1)
            except nats.errors.TimeoutError:
                continue
            if message.subject != "task.derivation.requested":
                events.append((message.subject, json.loads(message.data)))
        return events
    finally:
        await connection.close()


def test_requests_become_tasks_in_planning_and_one_event_each(
    fleet: LocalFleet, dagster: DagsterProcesses
) -> None:
    requests: list[dict[str, Any]] = [
        {"plan_id": plan, "story_id": story, "roles": ["DEVELOPER", "QA"]}
        for story, plan in STORIES.items()
    ]
    malformed: dict[str, Any] = {"plan_id": "PLAN-X", "story_id": "STORY-X", "roles": ["QA!"]}

    events = asyncio.run(
        request_and_collect(
            fleet.environment()["NATS_URL"], [requests[0], malformed, *requests[1:]], 4, 240
        )
    )

    assert dagster.daemon is not None and dagster.daemon.poll() is None, "the daemon died"
    completed = {e["story_id"]: e for s, e in events if s == "task.derivation.completed"}
    failed = [e for s, e in events if s == "task.derivation.failed"]
    assert sorted(completed) == sorted(STORIES), events
    assert len([s for s, _ in events if s == "task.derivation.completed"]) == len(STORIES)
    assert [(e["story_id"], e["requires_manual_review"]) for e in failed] == [("STORY-X", True)]
    store = fleet.store
    assert store is not None
    for story, event in completed.items():
        tasks = store.tasks(story)
        assert len(tasks) == event["task_count"] > 0
        ids = {task.task_id for task in tasks}
        edges = store.dependencies(story)
        assert edges and all({e.from_task_id, e.to_task_id} <= ids for e in edges)


async def republish_answer(url: str, story: str, task_type: str | None = None) -> None:
    """Publish the executor's answer for `story` again, as a redelivering peer would (or,
    with `task_type`, as another agent's response)."""
    connection = await nats.connect(url)
    try:
        jetstream = connection.jetstream()
        subscription = await jetstream.subscribe("agent.response.completed", ordered_consumer=True)
        while True:
            message = await subscription.next_msg(timeout=5)
            if story.encode() in message.data:
                break
        body = json.loads(message.data)
        if task_type is not None:
            body["constraints"]["metadata"]["task_type"] = task_type
        await jetstream.publish("agent.response.completed", json.dumps(body).encode())
    finally:
        await connection.close()


async def consumer_backlog(
    url: str, stream: str, durable: str, settle_seconds: float = 30.0
) -> tuple[int, int]:
    """(pending, ack pending) once settled: a run's message is acked on the sensor's next
    tick, so give the sensor a few ticks before calling what is left a backlog."""
    connection = await nats.connect(url)
    try:
        deadline = time.monotonic() + settle_seconds
        while True:
            info = await connection.jetstream().consumer_info(stream, durable)
            backlog = (info.num_pending or 0, info.num_ack_pending or 0)
            if backlog == (0, 0) or time.monotonic() > deadline:
                return backlog
            await asyncio.sleep(1)
    finally:
        await connection.close()


def test_a_repeated_answer_and_another_agents_answer_change_nothing(
    fleet: LocalFleet, dagster: DagsterProcesses
) -> None:
    url = fleet.environment()["NATS_URL"]
    first = asyncio.run(
        request_and_collect(
            url, [{"plan_id": "PLAN-PAY-1", "story_id": "STORY-REFUNDS"}], want=1, timeout=120
        )
    )
    assert [subject for subject, _ in first] == ["task.derivation.completed"]
    store = fleet.store
    assert store is not None
    tasks_before = store.tasks("STORY-REFUNDS")
    edges_before = store.dependencies("STORY-REFUNDS")

    asyncio.run(republish_answer(url, "STORY-REFUNDS"))
    asyncio.run(republish_answer(url, "STORY-REFUNDS", task_type="CODE_REVIEW"))
    # Proof the sensor looked: both were taken and settled, nothing waits for redelivery.
    backlog = asyncio.run(
        consumer_backlog(url, "AGENT_RESPONSES", "task-derivation-result-consumer")
    )
    every_event = asyncio.run(request_and_collect(url, [], want=2, timeout=5))

    assert backlog == (0, 0)
    assert every_event == first  # no second completed event, no failed one
    assert store.tasks("STORY-REFUNDS") == tasks_before
    assert store.dependencies("STORY-REFUNDS") == edges_before


def test_the_daemon_killed_between_request_and_run_loses_and_duplicates_nothing(
    fleet: LocalFleet, dagster: DagsterProcesses
) -> None:
    url = fleet.environment()["NATS_URL"]
    requests: list[dict[str, Any]] = [
        {"plan_id": plan, "story_id": story} for story, plan in STORIES.items()
    ]

    async def publish_all() -> None:
        connection = await nats.connect(url)
        for body in requests:
            await connection.jetstream().publish(
                "task.derivation.requested", json.dumps(body).encode()
            )
        await connection.close()

    asyncio.run(publish_all())
    instance = dg.DagsterInstance.from_config(str(dagster.home))
    wait_until(lambda: instance.get_run_ids(limit=1), 60, "the sensor requesting runs", 0.2)
    # The sensor has asked for runs; their requests are not acked yet. Crash now.
    dagster.kill_daemon()
    dagster.start_daemon()

    events = asyncio.run(request_and_collect(url, [], want=len(STORIES), timeout=180))

    completed = [e["story_id"] for s, e in events if s == "task.derivation.completed"]
    assert sorted(completed) == sorted(STORIES), events
    assert not [e for s, e in events if s == "task.derivation.failed"]
    store = fleet.store
    assert store is not None
    for story in STORIES:
        titles = [task.title for task in store.tasks(story)]
        assert titles and len(titles) == len(set(titles))
    # One derive attempt per story, whether in its own run or in a batch.
    derive_runs = instance.get_runs(filters=dg.RunsFilter(tags={PHASE_TAG: Phase.DERIVE.value}))
    derived = sorted(attempt.story for run in derive_runs for attempt in run_attempts(run))
    assert derived == sorted(STORIES)


def dagster_cli(dagster: DagsterProcesses, fleet: LocalFleet, *arguments: str) -> str:
    """The `dagster` command as docs/commands.md shows it, against the test's instance."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), *arguments],
        cwd=dagster.workspace.parent,
        env={**os.environ, **fleet.environment(), "DAGSTER_HOME": str(dagster.home)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout + result.stderr


def test_cli_launches_rerun_a_story_and_start_a_derivation(
    fleet: LocalFleet, dagster: DagsterProcesses
) -> None:
    url = fleet.environment()["NATS_URL"]
    story, plan = "STORY-MFA", STORIES["STORY-MFA"]
    first = asyncio.run(
        request_and_collect(url, [{"plan_id": plan, "story_id": story}], want=1, timeout=120)
    )
    assert [subject for subject, _ in first] == ["task.derivation.completed"]
    store = fleet.store
    assert store is not None
    tasks = store.tasks(story)

    # Re-run persistence from the stored answer, in the CLI's own process.
    dagster_cli(
        dagster,
        fleet,
        "asset",
        "materialize",
        "-m",
        "td_pipeline.orchestration.definitions",
        "--select",
        "planning_tasks",
        "--partition",
        story,
    )
    # A new derivation of the story, queued for the daemon like a sensor's run.
    config = {"ops": {"plan_context": {"config": {"plan_id": plan, "derivation_id": "cli-1"}}}}
    dagster_cli(
        dagster,
        fleet,
        "job",
        "launch",
        "-w",
        "workspace.yaml",
        "-j",
        "derive_tasks",
        "--tags",
        json.dumps({"dagster/partition": story}),
        "--config-json",
        json.dumps(config),
    )
    events = asyncio.run(request_and_collect(url, [], want=2, timeout=120))

    # The re-run announced nothing again; the launched derivation got its own completed event.
    assert [(s, e["derivation_request_id"]) for s, e in events][1:] == [
        ("task.derivation.completed", "cli-1")
    ]
    assert events[0] == first[0]
    assert store.tasks(story) == tasks  # neither created a task twice
