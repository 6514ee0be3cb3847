"""Whether a failed Dagster run gets its task.derivation.failed event, decided over plain facts
the failure sensor gathers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NoEvent:
    """Why a failed run gets no failed event; `warn` when a person should notice."""

    why: str
    warn: bool = False


def why_no_failed_event(
    run_id: str,
    story: str | None,
    is_attempt: bool,
    relaunched: bool,
    derive_run_known: bool,
) -> NoEvent | None:
    """None when the failed run's attempt is announced; otherwise why not. A run that is not a
    story's derivation attempt (no attempt in its config, or no story partition) is none of
    ours; one Dagster relaunches (it died before any step failed) is not a failed attempt; one
    whose derive run is unknown lacks what the event has to say (the plan asked for)."""
    if not is_attempt or story is None:
        return NoEvent(f"run {run_id} is not a derivation attempt")
    if relaunched:
        return NoEvent(f"{story}: the run died before any step failed; Dagster relaunches it")
    if not derive_run_known:
        return NoEvent(f"no derive run known for {story}; failed event not published", warn=True)
    return None
