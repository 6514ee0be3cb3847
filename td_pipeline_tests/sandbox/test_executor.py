"""The executor stand-in over real sockets: gRPC in, JetStream out, in the fleet's shape."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import grpc
import nats
import pytest

from td_pipeline.application.ports import ExecutorSubmission
from td_pipeline.domain.plan import StoryPlan
from td_pipeline.domain.prompt import DerivationBrief, RoleContext, build_prompt
from td_pipeline.domain.roles import role_from_text
from td_pipeline.domain.task_graph import TaskCountRange
from td_pipeline.domain.validation import DerivationRules, ValidProposal, validate_proposal
from td_pipeline.domain.values import DerivationId, PlanId, StoryId
from td_pipeline.gen.fleet.ray_executor.v1 import ray_executor_pb2 as pb
from td_pipeline.gen.fleet.ray_executor.v1 import ray_executor_pb2_grpc as pb_grpc
from td_pipeline.infrastructure.executor_client import submission_request
from td_pipeline.sandbox.executor import RunningExecutor, serve_executor
from td_pipeline.sandbox.nats_server import NatsServer
from td_pipeline.sandbox.offline_planner import OFFLINE_MODEL, OfflinePlanner
from td_pipeline.sandbox.planning_store import SampleStory, load_sample_stories
from td_pipeline.sandbox.replay_llm import ReplayLlm
from td_pipeline_tests.fixtures import fleet_message, shape
from td_pipeline_tests.support import wait_until

STORIES = {story.story_id: story for story in load_sample_stories()}


DEFAULT_LIMITS = TaskCountRange(2, 12)


def prompt_for(story: SampleStory, task_count: TaskCountRange = DEFAULT_LIMITS) -> str:
    roles = tuple(role_from_text(r) for r in story.roles)
    brief = DerivationBrief(
        plan=StoryPlan(
            plan_id=PlanId(story.plan_id),
            story_id=StoryId(story.story_id),
            title=story.title,
            description=story.description,
            acceptance_criteria=story.acceptance_criteria,
            technical_notes=story.technical_notes,
            roles=roles,
        ),
        roles=roles,
        role_contexts=tuple(RoleContext(role, "context") for role in roles),
        task_count=task_count,
    )
    return build_prompt(brief).text


def submission(
    story: SampleStory, derivation: str, vllm_url: str = OfflinePlanner.vllm_url, model: str = "m"
) -> pb.ExecuteDeliberationRequest:
    """What td-pipeline's executor adapter submits for this story."""
    return submission_request(
        ExecutorSubmission(
            derivation_id=DerivationId(derivation),
            attempt=1,
            plan_id=PlanId(story.plan_id),
            story_id=StoryId(story.story_id),
            role=role_from_text(story.roles[0]),
            prompt=prompt_for(story),
            timeout_seconds=60,
            model=model,
            vllm_url=vllm_url,
        )
    )


