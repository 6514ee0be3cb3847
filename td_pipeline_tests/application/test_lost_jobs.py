"""The lost-job policy: when an attempt handed to the LLM counts as failed."""

from __future__ import annotations

import pytest

from td_pipeline.application.lost_jobs import Watch, ask_again_at_once, what_to_watch, why_lost
from td_pipeline.application.ports import DeliberationStatus

LOOK = 10  # the watchdog looks every 10 s


@pytest.mark.parametrize(
    ("status", "waited", "lost"),
    [
        ("running", 599, None),
        ("running", 600, "LLM timeout after 600s (job j-1: running)"),
        ("unknown", 600, "LLM timeout after 600s (job j-1: unknown)"),
        ("not_found", 5, None),  # just submitted: the executor may not have registered it
        ("not_found", 20, "the executor lost LLM job j-1 (not_found) after 20s"),
        ("failed", 20, "the executor lost LLM job j-1 (failed) after 20s"),
        ("completed", 900, None),  # its answer is on NATS: the result sensor will take it
        ("completed", 1200, "the answer of LLM job j-1 never arrived (1200s)"),
    ],
)
def test_the_watchdog_tells_waiting_from_lost(status: str, waited: float, lost: str | None) -> None:
    job = DeliberationStatus(status, has_proposal=status == "completed")
    assert why_lost(job, waited, 600, "j-1", LOOK) == lost


def test_a_job_completed_without_a_proposal_fails_once_the_result_sensor_had_its_look() -> None:
    # The fleet's executor reports a failed LLM call as `completed` with an empty proposal. A
    # failure it published is the result sensor's first; the watchdog takes over after a look.
    job = DeliberationStatus("completed", has_proposal=False)
    assert why_lost(job, 5, 600, "j-1", LOOK) is None
    assert why_lost(job, 10, 600, "j-1", LOOK) == (
        "LLM job j-1 completed without an answer (the LLM failed)"
    )


@pytest.mark.parametrize(
    ("superseded", "waited", "timeout", "watch"),
    [
        (True, 900, 600, Watch.SUPERSEDED),  # a retry in the queue supersedes it
        (True, 0, 600, Watch.SUPERSEDED),
        (False, 9, 600, Watch.TOO_EARLY),  # not a look yet: do not ask the executor
        (False, 10, 600, Watch.ASK_EXECUTOR),
        (False, 4, 5, Watch.TOO_EARLY),  # a timeout shorter than a look bounds the wait
        (False, 5, 5, Watch.ASK_EXECUTOR),
    ],
)
def test_the_watchdog_asks_the_executor_only_about_current_submissions_past_a_look(
    superseded: bool, waited: float, timeout: int, watch: Watch
) -> None:
    assert what_to_watch(superseded, waited, timeout, LOOK) is watch


@pytest.mark.parametrize(
    ("status", "at_once"),
    [
        ("running", True),  # past the timeout: the LLM's queue
        ("not_found", True),  # the executor restarted and forgot it
        ("failed", False),  # the LLM failed: the retry schedule gives it time
        ("completed", False),  # completed without an answer: likewise
    ],
)
def test_only_queued_or_forgotten_jobs_are_asked_again_at_once(status: str, at_once: bool) -> None:
    assert ask_again_at_once(DeliberationStatus(status)) is at_once
