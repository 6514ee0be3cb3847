"""The LLM window's state and the jobs it counts, from the Dagster instance.

The window (`application.llm_window`) is kept in the instance's key-value store, which the
daemon, the code servers and the metrics server share and which outlives them all (SQLite or
PostgreSQL, as the instance is). Only the result sensor writes it. The jobs in flight are
never kept: they are counted each time from the runs and submissions, so that no lost job,
superseded attempt, cancelled or failed run can hold a slot (a kept count could leak)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import dagster as dg

from td_pipeline.application.llm_window import LlmWindow
from td_pipeline.orchestration.attempt_queries import IN_FLIGHT, paged_runs, waiting_attempts
from td_pipeline.orchestration.attempts import PHASE_TAG, Phase, run_attempts

WINDOW_KEY = "td_pipeline.llm_window"


def read_window(instance: dg.DagsterInstance) -> LlmWindow:
    """The learnt window; the initial one before any answer (or if the stored one is not
    readable: it is relearnt within a few answers)."""
    stored = instance.run_storage.get_cursor_values({WINDOW_KEY}).get(WINDOW_KEY)
    if not stored:
        return LlmWindow()
    try:
        fields = json.loads(stored)
        return LlmWindow(
            limit=float(fields["limit"]),
            fastest_seconds=fields.get("fastest_seconds"),
            threshold=fields.get("threshold"),
            shrunk_at=float(fields.get("shrunk_at", 0.0)),
        )
    except (ValueError, KeyError, TypeError):
        return LlmWindow()


def write_window(instance: dg.DagsterInstance, window: LlmWindow) -> None:
    value = {
        "limit": window.limit,
        "fastest_seconds": window.fastest_seconds,
        "threshold": window.threshold,
        "shrunk_at": window.shrunk_at,
    }
    instance.run_storage.set_cursor_values({WINDOW_KEY: json.dumps(value)})


def in_flight_since(now: datetime, llm_timeout_seconds: int) -> datetime:
    """How far back an unanswered submission still holds a slot: past twice the LLM timeout
    the watchdog has given it up (a daemon away for longer frees it here, not there)."""
    return now - timedelta(seconds=2 * llm_timeout_seconds)


def llm_jobs_in_flight(
    instance: dg.DagsterInstance, now: datetime, llm_timeout_seconds: int
) -> int:
    """Stories whose LLM job is in flight: a derive run (its own or a batch) is under way, or
    their latest submission is not answered, failed or given up yet. Two paged queries over
    recent runs and submissions, whatever the number of stories ever derived."""
    submitting = {
        attempt.story
        for run in paged_runs(
            instance, dg.RunsFilter(tags={PHASE_TAG: Phase.DERIVE.value}, statuses=IN_FLIGHT)
        )
        for attempt in run_attempts(run)
    }
    since = in_flight_since(now, llm_timeout_seconds)
    waiting = {
        submission.story
        for submission in waiting_attempts(instance, since)
        if submission.submitted_at >= since
    }
    return len(submitting | waiting)
