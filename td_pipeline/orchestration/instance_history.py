"""`AttemptHistory` (the port the request and answer decisions ask about earlier attempts)
answered from the Dagster instance, with the queries of `attempt_queries`."""

from __future__ import annotations

import dagster as dg

from td_pipeline.application.attempt_history import SubmittedAttempt
from td_pipeline.orchestration.attempt_queries import (
    attempt_runs,
    derivation_runs,
    latest_submission,
    story_of_derivation,
)
from td_pipeline.orchestration.attempts import HANDLED, Phase, message_tag
from td_pipeline.orchestration.partitions import STORIES

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
