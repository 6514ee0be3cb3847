"""The submission record: what `executor_submission` writes on its materialization when it
hands a story to the LLM, and what the watchdog, answer routing, the LLM window, the persist
runs and the metrics read back as a `SubmittedAttempt`.

One writer and one reader over one list of keys (`Key`), tested as a round trip; the reader
also takes the roles as earlier versions wrote them (one comma-separated text), so that a
submission in flight across a roll-out is still read. A record this version cannot read raises
`UnreadableSubmission`; its readers log it as an error and the metrics count it
(`td_unreadable_submissions`), never skip it in silence."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import dagster as dg

from td_pipeline.application.attempt_history import SubmittedAttempt
from td_pipeline.orchestration.asset_steps import AssetStep

SUBMISSION_ASSET = AssetStep.EXECUTOR_SUBMISSION.key


class Key(StrEnum):
    DERIVATION_ID = "derivation_id"
    DELIBERATION_ID = "deliberation_id"
    ATTEMPT = "attempt"
    SUBMITTED_AT = "submitted_at"
    # What the persist run needs, so that it never reads the derive run's outputs.
    PLAN_ID = "plan_id"
    ROLES = "roles"
    ACCEPTANCE_CRITERIA = "acceptance_criteria"
    CORRELATION_ID = "correlation_id"


class UnreadableSubmission(ValueError):
    """A submission record without a key this version reads, or with a value it cannot."""


def submission_metadata(submitted: SubmittedAttempt) -> dict[str, Any]:
    """The materialization's metadata (its story and run are the event's own)."""
    return {
        Key.DERIVATION_ID.value: submitted.derivation_id,
        Key.DELIBERATION_ID.value: submitted.deliberation_id,
        Key.ATTEMPT.value: submitted.attempt,
        Key.SUBMITTED_AT.value: submitted.submitted_at.isoformat(),
        Key.PLAN_ID.value: submitted.plan_id,
        Key.ROLES.value: dg.MetadataValue.json(list(submitted.roles)),
        Key.ACCEPTANCE_CRITERIA.value: submitted.acceptance_criteria,
        Key.CORRELATION_ID.value: submitted.correlation_id or "",
    }


def read_submission(record: dg.EventLogRecord) -> SubmittedAttempt:
    """The submission an `executor_submission` materialization records."""
    story, run_id = record.partition_key or "", record.run_id
    materialization = record.asset_materialization
    try:
        if materialization is None:
            raise ValueError("it is not a materialization")
        metadata = materialization.metadata

        def value(key: Key) -> Any:
            if key.value not in metadata:
                raise ValueError(f"it has no {key.value!r}")
            return metadata[key.value].value

        roles = value(Key.ROLES)
        if isinstance(roles, str):  # as versions before the typed record wrote them
            roles = [role.strip() for role in roles.split(",") if role.strip()]
        if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
            raise ValueError(f"its roles are not a list of names: {roles!r}")
        submitted_at = datetime.fromisoformat(str(value(Key.SUBMITTED_AT)))
        if submitted_at.tzinfo is None:
            raise ValueError(f"its submitted_at has no time zone: {submitted_at}")
        return SubmittedAttempt(
            story=story,
            derivation_id=str(value(Key.DERIVATION_ID)),
            attempt=int(value(Key.ATTEMPT)),
            deliberation_id=str(value(Key.DELIBERATION_ID)),
            submitted_at=submitted_at,
            run_id=run_id,
            plan_id=str(value(Key.PLAN_ID)),
            roles=tuple(roles),
            acceptance_criteria=int(value(Key.ACCEPTANCE_CRITERIA)),
            correlation_id=str(value(Key.CORRELATION_ID)) or None,
        )
    except (ValueError, TypeError) as error:
        raise UnreadableSubmission(
            f"the executor_submission of {story or '?'} in run {run_id} cannot be read: {error}"
        ) from error
