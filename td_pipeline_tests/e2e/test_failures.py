"""Failure handling end to end: real NATS, the sandbox services with their fault knobs, and a
real dagster-daemon running the sensors, the watchdog and the retry schedule (every
minute here, with a 5 s LLM timeout and two attempts per derivation)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from td_pipeline.devtools.dagster_processes import DagsterProcesses, prepare_home
from td_pipeline.orchestration.attempt_queries import IN_FLIGHT
from td_pipeline.sandbox.fleet import LocalFleet
from td_pipeline.sandbox.replay_llm import ReplayLlm
from td_pipeline_tests.e2e.test_daemon import request_and_collect
from td_pipeline_tests.support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.runs_for(120)]

SETTINGS = {
    "TD_LLM_TIMEOUT_SECONDS": "5",
    "TD_MAX_ATTEMPTS": "2",
    "TD_RETRY_CRON": "* * * * *",
    "TD_TRANSIENT_RETRY_SECONDS": "60",
}


def replay_fleet(tmp_path: Path) -> LocalFleet:
    """The fleet of these tests (not started): the LLM loses STORY-MFA's job and fails
    STORY-DARK-MODE's; the other stories get the offline planner's answer."""
    answers = tmp_path / "answers"
    answers.mkdir()
    (answers / "STORY-MFA.txt").write_text("@never\n")  # the LLM job is lost
    (answers / "STORY-DARK-MODE.txt").write_text("@fail GPU worker out of memory\n")
    return LocalFleet(tmp_path / "fleet", backend=ReplayLlm(answers))


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[LocalFleet]:
    with replay_fleet(tmp_path) as fleet:
        yield fleet


@pytest.fixture
def dagster(fleet: LocalFleet, tmp_path: Path) -> Iterator[DagsterProcesses]:
    home = prepare_home(tmp_path / "dagster_home")
    environment = {**fleet.environment(), **SETTINGS}
    with DagsterProcesses(home, environment, tmp_path / "logs") as processes:
        yield processes


def by_story(events: list[tuple[str, dict[str, Any]]], story: str) -> list[tuple[str, Any]]:
    return [
        (subject.rsplit(".", 1)[-1], body.get("requires_manual_review"))
        for subject, body in events
        if body["story_id"] == story
    ]


def test_outages_lost_jobs_and_llm_failures_end_in_one_outcome_each(
    fleet: LocalFleet, dagster: DagsterProcesses
) -> None:
    store, faults = fleet.store, fleet.faults
    assert store is not None
    # Planning goes away for 20 s while the answers arrive; once back, it fails after two
    # of the next CreateTasks (the rest must be created by the retry, nothing twice).
    faults.unavailable_for(20)
    faults.fail_after_creates = 2
    requests = [
        {"plan_id": "PLAN-PAY-1", "story_id": "STORY-REFUNDS"},
        {"plan_id": "PLAN-AUTH-1", "story_id": "STORY-MFA"},
        {"plan_id": "PLAN-UX-1", "story_id": "STORY-DARK-MODE"},
    ]

    events = asyncio.run(
        request_and_collect(fleet.environment()["NATS_URL"], requests, want=5, timeout=300)
    )

    assert by_story(events, "STORY-REFUNDS") == [("completed", None)], events
    # Attempt 1 fails and will be retried; attempt 2 (the cap) asks for a person.
    assert by_story(events, "STORY-MFA") == [("failed", False), ("failed", True)], events
    assert by_story(events, "STORY-DARK-MODE") == [("failed", False), ("failed", True)], events
    reasons = {body["story_id"]: body["reason"] for _, body in events if "reason" in body}
    assert "LLM timeout after 5s" in reasons["STORY-MFA"]
    assert "GPU worker out of memory" in reasons["STORY-DARK-MODE"]
    assert len(events) == 5  # nothing else, however long we listened

    refunds = next(body for subject, body in events if body["story_id"] == "STORY-REFUNDS")
    titles = [task.title for task in store.tasks("STORY-REFUNDS")]
    assert len(titles) == len(set(titles)) == refunds["task_count"]
    edges = [(e.from_task_id, e.to_task_id) for e in store.dependencies("STORY-REFUNDS")]
    assert edges and len(edges) == len(set(edges))

    # A failed event goes out as soon as a sensor learns of the failure; the run that records
    # it for the retry schedule and the CLI may still be going: wait for it to end.
    instance = dg.DagsterInstance.from_config(str(dagster.home))
    wait_until(
        lambda: not instance.get_run_ids(filters=dg.RunsFilter(statuses=IN_FLIGHT), limit=1),
        120,
        "every run ended",
        0.5,
    )
    listed = subprocess.run(
        [
            str(Path(sys.executable).with_name("td-pipeline")),
            "retry-failed",
            "--dry-run",
            "--max-attempts",
            "2",
        ],
        env={**os.environ, "DAGSTER_HOME": str(dagster.home)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    for story in ("STORY-MFA", "STORY-DARK-MODE"):
        line = next((row for row in listed.stdout.splitlines() if row.startswith(story)), "")
        assert line, listed.stdout
        assert "attempt 2" in line and "left for manual review: 2 of 2 attempts failed" in line
    assert "STORY-REFUNDS" not in listed.stdout

    # An operator allows one more attempt: the CLI launches it through the daemon's queue.
    launched = subprocess.run(
        [str(Path(sys.executable).with_name("td-pipeline")), "retry-failed", "--max-attempts", "3"],
        env={**os.environ, **fleet.environment(), "DAGSTER_HOME": str(dagster.home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert launched.returncode == 0, launched.stdout + launched.stderr
    assert launched.stdout.count("resubmit as attempt 3") == 2, launched.stdout
    events = asyncio.run(
        request_and_collect(fleet.environment()["NATS_URL"], [], want=7, timeout=180)
    )
    third = [body for _, body in events[5:]]
    assert sorted(body["story_id"] for body in third) == ["STORY-DARK-MODE", "STORY-MFA"]
    assert all(body["requires_manual_review"] for body in third)  # over the daemon's cap
