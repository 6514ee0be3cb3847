"""The Ray Executor adapter: `ExecutorPort` over `RayExecutorService`.

The submission looks like the fleet's own (task id `derive-<plan>`, one agent, the whole
prompt as the task description); its metadata carries what the answer is correlated by."""

from __future__ import annotations

from td_pipeline.application.ports import ExecutorSubmission, SubmissionReceipt
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


def submission_request(submission: ExecutorSubmission) -> pb.ExecuteDeliberationRequest:
    return pb.ExecuteDeliberationRequest(
        task_id=f"derive-{submission.plan_id.value}",
        task_description=submission.prompt,
        role=submission.role.value,
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
            },
        ),
        agents=[
            pb.Agent(
                id=f"td-pipeline-{submission.role.value.lower()}",
                role=submission.role.value,
                model=submission.model,
            )
        ],
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

    def deliberation_status(self, deliberation_id: str) -> str:
        request = pb.GetDeliberationStatusRequest(deliberation_id=deliberation_id)
        answer = call(
            "GetDeliberationStatus",
            self._settings,
            lambda timeout: self._stub().GetDeliberationStatus(request, timeout=timeout),
        )
        return answer.status.strip().lower() or "not_found"

    def close(self) -> None:
        self._channel.close()
