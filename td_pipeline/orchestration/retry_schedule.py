"""The retry schedule of failed derivations, and the plan `td-pipeline retry-failed` shows.

A story whose latest attempt failed is run again from the step that failed: persistence
again from the stored answer (the LLM is not called), anything earlier by asking the LLM
again. The decision is `after_failure`, the same that set the failed event's
`requires_manual_review`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from td_pipeline.application.retries import (
    AttemptFailure,
    GiveUp,
    Restart,
    Retry,
    after_failure,
)
from td_pipeline.orchestration.attempt_queries import (
    derive_config_of,
    failure_of,
    latest_run,
    story_in_flight,
)
from td_pipeline.orchestration.attempts import (
    CONFIGURED_STEP,
    PARTITION_TAG,
    PHASE_STEPS,
    RESUBMIT,
    RESUBMIT_TAG,
    Phase,
    RunAttempt,
    attempt_tags,
    relaunched_by_dagster,
)
from td_pipeline.orchestration.jobs import retry_job
from td_pipeline.orchestration.resources import DerivationSettings
from td_pipeline.settings import DEFAULT_RETRY_CRON, SettingsError, read_retry_cron

RETRY_CRON_VARIABLE = "TD_RETRY_CRON"
LOOK_BACK = timedelta(days=7)  # failures older than this are left to people
# A timed-out or lost LLM job that failed within this is the request sensor's to ask again
# (orchestration/resubmissions.py), as soon as the LLM window has room; older ones are ours.
RESUBMIT_LOOK_BACK = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class FailedStory:
    """A story whose latest attempt failed, and what happens next."""

    story: str
    latest: RunAttempt
    failure: AttemptFailure
    decision: Retry | GiveUp
    in_flight: bool  # a run for the story is queued or running: leave it alone


@dataclass(frozen=True, slots=True)
class RetryLaunch:
    """A retry run: which assets, with which config and tags."""

    story: str
    assets: tuple[str, ...]
    run_config: dict[str, Any]
    tags: dict[str, str]
    run_key: str


def failed_stories(
    instance: dg.DagsterInstance, max_attempts: int, now: datetime | None = None
) -> list[FailedStory]:
    since = (now or datetime.now(UTC)) - LOOK_BACK
    failed_runs = instance.get_runs(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], updated_after=since)
    )
    stories = sorted({run.tags[PARTITION_TAG] for run in failed_runs if PARTITION_TAG in run.tags})
    return [
        failed
        for story in stories
        if (failed := failed_story(instance, story, max_attempts)) is not None
    ]


def failed_story(instance: dg.DagsterInstance, story: str, max_attempts: int) -> FailedStory | None:
    """The story, when its latest attempt failed (and neither Dagster nor the batch fallback
    runs it again)."""
    latest = latest_run(instance, story)
    if latest is None or latest.run.status != dg.DagsterRunStatus.FAILURE:
        return None  # a later attempt ran, or is running
    if relaunched_by_dagster(latest.run) or latest.batched:
        # Dagster launches it again, or the batch fallback sensor runs the story alone: not a
        # failed attempt (yet).
        return None
    failure = failure_of(instance, latest)
    in_flight = story_in_flight(instance, story)
    return FailedStory(story, latest, failure, after_failure(failure, max_attempts), in_flight)


def asked_again_promptly(instance: dg.DagsterInstance, failed: FailedStory, now: datetime) -> bool:
    """The request sensor asks this story again within the LLM window: the schedule leaves it,
    so that the two never start the same attempt (a run key dedups only within one sensor or
    one schedule)."""
    if failed.latest.run.tags.get(RESUBMIT_TAG) != RESUBMIT:
        return False
    record = instance.get_run_record_by_id(failed.latest.run.run_id)
    since = (now - RESUBMIT_LOOK_BACK).timestamp()
    return record is not None and record.update_timestamp.timestamp() >= since


def retry_launch(instance: dg.DagsterInstance, failed: FailedStory) -> RetryLaunch | None:
    if not isinstance(failed.decision, Retry) or failed.in_flight:
        return None
    derivation = failed.latest.derivation_id
    attempt = failed.decision.next_attempt
    if failed.decision.restart is Restart.REPERSIST and failed.latest.phase is Phase.PERSIST:
        phase = Phase.PERSIST
        config = failed.latest.step_config  # the stored answer: the LLM is not called again
    else:
        asked = derive_config_of(instance, failed.story, derivation)
        if asked is None:
            return None
        phase, config = Phase.DERIVE, asked
    step = CONFIGURED_STEP[phase]
    return RetryLaunch(
        story=failed.story,
        assets=tuple(step.value for step in PHASE_STEPS[phase]),  # plain names: Dagster stores them
        run_config={"ops": {step.value: {"config": {**config, "attempt": attempt}}}},
        tags=attempt_tags(phase, derivation, attempt),
        run_key=f"retry:{derivation}:{attempt}",
    )


def retry_run_request(launch: RetryLaunch) -> dg.RunRequest:
    return dg.RunRequest(
        job_name=retry_job.name,
        run_key=launch.run_key,
        partition_key=launch.story,
        run_config=launch.run_config,
        tags=launch.tags,
        asset_selection=[dg.AssetKey(name) for name in launch.assets],
    )


def retry_cron() -> str:
    """Dagster needs the cron when the code location loads. A bad cron must not stop it from
    loading: the default applies, and the schedule's ticks fail on the settings with the line
    that names the variable. A bad value of another setting leaves the cron as set."""
    try:
        return read_retry_cron()
    except SettingsError:
        return DEFAULT_RETRY_CRON


@dg.schedule(
    cron_schedule=retry_cron(),
    job=retry_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Re-runs story partitions whose latest attempt failed, from the step that "
    f"failed, up to the attempt cap (cron from {RETRY_CRON_VARIABLE}).",
)
def failed_derivation_retries(
    context: dg.ScheduleEvaluationContext, settings: DerivationSettings
) -> list[dg.RunRequest] | dg.SkipReason:
    now = datetime.now(UTC)
    launches = [
        launch
        for failed in failed_stories(context.instance, settings.max_attempts, now)
        if not asked_again_promptly(context.instance, failed, now)
        and (launch := retry_launch(context.instance, failed)) is not None
    ]
    if not launches:
        return dg.SkipReason("no failed derivation to retry")
    return [retry_run_request(launch) for launch in launches]
