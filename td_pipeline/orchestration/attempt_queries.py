"""What the Dagster instance knows about a story's derivation attempts.

The instance is the record: a run's config names its derivation and attempt, its step
failures say where and why it failed, the `executor_submission` materialization says what
was handed to the LLM, and observations on `planning_tasks` say which outcome events went
out. There is no second store to drift from what the UI shows. What a single run says of
itself is read by `attempts`; here are the queries that find the runs."""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dagster as dg

from td_pipeline.application.attempt_history import SubmittedAttempt
from td_pipeline.application.retries import AttemptFailure, Stage
from td_pipeline.orchestration.asset_steps import AssetStep
from td_pipeline.orchestration.attempts import (
    DERIVATION_TAG,
    PARTITION_TAG,
    PHASE_TAG,
    RETRYABLE,
    STEP_STAGES,
    Phase,
    RunAttempt,
    derivation_tag,
    run_attempts,
    story_tag,
)
from td_pipeline.orchestration.submission_records import (
    SUBMISSION_ASSET,
    UnreadableSubmission,
    read_submission,
)

OUTCOME_ASSET = AssetStep.PLANNING_TASKS.key

_log = logging.getLogger(__name__)
RUNS_PAGE = 100  # instance queries read pages of this size, as far as the caller needs


def paged_records(instance: dg.DagsterInstance, filters: dg.RunsFilter) -> Iterator[dg.RunRecord]:
    """Every run matching `filters`, newest first, read a page at a time: no silent limit."""
    cursor: str | None = None
    while True:
        page = instance.get_run_records(filters=filters, cursor=cursor, limit=RUNS_PAGE)
        yield from page
        if len(page) < RUNS_PAGE:
            return
        cursor = page[-1].dagster_run.run_id


def paged_runs(instance: dg.DagsterInstance, filters: dg.RunsFilter) -> Iterator[dg.DagsterRun]:
    return (record.dagster_run for record in paged_records(instance, filters))


def _story_attempts(runs: Iterable[dg.DagsterRun], story: str) -> Iterator[RunAttempt]:
    for run in runs:
        for attempt in run_attempts(run):
            if attempt.story == story:
                yield attempt


def _newest_first(*streams: Iterator[dg.RunRecord]) -> Iterator[dg.DagsterRun]:
    merged = heapq.merge(*streams, key=lambda record: -record.create_timestamp.timestamp())
    return (record.dagster_run for record in merged)


def story_runs(instance: dg.DagsterInstance, story: str) -> Iterator[RunAttempt]:
    """The story's derivation runs, its own and the batches that served it, newest first
    (runs that are no attempt, such as a re-run of one asset without config, are passed
    over)."""
    runs = _newest_first(
        paged_records(instance, dg.RunsFilter(tags={PARTITION_TAG: story})),
        paged_records(instance, dg.RunsFilter(tags={story_tag(story): story})),
    )
    return _story_attempts(runs, story)


def latest_run(instance: dg.DagsterInstance, story: str) -> RunAttempt | None:
    return next(story_runs(instance, story), None)


IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def _any_in_flight(instance: dg.DagsterInstance, tags: dict[str, str]) -> bool:
    return bool(instance.get_run_ids(filters=dg.RunsFilter(tags=tags, statuses=IN_FLIGHT), limit=1))


def own_run_in_flight(instance: dg.DagsterInstance, story: str) -> bool:
    """A run of the story's partition is queued or running."""
    return _any_in_flight(instance, {PARTITION_TAG: story})


def batch_in_flight(instance: dg.DagsterInstance, story: str, phase: Phase | None = None) -> bool:
    """A batched run serving the story (of `phase`, or of either) is queued or running."""
    phase_tag = {PHASE_TAG: phase.value} if phase is not None else {}
    return _any_in_flight(instance, {story_tag(story): story, **phase_tag})


def story_in_flight(instance: dg.DagsterInstance, story: str) -> bool:
    """A run for the story (its own, or a batch serving it) is queued or running."""
    return own_run_in_flight(instance, story) or batch_in_flight(instance, story)


