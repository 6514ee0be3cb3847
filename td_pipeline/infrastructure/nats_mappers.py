"""Inbound NATS messages -> the domain, with a reason for everything that is refused.

Peers send the bare payload or the fleet's envelope (contracts §1.1). Agent responses are
shared by every agent of the fleet; only TASK_DERIVATION ones are ours (§1.3)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from td_pipeline.application.derivation_metrics import Completed, Failed, Requested, StreamFact
from td_pipeline.application.request_intake import derivation_id_for
from td_pipeline.domain.derivation import (
    DerivationRequest,
    LlmAnswer,
    LlmFailureReport,
    NotOurs,
    Refused,
)
from td_pipeline.domain.roles import CANONICAL_ROLES, role_from_text
from td_pipeline.domain.values import DerivationId, PlanId, Role, StoryId
from td_pipeline.infrastructure.executor_client import (
    METADATA_ATTEMPT,
    METADATA_DERIVATION,
    METADATA_TASK_ID,
    METADATA_TASK_TYPE,
    TASK_TYPE,
    parse_derivation_task_id,
)
from td_pipeline.infrastructure.payloads import (
    AgentResponseCompleted,
    AgentResponseFailed,
    DerivationCompletedPayload,
    DerivationFailedPayload,
    DerivationRequestedPayload,
    EventEnvelope,
    ProposalBody,
    ResponseConstraints,
)
from td_pipeline.infrastructure.subjects import (
    DERIVATION_COMPLETED,
    DERIVATION_FAILED,
    DERIVATION_REQUESTED,
)

MAX_PAYLOAD_BYTES = 1024 * 1024


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


def _readable_ids(raw: dict[str, Any]) -> tuple[str | None, str | None]:
    """Plan and story ids as sent, when they are non-blank strings without lone surrogates
    (which no UTF-8 event could carry back)."""

    def read(value: Any) -> str | None:
        if not isinstance(value, str) or not value.strip() or len(value) > 1_000:
            return None
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return None
        return value

    return read(raw.get("plan_id")), read(raw.get("story_id"))


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
            roles=tuple(role_from_text(role) for role in payload.roles),
            requested_by=payload.requested_by,
            correlation_id=correlation_id,
        )
    except ValidationError as error:
        return Refused(f"invalid request: {_first_error(error)}", plan_id, story_id, correlation_id)
    except ValueError as error:
        return Refused(f"invalid request: {error}", plan_id, story_id, correlation_id)
    unknown = [role.value for role in request.roles if role not in known_roles]
    if unknown:
        known = ", ".join(sorted(role.value for role in known_roles))
        return Refused(
            f"invalid request: unknown role(s) {', '.join(unknown)} (known: {known})",
            plan_id,
            story_id,
            correlation_id,
        )
    return request


def _ids(response: AgentResponseCompleted) -> tuple[str | None, str | None]:
    """Plan and story ids: top level, then constraints, then constraints.metadata (§1.3)."""
    constraints = response.constraints

    def first(*candidates: str | None) -> str | None:
        return next((c for c in candidates if c and c.strip()), None)

    plan = first(response.plan_id, constraints.plan_id, constraints.metadata_text("plan_id"))
    story = first(response.story_id, constraints.story_id, constraints.metadata_text("story_id"))
    return plan, story


def _answer_text(response: AgentResponseCompleted) -> str | None:
    """result.proposal, then proposal.content, then a string proposal (§1.3)."""
    if response.result is not None:
        return response.result.proposal
    if isinstance(response.proposal, ProposalBody):
        return response.proposal.content
    return response.proposal


def _attempt_number(text: str | None) -> int | None:
    digits = (text or "").strip()
    if digits.isascii() and digits.isdigit() and len(digits) <= 6 and int(digits) >= 1:
        return int(digits)
    return None


def _correlation(
    constraints: ResponseConstraints, task_id: str | None
) -> tuple[DerivationId | None, int | None]:
    """The attempt an answer belongs to: our metadata keys, else the task id we submitted."""
    derivation_text = constraints.metadata_text(METADATA_DERIVATION) or ""
    try:
        derivation = DerivationId(derivation_text) if derivation_text.strip() else None
    except ValueError:
        derivation = None
    attempt = _attempt_number(constraints.metadata_text(METADATA_ATTEMPT))
    from_task_id = parse_derivation_task_id(task_id or "")
    # The task id fills in only for the same derivation: never one attempt's id with
    # another's number.
    if from_task_id is not None and derivation in (None, from_task_id[0]):
        derivation, attempt = from_task_id[0], attempt or from_task_id[1]
    return derivation, attempt


def _task_type(raw: dict[str, Any]) -> str:
    constraints = raw.get("constraints")
    metadata = constraints.get("metadata") if isinstance(constraints, dict) else None
    value = metadata.get(METADATA_TASK_TYPE) if isinstance(metadata, dict) else None
    return value if isinstance(value, str) else ""


def _is_derivation(task_type: str) -> bool:
    return task_type.strip().upper() == TASK_TYPE


def _raw_task_ids(raw: dict[str, Any]) -> list[str]:
    """Task ids a failure may carry ours in: `metadata.task_id` (the original), `task_id`."""
    metadata = raw.get("metadata")
    candidates = [metadata.get(METADATA_TASK_ID) if isinstance(metadata, dict) else None]
    candidates.append(raw.get("task_id"))
    return [c for c in candidates if isinstance(c, str)]


def _our_task_id(raw: dict[str, Any]) -> tuple[DerivationId, int] | None:
    return next((ours for c in _raw_task_ids(raw) if (ours := parse_derivation_task_id(c))), None)


def decode_agent_response(
    data: bytes, max_bytes: int = MAX_PAYLOAD_BYTES
) -> LlmAnswer | NotOurs | Refused:
    """An answer of ours, in any of §1.3's shapes; other agents' answers are not ours."""
    unwrapped = _payload(data, max_bytes)
    if isinstance(unwrapped, Refused):
        return unwrapped
    raw, _ = unwrapped
    # Other agents share the subject and may use a looser shape: look at the task type first
    # (or, for shapes that carry none, at our task id).
    task_type = _task_type(raw)
    if not _is_derivation(task_type) and (task_type.strip() or _our_task_id(raw) is None):
        return NotOurs(task_type)
    try:
        response = AgentResponseCompleted.model_validate(raw)
    except ValidationError as error:
        return Refused(f"invalid agent response: {_first_error(error)}", *_readable_ids(raw))
    plan, story = _ids(response)
    try:
        plan_id, story_id = PlanId(plan or ""), StoryId(story or "")
    except ValueError as error:
        return Refused(f"agent response without usable ids: {error}")
    text = _answer_text(response)
    if text is None:
        return Refused("agent response carries no answer text", plan, story)
    derivation, attempt = _correlation(response.constraints, response.task_id)
    return LlmAnswer(plan_id, story_id, text, derivation, attempt)


def _failure_reason(failure: AgentResponseFailed) -> str:
    reason = next(
        (text.strip() for text in (failure.error, failure.message) if text and text.strip()),
        "the LLM job failed",
    )
    kind = (failure.error_type or "").strip()
    if kind and kind not in reason:
        reason = f"{kind}: {reason}"
    return f"LLM failed: {reason}"


def decode_agent_failure(
    data: bytes, max_bytes: int = MAX_PAYLOAD_BYTES
) -> LlmFailureReport | NotOurs | Refused:
    """A failed LLM job of ours. The executor's real failure names only the task id; older
    shapes carry our constraints like an answer does."""
    unwrapped = _payload(data, max_bytes)
    if isinstance(unwrapped, Refused):
        return unwrapped
    raw, _ = unwrapped
    ours_by_task_id = _our_task_id(raw)
    task_type = _task_type(raw)
    if ours_by_task_id is None and not _is_derivation(task_type):
        return NotOurs(task_type)
    try:
        failure = AgentResponseFailed.model_validate(raw)
    except ValidationError as error:
        return Refused(f"invalid agent failure: {_first_error(error)}", *_readable_ids(raw))
    derivation, attempt = _correlation(failure.constraints, None)
    if ours_by_task_id is not None:
        derivation, attempt = ours_by_task_id
    if derivation is None:
        return Refused("agent failure that names no attempt of ours (no td: task id)")
    plan, story = _failure_ids(failure)
    timed_out = (failure.error_type or "").strip() == "TimeoutError"
    return LlmFailureReport(plan, story, _failure_reason(failure), derivation, attempt, timed_out)


def _failure_ids(failure: AgentResponseFailed) -> tuple[PlanId | None, StoryId | None]:
    constraints = failure.constraints

    def read(kind: type[PlanId] | type[StoryId], *candidates: str | None) -> Any:
        for candidate in candidates:
            if candidate and candidate.strip():
                try:
                    return kind(candidate)
                except ValueError:
                    return None
        return None

    return (
        read(PlanId, constraints.plan_id, constraints.metadata_text("plan_id")),
        read(StoryId, constraints.story_id, constraints.metadata_text("story_id")),
    )


def decode_stream_fact(
    subject: str, data: bytes, message_key: str, stored_at: float
) -> StreamFact | None:
    """A message of the derivation stream as a fact for the metrics (None: not one of ours,
    or an outcome event we cannot read). Every request counts, valid or not; its derivation id
    is the one the request sensor gives it (from the same message key)."""
    if subject == DERIVATION_REQUESTED:
        return Requested(derivation_id_for(message_key).value, stored_at)
    if subject not in (DERIVATION_COMPLETED, DERIVATION_FAILED):
        return None
    unwrapped = _payload(data, MAX_PAYLOAD_BYTES)
    if isinstance(unwrapped, Refused):
        return None
    raw, _ = unwrapped
    try:
        if subject == DERIVATION_COMPLETED:
            completed = DerivationCompletedPayload.model_validate(raw)
            return Completed(completed.derivation_request_id, stored_at)
        failed = DerivationFailedPayload.model_validate(raw)
    except ValidationError:
        return None
    return Failed(
        failed.derivation_request_id, failed.reason, failed.requires_manual_review, stored_at
    )
