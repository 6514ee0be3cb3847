"""One task.derivation.failed per failed attempt, saying whether td-pipeline retries by itself
(`retries.after_failure` decides) or a person has to look."""

from datetime import UTC, datetime

import dagster as dg

from td_pipeline.application.retries import Retry, after_failure, failure_reason
from td_pipeline.domain.events import DerivationFailed
from td_pipeline.domain.values import DerivationId, PlanId, StoryId
from td_pipeline.orchestration.attempts import (
    PARTITION_TAG,
    derive_config_of,
    failure_of,
    run_attempt,
)
from td_pipeline.orchestration.jobs import derive_job, persist_job, retry_job
from td_pipeline.orchestration.outcomes import publish_outcome_once
from td_pipeline.orchestration.resources import DerivationSettings, NatsResource


@dg.run_failure_sensor(
    monitored_jobs=[derive_job, persist_job, retry_job],
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Publishes one task.derivation.failed per failed attempt, saying whether "
    "td-pipeline retries by itself or a person has to look.",
)
def derivation_failure_sensor(
    context: dg.RunFailureSensorContext, nats: NatsResource, settings: DerivationSettings
) -> None:
    attempt = run_attempt(context.dagster_run)
    story = context.dagster_run.tags.get(PARTITION_TAG)
    if attempt is None or story is None:
        context.log.info(f"run {context.dagster_run.run_id} is not a derivation attempt")
        return
    failure = failure_of(context.instance, attempt)
    decision = after_failure(failure, settings.max_attempts)
    asked = derive_config_of(context.instance, story, attempt.derivation_id)
    if asked is None:
        context.log.warning(f"no derive run known for {story}; failed event not published")
        return
    event = DerivationFailed(
        plan_id=PlanId(asked["plan_id"]),
        story_id=StoryId(story),
        reason=failure_reason(failure, decision, settings.max_attempts),
        requires_manual_review=not isinstance(decision, Retry),
        occurred_at=datetime.now(UTC),
        derivation_request_id=DerivationId(attempt.derivation_id),
        attempt=attempt.attempt,
    )
    published = publish_outcome_once(
        context.instance, nats, story, event, asked.get("correlation_id")
    )
    context.log.info(
        f"{story}: {event.reason} ({'published' if published else 'published before'})"
    )
