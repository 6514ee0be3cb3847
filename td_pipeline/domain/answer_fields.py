"""A task's fields, as any format reader found them, into a draft and the warnings it earned.

Field names are matched loosely (`Estimated Hours`, `estimated_hours`, `estimatedHours` and
their synonyms); values are read by `values.read_hours` / `read_priority`. Whatever is not read
is named in a warning: no field and no value is dropped silently.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from td_pipeline.domain.answer_model import AnswerWarning, RawTask, TaskDraft, WarningKind
from td_pipeline.domain.values import ValueReading, read_hours, read_priority

FIELD_SYNONYMS: dict[str, tuple[str, ...]] = {
    "key": ("id", "taskid", "key", "taskkey", "ref", "#", "no", "nr", "number", "taskno"),
    "title": ("title", "name", "summary", "task", "taskname", "tasktitle"),
    "description": ("description", "details", "desc", "detail"),
    "role": (
        "role",
        "assignedrole",
        "assigneerole",
        "assignee",
        "owner",
        "assignedto",
        "responsible",
    ),
    "depends_on": (
        "dependson",
        "dependencies",
        "deps",
        "blockedby",
        "dependsupon",
        "prerequisites",
        "predecessors",
        "requires",
        "after",
        "depends",
    ),
    "estimated_hours": (
        "estimatedhours",
        "hours",
        "estimate",
        "estimatehours",
        "esthours",
        "effort",
        "estimatedeffort",
        "duration",
        "time",
        "estimatedtime",
    ),
    "priority": ("priority", "prio"),
    "covers": (
        "acceptancecriteria",
        "covers",
        "criteria",
        "coverscriteria",
        "ac",
        "acs",
        "coveredcriteria",
    ),
    "keywords": ("keywords",),
}
_FIELD_OF = {synonym: field for field, names in FIELD_SYNONYMS.items() for synonym in names}
_UNIT_SUFFIX = re.compile(r"\([^)]*\)")
_NOT_NAME = re.compile(r"[^0-9a-z#]")
NONE_WORDS = frozenset(
    {"", "none", "-", "--", "\u2013", "\u2014", "n/a", "na", "null", "nil", "[]", "nothing", "no"}
    | {"no dependencies", "no dependency", "none yet"}
)
_CRITERION = re.compile(r"\d+")


def field_name(text: str) -> str:
    """`Estimated Hours`, `estimated_hours`, `estimatedHours` -> `estimatedhours`;
    `Estimate (h)` -> `estimate`."""
    return _NOT_NAME.sub("", _UNIT_SUFFIX.sub("", text).casefold())


def canonical_field(text: str) -> str | None:
    """The draft field a written field name means, or None."""
    return _FIELD_OF.get(field_name(text))


def is_none_word(text: str) -> bool:
    return text.strip().strip(".()").strip().casefold() in NONE_WORDS


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list | tuple | bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


@dataclass(frozen=True, slots=True)
class _Fields:
    """A task's values by draft field, and the written names that were not read."""

    values: Mapping[str, Any]
    unread: tuple[str, ...]


def _fields(written: Mapping[str, Any]) -> _Fields:
    """Each draft field from its best-ranked synonym; every other name is left unread."""
    by_field: dict[str, list[tuple[int, str, Any]]] = {}
    unread: list[str] = []
    for name, value in written.items():
        field = canonical_field(str(name))
        if field is None:
            unread.append(str(name))
            continue
        rank = FIELD_SYNONYMS[field].index(field_name(str(name)))
        by_field.setdefault(field, []).append((rank, str(name), value))
    values: dict[str, Any] = {}
    for field, entries in by_field.items():
        best = min(entries, key=lambda entry: entry[0])
        values[field] = best[2]
        unread.extend(entry[1] for entry in entries if entry is not best)
    return _Fields(values, tuple(unread))


