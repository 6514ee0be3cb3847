"""Wire models of the NATS payloads (contracts.md §1), shared with the sandbox fleet.

Plain boundary models: they accept what fleet peers really send (extra fields kept, loose
shapes allowed) and say what is wrong in their validation errors. Conversions to and from the
domain live in the mappers.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class WireModel(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class EventEnvelope(WireModel):
    """The fleet's event envelope around a payload (contracts §1.1)."""

    event_type: str
    payload: dict[str, Any]
    idempotency_key: str | None = None
    correlation_id: str | None = None
    timestamp: str | None = None
    producer: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    causation_id: str | None = None


def _non_blank(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-blank string")
    return value.strip()


class DerivationRequestedPayload(WireModel):
    """`task.derivation.requested` (contracts §1.2)."""

    plan_id: str
    story_id: str
    requested_by: str = "unknown"
    roles: list[str] = Field(default_factory=list)  # empty: the plan's roles
    occurred_at: str | None = None
    requested_at: str | None = None

    @field_validator("plan_id", "story_id", mode="before")
    @classmethod
    def _required(cls, value: object) -> str:
        return _non_blank(value)

    @field_validator("requested_by", mode="before")
    @classmethod
    def _requester(cls, value: object) -> str:
        return value.strip() if isinstance(value, str) and value.strip() else "unknown"

    @field_validator("roles", mode="before")
    @classmethod
    def _roles(cls, value: object) -> list[str]:
        if value is None:
            return []
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ValueError("roles must be a string or a list of strings")
        roles = [item.strip() for item in items if item.strip()]
        return roles


def _metadata_object(value: object) -> dict[str, Any]:
    # The executor wraps a metadata that is not an object as {"original": ...} (§1.3).
    if value is None:
        return {}
    return value if isinstance(value, dict) else {"original": value}


class ResponseConstraints(WireModel):
    """The submission's constraints as the executor echoes them: `metadata` is the proto's
    string map turned into a dict, with the executor's own additions (`num_agents` is an
    integer), so its values may be any JSON."""

    story_id: str | None = None
    plan_id: str | None = None
    timeout_seconds: int | float | None = None
    max_retries: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata(cls, value: object) -> dict[str, Any]:
        return _metadata_object(value)

    def metadata_text(self, key: str) -> str | None:
        """One of our metadata keys, read as a string (integers are read as their digits)."""
        return metadata_text(self.metadata, key)


def metadata_text(metadata: dict[str, Any], key: str) -> str | None:
    value = metadata.get(key)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    return value if isinstance(value, str) else None


class ProposalBody(WireModel):
    content: str
    author_id: str | None = None
    author_role: str | None = None
    model: str | None = None
    temperature: float | None = None
    tokens: int | None = None


class LegacyResult(WireModel):
    proposal: str


class AgentResponseCompleted(WireModel):
    """`agent.response.completed`: the executor's `AgentResult.to_dict()` plus its extras
    (contracts §1.3). Older shapes: a string `proposal`, or ids at the top level with the
    text in `result.proposal`."""

    task_id: str | None = None
    agent_id: str | None = None
    role: str | None = None
    status: str = "completed"
    duration_ms: int | None = None
    timestamp: str | None = None
    proposal: ProposalBody | str | None = None
    operations: list[Any] = Field(default_factory=list)
    artifacts: dict[str, Any] = Field(default_factory=dict)
    audit_trail: list[Any] = Field(default_factory=list)
    success: bool | None = None
    model: str | None = None
    enable_tools: bool | None = None
    diversity: bool | None = None
    num_agents: int | None = None
    constraints: ResponseConstraints = Field(default_factory=ResponseConstraints)
    plan_id: str | None = None
    story_id: str | None = None
    result: LegacyResult | None = None


class AgentResponseFailed(WireModel):
    """`agent.response.failed`: `AgentResult.to_dict()` of a failure (contracts §1.3). It has
    no constraints and no plan or story id: only the task id we submitted ties it to an
    attempt (`metadata.task_id`, else `task_id`)."""

    task_id: str | None = None
    agent_id: str | None = None
    role: str | None = None
    status: str = "failed"
    duration_ms: int | None = None
    timestamp: str | None = None
    error: str | None = None
    error_type: str | None = None
    success: bool | None = None
    model: str | None = None
    num_agents: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    # Older shapes of the stand-ins and of other agents: constraints and a message.
    constraints: ResponseConstraints = Field(default_factory=ResponseConstraints)
    message: str | None = None

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata(cls, value: object) -> dict[str, Any]:
        return _metadata_object(value)


class DerivationCompletedPayload(WireModel):
    """`task.derivation.completed` (contracts §1.4)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    plan_id: str
    story_id: str
    task_count: int
    status: Literal["success"] = "success"
    occurred_at: str
    derivation_request_id: str | None


class DerivationFailedPayload(WireModel):
    """`task.derivation.failed` (contracts §1.4)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    plan_id: str
    story_id: str
    status: Literal["failed"] = "failed"
    reason: str
    requires_manual_review: bool
    occurred_at: str
    derivation_request_id: str | None
