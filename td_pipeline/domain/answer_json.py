"""JSON plans in an answer's text: strict JSON, else JSON5 (comments, trailing commas, single
quotes, unquoted keys; the maintained `json5` parser), else a Python literal (`None`, `True`,
`False`; `ast.literal_eval`). A value that runs off the end of the text is reported as
truncated, never read as a shorter plan.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

import json5

from td_pipeline.domain.answer_fields import field_name
from td_pipeline.domain.answer_model import (
    AnswerWarning,
    Candidate,
    ProposalFormat,
    RawTask,
    WarningKind,
)

# json5 is pure Python (about 5 s a megabyte): beyond this, strict JSON only.
LENIENT_LIMIT = 256_000
TASK_LIST_NAMES = frozenset(("tasks", "tasklist", "subtasks", "taskbreakdown"))
_TITLE_NAMES = frozenset(("title", "name", "summary", "task", "taskname", "tasktitle"))
_PLACEHOLDER = re.compile(
    r"<[^<>\n]{1,80}>|\.\.\.|\u2026|\{\{?[\w .-]{1,40}\}?\}|string|str|integer|int|number"
    r"|float|text|bool|boolean|array",
    re.IGNORECASE,
)
_PLAN_LIKE = re.compile(r"""["']?(?:tasks|title|name|depends_on)["']?\s*:""", re.IGNORECASE)
# json5 costs time in the length of the whole text per attempt: only so many attempts, each at
# a value that looks like a plan and not inside a value it already failed to read.
MAX_LENIENT_ATTEMPTS = 20
# Past this many starts that cannot be read, the rest of the stretch is not searched (stray or
# deeply nested brackets would otherwise cost time in the square of the text's length).
MAX_FAILED_STARTS = 1000
_STRICT = json.JSONDecoder()


class _Failure(Enum):
    TRUNCATED = "truncated"
    UNREADABLE = "unreadable"


@dataclass(frozen=True, slots=True)
class _Decoded:
    value: Any
    end: int
    syntax: str  # "json", "json5" or "python"


@dataclass(frozen=True, slots=True)
class _Unreadable:
    failure: _Failure
    end: int  # where reading stopped


@dataclass(frozen=True, slots=True)
class JsonScan:
    """The JSON plans of a stretch of text; `truncated_at` is the offset of a JSON value that
    runs off its end; `unreadable_at` the offsets of plan-like JSON that could not be read."""

    candidates: tuple[Candidate, ...]
    truncated_at: int | None
    unreadable_at: tuple[int, ...]


def _python_literal(text: str, start: int, end: int) -> _Decoded | None:
    closer = "}" if text[start] == "{" else "]"
    last = text.rfind(closer, start, end)
    if last < 0:
        return None
    try:
        value = ast.literal_eval(text[start : last + 1])
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return _Decoded(value, last + 1, "python")


_PYTHON_WORD = re.compile(r"\b(?:None|True|False)\b")


def _decode(
    text: str, start: int, end: int, content_end: int, may_be_cut: bool, lenient: bool
) -> _Decoded | _Unreadable:
    """The JSON value starting at `start`, read as strictly as it allows (JSON5 and Python
    literals only when `lenient`). `content_end` is where the stretch's text ends (trailing
    white space aside); `may_be_cut`: the stretch ends where the answer ends, so running off
    it is truncation."""
    try:
        value, stop = _STRICT.raw_decode(text, start)
    except json.JSONDecodeError as error:
        strict_error = error
    except RecursionError:
        return _Unreadable(_Failure.UNREADABLE, start + 1)
    else:
        return _Decoded(value, stop, "json")
    if not lenient or end - start > LENIENT_LIMIT:
        at_end = strict_error.pos >= content_end or strict_error.msg.startswith("Unterminated")
        cut = at_end and may_be_cut
        return _Unreadable(_Failure.TRUNCATED if cut else _Failure.UNREADABLE, strict_error.pos)
    try:
        value, error_text, position = json5.parse(text, start=start, consume_trailing=False)
    except RecursionError:
        return _Unreadable(_Failure.UNREADABLE, start + 1)
    if error_text is None:
        return _Decoded(value, position, "json5")
    if "end of input" in error_text or position >= content_end:
        return _Unreadable(_Failure.TRUNCATED if may_be_cut else _Failure.UNREADABLE, end)
    # A Python literal: json5 stops at its None, True or False.
    if _PYTHON_WORD.search(text, max(start, position - 5), position + 6):
        decoded = _python_literal(text, start, end)
        if decoded is not None:
            return decoded
    return _Unreadable(_Failure.UNREADABLE, position)


def _next_start(text: str, position: int, end: int) -> int | None:
    found = [i for i in (text.find("{", position, end), text.find("[", position, end)) if i >= 0]
    return min(found) if found else None


def _is_task(value: Any) -> bool:
    return isinstance(value, dict) and any(field_name(str(k)) in _TITLE_NAMES for k in value)


def _listed_tasks(value: Any) -> tuple[tuple[RawTask, ...], tuple[str, ...]] | None:
    """Tasks from a list or an object keyed by id, with notes on the shape."""
    if isinstance(value, list):
        if any(isinstance(item, dict) for item in value):
            return tuple(RawTask(_as_fields(item)) for item in value), ()
        if value and all(isinstance(item, str) for item in value):
            return tuple(RawTask({"title": item}) for item in value), (
                "tasks given as plain strings: read as titles only",
            )
        return None
    if isinstance(value, dict) and value and all(_is_task(item) for item in value.values()):
        return tuple(RawTask(item, key=str(key)) for key, item in value.items()), (
            "tasks given as an object keyed by id",
        )
    return None


def _as_fields(item: Any) -> dict[str, Any]:
    return item if isinstance(item, dict) else {"description": item}


def _task_list_in(value: Any) -> Any:
    if not isinstance(value, dict):
        return None
    return next((v for k, v in value.items() if field_name(str(k)) in TASK_LIST_NAMES), None)


def plan_tasks(value: Any) -> tuple[tuple[RawTask, ...], tuple[str, ...]] | None:
    """The tasks a decoded value holds: a list of tasks, `{"tasks": ...}` (one level down
    too), or an object keyed by id; None when it holds no plan."""
    if isinstance(value, list):
        return _listed_tasks(value)
    listed = _task_list_in(value)
    if listed is None and isinstance(value, dict):
        listed = next(
            (inner for v in value.values() if (inner := _task_list_in(v)) is not None), None
        )
    if isinstance(listed, list) and not listed:
        return (), ()
    if listed is not None:
        return _listed_tasks(listed)
    return _listed_tasks(value) if isinstance(value, dict) else None


def placeholder_in(tasks: tuple[RawTask, ...]) -> str | None:
    """A placeholder value (`<title>`, `...`, `string`) that makes a plan a format or an
    example rather than an answer."""
    for task in tasks:
        for value in task.fields.values():
            items = value if isinstance(value, list) else [value]
            for item in items:
                if isinstance(item, str) and _PLACEHOLDER.fullmatch(item.strip()):
                    return item
    return None


_SYNTAX_NOTES = {
    "json5": "the JSON is not strict (comments, trailing commas, single quotes or unquoted "
    "keys): read as JSON5",
    "python": "the answer is a Python literal (None, True, False or single quotes): read as one",
}


def _candidate(decoded: _Decoded, start: int) -> Candidate | None:
    found = plan_tasks(decoded.value)
    if found is None:
        return None
    tasks, shape_notes = found
    notes = [*shape_notes, *([_SYNTAX_NOTES[decoded.syntax]] if decoded.syntax != "json" else [])]
    return Candidate(
        format=ProposalFormat.JSON,
        start=start,
        end=decoded.end,
        tasks=tasks,
        notes=tuple(AnswerWarning(WarningKind.SHAPE, note) for note in notes),
        placeholder=placeholder_in(tasks),
    )


def scan_json(text: str, start: int, end: int, *, may_be_cut: bool) -> JsonScan:
    """Every JSON plan between `start` and `end`, outermost first; a value that decodes but
    holds no plan is skipped whole, a value that cannot be read is searched inside."""
    candidates: list[Candidate] = []
    unreadable: list[int] = []
    unreadable_until = start
    content_end = len(text[start:end].rstrip()) + start
    last_plan_like = max((m.start() for m in _PLAN_LIKE.finditer(text, start, end)), default=-1)
    lenient_attempts = failed_starts = 0
    position = _next_start(text, start, end)
    while position is not None and failed_starts < MAX_FAILED_STARTS:
        lenient = (
            lenient_attempts < MAX_LENIENT_ATTEMPTS
            and position >= unreadable_until
            and _PLAN_LIKE.search(text, position, min(end, position + 300)) is not None
        )
        lenient_attempts += lenient
        decoded = _decode(text, position, end, content_end, may_be_cut, lenient)
        if isinstance(decoded, _Decoded):
            if (candidate := _candidate(decoded, position)) is not None:
                candidates.append(candidate)
            position = _next_start(text, decoded.end, end)
            continue
        if decoded.failure is _Failure.TRUNCATED and position <= last_plan_like:
            return JsonScan(tuple(candidates), position, tuple(unreadable))
        failed_starts += 1
        if position >= unreadable_until and _PLAN_LIKE.search(
            text, position, min(end, position + 300)
        ):
            unreadable.append(position)
        unreadable_until = max(unreadable_until, decoded.end)
        position = _next_start(text, position + 1, end)
    return JsonScan(tuple(candidates), None, tuple(unreadable))