class _Collector:
    """The warnings earned while reading one task."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.warnings: list[AnswerWarning] = []

    def add(self, kind: WarningKind, text: str) -> None:
        self.warnings.append(AnswerWarning(kind, text, (self.key,)))


def _number(
    value: Any, reading: ValueReading, what: str, unreadable: str, out: _Collector
) -> int | None:
    if reading.unreadable:
        out.add(WarningKind.VALUE_UNREADABLE, f"{what} {value!r} {unreadable}: left out")
    elif reading.value is None:
        out.add(WarningKind.VALUE_MISSING, f"no {what} given")
    elif reading.guess:
        out.add(
            WarningKind.VALUE_READ_LOOSELY,
            f"{what} {value!r} read as {reading.value} ({reading.guess})",
        )
    return reading.value


def _description(value: Any, out: _Collector) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        return ""
    if isinstance(value, list | tuple) and all(isinstance(line, str) for line in value):
        out.add(WarningKind.SHAPE, "description given as a list: its lines joined")
        return "\n".join(line.strip() for line in value)
    text = _text(value)
    if text is None:
        out.add(WarningKind.VALUE_UNREADABLE, f"description {value!r} is not text: left out")
    return text or ""


def _role(value: Any, out: _Collector) -> str | None:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        names = [text for item in value if (text := _text(item)) is not None]
        return ", ".join(names) or None
    text = _text(value)
    if text is None:
        out.add(WarningKind.VALUE_UNREADABLE, f"role {value!r} is not a role name: left out")
    return text


def _reference(item: Any, out: _Collector) -> str | None:
    if isinstance(item, dict):
        fields = _fields(item)
        unread = [str(name) for name in item if canonical_field(str(name)) not in ("key", "title")]
        if unread:
            names = ", ".join(repr(name) for name in unread)
            out.add(WarningKind.FIELD_NOT_READ, f"dependency fields not read: {names}")
        item = fields.values.get("key", fields.values.get("title"))
    text = _text(item)
    return None if text is None or is_none_word(text) else text


def _references(value: Any, out: _Collector) -> tuple[str, ...]:
    """Dependencies as written: ids, numbers, titles, `"T1, T2"` (split when resolved), or
    objects with an id or title."""
    if value is None or (isinstance(value, str) and is_none_word(value)):
        return ()
    items = list(value) if isinstance(value, list | tuple) else [value]
    references = []
    for item in items:
        reference = _reference(item, out)
        if reference is not None:
            references.append(reference)
        elif not (item is None or (isinstance(item, str) and is_none_word(item))):
            out.add(WarningKind.VALUE_UNREADABLE, f"dependency {item!r} names no task: left out")
    return tuple(references)


def _criteria(value: Any, out: _Collector) -> tuple[int, ...]:
    """Criterion numbers from `[1, 2]`, `["AC1", "AC-2"]`, `"1, 3"` or `"criterion 4"`.
    In a list, each entry names one criterion (its first number, as in "AC1: users can...")."""
    if value is None or (isinstance(value, str) and is_none_word(value)):
        return ()
    found: list[int] = []
    unreadable: list[Any] = []
    if isinstance(value, str):
        found = [int(n) for n in _CRITERION.findall(value)]
        unreadable = [] if found else [value]
    else:
        for item in value if isinstance(value, list | tuple) else [value]:
            if isinstance(item, int) and not isinstance(item, bool):
                found.append(item)
            elif not isinstance(item, bool) and (match := _CRITERION.search(str(item))):
                found.append(int(match.group()))
            else:
                unreadable.append(item)
    for item in unreadable:
        out.add(
            WarningKind.VALUE_UNREADABLE,
            f"covered criterion {item!r} names no criterion number: left out",
        )
    return tuple(dict.fromkeys(found))


def _keywords(value: Any) -> tuple[str, ...]:
    words = value.split(",") if isinstance(value, str) else value or ()
    return tuple(text.casefold() for word in words if (text := _text(word)) is not None)


def draft_from(raw: RawTask, position: int) -> tuple[TaskDraft, tuple[AnswerWarning, ...]]:
    """A draft of one task and the warnings it earned. A task without an id is numbered by its
    position (`T3`)."""
    fields = _fields(raw.fields)
    values = fields.values
    written_key = values.get("key")
    key = _text(written_key) or raw.key or f"T{position}"
    out = _Collector(key)
    if written_key is not None and _text(written_key) is None:
        out.add(WarningKind.VALUE_UNREADABLE, f"id {written_key!r} is not an id: numbered {key}")
    elif written_key is None and raw.key is None:
        out.add(WarningKind.VALUE_MISSING, "no id given: numbered by position")
    title = _text(values.get("title"))
    hours = values.get("estimated_hours")
    priority = values.get("priority")
    draft = TaskDraft(
        key=key,
        title=title,
        description=_description(values.get("description"), out),
        role=_role(values.get("role"), out),
        estimated_hours=_number(
            hours, read_hours(hours), "estimate", "is not a number of hours", out
        ),
        priority=_number(priority, read_priority(priority), "priority", "is not a priority", out),
        depends_on=_references(values.get("depends_on"), out),
        covers=_criteria(values.get("covers"), out),
        keywords=_keywords(values.get("keywords")),
    )
    if fields.unread:
        names = ", ".join(repr(name) for name in fields.unread)
        out.add(WarningKind.FIELD_NOT_READ, f"fields not read: {names}")
    return draft, tuple(out.warnings)


def drafts_from(
    raw_tasks: Sequence[RawTask],
) -> tuple[tuple[TaskDraft, ...], tuple[AnswerWarning, ...]]:
    """Drafts for every task of a plan, with their warnings; priorities written from 0
    (`P0`) are shifted to start at 1, Planning's highest."""
    drafts: list[TaskDraft] = []
    warnings: list[AnswerWarning] = []
    for position, raw in enumerate(raw_tasks, start=1):
        draft, earned = draft_from(raw, position)
        drafts.append(draft)
        warnings.extend(earned)
    if any(draft.priority == 0 for draft in drafts):
        drafts = [
            replace(draft, priority=None if draft.priority is None else draft.priority + 1)
            for draft in drafts
        ]
        warnings.append(
            AnswerWarning(
                WarningKind.VALUE_READ_LOOSELY,
                "priorities start at 0 (P0): every priority read one higher, 1 the highest",
            )
        )
    return tuple(drafts), tuple(warnings)
