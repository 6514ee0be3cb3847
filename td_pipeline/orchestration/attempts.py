"""What the Dagster instance knows about a story's derivation attempts.

The instance is the record: a run's config names its derivation and attempt, its step
failures say where and why it failed, the `executor_submission` materialization says what
was handed to the LLM, and observations on `planning_tasks` say which outcome events went
out. There is no second store to drift from what the UI shows."""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import dagster as dg

from td_pipeline.application.attempt_history import SubmittedAttempt
from td_pipeline.application.retries import AttemptFailure, Stage
from td_pipeline.orchestration.partitions import STORIES

PARTITION_TAG = "dagster/partition"
DERIVATION_TAG = "td/derivation_id"
ATTEMPT_TAG = "td/attempt"
PHASE_TAG = "td/phase"
RETRYABLE = "retryable"  # dg.Failure metadata: False when no retry can fix it

SUBMISSION_ASSET = dg.AssetKey("executor_submission")
OUTCOME_ASSET = dg.AssetKey("planning_tasks")


class Phase(StrEnum):
    DERIVE = "derive"  # up to the executor; configured on plan_context
    PERSIST = "persist"  # from the answer on; configured on llm_proposal


CONFIGURED_STEP = {Phase.DERIVE: "plan_context", Phase.PERSIST: "llm_proposal"}
STEP_STAGES = {
    "plan_context": Stage.SUBMISSION,
    "story_context": Stage.SUBMISSION,
    "derivation_prompt": Stage.SUBMISSION,
    "executor_submission": Stage.SUBMISSION,
    "llm_proposal": Stage.ANSWER,
    "task_graph": Stage.VALIDATION,
    "planning_tasks": Stage.PERSISTENCE,
}


def attempt_tags(phase: Phase, derivation_id: str, attempt: int) -> dict[str, str]:
    """Tags that let the UI (and people) filter runs by derivation and attempt."""
    return {PHASE_TAG: phase.value, DERIVATION_TAG: derivation_id, ATTEMPT_TAG: str(attempt)}


# A batched run serves many stories (orchestration/batch_jobs.py). It has no partition tag;
# these tags, one per story and per derivation, let the same indexed lookups find it.
BATCH_TAG = "td/batch"  # the number of stories a batched run serves
HANDLED = "1"
BATCH_STEP = {Phase.DERIVE: "derive_stories", Phase.PERSIST: "persist_stories"}


def _digest(text: str) -> str:
    # Story ids and message keys may hold characters a tag key should not: a digest never does.
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def story_tag(story: str) -> str:
    return f"td/story-{_digest(story)}"


def derivation_tag(derivation_id: str) -> str:
    return f"td/derivation-{_digest(derivation_id)}"


def message_tag(message_key: str) -> str:
    return f"td/message-{_digest(message_key)}"


@dataclass(frozen=True, slots=True)
class BatchedStory:
    """What a batched run records of each story it serves."""

    story: str
    derivation_id: str
    message_key: str  # the NATS message the story's item came from


def batch_tags(phase: Phase, stories: list[BatchedStory]) -> dict[str, str]:
    tags = {PHASE_TAG: phase.value, BATCH_TAG: str(len(stories))}
    for item in stories:
        tags[story_tag(item.story)] = item.story
        tags[derivation_tag(item.derivation_id)] = item.derivation_id
        tags[message_tag(item.message_key)] = HANDLED
    return tags


@dataclass(frozen=True, slots=True)
class RunAttempt:
    """A run of ours as far as one story goes: which phase of which attempt it carried out,
    with the story's config. A batched run is one RunAttempt per story it serves."""

    run: dg.DagsterRun
    phase: Phase
    story: str
    derivation_id: str
    attempt: int
    step_config: dict[str, Any]  # what the story's first step of the phase was given

    @property
    def batched(self) -> bool:
        return BATCH_TAG in self.run.tags


WILL_RETRY_TAG = "dagster/will_retry"


def relaunched_by_dagster(run: dg.DagsterRun) -> bool:
    """Dagster's run retries (dagster.yaml `run_retries`) launch this failed run again: it died
    before any step failed (a worker that never started, a killed daemon). Not a failed
    derivation attempt: no failed event, no retry of ours."""
    return run.tags.get(WILL_RETRY_TAG, "").lower() == "true"


def _ops(run: dg.DagsterRun) -> dict[str, Any]:
    ops = run.run_config.get("ops", {}) if isinstance(run.run_config, dict) else {}
    return ops if isinstance(ops, dict) else {}


def _step_config(ops: dict[str, Any], step: str) -> Any:
    op = ops.get(step)
    return op.get("config") if isinstance(op, dict) else None


def run_attempt(run: dg.DagsterRun) -> RunAttempt | None:
    """A story partition's run, read from the run config, so that runs launched by hand from
    the CLI count too."""
    ops = _ops(run)
    for phase, step in CONFIGURED_STEP.items():
        config = _step_config(ops, step)
        if isinstance(config, dict) and config.get("derivation_id"):
            return RunAttempt(
                run,
                phase,
                run.tags.get(PARTITION_TAG, ""),
                str(config["derivation_id"]),
                int(config.get("attempt", 1)),
                config,
            )
    return None


def run_attempts(run: dg.DagsterRun) -> list[RunAttempt]:
    """Every story's attempt in a run: one for a story's run, one per story for a batch."""
    if BATCH_TAG not in run.tags:
        single = run_attempt(run)
        return [single] if single is not None else []
    ops = _ops(run)
    for phase, step in BATCH_STEP.items():
        config = _step_config(ops, step)
        items = config.get("stories") if isinstance(config, dict) else None
        if isinstance(items, list):
            return [
                RunAttempt(
                    run,
                    phase,
                    str(item["story"]),
                    str(item["derivation_id"]),
                    int(item.get("attempt", 1)),
                    {key: value for key, value in item.items() if key != "story"},
                )
                for item in items
                if isinstance(item, dict)
            ]
    return []


