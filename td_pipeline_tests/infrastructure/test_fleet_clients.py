"""The Context and Ray Executor adapters against the sandbox fleet, over real sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from td_pipeline.application.ports import (
    DeliberationStatus,
    ExecutorSubmission,
    NotFound,
    Rejected,
)
from td_pipeline.domain.derivation import LlmAnswer, LlmFailureReport
from td_pipeline.domain.roles import DEVELOPER
from td_pipeline.domain.values import DerivationId, PlanId, Role, StoryId
from td_pipeline.infrastructure.context_client import GrpcContextClient
from td_pipeline.infrastructure.executor_client import (
    AGENT_ID,
    GrpcExecutorClient,
    derivation_task_id,
    parse_derivation_task_id,
    submission_request,
)
from td_pipeline.infrastructure.grpc_channel import ChannelSettings
from td_pipeline.infrastructure.nats_mappers import decode_agent_failure, decode_agent_response
from td_pipeline.infrastructure.subjects import AGENT_RESPONSE_COMPLETED, AGENT_RESPONSE_FAILED
from td_pipeline.sandbox.fleet import LocalFleet
from td_pipeline.sandbox.replay_llm import ReplayLlm
from td_pipeline_tests.support import wait_until


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    replay = tmp_path_factory.mktemp("replay")
    (replay / "STORY-DARK-MODE.txt").write_text("@never\n")
    (replay / "STORY-BROKEN.txt").write_text("@fail vLLM is down\n")
    with LocalFleet(tmp_path_factory.mktemp("fleet"), backend=ReplayLlm(replay)) as fleet:
        yield fleet


def settings(fleet: LocalFleet, variable: str) -> ChannelSettings:
    return ChannelSettings(fleet.environment()[variable], timeout_seconds=3)


def submission(
    story: str,
    plan: str,
    derivation: str,
    fleet: LocalFleet | None = None,
    *,
    role: Role = DEVELOPER,
    model: str | None = None,
    vllm_url: str | None = None,
) -> ExecutorSubmission:
    """A submission calling the fleet's LLM (VLLM_URL, VLLM_MODEL), unless told otherwise."""
    environment = fleet.environment() if fleet else {}
    return ExecutorSubmission(
        derivation_id=DerivationId(derivation),
        attempt=2,
        plan_id=PlanId(plan),
        story_id=StoryId(story),
        role=role,
        prompt="<acceptance_criteria>\n1. It works\n</acceptance_criteria>",
        timeout_seconds=600,
        model=environment.get("VLLM_MODEL", "") if model is None else model,
        vllm_url=environment.get("VLLM_URL", "") if vllm_url is None else vllm_url,
    )


async def message_for(url: str, subject: str, task_id: str) -> dict[str, Any]:
    connection = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
    try:
        subscription = await connection.jetstream().subscribe(subject, ordered_consumer=True)
        while True:
            body: dict[str, Any] = json.loads((await subscription.next_msg(timeout=10)).data)
            if body.get("task_id") == task_id:
                return body
    finally:
        await connection.close()


def wait_for_status(client: GrpcExecutorClient, deliberation_id: str) -> DeliberationStatus:
    """The job's status once it is no longer running."""
    return wait_until(
        lambda: (
            (status := client.deliberation_status(deliberation_id)).status != "running" and status
        ),
        5,
        f"{deliberation_id} finishing",
    )


def test_task_ids_name_the_attempt_and_never_look_like_planning_s_own() -> None:
    task_id = derivation_task_id(DerivationId("d-42"), 2)

    assert task_id == "td:d-42:2"
    assert not task_id.startswith("derive-")  # Planning's legacy consumer would take it
    assert not task_id.endswith(":task-extraction")
    assert parse_derivation_task_id(task_id) == (DerivationId("d-42"), 2)
    assert parse_derivation_task_id(" td:d:with:colons:7 ") == (DerivationId("d:with:colons"), 7)


@pytest.mark.parametrize(
    "task_id",
    ["derive-PLAN-1", "td:d-1", "td:d-1:0", "td:d-1:x", "td::1", "td:d,1:1", "xtd:d-1:1", ""],
)
def test_other_task_ids_are_not_ours(task_id: str) -> None:
    assert parse_derivation_task_id(task_id) is None


