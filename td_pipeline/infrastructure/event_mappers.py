"""Outcome events -> the bytes and headers published on NATS (contracts §1.4)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from td_pipeline.domain.events import DerivationCompleted, DerivationOutcome, RequestRefused
from td_pipeline.infrastructure.payloads import (
    DerivationCompletedPayload,
    DerivationFailedPayload,
    EventEnvelope,
)
from td_pipeline.infrastructure.subjects import DERIVATION_COMPLETED, DERIVATION_FAILED

PRODUCER = "task-derivation-service"  # the name the fleet knows the service by


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    subject: str
    body: bytes
    message_id: str  # the Nats-Msg-Id header: a retried publish is stored once


def _utc_text(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def outcome_payload(
    event: DerivationOutcome,
) -> DerivationCompletedPayload | DerivationFailedPayload:
    if isinstance(event, RequestRefused):
        return DerivationFailedPayload(
            plan_id=event.plan_id,
            story_id=event.story_id,
            reason=event.reason,
            requires_manual_review=event.requires_manual_review,
            occurred_at=_utc_text(event.occurred_at),
            derivation_request_id=None,
        )
    derivation = event.derivation_request_id.value if event.derivation_request_id else None
    if isinstance(event, DerivationCompleted):
        return DerivationCompletedPayload(
            plan_id=event.plan_id.value,
            story_id=event.story_id.value,
            task_count=event.task_count,
            occurred_at=_utc_text(event.occurred_at),
            derivation_request_id=derivation,
        )
    return DerivationFailedPayload(
        plan_id=event.plan_id.value,
        story_id=event.story_id.value,
        reason=event.reason,
        requires_manual_review=event.requires_manual_review,
        occurred_at=_utc_text(event.occurred_at),
        derivation_request_id=derivation,
    )


def outbound_message(
    event: DerivationOutcome, *, envelope: bool = False, correlation_id: str | None = None
) -> OutboundMessage:
    """Bare JSON by default; the fleet's envelope when configured, carrying the request's
    correlation id (a new one when the request had none) and the event's idempotency key."""
    subject = DERIVATION_COMPLETED if isinstance(event, DerivationCompleted) else DERIVATION_FAILED
    payload = outcome_payload(event).model_dump(mode="json")
    if envelope:
        wrapped = EventEnvelope(
            event_type=subject,
            payload=payload,
            idempotency_key=event.message_id(),
            correlation_id=correlation_id or str(uuid.uuid4()),
            timestamp=payload["occurred_at"],
            producer=PRODUCER,
        )
        body = wrapped.model_dump_json(exclude_none=True).encode()
    else:
        body = json.dumps(payload).encode()
    return OutboundMessage(subject=subject, body=body, message_id=event.message_id())