async def next_message(
    url: str, subject: str, derivation: str, timeout: float = 10
) -> dict[str, Any]:
    """The first message on `subject` for the attempt's task id (a failure carries no other)."""
    task_id = f"td:{derivation}:1"
    connection = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
    try:
        subscription = await connection.jetstream().subscribe(subject, ordered_consumer=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = await subscription.next_msg(timeout=deadline - time.monotonic())
            body: dict[str, Any] = json.loads(message.data)
            if body["task_id"] == task_id:
                return body
        raise TimeoutError(subject)
    finally:
        await connection.close()


@pytest.fixture
def replay_dir(tmp_path: Path) -> Path:
    (tmp_path / "STORY-MFA.txt").write_text("@fail model overloaded\n")
    (tmp_path / "STORY-DARK-MODE.txt").write_text("@never\n")
    return tmp_path


@pytest.fixture
def executor(nats_server: NatsServer, replay_dir: Path) -> Iterator[RunningExecutor]:
    running = serve_executor(nats_server.url, ReplayLlm(replay_dir))
    yield running
    running.stop()


@pytest.fixture
def stub(executor: RunningExecutor) -> Iterator[pb_grpc.RayExecutorServiceStub]:
    with grpc.insecure_channel(executor.address) as channel:
        yield pb_grpc.RayExecutorServiceStub(channel)


def wait_for_status(stub: pb_grpc.RayExecutorServiceStub, deliberation: str, status: str) -> None:
    request = pb.GetDeliberationStatusRequest(deliberation_id=deliberation)
    wait_until(
        lambda: stub.GetDeliberationStatus(request, timeout=5).status == status,
        5,
        f"{deliberation} becoming {status}",
    )


def test_round_trip_publishes_the_fleet_shape_and_a_valid_graph(
    nats_server: NatsServer, stub: pb_grpc.RayExecutorServiceStub
) -> None:
    story = STORIES["STORY-REFUNDS"]
    answer = stub.ExecuteDeliberation(submission(story, "d-round-trip"), timeout=5)
    event = asyncio.run(next_message(nats_server.url, "agent.response.completed", "d-round-trip"))

    assert answer.status == "submitted"
    assert re.fullmatch(r"deliberation-td:d-round-trip:1-\d{10}", answer.deliberation_id)
    # Exactly the shape of the fleet's executor (the same file the decoder tests read).
    assert shape(event) == shape(fleet_message("agent_response_completed"))
    assert (event["task_id"], event["status"], event["agent_id"]) == (
        "td:d-round-trip:1",
        "completed",
        "task-deriver-001",
    )
    assert event["proposal"]["model"] == OFFLINE_MODEL
    metadata = event["constraints"]["metadata"]
    assert metadata["num_agents"] == 1  # an integer, not a string: the proto map is gone
    assert (metadata["derivation_id"], metadata["task_type"]) == ("d-round-trip", "TASK_DERIVATION")
    assert (event["constraints"]["story_id"], event["constraints"]["plan_id"]) == (
        story.story_id,
        story.plan_id,
    )
    roles = tuple(role_from_text(r) for r in story.roles)
    verdict = validate_proposal(
        event["proposal"]["content"],
        DerivationRules(roles, len(story.acceptance_criteria), TaskCountRange(2, 12)),
    )
    assert isinstance(verdict, ValidProposal), verdict
    assert verdict.graph.uncovered_criteria(len(story.acceptance_criteria)) == ()
    wait_for_status(stub, answer.deliberation_id, "completed")
    status = stub.GetDeliberationStatus(
        pb.GetDeliberationStatusRequest(deliberation_id=answer.deliberation_id), timeout=5
    )
    assert status.result.proposal == event["proposal"]["content"]


def test_failed_llm_publishes_the_fleets_failure_and_reports_completed_without_proposal(
    nats_server: NatsServer, stub: pb_grpc.RayExecutorServiceStub
) -> None:
    answer = stub.ExecuteDeliberation(submission(STORIES["STORY-MFA"], "d-fail"), timeout=5)
    event = asyncio.run(next_message(nats_server.url, "agent.response.failed", "d-fail"))

    assert shape(event) == shape(fleet_message("agent_response_failed"))
    assert "constraints" not in event and "plan_id" not in event
    assert (event["status"], event["error"]) == ("failed", "model overloaded")
    assert event["metadata"] == {"task_id": "td:d-fail:1"}
    # As the fleet's executor: the job "completed", with nothing to show for it.
    wait_for_status(stub, answer.deliberation_id, "completed")
    status = stub.GetDeliberationStatus(
        pb.GetDeliberationStatusRequest(deliberation_id=answer.deliberation_id), timeout=5
    )
    assert status.result.proposal == ""


@pytest.mark.parametrize(
    ("vllm_url", "model", "refusal"),
    [("", "m", "vllm_url"), ("sandbox://offline-planner", "", "vllm_model")],
)
def test_empty_vllm_settings_are_invalid_argument(
    stub: pb_grpc.RayExecutorServiceStub, vllm_url: str, model: str, refusal: str
) -> None:
    request = submission(STORIES["STORY-REFUNDS"], "d-no-vllm", vllm_url=vllm_url, model=model)
    with pytest.raises(grpc.RpcError) as raised:
        stub.ExecuteDeliberation(request, timeout=5)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert refusal in (raised.value.details() or "")


def test_lost_job_stays_running_and_unknown_is_not_found(
    stub: pb_grpc.RayExecutorServiceStub,
) -> None:
    answer = stub.ExecuteDeliberation(submission(STORIES["STORY-DARK-MODE"], "d-lost"), timeout=5)
    status = stub.GetDeliberationStatus(
        pb.GetDeliberationStatusRequest(deliberation_id=answer.deliberation_id), timeout=5
    )
    unknown = stub.GetDeliberationStatus(
        pb.GetDeliberationStatusRequest(deliberation_id="delib-nope"), timeout=5
    )
    assert (status.status, unknown.status) == ("running", "not_found")


def test_submission_without_a_prompt_is_answered_failed(
    stub: pb_grpc.RayExecutorServiceStub,
) -> None:
    request = submission(STORIES["STORY-REFUNDS"], "d-empty")
    request.task_description = ""
    answer = stub.ExecuteDeliberation(request, timeout=5)
    assert (answer.status, answer.deliberation_id) == ("failed", "")
    assert "required" in answer.message


class ChatCompletions(BaseHTTPRequestHandler):
    """A tiny OpenAI-compatible server: refuses json_schema (like some servers), then answers."""

    requests: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ChatCompletions.requests.append({"body": body, "auth": self.headers.get("Authorization")})
        if body.get("response_format", {}).get("type") == "json_schema":
            self.send_response(400)
            self.end_headers()
            return
        reply = {
            "model": body["model"],
            "choices": [{"message": {"content": '{"tasks": [{"title": "From the stub"}]}'}}],
            "usage": {"completion_tokens": 9},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_openai_backend_against_a_chat_completions_server(
    nats_server: NatsServer, stub: pb_grpc.RayExecutorServiceStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_LLM_API_KEY", "sk-test")
    http = ThreadingHTTPServer(("127.0.0.1", 0), ChatCompletions)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{http.server_address[1]}"
        request = submission(STORIES["STORY-REFUNDS"], "d-openai", vllm_url=url, model="qwen")
        stub.ExecuteDeliberation(request, timeout=5)
        event = asyncio.run(next_message(nats_server.url, "agent.response.completed", "d-openai"))
    finally:
        http.shutdown()

    assert event["proposal"]["content"] == '{"tasks": [{"title": "From the stub"}]}'
    assert (event["proposal"]["model"], event["proposal"]["tokens"]) == ("qwen", 9)
    formats = [r["body"].get("response_format", {}).get("type") for r in ChatCompletions.requests]
    assert formats == ["json_schema", "json_object"]
    assert ChatCompletions.requests[-1]["auth"] == "Bearer sk-test"
    assert "<acceptance_criteria>" in ChatCompletions.requests[-1]["body"]["messages"][0]["content"]