@pytest.mark.parametrize(
    ("role", "agent_role"),
    [
        (Role("DEVELOPER"), "DEV"),
        (Role("QA"), "QA"),
        (Role("ARCHITECT"), "ARCHITECT"),
        (Role("DEVOPS"), "DEVOPS"),
        (Role("DATA_ENGINEER"), "DATA"),
        (Role("PRODUCT_OWNER"), "DEV"),  # no agent of that role: the developer agent derives
        (Role("SECURITY"), "DEV"),
    ],
)
def test_submission_speaks_the_executors_names(role: Role, agent_role: str) -> None:
    request = submission_request(
        submission("S", "P", "d-1", role=role, model="qwen", vllm_url="http://vllm:8000")
    )

    assert request.task_id == "td:d-1:2"
    assert request.role == agent_role
    assert [(a.id, a.role, a.model) for a in request.agents] == [(AGENT_ID, agent_role, "qwen")]
    assert AGENT_ID == "task-deriver-001"
    assert (request.vllm_url, request.vllm_model) == ("http://vllm:8000", "qwen")
    assert (request.constraints.story_id, request.constraints.plan_id) == ("S", "P")
    assert dict(request.constraints.metadata) == {
        "task_type": "TASK_DERIVATION",
        "story_id": "S",
        "plan_id": "P",
        "derivation_id": "d-1",
        "attempt": "2",
        "task_id": "td:d-1:2",
    }


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

    receipt = client.submit(submission("STORY-REFUNDS", "PLAN-PAY-1", "d-42", fleet))
    url = fleet.environment()["NATS_URL"]
    answer = asyncio.run(message_for(url, AGENT_RESPONSE_COMPLETED, "td:d-42:2"))

    assert receipt.accepted and receipt.deliberation_id.startswith("deliberation-td:d-42:2-")
    assert (answer["agent_id"], answer["role"], answer["status"]) == (
        "task-deriver-001",
        "DEV",
        "completed",
    )
    assert answer["constraints"]["metadata"] == {
        "task_type": "TASK_DERIVATION",
        "story_id": "STORY-REFUNDS",
        "plan_id": "PLAN-PAY-1",
        "derivation_id": "d-42",
        "attempt": "2",
        "task_id": "td:d-42:2",
        "num_agents": 1,
    }
    assert answer["constraints"]["timeout_seconds"] == 600
    decoded = decode_agent_response(json.dumps(answer).encode())
    assert isinstance(decoded, LlmAnswer)
    assert (decoded.plan_id, decoded.story_id) == (PlanId("PLAN-PAY-1"), StoryId("STORY-REFUNDS"))
    assert (decoded.derivation_id, decoded.attempt) == (DerivationId("d-42"), 2)
    status = wait_for_status(client, receipt.deliberation_id)
    assert status == DeliberationStatus("completed", has_proposal=True)
    assert not status.failed_silently
    client.close()


def test_a_failed_llm_job_is_published_and_reported_completed_without_proposal(
    fleet: LocalFleet,
) -> None:
    client = GrpcExecutorClient(settings(fleet, "RAY_EXECUTOR_ADDRESS"))

    receipt = client.submit(submission("STORY-BROKEN", "PLAN-PAY-1", "d-broken", fleet))
    url = fleet.environment()["NATS_URL"]
    failure = asyncio.run(message_for(url, AGENT_RESPONSE_FAILED, "td:d-broken:2"))

    assert receipt.accepted
    assert "constraints" not in failure and "plan_id" not in failure
    assert failure["metadata"] == {"task_id": "td:d-broken:2"}
    report = decode_agent_failure(json.dumps(failure).encode())
    assert isinstance(report, LlmFailureReport)
    assert (report.derivation_id, report.attempt) == (DerivationId("d-broken"), 2)
    assert "vLLM is down" in report.reason
    # As the fleet's executor: the job "completed", with nothing to show for it.
    status = wait_for_status(client, receipt.deliberation_id)
    assert (status.status, status.has_proposal, status.failed_silently) == (
        "completed",
        False,
        True,
    )
    client.close()


def test_lost_and_unknown_deliberations(fleet: LocalFleet) -> None:
    client = GrpcExecutorClient(settings(fleet, "RAY_EXECUTOR_ADDRESS"))
    receipt = client.submit(submission("STORY-DARK-MODE", "PLAN-UX-1", "d-lost", fleet))
    later = client.submit(submission("STORY-REFUNDS", "PLAN-PAY-1", "d-later", fleet))
    # Proof the executor's workers had the lost job: one submitted after it has finished.
    wait_for_status(client, later.deliberation_id)
    assert client.deliberation_status(receipt.deliberation_id) == DeliberationStatus("running")
    unknown = client.deliberation_status("delib-unknown")
    assert (unknown.status, unknown.has_proposal, unknown.failed_silently) == (
        "not_found",
        False,
        False,
    )
    assert "not found" in unknown.error
    client.close()


@pytest.mark.parametrize(
    ("vllm_url", "model", "missing"),
    [("", None, "vllm_url"), ("  ", None, "vllm_url"), (None, "", "vllm_model")],
)
def test_a_submission_without_vllm_settings_is_rejected(
    fleet: LocalFleet, vllm_url: str | None, model: str | None, missing: str
) -> None:
    client = GrpcExecutorClient(settings(fleet, "RAY_EXECUTOR_ADDRESS"))
    bad = submission(
        "STORY-REFUNDS", "PLAN-PAY-1", "d-no-llm", fleet, model=model, vllm_url=vllm_url
    )
    with pytest.raises(Rejected, match=f"INVALID_ARGUMENT: {missing} is required"):
        client.submit(bad)
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
    # What td-pipeline sends the executor: the LLM backend's own endpoint and model.
    assert "VLLM_URL=sandbox://replay" in lines and "VLLM_MODEL=replay" in lines
