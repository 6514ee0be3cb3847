"""What tests write into a Dagster instance as the pipeline's steps would, through the same
writers (`submission_records`), so that a record's shape is defined once."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from td_pipeline.application.attempt_history import SubmittedAttempt
from td_pipeline.orchestration.submission_records import SUBMISSION_ASSET, submission_metadata


def record_submission(
    instance: dg.DagsterInstance,
    story: str,
    derivation: str,
    at: datetime | None = None,
    *,
    plan: str = "PLAN-1",
    acceptance_criteria: int = 3,
    correlation_id: str | None = None,
) -> SubmittedAttempt:
    """An `executor_submission` materialization of attempt 1, as the step writes it."""
    submitted = SubmittedAttempt(
        story=story,
        derivation_id=derivation,
        attempt=1,
        deliberation_id=f"deliberation-td:{derivation}:1-1",
        submitted_at=at or datetime.now(UTC),
        run_id="",
        plan_id=plan,
        roles=("DEVELOPER", "QA"),
        acceptance_criteria=acceptance_criteria,
        correlation_id=correlation_id,
    )
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=SUBMISSION_ASSET, partition=story, metadata=submission_metadata(submitted)
        )
    )
    return submitted
