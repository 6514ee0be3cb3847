"""What becomes of an answer (or a failure) the executor sent for a derivation.

Only the answer for a story's current attempt is persisted, once. An answer can overtake the
record of its own submission (the derive run is still finishing): it is looked at again
shortly. Anything else is recorded and acknowledged."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from td_pipeline.application.attempt_history import AttemptHistory, SubmittedAttempt
from td_pipeline.domain.derivation import LlmAnswer, LlmFailureReport


class Route(StrEnum):
    PERSIST = "persist"  # a persist run for the current attempt
    EARLY = "early"  # ahead of its submission's record: redeliver shortly
    SUPERSEDED = "superseded"  # for an attempt that is no longer the current one
    DUPLICATE = "duplicate"  # the current attempt's answer is already handled
    UNKNOWN = "unknown"  # names no derivation of ours


@dataclass(frozen=True, slots=True)
class AnswerRoute:
    route: Route
    why: str  # one line for the tick's log
    story: str | None = None
    attempt: SubmittedAttempt | None = None  # set for PERSIST


def _named_story(answer: LlmAnswer | LlmFailureReport, history: AttemptHistory) -> str | None:
    """Named in the answer, else found by its derivation (the executor's failures name only
    our task id)."""
    if answer.story_id is not None:
        return answer.story_id.value
    if answer.derivation_id is None:
        return None
    return history.story_of_derivation(answer.derivation_id.value)


def route_answer(
    answer: LlmAnswer | LlmFailureReport, message_key: str, history: AttemptHistory
) -> AnswerRoute:
    story = _named_story(answer, history)
    if story is None:
        return AnswerRoute(Route.UNKNOWN, "names no derivation of ours")
    derivation = answer.derivation_id.value if answer.derivation_id else "unknown"
    named = f"{derivation}#{answer.attempt if answer.attempt is not None else '?'}"
    current = history.current_submission(story) if history.story_exists(story) else None
    is_current = (
        current is not None
        and derivation == current.derivation_id
        and (answer.attempt is None or answer.attempt == current.attempt)
    )
    if current is None or not is_current:
        if history.still_submitting(story, derivation, answer.attempt):
            return AnswerRoute(Route.EARLY, f"{named} is ahead of its submission's record", story)
        now = f"{current.derivation_id}#{current.attempt}" if current else "none"
        return AnswerRoute(Route.SUPERSEDED, f"{named} is not the current attempt ({now})", story)
    if history.message_handled(message_key) or history.answer_handled(
        story, current.derivation_id, current.attempt
    ):
        return AnswerRoute(Route.DUPLICATE, f"{named} was already handled", story)
    return AnswerRoute(Route.PERSIST, f"{named} is the current attempt", story, current)
