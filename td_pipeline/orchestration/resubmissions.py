"""Attempts whose LLM job timed out, or that the watchdog gave up on, are asked again as soon
as the LLM window has room, ahead of new requests, rather than at the retry schedule's next
tick: a timeout is the LLM's queue, not a reason to wait a quarter of an hour.

They are found by the tag the result sensor and the watchdog put on the persist run that
records the failure (`RESUBMIT_TAG`), among the failed runs of the last hour only; the next
attempt is the retry schedule's (`retry_launch`: same decision, same cap, same run key), and
the schedule leaves these to this sensor for that hour (`asked_again_promptly`), so the two
never both start it."""

from __future__ import annotations

from datetime import datetime

import dagster as dg

from td_pipeline.orchestration.attempt_queries import paged_runs
from td_pipeline.orchestration.attempts import PARTITION_TAG, RESUBMIT, RESUBMIT_TAG
from td_pipeline.orchestration.retry_schedule import (
    RESUBMIT_LOOK_BACK,
    RetryLaunch,
    failed_story,
    retry_launch,
)


def prompt_resubmissions(
    instance: dg.DagsterInstance, max_attempts: int, now: datetime, limit: int
) -> list[RetryLaunch]:
    """Up to `limit` next attempts of stories whose latest attempt's LLM job timed out or was
    lost, oldest failure first."""
    if limit < 1:
        return []
    failed_runs = paged_runs(
        instance,
        dg.RunsFilter(
            tags={RESUBMIT_TAG: RESUBMIT},
            statuses=[dg.DagsterRunStatus.FAILURE],
            updated_after=now - RESUBMIT_LOOK_BACK,
        ),
    )
    stories = list(dict.fromkeys(run.tags.get(PARTITION_TAG, "") for run in failed_runs))
    launches: list[RetryLaunch] = []
    for story in reversed(stories):  # newest first from the instance: the oldest go first
        failed = failed_story(instance, story, max_attempts) if story else None
        if failed is None or failed.latest.run.tags.get(RESUBMIT_TAG) != RESUBMIT:
            continue  # asked again already, or failed again otherwise since
        launch = retry_launch(instance, failed)
        if launch is not None:
            launches.append(launch)
            if len(launches) == limit:
                break
    return launches
