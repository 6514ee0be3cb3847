"""The submission record: written and read by one pair of functions over one list of keys; a
record that cannot be read is an error in the log and a metric, not a story skipped in silence."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from td_pipeline.orchestration.attempt_queries import latest_submission, latest_submissions
from td_pipeline.orchestration.instance_metrics import InstanceReadings
from td_pipeline.orchestration.submission_records import (
    SUBMISSION_ASSET,
    Key,
    UnreadableSubmission,
    read_submission,
    submission_metadata,
)
from td_pipeline_tests.instance_records import record_submission

AT = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


def stored(instance: dg.DagsterInstance, story: str) -> dg.EventLogRecord:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=SUBMISSION_ASSET, asset_partitions=[story]), limit=1
    ).records
    assert records, f"no submission of {story}"
    return records[0]


def write_without(instance: dg.DagsterInstance, story: str, key: Key) -> None:
    """A record as another version might have written it: one key missing."""
    with dg.instance_for_test() as scratch:
        written = record_submission(scratch, story, "d-new", AT, correlation_id="corr-1")
    metadata = submission_metadata(written)
    del metadata[key.value]
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key=SUBMISSION_ASSET, partition=story, metadata=metadata)
    )


def test_a_submission_reads_back_as_written(instance: dg.DagsterInstance) -> None:
    written = record_submission(instance, "S-1", "d-1", AT, plan="P-1", correlation_id="corr-1")
    record = stored(instance, "S-1")
    assert set(record.asset_materialization.metadata) == {key.value for key in Key}  # type: ignore[union-attr]
    assert read_submission(record) == written
    no_correlation = record_submission(instance, "S-2", "d-2", AT)
    assert read_submission(stored(instance, "S-2")) == no_correlation


def test_roles_as_earlier_versions_wrote_them_are_read(instance: dg.DagsterInstance) -> None:
    # A submission in flight across a roll-out was written with the roles as one text.
    with dg.instance_for_test() as scratch:
        written = record_submission(scratch, "S-1", "d-1", AT)
    metadata = {**submission_metadata(written), Key.ROLES.value: "DEVELOPER, QA"}
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key=SUBMISSION_ASSET, partition="S-1", metadata=metadata)
    )
    assert read_submission(stored(instance, "S-1")).roles == ("DEVELOPER", "QA")


@pytest.mark.parametrize("key", list(Key))
def test_a_record_missing_any_key_is_unreadable_and_says_which(
    instance: dg.DagsterInstance, key: Key
) -> None:
    write_without(instance, "S-1", key)
    with pytest.raises(UnreadableSubmission, match=f"S-1 .*no '{key.value}'"):
        read_submission(stored(instance, "S-1"))


def test_an_unreadable_latest_record_is_logged_counted_and_hides_no_older_one(
    instance: dg.DagsterInstance, caplog: pytest.LogCaptureFixture
) -> None:
    record_submission(instance, "S-1", "d-old", AT - timedelta(minutes=1))
    write_without(instance, "S-1", Key.SUBMITTED_AT)  # the latest, unreadable
    record_submission(instance, "S-2", "d-2", AT)
    since = AT - timedelta(hours=1)

    with caplog.at_level(logging.ERROR):
        latest = latest_submissions(instance, since)
        current = latest_submission(instance, "S-1")
    readings = InstanceReadings(instance, llm_timeout_seconds=3600, llm_max_in_flight=8)
    waiting = readings.llm_waiting(AT + timedelta(seconds=5))

    # The older readable record is superseded, not taken in its place.
    assert set(latest.by_story) == {"S-2"} and latest.unreadable == {"S-1"}
    assert current is None
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and all("S-1" in error and "submitted_at" in error for error in errors)
    assert (waiting.attempts, waiting.unreadable) == (1, 1)
