"""An outcome event goes out once per attempt, however often a step is re-run and however
late (JetStream's duplicate window covers only two minutes)."""

from __future__ import annotations

from collections.abc import Set

from td_pipeline.domain.events import AttemptOutcome


def should_publish(event: AttemptOutcome, published_message_ids: Set[str]) -> bool:
    return event.message_id() not in published_message_ids
