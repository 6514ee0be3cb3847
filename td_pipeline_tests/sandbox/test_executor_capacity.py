"""The executor stand-in playing a GPU cluster under load, over real sockets: the fleet's
fixture with its `llm_capacity` knob set (2 slots, 0.2 s a job, a 0.5 s timeout), gRPC in,
JetStream out."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import grpc
import nats
import pytest

from td_pipeline.gen.fleet.ray_executor.v1 import ray_executor_pb2 as pb
from td_pipeline.gen.fleet.ray_executor.v1 import ray_executor_pb2_grpc as pb_grpc
from td_pipeline.sandbox.fleet import LocalFleet
from td_pipeline.sandbox.llm_capacity import LlmCapacity, LlmLoad, peak_in_flight
from td_pipeline_tests.fixtures import fleet_message, shape
from td_pipeline_tests.sandbox.test_executor import STORIES, submission
from td_pipeline_tests.support import wait_until

JOBS = 6  # two rounds answered in 0.4 s; the third round is out of time at 0.5 s


@pytest.fixture(scope="module")
def llm_capacity() -> LlmCapacity:
    return LlmCapacity(slots=2, service_seconds=0.2, timeout_seconds=0.5)


@pytest.fixture(scope="module")
def stub(fleet: LocalFleet) -> Iterator[pb_grpc.RayExecutorServiceStub]:
    with grpc.insecure_channel(fleet.environment()["RAY_EXECUTOR_ADDRESS"]) as channel:
        yield pb_grpc.RayExecutorServiceStub(channel)


async def collect(
    url: str, task_ids: set[str], submit: Any
) -> dict[str, tuple[str, dict[str, Any]]]:
    """Subscribe to every agent response, call `submit`, and gather the responses to
    `task_ids`: task id -> (subject, body)."""
    connection = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
    try:
        subscription = await connection.jetstream().subscribe(
            "agent.response.>", ordered_consumer=True
        )
        await asyncio.to_thread(submit)
        found: dict[str, tuple[str, dict[str, Any]]] = {}
        while set(found) != task_ids:
            message = await subscription.next_msg(timeout=10)
            body = json.loads(message.data)
            if body["task_id"] in task_ids:
                found[body["task_id"]] = (message.subject, body)
        return found
    finally:
        await connection.close()


def status(
    stub: pb_grpc.RayExecutorServiceStub, deliberation: str
) -> pb.GetDeliberationStatusResponse:
    request = pb.GetDeliberationStatusRequest(deliberation_id=deliberation)
    return stub.GetDeliberationStatus(request, timeout=5)


def test_every_job_is_accepted_at_once_served_two_at_a_time_and_late_ones_time_out(
    fleet: LocalFleet, stub: pb_grpc.RayExecutorServiceStub
) -> None:
    story = STORIES["STORY-REFUNDS"]
    derivations = [f"d-load-{n}" for n in range(JOBS)]
    task_ids = {f"td:{derivation}:1": n for n, derivation in enumerate(derivations)}
    answers: list[pb.ExecuteDeliberationResponse] = []
    statuses_at_once: list[str] = []

    def submit() -> None:
        for derivation in derivations:
            answers.append(stub.ExecuteDeliberation(submission(story, derivation), timeout=5))
        # Queued or served, each job is "running", as the fleet's executor says.
        statuses_at_once.extend(status(stub, a.deliberation_id).status for a in answers)

    responses = asyncio.run(collect(fleet.environment()["NATS_URL"], set(task_ids), submit))

    assert [answer.status for answer in answers] == ["submitted"] * JOBS
    assert statuses_at_once == ["running"] * JOBS
    by_job = sorted(responses.values(), key=lambda response: task_ids[response[1]["task_id"]])
    subjects = [subject for subject, _ in by_job]
    assert subjects == ["agent.response.completed"] * 4 + ["agent.response.failed"] * 2
    durations = [body["duration_ms"] for _, body in by_job]
    # Measured from each job's submission (milliseconds apart): a job waits for the rounds
    # ahead of it, and a job times out 0.5 s after its own.
    assert min(durations[:2]) >= 200 and min(durations[2:4]) >= 350
    assert min(durations[4:]) >= 500
    for _, failure in by_job[4:]:
        # The fleet's failed shape: only the task id, and aiohttp's timeout with no message.
        assert shape(failure) == shape(fleet_message("agent_response_failed"))
        assert (failure["error_type"], failure["error"], failure["status"]) == (
            "TimeoutError",
            "",
            "failed",
        )
        assert failure["metadata"] == {"task_id": failure["task_id"]}
        assert "constraints" not in failure and "plan_id" not in failure
    for _, answer in by_job[:4]:
        assert shape(answer) == shape(fleet_message("agent_response_completed"))

    def finished() -> list[pb.GetDeliberationStatusResponse] | None:
        now = [status(stub, answer.deliberation_id) for answer in answers]
        return now if all(s.status == "completed" for s in now) else None

    final = wait_until(finished, 5, "every job completed")
    assert [bool(s.result.proposal) for s in final] == [True] * 4 + [False] * 2  # failed: empty
    assert fleet.executor is not None
    plans = fleet.executor.servicer.plans()
    assert peak_in_flight(plans) == JOBS and sum(plan.timed_out for plan in plans) == 2
    assert fleet.executor.servicer.load() == LlmLoad(queued=0, served=0, answered=4, timed_out=2)
