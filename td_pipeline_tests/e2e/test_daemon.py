"""End to end: real NATS, the sandbox services, and a real dagster-daemon running the sensors
and launching runs in a temporary DAGSTER_HOME."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest

from td_pipeline.sandbox.fleet import LocalFleet

REPO = Path(__file__).resolve().parents[2]
STORIES = {
    "STORY-REFUNDS": "PLAN-PAY-1",
    "STORY-MFA": "PLAN-AUTH-1",
    "STORY-DARK-MODE": "PLAN-UX-1",
}

pytestmark = pytest.mark.e2e


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[LocalFleet]:
    with LocalFleet(tmp_path / "fleet") as fleet:
        yield fleet


@pytest.fixture
def daemon(fleet: LocalFleet, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    environment = {**os.environ, **fleet.environment(), "DAGSTER_HOME": str(home)}
    log = (tmp_path / "daemon.log").open("wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", "workspace.yaml"],
        cwd=REPO,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # so that stopping it stops the code server it starts too
    )
    try:
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # any run worker left in the group
        log.close()


async def request_and_collect(
    url: str, requests: list[dict[str, Any]], want: int, timeout: float
) -> list[tuple[str, dict[str, Any]]]:
    connection = await nats.connect(url)
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
    fleet: LocalFleet, daemon: subprocess.Popen[bytes]
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

    assert daemon.poll() is None, "the daemon died"
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
