"""The port through which the decisions learn what happened to earlier attempts.

Its adapter reads the Dagster instance (orchestration/instance_history.py); the decisions see only
these plain facts, so every branch is testable with an in-memory twin."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class SubmittedAttempt:
    """What a story's latest submission handed to the LLM."""

    story: str
    derivation_id: str
    attempt: int
    deliberation_id: str
    submitted_at: datetime
    run_id: str
    # What the answer is checked and persisted against, as the derivation asked for it.
    plan_id: str
    roles: tuple[str, ...]
    acceptance_criteria: int
    correlation_id: str | None


class AttemptHistory(Protocol):
    def story_exists(self, story: str) -> bool:
        """A story partition exists (some derivation of it was requested before)."""
        ...

    def message_handled(self, message_key: str) -> bool:
        """A run was already started for this message (it was redelivered)."""
        ...

    def story_of_derivation(self, derivation_id: str) -> str | None: ...

    def current_submission(self, story: str) -> SubmittedAttempt | None:
        """The story's latest submission: only its answer is persisted."""
        ...

    def still_submitting(self, story: str, derivation_id: str, attempt: int | None) -> bool:
        """A derive run of this attempt has not finished (its submission may not be recorded
        yet)."""
        ...

    def answer_handled(self, story: str, derivation_id: str, attempt: int) -> bool:
        """A persist run of this attempt exists that did not fail."""
        ...
