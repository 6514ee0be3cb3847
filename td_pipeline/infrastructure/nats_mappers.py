"""Inbound NATS messages -> the domain, with a reason for everything that is refused.

Peers send the bare payload or the fleet's envelope (contracts §1.1). Agent responses are
shared by every agent of the fleet; only TASK_DERIVATION ones are ours (§1.3)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from td_pipeline.domain.derivation import DerivationRequest, LlmAnswer, LlmFailureReport
from td_pipeline.domain.roles import CANONICAL_ROLES
from td_pipeline.domain.values import DerivationId, PlanId, Role, StoryId
from td_pipeline.infrastructure.executor_client import (
    METADATA_ATTEMPT,
    METADATA_DERIVATION,
    METADATA_TASK_TYPE,
    TASK_TYPE,
)
from td_pipeline.infrastructure.payloads import (
    AgentResponseCompleted,
    AgentResponseFailed,
    DerivationRequestedPayload,
    EventEnvelope,
    ProposalBody,
)

MAX_PAYLOAD_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Refused:
    """A message no retry can fix. Ids are set when they could be read, so that a failed
    event can still answer the requester."""

    reason: str
    plan_id: PlanId | None = None
    story_id: StoryId | None = None


@dataclass(frozen=True, slots=True)
class NotOurs:
    """An agent response for another task type: acknowledged and ignored."""

    task_type: str


def _json_object(data: bytes, max_bytes: int) -> dict[str, Any] | Refused:
    if len(data) > max_bytes:
        return Refused(f"payload of {len(data)} bytes is over the {max_bytes}-byte limit")
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, ValueError) as error:  # ValueError: also over-long integers
        return Refused(f"payload is not JSON: {error}")
    except RecursionError:
        return Refused("payload is not JSON we can read: nested too deeply")
    if not isinstance(value, dict):
        return Refused(f"payload is a JSON {type(value).__name__}, not an object")
    return value


def _unwrap(value: dict[str, Any]) -> tuple[dict[str, Any], str | None] | Refused:
    if "event_type" not in value or "payload" not in value:
        return value, None
    try:
        envelope = EventEnvelope.model_validate(value)
    except ValidationError as error:
        return Refused(f"malformed envelope: {_first_error(error)}")
    return envelope.payload, envelope.correlation_id


def _payload(data: bytes, max_bytes: int) -> tuple[dict[str, Any], str | None] | Refused:
    """The payload object (unwrapped from an envelope) and the envelope's correlation id."""
    value = _json_object(data, max_bytes)
    return value if isinstance(value, Refused) else _unwrap(value)


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "payload"
    return f"{where}: {first['msg']}"


def _readable_ids(raw: dict[str, Any]) -> tuple[PlanId | None, StoryId | None]:
    def read(kind: type[PlanId] | type[StoryId], value: Any) -> Any:
        try:
            return kind(value) if isinstance(value, str) else None
        except ValueError:
            return None

    return read(PlanId, raw.get("plan_id")), read(StoryId, raw.get("story_id"))


def decode_request(
    data: bytes,
    max_bytes: int = MAX_PAYLOAD_BYTES,
    known_roles: frozenset[Role] = CANONICAL_ROLES,
) -> DerivationRequest | Refused:
    unwrapped = _payload(data, max_bytes)
    if isinstance(unwrapped, Refused):
        return unwrapped
    raw, correlation_id = unwrapped
    plan_id, story_id = _readable_ids(raw)
    try:
        payload = DerivationRequestedPayload.model_validate(raw)
        request = DerivationRequest(
            plan_id=PlanId(payload.plan_id),
            story_id=StoryId(payload.story_id),
            roles=tuple(Role(role) for role in payload.roles),
            requested_by=payload.requested_by,
            correlation_id=correlation_id,
        )
    except ValidationError as error:
        return Refused(f"invalid request: {_first_error(error)}", plan_id, story_id)
    except ValueError as error:
        return Refused(f"invalid request: {error}", plan_id, story_id)
    unknown = [role.value for role in request.roles if role not in known_roles]
    if unknown:
        known = ", ".join(sorted(role.value for role in known_roles))
        return Refused(
            f"invalid request: unknown role(s) {', '.join(unknown)} (known: {known})",
            plan_id,
            story_id,
        )
    return request


