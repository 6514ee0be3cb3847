"""Outcome events published once, whatever is re-run and whenever.

JetStream drops a repeated `Nats-Msg-Id` only inside its duplicate window (2 minutes here);
a re-run from the UI an hour later must not tell Planning twice. Each event that went out is
recorded as an observation on the story's `planning_tasks` partition, which also shows it in
the UI next to the tasks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg

from td_pipeline.application.outcome_once import should_publish
from td_pipeline.application.retries import AttemptFailure, Retry, after_failure, failure_reason
from td_pipeline.domain.events import AttemptOutcome, DerivationCompleted, DerivationFailed
from td_pipeline.domain.values import DerivationId, PlanId, StoryId
from td_pipeline.orchestration.attempt_queries import OUTCOME_ASSET
from td_pipeline.orchestration.resources import NatsResource

OUTCOMES_PAGE = 100


def published_outcomes(instance: dg.DagsterInstance, story: str) -> set[str]:
    """Message ids of every outcome event published for the story (read page by page)."""
    ids: set[str] = set()
    cursor: str | None = None
    while True:
        result = instance.fetch_observations(
            dg.AssetRecordsFilter(asset_key=OUTCOME_ASSET, asset_partitions=[story]),
            limit=OUTCOMES_PAGE,
            cursor=cursor,
        )
        for record in result.records:
            observation = record.asset_observation
            if observation is not None and "message_id" in observation.metadata:
                ids.add(str(observation.metadata["message_id"].value))
        if not result.has_more:
            return ids
        cursor = result.cursor


def outcome_metadata(event: AttemptOutcome) -> dict[str, dg.RawMetadataValue]:
    common: dict[str, dg.RawMetadataValue] = {
        "outcome": event.outcome,
        "message_id": event.message_id(),
        "derivation_id": event.derivation_request_id.value if event.derivation_request_id else "",
        "occurred_at": event.occurred_at.isoformat(),
    }
    if isinstance(event, DerivationCompleted):
        return {**common, "task_count": event.task_count}
    return {
        **common,
        "attempt": event.attempt or 0,
        "reason": event.reason,
        "requires_manual_review": event.requires_manual_review,
    }


def publish_outcome_once(
    instance: dg.DagsterInstance,
    nats: NatsResource,
    story: str,
    event: AttemptOutcome,
    correlation_id: str | None,
) -> bool:
    """Publish unless already published; True when it went out now. A crash between the
    publish and the record repeats the publish, which the message id deduplicates."""
    if not should_publish(event, published_outcomes(instance, story)):
        return False
    nats.publish_outcome(event, correlation_id)
    instance.report_runless_asset_event(
        dg.AssetObservation(
            asset_key=OUTCOME_ASSET, partition=story, metadata=outcome_metadata(event)
        )
    )
    return True


def announce_failed_attempt(
    instance: dg.DagsterInstance,
    nats: NatsResource,
    story: str,
    asked: AskedAttempt,
    failure: AttemptFailure,
    max_attempts: int,
) -> DerivationFailed:
    """The attempt's one failed event, saying whether td-pipeline retries by itself
    (`after_failure` decides, as for the retry schedule) or a person has to look."""
    decision = after_failure(failure, max_attempts)
    event = DerivationFailed(
        plan_id=PlanId(asked.plan_id),
        story_id=StoryId(story),
        reason=failure_reason(failure, decision, max_attempts),
        requires_manual_review=not isinstance(decision, Retry),
        occurred_at=datetime.now(UTC),
        derivation_request_id=DerivationId(asked.derivation_id),
        attempt=failure.attempt,
    )
    publish_outcome_once(instance, nats, story, event, asked.correlation_id)
    return event


@dataclass(frozen=True, slots=True)
class AskedAttempt:
    """What the failed event names of the attempt: its plan, derivation and correlation id."""

    plan_id: str
    derivation_id: str
    correlation_id: str | None
