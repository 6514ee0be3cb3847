"""Ray Executor stand-in: `RayExecutorService`, answering on NATS exactly as the fleet's does
(contracts.md §1.3, read from the fleet's executor and agent-job code).

- ExecuteDeliberation refuses empty `vllm_url`, `vllm_model` or agent `model` with
  INVALID_ARGUMENT, else answers `submitted` at once with `deliberation-<task id>-<unix time>`.
- The answer goes out bare on `agent.response.completed`: `AgentResult.to_dict()` plus
  `num_agents` and the submission's constraints, whose `metadata` gains an integer
  `num_agents` (so it is not a string map on the wire).
- A failed LLM call goes out on `agent.response.failed` with no constraints and no plan or
  story id, only the task id (also in `metadata.task_id`); GetDeliberationStatus then answers
  `completed` with an empty proposal, as the fleet's does. (Both messages are built in
  `executor_messages`.)
- With an `LlmCapacity` (`sandbox up --llm-slots N --llm-seconds S`) it behaves as the fleet
  does under load (`llm_capacity`): still `submitted` at once, then N jobs served at a time in
  arrival order, the back-end's answer after S seconds of service, and a job queued and served
  past the timeout failed as the fleet's agent job fails it (`error_type` `TimeoutError`, an
  empty `error`: aiohttp's total timeout carries no message). GetDeliberationStatus answers
  `running` while a job is queued or served. Without one, jobs are answered at once.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from td_pipeline.gen.fleet.ray_executor.v1 import ray_executor_pb2 as pb
from td_pipeline.gen.fleet.ray_executor.v1 import ray_executor_pb2_grpc as pb_grpc
from td_pipeline.infrastructure.event_loop_thread import EventLoopThread
from td_pipeline.infrastructure.jetstream_publisher import JetStreamPublisher
from td_pipeline.infrastructure.nats_auth import NO_AUTH, NatsAuth
from td_pipeline.infrastructure.subjects import AGENT_RESPONSE_COMPLETED, AGENT_RESPONSE_FAILED
from td_pipeline.sandbox.executor_messages import completed_message, failed_message
from td_pipeline.sandbox.grpc_server import RunningServer, ServerTls, start_grpc_server
from td_pipeline.sandbox.llm import (
    LlmBackend,
    LlmFailure,
    LlmRequest,
    UnpublishedLlmFailure,
)
from td_pipeline.sandbox.llm_capacity import JobPlan, LlmCapacity, LlmLoad, ServiceQueue, load_at
from td_pipeline.sandbox.openai_llm import OpenAICompatibleLlm


@dataclass(frozen=True, slots=True)
class DeliberationState:
    status: str  # running | completed (a failed LLM call too, with no proposal)
    agent_id: str
    proposal: str = ""


@dataclass(frozen=True, slots=True)
class _LlmService:
    """With a capacity: its slots, and the thread that ends each job at its time."""

    queue: ServiceQueue
    timer: EventLoopThread


class Publisher(Protocol):
    """What the executor needs of NATS: a `JetStreamPublisher`, or a fake in unit tests."""

    def publish(self, subject: str, payload: bytes, message_id: str) -> None: ...


def _refusal(request: pb.ExecuteDeliberationRequest) -> str | None:
    if not request.vllm_url.strip():
        return "vllm_url is required"
    if not request.vllm_model.strip():
        return "vllm_model is required"
    if not request.agents:
        return "at least one agent is required"
    if any(not agent.model.strip() for agent in request.agents):
        return "every agent needs a model"
    return None


class RayExecutorServicer(pb_grpc.RayExecutorServiceServicer):
    def __init__(
        self,
        backend: LlmBackend,
        publisher: Publisher,
        workers: int = 2,
        capacity: LlmCapacity | None = None,
    ) -> None:
        self._backend = backend
        self._publisher = publisher
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm")
        self._states: dict[str, DeliberationState] = {}
        self._lock = threading.Lock()
        self._service = (
            _LlmService(ServiceQueue(capacity), EventLoopThread("llm-service-timer"))
            if capacity is not None
            else None
        )
        self._plans: list[JobPlan] = []  # with a capacity, every job's, in arrival order

    def ExecuteDeliberation(
        self, request: pb.ExecuteDeliberationRequest, context: grpc.ServicerContext
    ) -> pb.ExecuteDeliberationResponse:
        refusal = _refusal(request)
        if refusal is not None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, refusal)
        # Like the fleet's executor, a submission it cannot take is answered "failed", RPC OK.
        if not request.task_id.strip() or not request.task_description.strip():
            return pb.ExecuteDeliberationResponse(
                task_id=request.task_id,
                status="failed",
                message="task_id and task_description are required",
            )
        deliberation_id = f"deliberation-{request.task_id}-{int(time.time())}"
        agent = request.agents[0]
        self._set(deliberation_id, DeliberationState("running", agent.id))
        if self._service is None:
            self._pool.submit(self._deliberate, deliberation_id, agent, request)
        else:
            self._admit(deliberation_id, agent, request, self._service)
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
            return pb.GetDeliberationStatusResponse(
                status="not_found",
                error_message=f"Deliberation {request.deliberation_id} not found",
            )
        result = (
            pb.DeliberationResult(agent_id=state.agent_id, proposal=state.proposal)
            if state.status == "completed"
            else None
        )
        return pb.GetDeliberationStatusResponse(status=state.status, result=result)

    def plans(self) -> tuple[JobPlan, ...]:
        """Every job's plan so far, in arrival order (`time.monotonic` times); empty without
        a capacity."""
        with self._lock:
            return tuple(self._plans)

    def load(self) -> LlmLoad | None:
        """The jobs now (in flight, answered, timed out); None without a capacity."""
        return None if self._service is None else load_at(self.plans(), time.monotonic())

    def shutdown(self) -> None:
        if self._service is not None:
            self._service.timer.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _set(self, deliberation_id: str, state: DeliberationState) -> None:
        with self._lock:
            self._states[deliberation_id] = state

    def _backend_for(self, request: pb.ExecuteDeliberationRequest) -> LlmBackend:
        # A real endpoint in the submission is called; `sandbox://…` means the stand-in's own.
        if request.vllm_url.startswith(("http://", "https://")):
            return OpenAICompatibleLlm(request.vllm_url, request.vllm_model)
        return self._backend

    def _admit(
        self,
        deliberation_id: str,
        agent: pb.Agent,
        request: pb.ExecuteDeliberationRequest,
        service: _LlmService,
    ) -> None:
        with self._lock:  # arrivals reach the queue in the order of their times
            plan = service.queue.admit(time.monotonic())
            self._plans.append(plan)

        def end_of_service() -> None:  # on the timer's loop: hand the work to the pool
            self._pool.submit(self._end_of_service, deliberation_id, agent, request, plan)

        service.timer.call_at(plan.end, end_of_service)

    def _end_of_service(
        self,
        deliberation_id: str,
        agent: pb.Agent,
        request: pb.ExecuteDeliberationRequest,
        plan: JobPlan,
    ) -> None:
        if not plan.timed_out:
            self._deliberate(deliberation_id, agent, request, accepted_at=plan.arrival)
            return
        duration_ms = int((time.monotonic() - plan.arrival) * 1000)
        self._publish(
            AGENT_RESPONSE_FAILED,
            failed_message(request, agent, TimeoutError(), duration_ms),
            f"{deliberation_id}:failed",
        )
        self._set(deliberation_id, DeliberationState("completed", agent.id))

    def _deliberate(
        self,
        deliberation_id: str,
        agent: pb.Agent,
        request: pb.ExecuteDeliberationRequest,
        accepted_at: float | None = None,
    ) -> None:
        # The fleet's agent job times from its own start: with a capacity, the submission.
        started = time.monotonic() if accepted_at is None else accepted_at

        def elapsed_ms() -> int:
            return int((time.monotonic() - started) * 1000)

        llm_request = LlmRequest(
            prompt=request.task_description,
            role=request.role,
            story_id=request.constraints.story_id,
            model=request.vllm_model,
        )
        try:
            answer = self._backend_for(request).answer(llm_request)
        except Exception as error:  # the agent job returns a failure dict; it never raises
            failure = error if isinstance(error, LlmFailure) else LlmFailure(str(error))
            if not isinstance(failure, UnpublishedLlmFailure):
                self._publish(
                    AGENT_RESPONSE_FAILED,
                    failed_message(request, agent, failure, elapsed_ms()),
                    f"{deliberation_id}:failed",
                )
            self._set(deliberation_id, DeliberationState("completed", agent.id))
            return
        if answer is None:
            return  # a lost job: stays "running" and is never answered
        self._publish(
            AGENT_RESPONSE_COMPLETED,
            completed_message(request, agent, answer, elapsed_ms()),
            f"{deliberation_id}:completed",
        )
        self._set(
            deliberation_id, DeliberationState("completed", agent.id, proposal=answer.content)
        )

    def _publish(self, subject: str, message: dict[str, Any], message_id: str) -> None:
        self._publisher.publish(subject, json.dumps(message).encode(), message_id)


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
    nats_url: str,
    backend: LlmBackend,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: ServerTls | None = None,
    nats_auth: NatsAuth = NO_AUTH,
    capacity: LlmCapacity | None = None,
) -> RunningExecutor:
    publisher = JetStreamPublisher(nats_url, nats_auth)
    servicer = RayExecutorServicer(backend, publisher, capacity=capacity)

    def register(server: Any) -> None:
        pb_grpc.add_RayExecutorServiceServicer_to_server(servicer, server)

    service = pb.DESCRIPTOR.services_by_name["RayExecutorService"].full_name
    try:
        server = start_grpc_server([register], [service], host=host, port=port, tls=tls)
    except BaseException:
        publisher.close()
        raise
    return RunningExecutor(server=server, servicer=servicer, publisher=publisher)
