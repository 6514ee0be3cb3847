"""Ray Executor stand-in: `RayExecutorService`, answering on NATS exactly as the fleet's does.

ExecuteDeliberation answers at once; the LLM runs in a worker pool and its answer is published
on `agent.response.completed` (or `agent.response.failed`) with the request's constraints and
metadata echoed back, which is how td-pipeline correlates the answer with its attempt.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import grpc

from td_pipeline.gen.fleet.ray_executor.v1 import ray_executor_pb2 as pb
from td_pipeline.gen.fleet.ray_executor.v1 import ray_executor_pb2_grpc as pb_grpc
from td_pipeline.infrastructure.jetstream_publisher import JetStreamPublisher
from td_pipeline.infrastructure.payloads import (
    AgentResponseCompleted,
    AgentResponseFailed,
    ProposalBody,
    ResponseConstraints,
)
from td_pipeline.infrastructure.subjects import AGENT_RESPONSE_COMPLETED, AGENT_RESPONSE_FAILED
from td_pipeline.sandbox.grpc_server import RunningServer, start_grpc_server
from td_pipeline.sandbox.llm import (
    LlmAnswer,
    LlmBackend,
    LlmFailure,
    LlmRequest,
    OpenAICompatibleLlm,
)


@dataclass(frozen=True, slots=True)
class DeliberationState:
    status: str  # running | completed | failed
    agent_id: str
    proposal: str = ""
    error: str = ""
    metadata: tuple[tuple[str, str], ...] = ()


class Publisher(Protocol):
    """What the executor needs of NATS: a `JetStreamPublisher`, or a fake in unit tests."""

    def publish(self, subject: str, payload: bytes, message_id: str) -> None: ...


class RayExecutorServicer(pb_grpc.RayExecutorServiceServicer):
    def __init__(self, backend: LlmBackend, publisher: Publisher, workers: int = 2) -> None:
        self._backend = backend
        self._publisher = publisher
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm")
        self._states: dict[str, DeliberationState] = {}
        self._lock = threading.Lock()

    def ExecuteDeliberation(
        self, request: pb.ExecuteDeliberationRequest, context: grpc.ServicerContext
    ) -> pb.ExecuteDeliberationResponse:
        # Like the fleet's executor, a submission it cannot take is answered "failed", RPC OK.
        if not request.task_id.strip() or not request.task_description.strip():
            return pb.ExecuteDeliberationResponse(
                task_id=request.task_id,
                status="failed",
                message="task_id and task_description are required",
            )
        deliberation_id = f"delib-{uuid.uuid4()}"
        agent_id = request.agents[0].id if request.agents else "agent-sandbox-1"
        self._set(deliberation_id, DeliberationState("running", agent_id))
        self._pool.submit(self._deliberate, deliberation_id, agent_id, request)
        return pb.ExecuteDeliberationResponse(
            task_id=request.task_id,
            deliberation_id=deliberation_id,
            status="submitted",
            message="deliberation submitted",
        )

    def GetDeliberationStatus(
        self, request: pb.GetDeliberationStatusRequest, context: grpc.ServicerContext
    ) -> pb.GetDeliberationStatusResponse:
        with self._lock:
            state = self._states.get(request.deliberation_id)
        if state is None:
            return pb.GetDeliberationStatusResponse(status="not_found")
        return pb.GetDeliberationStatusResponse(
            status=state.status,
            result=pb.DeliberationResult(
                agent_id=state.agent_id, proposal=state.proposal, metadata=dict(state.metadata)
            ),
            error_message=state.error,
        )

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _set(self, deliberation_id: str, state: DeliberationState) -> None:
        with self._lock:
            self._states[deliberation_id] = state

    def _backend_for(self, request: pb.ExecuteDeliberationRequest) -> LlmBackend:
        if request.vllm_url:
            return OpenAICompatibleLlm(request.vllm_url, request.vllm_model)
        return self._backend

    def _deliberate(
        self, deliberation_id: str, agent_id: str, request: pb.ExecuteDeliberationRequest
    ) -> None:
        started = time.monotonic()
        constraints = ResponseConstraints(
            story_id=request.constraints.story_id,
            plan_id=request.constraints.plan_id,
            timeout=request.constraints.timeout_seconds,
            max_retries=request.constraints.max_retries,
            metadata=dict(request.constraints.metadata),
        )
        metadata = tuple(sorted(constraints.metadata.items()))
        llm_request = LlmRequest(
            prompt=request.task_description,
            role=request.role,
            story_id=request.constraints.story_id,
            model=request.vllm_model,
        )
        try:
            answer = self._backend_for(request).answer(llm_request)
        except LlmFailure as failure:
            self._publish_failure(deliberation_id, agent_id, request, constraints, str(failure))
            self._set(
                deliberation_id,
                DeliberationState("failed", agent_id, error=str(failure), metadata=metadata),
            )
            return
        except Exception as error:  # the pool would swallow it; a lost job helps nobody
            message = f"executor error: {type(error).__name__}: {error}"
            self._publish_failure(deliberation_id, agent_id, request, constraints, message)
            self._set(
                deliberation_id,
                DeliberationState("failed", agent_id, error=message, metadata=metadata),
            )
            return
        if answer is None:
            return  # a lost job: stays "running" and is never answered
        duration_ms = int((time.monotonic() - started) * 1000)
        self._publish_answer(deliberation_id, agent_id, request, constraints, answer, duration_ms)
        self._set(
            deliberation_id,
            DeliberationState("completed", agent_id, proposal=answer.content, metadata=metadata),
        )

    def _publish_answer(
        self,
        deliberation_id: str,
        agent_id: str,
        request: pb.ExecuteDeliberationRequest,
        constraints: ResponseConstraints,
        answer: LlmAnswer,
        duration_ms: int,
    ) -> None:
        event = AgentResponseCompleted(
            task_id=request.task_id,
            agent_id=agent_id,
            role=request.role,
            status="completed",
            duration_ms=duration_ms,
            timestamp=datetime.now(UTC).isoformat(),
            num_agents=max(1, len(request.agents)),
            proposal=ProposalBody(
                content=answer.content,
                author_id=agent_id,
                author_role=request.role,
                model=answer.model,
                temperature=0.2,
                tokens=answer.tokens,
            ),
            constraints=constraints,
        )
        self._publisher.publish(
            AGENT_RESPONSE_COMPLETED,
            event.model_dump_json(exclude={"plan_id", "story_id", "result"}).encode(),
            f"{deliberation_id}:completed",
        )

    def _publish_failure(
        self,
        deliberation_id: str,
        agent_id: str,
        request: pb.ExecuteDeliberationRequest,
        constraints: ResponseConstraints,
        error: str,
    ) -> None:
        event = AgentResponseFailed(
            task_id=request.task_id,
            agent_id=agent_id,
            role=request.role,
            status="failed",
            timestamp=datetime.now(UTC).isoformat(),
            constraints=constraints,
            error=error,
        )
        self._publisher.publish(
            AGENT_RESPONSE_FAILED,
            event.model_dump_json(exclude={"plan_id", "story_id", "message"}).encode(),
            f"{deliberation_id}:failed",
        )


@dataclass(frozen=True, slots=True)
class RunningExecutor:
    server: RunningServer
    servicer: RayExecutorServicer
    publisher: JetStreamPublisher

    @property
    def address(self) -> str:
        return self.server.address

    def stop(self) -> None:
        self.server.stop()
        self.servicer.shutdown()
        self.publisher.close()


def serve_executor(
    nats_url: str, backend: LlmBackend, host: str = "127.0.0.1", port: int = 0
) -> RunningExecutor:
    publisher = JetStreamPublisher(nats_url)
    servicer = RayExecutorServicer(backend, publisher)

    def register(server: Any) -> None:
        pb_grpc.add_RayExecutorServiceServicer_to_server(servicer, server)

    service = pb.DESCRIPTOR.services_by_name["RayExecutorService"].full_name
    try:
        server = start_grpc_server([register], [service], host=host, port=port)
    except BaseException:
        publisher.close()
        raise
    return RunningExecutor(server=server, servicer=servicer, publisher=publisher)