RUNS_PAGE = 100  # instance queries read pages of this size, as far as the caller needs


def _paged_records(instance: dg.DagsterInstance, filters: dg.RunsFilter) -> Iterator[dg.RunRecord]:
    """Every run matching `filters`, newest first, read a page at a time: no silent limit."""
    cursor: str | None = None
    while True:
        page = instance.get_run_records(filters=filters, cursor=cursor, limit=RUNS_PAGE)
        yield from page
        if len(page) < RUNS_PAGE:
            return
        cursor = page[-1].dagster_run.run_id


def _paged_runs(instance: dg.DagsterInstance, filters: dg.RunsFilter) -> Iterator[dg.DagsterRun]:
    return (record.dagster_run for record in _paged_records(instance, filters))


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
        _paged_records(instance, dg.RunsFilter(tags={PARTITION_TAG: story})),
        _paged_records(instance, dg.RunsFilter(tags={story_tag(story): story})),
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


def batch_in_flight(instance: dg.DagsterInstance, story: str) -> bool:
    """A batched run serving the story is queued or running."""
    return _any_in_flight(instance, {story_tag(story): story})


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
        _paged_records(
            instance, dg.RunsFilter(tags={PARTITION_TAG: story, DERIVATION_TAG: derivation_id})
        ),
        _paged_records(
            instance, dg.RunsFilter(tags={derivation_tag(derivation_id): derivation_id})
        ),
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


def waiting_attempts(instance: dg.DagsterInstance, since: datetime) -> list[SubmittedAttempt]:
    """Each story's latest submission to the LLM since `since` that no persist run answered
    yet. Read from the recent submissions and persist runs (two paged queries), whatever the
    number of stories ever derived; runs launched by hand count too (every submission is an
    `executor_submission` materialization)."""
    answered = {
        (run.derivation_id, run.attempt)
        for runs in map(
            run_attempts,
            _paged_runs(
                instance,
                dg.RunsFilter(tags={PHASE_TAG: Phase.PERSIST.value}, updated_after=since),
            ),
        )
        for run in runs
    }
    latest: dict[str, SubmittedAttempt] = {}
    cursor: str | None = None
    while True:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=SUBMISSION_ASSET, after_timestamp=since.timestamp()),
            limit=RUNS_PAGE,
            cursor=cursor,
        )
        for record in page.records:  # newest first
            submission = _submission(record)
            story = record.partition_key
            if submission is not None and story is not None and story not in latest:
                latest[story] = submission
        if not page.has_more:
            break
        cursor = page.cursor
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
            stage=STEP_STAGES[event.step_key],
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


def _submission(record: dg.EventLogRecord) -> SubmittedAttempt | None:
    materialization = record.asset_materialization
    if materialization is None:
        return None
    metadata = materialization.metadata
    try:
        return SubmittedAttempt(
            story=record.partition_key or "",
            derivation_id=str(metadata["derivation_id"].value),
            attempt=int(str(metadata["attempt"].value)),
            deliberation_id=str(metadata["deliberation_id"].value),
            submitted_at=datetime.fromisoformat(str(metadata["submitted_at"].value)),
            run_id=record.run_id,
            plan_id=str(metadata["plan_id"].value),
            roles=tuple(
                role.strip() for role in str(metadata["roles"].value).split(",") if role.strip()
            ),
            acceptance_criteria=int(str(metadata["acceptance_criteria"].value)),
            correlation_id=str(metadata["correlation_id"].value) or None,
        )
    except (KeyError, ValueError):
        return None


def latest_submission(instance: dg.DagsterInstance, story: str) -> SubmittedAttempt | None:
    """Only the latest submission's answer is persisted; earlier ones are superseded."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=SUBMISSION_ASSET, asset_partitions=[story]), limit=1
    ).records
    return _submission(records[0]) if records else None


RUN_KEY_TAG = "dagster/run_key"


class InstanceAttemptHistory:
    """`AttemptHistory` answered from the Dagster instance: partitions, runs (by tag) and the
    `executor_submission` materializations."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self._instance = instance

    def story_exists(self, story: str) -> bool:
        return self._instance.has_dynamic_partition(STORIES, story)

    def message_handled(self, message_key: str) -> bool:
        return any(
            self._instance.get_run_ids(filters=dg.RunsFilter(tags=tags), limit=1)
            for tags in ({RUN_KEY_TAG: message_key}, {message_tag(message_key): HANDLED})
        )

    def story_of_derivation(self, derivation_id: str) -> str | None:
        return story_of_derivation(self._instance, derivation_id)

    def current_submission(self, story: str) -> SubmittedAttempt | None:
        return latest_submission(self._instance, story)

    def still_submitting(self, story: str, derivation_id: str, attempt: int | None) -> bool:
        return any(
            not run.run.is_finished
            for run in derivation_runs(self._instance, story, derivation_id)
            if run.phase is Phase.DERIVE and (attempt is None or run.attempt == attempt)
        )

    def answer_handled(self, story: str, derivation_id: str, attempt: int) -> bool:
        runs = attempt_runs(self._instance, story, derivation_id, attempt, Phase.PERSIST)
        return any(run.run.status != dg.DagsterRunStatus.FAILURE for run in runs)
