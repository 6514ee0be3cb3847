"""When an attempt that was handed to the LLM counts as failed without an answer."""

from __future__ import annotations

from enum import Enum

from td_pipeline.application.ports import DeliberationStatus

LOST_STATUSES = frozenset({"not_found", "failed"})


def why_lost(
    job: DeliberationStatus, waited: float, timeout: int, deliberation_id: str, look: float
) -> str | None:
    """Why an unanswered attempt counts as failed, or None while it may still be answered.
    `look` is how often the watchdog looks.

    A job the executor does not know (or failed) is lost once it had the time to register; so
    is one it reports `completed` with an empty proposal (the fleet's executor reports a failed
    LLM call that way), once the result sensor had a look at a failure the executor published
    (a duplicate is harmless: the attempt's failed event goes out once). One still running
    fails after the timeout; one completed has its answer on NATS, so the result sensor gets
    twice the timeout to pick it up."""
    status = job.status
    if job.failed_silently and waited >= look:
        detail = f": {job.error}" if job.error else ""
        return f"LLM job {deliberation_id} completed without an answer (the LLM failed){detail}"
    if status in LOST_STATUSES and waited >= look:
        return f"the executor lost LLM job {deliberation_id} ({status}) after {waited:.0f}s"
    if status == "completed":
        if waited < 2 * timeout:
            return None
        return f"the answer of LLM job {deliberation_id} never arrived ({waited:.0f}s)"
    if waited >= timeout:
        return f"LLM timeout after {timeout}s (job {deliberation_id}: {status})"
    return None


def ask_again_at_once(job: DeliberationStatus) -> bool:
    """Whether a lost attempt is asked again as soon as the LLM window has room: a job still
    running past the timeout (the LLM's queue) or one the executor no longer knows (it lost
    its registry in a restart). A job the LLM failed waits for the retry schedule, so that an
    outage does not use up every attempt in seconds."""
    return job.status in {"running", "not_found"}


class Watch(Enum):
    """What the watchdog does with a submission still waiting for its answer."""

    SUPERSEDED = "superseded"  # a later run of the story (a retry in the queue) supersedes it
    TOO_EARLY = "too_early"  # too early to tell: do not ask the executor
    ASK_EXECUTOR = "ask_executor"  # ask the executor, then `why_lost` says whether it is lost


def what_to_watch(superseded: bool, waited: float, timeout: int, look: float) -> Watch:
    """Whether the watchdog asks the executor about a submission. `superseded`: the story has
    no run, or a later one than the submission's; `waited`: seconds since the submission;
    `look`: how often the watchdog looks. Before a look (or the timeout, when shorter) has
    passed nothing can be lost yet, so the executor is not asked."""
    if superseded:
        return Watch.SUPERSEDED
    if waited < min(look, timeout):
        return Watch.TOO_EARLY
    return Watch.ASK_EXECUTOR
