"""The Ray Executor adapter: `ExecutorPort` over `RayExecutorService`.

The submission looks like the fleet's own (one agent, the whole prompt as the task
description), except for its task id, which names the attempt: `td:<derivation id>:<attempt>`.
Not `derive-<plan>` as the fleet's service sent: the real Planning service consumes every
answer whose task id starts with `derive-` itself (contracts §1.3). Ending in the attempt
number, it can never end in `:task-extraction` (which the executor routes to another subject),
and it is all an `agent.response.failed` carries to tie it to its attempt."""

from __future__ import annotations

import re

from td_pipeline.application.ports import (
    DeliberationStatus,
    ExecutorSubmission,
    SubmissionReceipt,
)
from td_pipeline.domain.roles import agent_role_name
from td_pipeline.domain.values import DerivationId
from td_pipeline.gen.fleet.ray_executor.v1 import ray_executor_pb2 as pb
from td_pipeline.gen.fleet.ray_executor.v1 import ray_executor_pb2_grpc as pb_grpc
from td_pipeline.infrastructure.grpc_channel import ChannelSettings, LazyChannel, call

SERVICE = pb.DESCRIPTOR.services_by_name["RayExecutorService"].full_name
TASK_TYPE = "TASK_DERIVATION"
# Metadata keys the result sensor reads back from `constraints.metadata`.
METADATA_TASK_TYPE = "task_type"
METADATA_STORY = "story_id"
METADATA_PLAN = "plan_id"
METADATA_DERIVATION = "derivation_id"
METADATA_ATTEMPT = "attempt"
METADATA_TASK_ID = "task_id"
TASK_ID_PREFIX = "td:"
_TASK_ID = re.compile(r"td:(?P<derivation>.+):(?P<attempt>[1-9][0-9]{0,5})")
AGENT_ID = "task-deriver-001"  # the fleet's derivation agent


def derivation_task_id(derivation_id: DerivationId, attempt: int) -> str:
    return f"{TASK_ID_PREFIX}{derivation_id.value}:{attempt}"


def parse_derivation_task_id(task_id: str) -> tuple[DerivationId, int] | None:
    """The attempt a task id of ours names, or None for any other task id."""
    match = _TASK_ID.fullmatch(task_id.strip())
    if match is None:
        return None
    try:
        return DerivationId(match["derivation"]), int(match["attempt"])
    except ValueError:
        return None


def submission_request(submission: ExecutorSubmission) -> pb.ExecuteDeliberationRequest:
    task_id = derivation_task_id(submission.derivation_id, submission.attempt)
    role = agent_role_name(submission.role)
    return pb.ExecuteDeliberationRequest(
        task_id=task_id,
        task_description=submission.prompt,
        role=role,
        constraints=pb.TaskConstraints(
            story_id=submission.story_id.value,
            plan_id=submission.plan_id.value,
            timeout_seconds=submission.timeout_seconds,
            max_retries=0,  # td-pipeline decides about retries itself
            metadata={
                METADATA_TASK_TYPE: TASK_TYPE,
                METADATA_STORY: submission.story_id.value,
                METADATA_PLAN: submission.plan_id.value,
                METADATA_DERIVATION: submission.derivation_id.value,
                METADATA_ATTEMPT: str(submission.attempt),
                METADATA_TASK_ID: task_id,
            },
        ),
        agents=[pb.Agent(id=AGENT_ID, role=role, model=submission.model)],
        vllm_url=submission.vllm_url,
        vllm_model=submission.model,
    )


class GrpcExecutorClient:
    def __init__(self, settings: ChannelSettings) -> None:
        self._settings = settings
        # ExecuteDeliberation is not retried: a retry could start a second LLM job.
        self._channel = LazyChannel(settings, SERVICE, ("GetDeliberationStatus",))

    def _stub(self) -> pb_grpc.RayExecutorServiceStub:
        return pb_grpc.RayExecutorServiceStub(self._channel.get())

    def submit(self, submission: ExecutorSubmission) -> SubmissionReceipt:
        request = submission_request(submission)
        answer = call(
            "ExecuteDeliberation",
            self._settings,
            lambda timeout: self._stub().ExecuteDeliberation(request, timeout=timeout),
        )
        accepted = answer.status.strip().lower() != "failed" and bool(answer.deliberation_id)
        return SubmissionReceipt(
            deliberation_id=answer.deliberation_id, accepted=accepted, message=answer.message
        )

    def deliberation_status(self, deliberation_id: str) -> DeliberationStatus:
        request = pb.GetDeliberationStatusRequest(deliberation_id=deliberation_id)
        answer = call(
            "GetDeliberationStatus",
            self._settings,
            lambda timeout: self._stub().GetDeliberationStatus(request, timeout=timeout),
        )
        return DeliberationStatus(
            status=answer.status.strip().lower() or "not_found",
            has_proposal=bool(answer.result.proposal.strip()),
            error=answer.error_message.strip(),
        )

    def close(self) -> None:
        self._channel.close()
