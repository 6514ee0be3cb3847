"""The Context and Ray Executor adapters against the sandbox fleet, over real sockets."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from td_pipeline.application.ports import ExecutorSubmission, NotFound
from td_pipeline.domain.values import DerivationId, PlanId, Role, StoryId
from td_pipeline.infrastructure.context_client import GrpcContextClient
from td_pipeline.infrastructure.executor_client import GrpcExecutorClient
from td_pipeline.infrastructure.grpc_channel import ChannelSettings
from td_pipeline.infrastructure.subjects import AGENT_RESPONSE_COMPLETED
from td_pipeline.sandbox.fleet import LocalFleet
from td_pipeline.sandbox.llm import ReplayLlm


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    replay = tmp_path_factory.mktemp("replay")
    (replay / "STORY-DARK-MODE.txt").write_text("@never\n")
    with LocalFleet(tmp_path_factory.mktemp("fleet"), backend=ReplayLlm(replay)) as fleet:
        yield fleet


def settings(fleet: LocalFleet, variable: str) -> ChannelSettings:
    return ChannelSettings(fleet.environment()[variable], timeout_seconds=3)


def submission(story: str, plan: str, derivation: str) -> ExecutorSubmission:
    return ExecutorSubmission(
        derivation_id=DerivationId(derivation),
        attempt=2,
        plan_id=PlanId(plan),
        story_id=StoryId(story),
        role=Role("DEVELOPER"),
        prompt="<acceptance_criteria>\n1. It works\n</acceptance_criteria>",
        timeout_seconds=600,
    )


async def answer_for(url: str, derivation: str) -> dict[str, Any]:
    connection = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
    try:
        subscription = await connection.jetstream().subscribe(
            AGENT_RESPONSE_COMPLETED, ordered_consumer=True
        )
        while True:
            body: dict[str, Any] = json.loads((await subscription.next_msg(timeout=10)).data)
            if body["constraints"]["metadata"].get("derivation_id") == derivation:
                return body
    finally:
        await connection.close()


def test_context_for_a_role(fleet: LocalFleet) -> None:
    client = GrpcContextClient(settings(fleet, "CONTEXT_SERVICE_ADDRESS"))
    context = client.get_context(StoryId("STORY-REFUNDS"), Role("QA"))
    assert context.role == Role("QA")
    assert "Must verify" in context.text
    with pytest.raises(NotFound):
        client.get_context(StoryId("STORY-NOPE"), Role("QA"))
    client.close()


def test_submission_is_answered_with_our_correlation_metadata(fleet: LocalFleet) -> None:
    client = GrpcExecutorClient(settings(fleet, "RAY_EXECUTOR_ADDRESS"))

    receipt = client.submit(submission("STORY-REFUNDS", "PLAN-PAY-1", "d-42"))
    answer = asyncio.run(answer_for(fleet.environment()["NATS_URL"], "d-42"))

    assert receipt.accepted and receipt.deliberation_id
    assert answer["task_id"] == "derive-PLAN-PAY-1"
    assert answer["constraints"]["metadata"] == {
        "task_type": "TASK_DERIVATION",
        "story_id": "STORY-REFUNDS",
        "plan_id": "PLAN-PAY-1",
        "derivation_id": "d-42",
        "attempt": "2",
    }
    assert answer["constraints"]["timeout"] == 600
    for _ in range(50):
        if client.deliberation_status(receipt.deliberation_id) == "completed":
            break
        time.sleep(0.05)
    assert client.deliberation_status(receipt.deliberation_id) == "completed"
    client.close()


def test_lost_and_unknown_deliberations(fleet: LocalFleet) -> None:
    client = GrpcExecutorClient(settings(fleet, "RAY_EXECUTOR_ADDRESS"))
    receipt = client.submit(submission("STORY-DARK-MODE", "PLAN-UX-1", "d-lost"))
    time.sleep(0.2)
    assert client.deliberation_status(receipt.deliberation_id) == "running"
    assert client.deliberation_status("delib-unknown") == "not_found"
    client.close()


def test_submissions_are_checked() -> None:
    with pytest.raises(ValueError, match="attempts count from 1"):
        ExecutorSubmission(
            derivation_id=DerivationId("d"),
            attempt=0,
            plan_id=PlanId("P"),
            story_id=StoryId("S"),
            role=Role("DEVELOPER"),
            prompt="p",
            timeout_seconds=1,
        )


def test_fleet_env_file_names_every_address(fleet: LocalFleet) -> None:
    lines = (Path(fleet.state_dir) / "sandbox.env").read_text().splitlines()
    assert [line.split("=")[0] for line in lines] == list(fleet.environment())
