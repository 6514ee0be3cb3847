"""Planning's limits on a task (contracts.md §1.3c), applied before anything reaches it.

Policy: a title over 200 characters or a description over 2,000 is shortened, with a
warning on the derivation, rather than sent as is (Planning would refuse it, part-way
through a non-atomic CreateTasks) or treated as an unusable answer (one long description
should not cost an LLM round trip). Shortened titles stay unique within the story, because
tasks are matched to what Planning holds by title."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from td_pipeline.domain.task_graph import TaskNode
from td_pipeline.domain.values import Description, Priority, Title

MAX_TITLE_CHARACTERS = 200
MAX_DESCRIPTION_CHARACTERS = 2_000
# Planning reads priority 0 as "unset" and stores it as 1, the highest: never send 0.
PRIORITY_WHEN_UNSET = Priority(3)
ELLIPSIS = "…"


def _shortened(text: str, limit: int, suffix: str = "") -> str:
    if len(text) <= limit:
        return text
    return text[: limit - len(ELLIPSIS) - len(suffix)].rstrip() + ELLIPSIS + suffix


@dataclass(frozen=True, slots=True)
class FittedTasks:
    nodes: tuple[TaskNode, ...]  # in the order given, within Planning's limits
    warnings: tuple[str, ...]


def fit_for_planning(nodes: Sequence[TaskNode]) -> FittedTasks:
    """The tasks as Planning will store them, and a warning for each one shortened."""
    fitted: list[TaskNode] = []
    warnings: list[str] = []
    taken: set[str] = set()
    for node in nodes:
        title = _shortened(node.title.value, MAX_TITLE_CHARACTERS)
        number = 1
        while Title(title).normalized in taken:  # two long titles alike in their first words
            number += 1
            title = _shortened(node.title.value, MAX_TITLE_CHARACTERS - 8, f" ({number})")
        taken.add(Title(title).normalized)
        description = _shortened(node.description.value, MAX_DESCRIPTION_CHARACTERS)
        if title != node.title.value:
            warnings.append(
                f"task {node.key.value}: title shortened from {len(node.title.value)} to "
                f"{len(title)} characters (Planning's limit is {MAX_TITLE_CHARACTERS})"
            )
        if description != node.description.value:
            warnings.append(
                f"task {node.key.value}: description shortened from "
                f"{len(node.description.value)} to {len(description)} characters "
                f"(Planning's limit is {MAX_DESCRIPTION_CHARACTERS})"
            )
        fitted.append(
            dataclasses.replace(node, title=Title(title), description=Description(description))
        )
    return FittedTasks(nodes=tuple(fitted), warnings=tuple(warnings))
