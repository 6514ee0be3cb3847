"""End to end in the real fleet's shapes (contracts.md §1.2, §1.3): Planning's three request
shapes with its role names, and the executor's two ways of failing a job, through a real
dagster-daemon (sensors, watchdog, and the retry schedule every minute)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from td_pipeline.devtools.dagster_processes import DagsterProcesses, prepare_home
from td_pipeline.orchestration.submission_records import SUBMISSION_ASSET, read_submission
from td_pipeline.sandbox.fleet import LocalFleet
from td_pipeline.sandbox.replay_llm import ReplayLlm
from td_pipeline_tests.e2e.test_daemon import request_and_collect
from td_pipeline_tests.fixtures import fleet_message

pytestmark = [pytest.mark.e2e, pytest.mark.runs_for(75)]

FAILED_BY_THE_LLM = "STORY-MFA"  # agent.response.failed in the executor's real shape
FAILED_SILENTLY = "STORY-DARK-MODE"  # only GetDeliberationStatus tells: completed, no proposal


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[LocalFleet]:
    answers = tmp_path / "answers"
    answers.mkdir()
    (answers / f"{FAILED_BY_THE_LLM}.txt").write_text("@fail-once vLLM request timed out\n")
    (answers / f"{FAILED_SILENTLY}.txt").write_text("@fail-unpublished-once CUDA error\n")
    with LocalFleet(tmp_path / "fleet", backend=ReplayLlm(answers)) as fleet:
        yield fleet


@pytest.fixture
def dagster(fleet: LocalFleet, tmp_path: Path) -> Iterator[DagsterProcesses]:
    # The default LLM timeout (600 s): a failed job must be noticed without waiting for it.
    environment = {**fleet.environment(), "TD_RETRY_CRON": "* * * * *"}
    with DagsterProcesses(
        prepare_home(tmp_path / "dagster_home"), environment, tmp_path / "logs"
    ) as processes:
        yield processes


def first_submission(dagster: DagsterProcesses, story: str) -> datetime:
    """When the story's first attempt was handed to the executor (its submission record)."""
    with dg.DagsterInstance.from_config(str(dagster.home)) as instance:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=SUBMISSION_ASSET, asset_partitions=[story]), limit=10
        ).records
    submitted = [
        submission.submitted_at
        for submission in map(read_submission, records)
        if submission.attempt == 1
    ]
    assert submitted, f"{story}: no submission of attempt 1"
    return min(submitted)


def for_story(name: str, plan: str, story: str) -> dict[str, Any]:
    """A fixture request (its exact shape) for another story."""
    message = fleet_message(name)
    body = message.get("payload", message)
    body.update(plan_id=plan, story_id=story)
    return message


def test_planning_shapes_and_executor_failures_complete(
    fleet: LocalFleet, dagster: DagsterProcesses
) -> None:
    requests = [
        for_story("task_derivation_requested_event_type", "PLAN-PAY-1", "STORY-REFUNDS"),
        for_story("task_derivation_requested_bare", "PLAN-SEARCH-1", "STORY-PRODUCT-SEARCH"),
        for_story("task_derivation_requested_envelope", "PLAN-BILL-1", "STORY-INVOICE-PDF"),
        {"plan_id": "PLAN-AUTH-1", "story_id": FAILED_BY_THE_LLM, "roles": ["DEV", "QA"]},
        {"plan_id": "PLAN-UX-1", "story_id": FAILED_SILENTLY},  # no roles: the plan's
    ]
    delays: list[float] = []

    events = asyncio.run(
        request_and_collect(fleet.environment()["NATS_URL"], requests, 7, 300, delays)
    )

    outcomes = [(subject.rsplit(".", 1)[-1], body["story_id"]) for subject, body in events]
    for story in ("STORY-REFUNDS", "STORY-PRODUCT-SEARCH", "STORY-INVOICE-PDF"):
        assert outcomes.count(("completed", story)) == 1, events
    for story in (FAILED_BY_THE_LLM, FAILED_SILENTLY):
        mine = [
            (kind, delay) for (kind, s), delay in zip(outcomes, delays, strict=True) if s == story
        ]
        # One failed event that promises a retry, long before the 600 s LLM timeout the
        # watchdog would otherwise wait for (25-65 s here; the bound leaves room for a loaded
        # machine); then the retry completes.
        assert [kind for kind, _ in mine] == ["failed", "completed"], events
        assert mine[0][1] < 180, f"{story}: failed event after {mine[0][1]:.0f}s"
    assert len(events) == 7, events
    reasons = {body["story_id"]: body for subject, body in events if subject.endswith("failed")}
    # The failure itself is noticed within a minute of the job's submission (the rest of the
    # delay above is the burst's queue before it).
    for story in (FAILED_BY_THE_LLM, FAILED_SILENTLY):
        noticed = datetime.fromisoformat(reasons[story]["occurred_at"])
        waited = (noticed - first_submission(dagster, story)).total_seconds()
        assert waited < 60, f"{story}: failure noticed {waited:.0f}s after its submission"
    assert "vLLM request timed out" in reasons[FAILED_BY_THE_LLM]["reason"]
    assert "without an answer" in reasons[FAILED_SILENTLY]["reason"]
    assert not any(body["requires_manual_review"] for body in reasons.values())

    store = fleet.store
    assert store is not None
    # Planning holds the tasks under the role names it stores.
    assert {task.assigned_role for task in store.tasks("STORY-INVOICE-PDF")} == {"PO"}
    assert {task.assigned_role for task in store.tasks("STORY-REFUNDS")} == {"DEV", "QA"}
    assert {task.assigned_role for task in store.tasks("STORY-PRODUCT-SEARCH")} == {"DEV"}
    assert {task.assigned_role for task in store.tasks(FAILED_SILENTLY)} == {"DEV", "QA"}
