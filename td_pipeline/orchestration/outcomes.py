"""Outcome events published once, whatever is re-run and whenever.

JetStream drops a repeated `Nats-Msg-Id` only inside its duplicate window (2 minutes here);
a re-run from the UI an hour later must not tell Planning twice. Each event that went out is
recorded as an observation on the story's `planning_tasks` partition, which also shows it in
the UI next to the tasks."""

from __future__ import annotations

import dagster as dg

from td_pipeline.application.outcome_once import should_publish
from td_pipeline.domain.events import AttemptOutcome, DerivationCompleted
from td_pipeline.orchestration.attempts import OUTCOME_ASSET
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
