"""Wire models of the NATS payloads (contracts.md §1), shared with the sandbox fleet.

Plain boundary models: they accept what fleet peers really send (extra fields kept, loose
shapes allowed) and say what is wrong in their validation errors. Conversions to and from the
domain live in the mappers.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_ROLE = "DEVELOPER"


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
    roles: list[str] = Field(default_factory=lambda: [DEFAULT_ROLE])
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
            return [DEFAULT_ROLE]
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ValueError("roles must be a string or a list of strings")
        roles = [item.strip() for item in items if item.strip()]
        return roles or [DEFAULT_ROLE]


class ResponseConstraints(WireModel):
    story_id: str | None = None
    plan_id: str | None = None
    timeout: int | float | None = None
    max_retries: int | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


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
    """`agent.response.completed` as the fleet's Ray executor sends it (contracts §1.3)."""

    task_id: str | None = None
    agent_id: str | None = None
    role: str | None = None
    status: str = "completed"
    duration_ms: int | None = None
    timestamp: str | None = None
    num_agents: int | None = None
    proposal: ProposalBody | str | None = None
    constraints: ResponseConstraints = Field(default_factory=ResponseConstraints)
    plan_id: str | None = None  # legacy shape: ids at the top level
    story_id: str | None = None
    result: LegacyResult | None = None


class AgentResponseFailed(WireModel):
    """`agent.response.failed`: same ids and constraints, with an error or message."""

    task_id: str | None = None
    agent_id: str | None = None
    role: str | None = None
    status: str = "failed"
    timestamp: str | None = None
    constraints: ResponseConstraints = Field(default_factory=ResponseConstraints)
    plan_id: str | None = None
    story_id: str | None = None
    error: str | None = None
    message: str | None = None


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
