"""What a derivation request becomes: a new derivation, nothing (a redelivery whose run was
already started), or a refusal that answers the requester when its ids can be read."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from td_pipeline.application.attempt_history import AttemptHistory
from td_pipeline.domain.derivation import DerivationRequest, Refused
from td_pipeline.domain.events import RequestRefused
from td_pipeline.domain.values import DerivationId


@dataclass(frozen=True, slots=True)
class StartDerivation:
    request: DerivationRequest
    derivation_id: DerivationId
    new_story: bool  # the story's partition must be added with the run


@dataclass(frozen=True, slots=True)
class AlreadyStarted:
    """A redelivered request whose run exists: acknowledged, nothing new."""


@dataclass(frozen=True, slots=True)
class RefuseRequest:
    reason: str
    answer: RequestRefused | None  # the failed event, when plan and story ids can be read
    correlation_id: str | None


RequestDecision = StartDerivation | AlreadyStarted | RefuseRequest


def derivation_id_for(message_key: str) -> DerivationId:
    # Deterministic: a redelivered request names the same derivation.
    return DerivationId("d-" + hashlib.sha256(message_key.encode()).hexdigest()[:16])


def take_request(
    decoded: DerivationRequest | Refused,
    message_key: str,
    history: AttemptHistory,
    now: datetime,
) -> RequestDecision:
    if isinstance(decoded, Refused):
        answer = (
            RequestRefused(
                plan_id=decoded.plan_id,
                story_id=decoded.story_id,
                reason=decoded.reason,
                occurred_at=now,
                request_key=message_key,
            )
            if decoded.plan_id and decoded.story_id
            else None
        )
        return RefuseRequest(decoded.reason, answer, decoded.correlation_id)
    if history.message_handled(message_key):
        return AlreadyStarted()
    return StartDerivation(
        request=decoded,
        derivation_id=derivation_id_for(message_key),
        new_story=not history.story_exists(decoded.story_id.value),
    )
