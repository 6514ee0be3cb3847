"""What the Ray Executor stand-in (`executor`) publishes on NATS: `agent.response.completed`
and `agent.response.failed`, built as the fleet's agent job builds them (contracts.md §1.3), so
that the pipeline reads the stand-in's messages exactly as it reads the fleet's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from td_pipeline.gen.fleet.ray_executor.v1 import ray_executor_pb2 as pb
from td_pipeline.sandbox.llm import LlmAnswer


def _constraints(request: pb.ExecuteDeliberationRequest) -> dict[str, Any]:
    """The submission's constraints as the executor hands them to the agent job."""
    submitted = request.constraints
    metadata: dict[str, Any] = dict(submitted.metadata)
    metadata["num_agents"] = len(request.agents)
    if "story_id" not in metadata and submitted.story_id:
        metadata["story_id"] = submitted.story_id
    return {
        "story_id": submitted.story_id,
        "plan_id": submitted.plan_id,
        "timeout_seconds": submitted.timeout_seconds,
        "max_retries": submitted.max_retries,
        "metadata": metadata,
    }


def _now() -> str:
    return datetime.now(UTC).isoformat()


def completed_message(
    request: pb.ExecuteDeliberationRequest, agent: pb.Agent, answer: LlmAnswer, duration_ms: int
) -> dict[str, Any]:
    """`agent.response.completed` as the fleet's agent job publishes it."""
    return {
        "task_id": request.task_id,
        "agent_id": agent.id,
        "role": agent.role,
        "status": "completed",
        "duration_ms": duration_ms,
        "timestamp": _now(),
        "proposal": {
            "content": answer.content,
            "author_id": agent.id,
            "author_role": agent.role,
            "model": answer.model,
            "temperature": 0.7,
            "tokens": answer.tokens,
        },
        "operations": [],
        "artifacts": {},
        "audit_trail": [],
        "success": True,
        "model": answer.model,
        "enable_tools": False,
        "diversity": False,
        "num_agents": len(request.agents),
        "constraints": _constraints(request),
    }


def failed_message(
    request: pb.ExecuteDeliberationRequest, agent: pb.Agent, error: Exception, duration_ms: int
) -> dict[str, Any]:
    """`agent.response.failed` as the fleet's agent job publishes it: no constraints, no ids
    but the task id; `error` and `error_type` are the exception's text and class name."""
    return {
        "task_id": request.task_id,
        "agent_id": agent.id,
        "role": agent.role,
        "status": "failed",
        "duration_ms": duration_ms,
        "timestamp": _now(),
        "error": str(error),
        "error_type": type(error).__name__,
        "success": False,
        "model": agent.model,
        "num_agents": len(request.agents),
        "metadata": {"task_id": request.task_id},
    }
