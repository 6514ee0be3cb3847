"""Attempts handed to the LLM that will never be answered become failed attempts (the lost-job
policy is `lost_jobs.why_lost`), so that the retry schedule can try again."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from td_pipeline.application.lost_jobs import Watch, ask_again_at_once, what_to_watch, why_lost
from td_pipeline.application.ports import DeliberationStatus, PortError
from td_pipeline.orchestration.attempt_queries import latest_run, waiting_attempts
from td_pipeline.orchestration.jobs import persist_job
from td_pipeline.orchestration.nats_ticks import announce_llm_failure, persist_work
from td_pipeline.orchestration.resources import (
    DerivationSettings,
    NatsResource,
    RayExecutorResource,
)
from td_pipeline.orchestration.run_requests import story_run_request

WATCHDOG_INTERVAL_SECONDS = 10  # how soon a failed or lost job is noticed
LOOK_BACK = timedelta(hours=6)


def waiting_since(now: datetime, llm_timeout_seconds: int) -> datetime:
    """Where the look for unanswered submissions starts: only recent ones, not every story
    ever derived. The window is far wider than an answer may take (a completed job's gets
    twice the timeout), so that an attempt is still looked at after the daemon was away for
    hours."""
    return now - max(timedelta(seconds=3 * llm_timeout_seconds), LOOK_BACK)


@dg.sensor(
    job=persist_job,
    minimum_interval_seconds=WATCHDOG_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Fails attempts whose LLM job was lost or did not answer within "
    "llm_timeout_seconds, so that the retry schedule can try again.",
)
def llm_watchdog_sensor(
    context: dg.SensorEvaluationContext,
    executor: RayExecutorResource,
    nats: NatsResource,
    settings: DerivationSettings,
) -> dg.SensorResult:
    now = datetime.now(UTC)
    timeout = settings.llm_timeout_seconds
    run_requests: list[dg.RunRequest] = []
    for submission in waiting_attempts(context.instance, waiting_since(now, timeout)).attempts:
        story = submission.story
        latest = latest_run(context.instance, story)
        superseded = latest is None or latest.run.run_id != submission.run_id
        waited = (now - submission.submitted_at).total_seconds()
        watch = what_to_watch(superseded, waited, timeout, WATCHDOG_INTERVAL_SECONDS)
        if watch is not Watch.ASK_EXECUTOR:
            continue  # superseded by a later run, or too early to tell
        try:
            job = executor.client().deliberation_status(submission.deliberation_id)
        except PortError as error:
            context.log.warning(f"cannot ask the executor about {story}: {error}")
            job = DeliberationStatus("unknown")
        reason = why_lost(
            job, waited, timeout, submission.deliberation_id, WATCHDOG_INTERVAL_SECONDS
        )
        if reason is None:
            continue
        context.log.warning(f"{story}: {reason}")
        announce_llm_failure(context.instance, nats, submission, reason, settings.max_attempts)
        run_requests.append(
            story_run_request(
                persist_work(
                    f"watchdog:{submission.derivation_id}:{submission.attempt}",
                    submission,
                    {"executor_error": reason},
                    resubmit=ask_again_at_once(job),
                )
            )
        )
    return dg.SensorResult(run_requests=run_requests)
