"""One task.derivation.failed per failed attempt, saying whether td-pipeline retries by itself
(`retries.after_failure` decides) or a person has to look. An attempt the executor failed is
announced sooner, by the sensor that learns it (`outcomes.announce_failed_attempt`); the
failed run then finds its event published."""

import dagster as dg

from td_pipeline.application.failure_events import why_no_failed_event
from td_pipeline.orchestration.attempt_queries import derive_config_of, failure_of
from td_pipeline.orchestration.attempts import PARTITION_TAG, relaunched_by_dagster, run_attempt
from td_pipeline.orchestration.jobs import derive_job, persist_job, retry_job
from td_pipeline.orchestration.outcomes import AskedAttempt, announce_failed_attempt
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
    run = context.dagster_run
    attempt = run_attempt(run)
    story = run.tags.get(PARTITION_TAG)
    asked = (
        derive_config_of(context.instance, story, attempt.derivation_id)
        if attempt is not None and story is not None
        else None
    )
    no_event = why_no_failed_event(
        run.run_id, story, attempt is not None, relaunched_by_dagster(run), asked is not None
    )
    if no_event is not None:
        (context.log.warning if no_event.warn else context.log.info)(no_event.why)
        return
    assert attempt is not None and story is not None and asked is not None  # no_event is None
    failure = failure_of(context.instance, attempt)
    event = announce_failed_attempt(
        context.instance,
        nats,
        story,
        AskedAttempt(asked["plan_id"], attempt.derivation_id, asked.get("correlation_id")),
        failure,
        settings.max_attempts,
    )
    context.log.info(f"{story}: {event.reason}")
