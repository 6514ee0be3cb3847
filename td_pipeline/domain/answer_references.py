"""What a dependency names: a task's id, its position number, or its title.

In order: the id as written (numbers compare as numbers, `"01"` is `1`); the title, case and
white space ignored; a number (`2`, `#2`, `Task 2`, `T2` where ids are plain numbers) naming
the task with that numeric id, or the task at that position when ids are `T<n>`-style and the
number matches; an id followed by its title (`T1: Design the schema`). A reference that names
none of them as a whole is split at commas, semicolons, `&` and `and`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from td_pipeline.domain.answer_model import TaskDraft
from td_pipeline.domain.values import normalized_title

_NUMBERED = re.compile(r"(?:(?:task|step|no\.?)\s*)?#?\s*(\d+)|[A-Za-z]{1,8}[-_ ]?0*(\d+)", re.I)
_STYLED_ID = re.compile(r"[A-Za-z]{1,8}[-_]?0*(\d+)")
_ID_THEN_TITLE = re.compile(r"(?P<id>\S+?)\s*(?:[:.)\u2013\u2014-]\s+|\s+\()(?P<title>.+?)\)?")
_SPLIT = re.compile(r"\s*(?:[,;&]|\band\b)\s*", re.IGNORECASE)
_MARKUP = "*`'\"[] "


class ResolvedBy(StrEnum):
    ID = "id"
    TITLE = "title"
    NUMBER = "number"  # `Task 2` for the task whose id is 2
    POSITION = "position"  # `2` for the second task, whose id is T2
    ID_AND_TITLE = "id_and_title"


@dataclass(frozen=True, slots=True)
class Resolution:
    task: TaskDraft
    by: ResolvedBy
    written: str


def _title_key(text: str) -> str:
    """A written title as titles are matched, its markup and closing full stop left out."""
    return normalized_title(text.strip(_MARKUP).rstrip("."))


def _key(text: str) -> str:
    stripped = text.strip()
    return str(int(stripped)) if stripped.isdigit() else stripped


class TaskReferences:
    """Resolves the dependencies of one answer's drafts; the first task wins a tie."""

    def __init__(self, drafts: Sequence[TaskDraft]) -> None:
        self._drafts = tuple(drafts)
        self._by_key: dict[str, TaskDraft] = {}
        self._by_title: dict[str, TaskDraft] = {}
        for draft in drafts:
            self._by_key.setdefault(_key(draft.key), draft)
            if draft.title is not None:
                self._by_title.setdefault(_title_key(draft.title), draft)

    def _by_number(self, number: int) -> Resolution | None:
        numbered = self._by_key.get(str(number))
        if numbered is not None:
            return Resolution(numbered, ResolvedBy.NUMBER, "")
        if 1 <= number <= len(self._drafts):
            at_position = self._drafts[number - 1]
            styled = _STYLED_ID.fullmatch(at_position.key.strip())
            if styled and int(styled.group(1)) == number:
                return Resolution(at_position, ResolvedBy.POSITION, "")
        return None

    def _resolve_one(self, reference: str) -> Resolution | None:
        text = reference.strip(_MARKUP)
        if (by_key := self._by_key.get(_key(text))) is not None:
            return Resolution(by_key, ResolvedBy.ID, reference)
        if (by_title := self._by_title.get(_title_key(text))) is not None:
            return Resolution(by_title, ResolvedBy.TITLE, reference)
        if numbered := _NUMBERED.fullmatch(text):
            found = self._by_number(int(numbered.group(1) or numbered.group(2)))
            return None if found is None else Resolution(found.task, found.by, reference)
        if (pair := _ID_THEN_TITLE.fullmatch(text)) and (
            (by_id := self._resolve_one(pair.group("id"))) is not None
            and by_id.task.title is not None
            and _title_key(by_id.task.title) == _title_key(pair.group("title"))
        ):
            return Resolution(by_id.task, ResolvedBy.ID_AND_TITLE, reference)
        return None

    def resolve(self, reference: str) -> Resolution | None:
        """The task one reference names, or None."""
        return self._resolve_one(reference)

    def resolve_all(self, reference: str) -> tuple[tuple[Resolution, ...], tuple[str, ...]]:
        """The tasks a reference names, split at separators when it names none as a whole,
        and the parts that name no task."""
        whole = self._resolve_one(reference)
        if whole is not None:
            return (whole,), ()
        parts = [part for part in _SPLIT.split(reference) if part.strip(_MARKUP)]
        if len(parts) < 2:
            return (), (reference,)
        found = [(part, self._resolve_one(part)) for part in parts]
        resolved = tuple(resolution for _, resolution in found if resolution is not None)
        return resolved, tuple(part for part, resolution in found if resolution is None)


def resolve_dependency(reference: str, drafts: Sequence[TaskDraft]) -> TaskDraft | None:
    """The task a dependency names, or None (see `TaskReferences`)."""
    resolution = TaskReferences(drafts).resolve(reference)
    return None if resolution is None else resolution.task
