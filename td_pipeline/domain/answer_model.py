"""What reading an LLM answer produces: task drafts, and warnings naming every guess.

A draft keeps what the answer said, lightly normalised; `validation` turns drafts into value
objects. A warning names one leniency (which block was taken, a value read loosely, a
dependency resolved by position) and the tasks it concerns, so that the UI can show it on the
task and `check-proposal` in its list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class ProposalFormat(StrEnum):
    JSON = "json"
    LEGACY_BLOCKS = "legacy_blocks"
    MARKDOWN_TABLE = "markdown_table"
    MARKDOWN_LIST = "markdown_list"


class WarningKind(StrEnum):
    ANSWER_BLOCK = "answer_block"  # which part of the text was taken for the answer
    SHAPE = "shape"  # the answer's shape or syntax was not the requested JSON
    VALUE_READ_LOOSELY = "value_read_loosely"
    VALUE_UNREADABLE = "value_unreadable"  # a value given but not readable: left out
    VALUE_MISSING = "value_missing"
    FIELD_NOT_READ = "field_not_read"  # a field the reader does not know: left out
    REFERENCE = "reference"  # a dependency resolved otherwise than by id
    INFERRED = "inferred"  # dependencies inferred from keywords
    COVERAGE = "coverage"


@dataclass(frozen=True, slots=True)
class AnswerWarning:
    """One guess or gap; `tasks` names the tasks it concerns (none: the answer as a whole)."""

    kind: WarningKind
    text: str
    tasks: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        if not self.tasks:
            return self.text
        return f"task{'s' if len(self.tasks) > 1 else ''} {', '.join(self.tasks)}: {self.text}"


def merged_warnings(warnings: Iterable[AnswerWarning]) -> tuple[AnswerWarning, ...]:
    """Warnings with the same kind and text become one naming all their tasks, in order."""
    tasks_of: dict[tuple[WarningKind, str], dict[str, None]] = {}
    for warning in warnings:
        tasks_of.setdefault((warning.kind, warning.text), {}).update(dict.fromkeys(warning.tasks))
    return tuple(
        AnswerWarning(kind, text, tuple(tasks)) for (kind, text), tasks in tasks_of.items()
    )


@dataclass(frozen=True, slots=True)
class TaskDraft:
    key: str
    title: str | None
    description: str
    role: str | None
    estimated_hours: int | None
    priority: int | None
    depends_on: tuple[str, ...]
    covers: tuple[int, ...]
    keywords: tuple[str, ...] = ()
    dependencies_inferred: bool = False


@dataclass(frozen=True, slots=True)
class RawTask:
    """One task as a format reader found it: its fields by the names the answer used, and the
    id the answer's structure gave it (an object's key, a list item's number), if any."""

    fields: Mapping[str, Any]
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """A plan found in the answer's text, between offsets `start` and `end`. `placeholder`
    holds a placeholder value found in it (`<title>`): then it is the answer's format or an
    example, not a plan. `notes` say how its shape was read."""

    format: ProposalFormat
    start: int
    end: int
    tasks: tuple[RawTask, ...]
    notes: tuple[AnswerWarning, ...] = ()
    placeholder: str | None = None