def story_of_derivation(instance: dg.DagsterInstance, derivation_id: str) -> str | None:
    """The story a derivation is for: the partition of any run of it, or the story a batch
    served under it (indexed lookups)."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={DERIVATION_TAG: derivation_id}), limit=1)
    if runs:
        return runs[0].tags.get(PARTITION_TAG)
    batches = instance.get_runs(
        filters=dg.RunsFilter(tags={derivation_tag(derivation_id): derivation_id}), limit=1
    )
    if not batches:
        return None
    served = [a.story for a in run_attempts(batches[0]) if a.derivation_id == derivation_id]
    return served[0] if served else None


def derivation_runs(
    instance: dg.DagsterInstance, story: str, derivation_id: str
) -> list[RunAttempt]:
    """Every run of one derivation, newest first: found by its tags (sensors and the retry
    schedule set them), else, for runs launched by hand without them, by reading the story's
    runs."""
    tagged = _newest_first(
        paged_records(
            instance, dg.RunsFilter(tags={PARTITION_TAG: story, DERIVATION_TAG: derivation_id})
        ),
        paged_records(instance, dg.RunsFilter(tags={derivation_tag(derivation_id): derivation_id})),
    )
    runs = [run for run in _story_attempts(tagged, story) if run.derivation_id == derivation_id]
    if any(run.phase is Phase.DERIVE for run in runs):
        return runs
    return [run for run in story_runs(instance, story) if run.derivation_id == derivation_id]


def attempt_runs(
    instance: dg.DagsterInstance, story: str, derivation_id: str, attempt: int, phase: Phase
) -> list[RunAttempt]:
    return [
        run
        for run in derivation_runs(instance, story, derivation_id)
        if (run.attempt, run.phase) == (attempt, phase)
    ]


def derive_config_of(
    instance: dg.DagsterInstance, story: str, derivation_id: str
) -> dict[str, Any] | None:
    """What the derivation was asked for (plan, roles, correlation id): the config of its
    latest derive run. Persist runs do not repeat it."""
    for attempt in derivation_runs(instance, story, derivation_id):
        if attempt.phase is Phase.DERIVE:
            return attempt.step_config
    return None


def answered_attempts(instance: dg.DagsterInstance, since: datetime) -> set[tuple[str, int]]:
    """The (derivation, attempt) pairs a persist run (of any status) took up since `since`: an
    answer, the executor's failure or the watchdog's give-up each start one."""
    return {
        (run.derivation_id, run.attempt)
        for runs in map(
            run_attempts,
            paged_runs(
                instance,
                dg.RunsFilter(tags={PHASE_TAG: Phase.PERSIST.value}, updated_after=since),
            ),
        )
        for run in runs
    }


@dataclass(frozen=True, slots=True)
class LatestSubmissions:
    by_story: dict[str, SubmittedAttempt]
    unreadable: frozenset[str]  # stories whose latest record cannot be read (logged)


def latest_submissions(instance: dg.DagsterInstance, since: datetime) -> LatestSubmissions:
    """Each story's latest submission to the LLM since `since`, answered or not (paged). A
    story whose latest record cannot be read has none: an older one is superseded by it."""
    latest: dict[str, SubmittedAttempt] = {}
    unreadable: set[str] = set()
    cursor: str | None = None
    while True:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=SUBMISSION_ASSET, after_timestamp=since.timestamp()),
            limit=RUNS_PAGE,
            cursor=cursor,
        )
        for record in page.records:  # newest first
            story = record.partition_key
            if story is None or story in latest or story in unreadable:
                continue
            submission = _readable(record)
            if submission is None:
                unreadable.add(story)
            else:
                latest[story] = submission
        if not page.has_more:
            return LatestSubmissions(latest, frozenset(unreadable))
        cursor = page.cursor


@dataclass(frozen=True, slots=True)
class WaitingAttempts:
    attempts: list[SubmittedAttempt]
    unreadable: frozenset[str]  # stories whose latest submission record cannot be read


def waiting_attempts(instance: dg.DagsterInstance, since: datetime) -> WaitingAttempts:
    """Each story's latest submission to the LLM since `since` that no persist run answered
    yet. Read from the recent submissions and persist runs (two paged queries), whatever the
    number of stories ever derived; runs launched by hand count too (every submission is an
    `executor_submission` materialization)."""
    answered = answered_attempts(instance, since)
    latest = latest_submissions(instance, since)
    return WaitingAttempts(unanswered(latest.by_story, answered), latest.unreadable)


def unanswered(
    latest: dict[str, SubmittedAttempt], answered: set[tuple[str, int]]
) -> list[SubmittedAttempt]:
    """Of the stories' latest submissions, those no persist run took up."""
    return [
        submission
        for submission in latest.values()
        if (submission.derivation_id, submission.attempt) not in answered
    ]


def failure_of(instance: dg.DagsterInstance, attempt: RunAttempt) -> AttemptFailure:
    """Where and why a failed run failed, from its step failure (or its run failure, when the
    run died before a step could fail)."""
    for entry in instance.all_logs(attempt.run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        if event is None or event.step_key not in STEP_STAGES:
            continue
        data = event.step_failure_data
        user = data.user_failure_data if data else None
        retryable = user.metadata.get(RETRYABLE) if user else None
        description = (user.description if user else None) or (
            data.error.message.strip() if data and data.error else "the step failed"
        )
        return AttemptFailure(
            stage=STEP_STAGES[AssetStep(event.step_key)],
            attempt=attempt.attempt,
            retryable=retryable is None or bool(retryable.value),
            description=description,
        )
    # No step failed: the run itself died (a crashed worker, a lost daemon, a cancellation).
    messages = [
        entry.message or ""
        for entry in instance.all_logs(attempt.run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    ]
    return AttemptFailure(
        stage=Stage.SUBMISSION if attempt.phase is Phase.DERIVE else Stage.PERSISTENCE,
        attempt=attempt.attempt,
        retryable=True,
        description=(messages[-1] if messages else "") or "the run stopped before finishing",
    )


def _readable(record: dg.EventLogRecord) -> SubmittedAttempt | None:
    """The submission the record holds; None, and an error in the log, if it cannot be read."""
    try:
        return read_submission(record)
    except UnreadableSubmission as error:
        _log.error(str(error))
        return None


def latest_materialization(
    instance: dg.DagsterInstance, asset: dg.AssetKey, story: str
) -> dg.EventLogRecord | None:
    """The asset's latest materialization for the story, from the asset index."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset, asset_partitions=[story]), limit=1
    ).records
    return records[0] if records else None


def latest_submission(instance: dg.DagsterInstance, story: str) -> SubmittedAttempt | None:
    """Only the latest submission's answer is persisted; earlier ones are superseded."""
    record = latest_materialization(instance, SUBMISSION_ASSET, story)
    return _readable(record) if record is not None else None