def _ids(
    top: AgentResponseCompleted | AgentResponseFailed,
) -> tuple[str | None, str | None]:
    """Plan and story ids: top level, then constraints, then constraints.metadata (§1.3)."""
    metadata = top.constraints.metadata

    def first(*candidates: str | None) -> str | None:
        return next((c for c in candidates if c and c.strip()), None)

    plan = first(top.plan_id, top.constraints.plan_id, metadata.get("plan_id"))
    story = first(top.story_id, top.constraints.story_id, metadata.get("story_id"))
    return plan, story


def _answer_text(response: AgentResponseCompleted) -> str | None:
    """result.proposal, then proposal.content, then a string proposal (§1.3)."""
    if response.result is not None:
        return response.result.proposal
    if isinstance(response.proposal, ProposalBody):
        return response.proposal.content
    return response.proposal


def _correlation(metadata: dict[str, str]) -> tuple[DerivationId | None, int | None]:
    derivation_text = metadata.get(METADATA_DERIVATION, "")
    attempt_text = metadata.get(METADATA_ATTEMPT, "")
    try:
        derivation = DerivationId(derivation_text) if derivation_text.strip() else None
    except ValueError:
        derivation = None
    digits = attempt_text.strip()
    attempt = int(digits) if digits.isascii() and digits.isdigit() and len(digits) <= 6 else None
    return derivation, attempt


def _raw_task_type(raw: dict[str, Any]) -> str:
    constraints = raw.get("constraints")
    metadata = constraints.get("metadata") if isinstance(constraints, dict) else None
    value = metadata.get(METADATA_TASK_TYPE) if isinstance(metadata, dict) else None
    return value if isinstance(value, str) else ""


AgentResponse = TypeVar("AgentResponse", AgentResponseCompleted, AgentResponseFailed)


@dataclass(frozen=True, slots=True)
class _Ours(Generic[AgentResponse]):
    response: AgentResponse
    plan_id: PlanId
    story_id: StoryId


def _our_response(
    data: bytes, max_bytes: int, model: type[AgentResponse], kind: str
) -> _Ours[AgentResponse] | NotOurs | Refused:
    """The response if it is one of ours (TASK_DERIVATION) with usable plan and story ids."""
    unwrapped = _payload(data, max_bytes)
    if isinstance(unwrapped, Refused):
        return unwrapped
    raw, _ = unwrapped
    # Other agents share the subject and may use a looser shape: look at the task type first.
    task_type = _raw_task_type(raw)
    if task_type.strip().upper() != TASK_TYPE:
        return NotOurs(task_type)
    try:
        response = model.model_validate(raw)
    except ValidationError as error:
        return Refused(f"invalid {kind}: {_first_error(error)}", *_readable_ids(raw))
    plan, story = _ids(response)
    try:
        return _Ours(response, PlanId(plan or ""), StoryId(story or ""))
    except ValueError as error:
        return Refused(f"{kind} without usable ids: {error}")


def decode_agent_response(
    data: bytes, max_bytes: int = MAX_PAYLOAD_BYTES
) -> LlmAnswer | NotOurs | Refused:
    ours = _our_response(data, max_bytes, AgentResponseCompleted, "agent response")
    if not isinstance(ours, _Ours):
        return ours
    text = _answer_text(ours.response)
    if text is None:
        return Refused("agent response carries no answer text", ours.plan_id, ours.story_id)
    derivation, attempt = _correlation(ours.response.constraints.metadata)
    return LlmAnswer(ours.plan_id, ours.story_id, text, derivation, attempt)


def decode_agent_failure(
    data: bytes, max_bytes: int = MAX_PAYLOAD_BYTES
) -> LlmFailureReport | NotOurs | Refused:
    ours = _our_response(data, max_bytes, AgentResponseFailed, "agent failure")
    if not isinstance(ours, _Ours):
        return ours
    failure = ours.response
    reason = next(
        (text.strip() for text in (failure.error, failure.message) if text and text.strip()),
        "the LLM job failed",
    )
    derivation, attempt = _correlation(failure.constraints.metadata)
    return LlmFailureReport(
        ours.plan_id, ours.story_id, f"LLM failed: {reason}", derivation, attempt
    )
