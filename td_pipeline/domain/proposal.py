"""LLM answer text -> task drafts, tolerant of what models really write.

Drafts keep what the answer said, lightly normalised; `assessment` turns them into value
objects and applies the derivation's rules. Nothing is invented: a missing estimate stays
missing (with a warning), and dependencies are inferred only for legacy answers that name none.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

PRIORITY_WORDS = {"critical": 1, "high": 2, "medium": 3, "low": 4}

KEY_FIELDS = ("id", "task_id", "key", "taskId")
TITLE_FIELDS = ("title", "name", "summary")
DESCRIPTION_FIELDS = ("description", "details", "desc")
ROLE_FIELDS = ("role", "assigned_role", "assignee_role", "assignee", "owner")
DEPENDS_FIELDS = ("depends_on", "dependencies", "dependsOn", "deps", "blocked_by")
HOURS_FIELDS = ("estimated_hours", "hours", "estimate", "estimate_hours", "estimatedHours")
PRIORITY_FIELDS = ("priority",)
COVERS_FIELDS = ("acceptance_criteria", "covers", "criteria", "covers_criteria")
TASK_LIST_FIELDS = ("tasks", "task_list", "subtasks")

REFUSAL = re.compile(
    r"^\s*(i'?m sorry|sorry|i apologi[sz]e|i cannot|i can'?t|i am unable|i'm unable|as an ai)",
    re.IGNORECASE,
)
THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
# `TASK_ID:`, `Task ID:`, `**TITLE:**`, `- ROLE:` ... one field per line.
LEGACY_LINE = re.compile(
    r"^\s*(?:[-*]\s*)?\**\s*(TASK[ _]?ID|TITLE|DESCRIPTION|ROLE|ESTIMATED[ _]HOURS|PRIORITY"
    r"|KEYWORDS|DEPENDS[ _]ON)\s*\**\s*:\s*\**\s*(.*?)\s*$",
    re.IGNORECASE,
)
LEGACY_FIELD_NAMES = {
    "TASKID": "TASK_ID",
    "ESTIMATEDHOURS": "ESTIMATED_HOURS",
    "DEPENDSON": "DEPENDS_ON",
}
SEPARATOR = re.compile(r"^\s*-{3,}\s*$")
NONE_WORDS = {"", "none", "-", "n/a", "na", "null", "nil", "[]"}
NUMBER = re.compile(r"\d+(?:\.\d+)?")
CRITERION = re.compile(r"(\d+)")
TASK_NUMBER = re.compile(r"task\s*#?\s*(\d+)", re.IGNORECASE)


class ProposalFormat(StrEnum):
    JSON = "json"
    LEGACY_BLOCKS = "legacy_blocks"


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
class ParsedProposal:
    format: ProposalFormat
    tasks: tuple[TaskDraft, ...]
    warnings: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UnparseableProposal:
    reason_code: str  # "empty" or "unparseable"
    message: str


# --- loose values -------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text or None


def _hours(value: Any, label: str, warnings: list[str]) -> int | None:
    if value is None or value == "":
        warnings.append(f"task {label} has no estimate")
        return None
    if isinstance(value, bool):
        warnings.append(f"task {label}: estimated hours {value!r} is not a number of hours")
        return None
    if isinstance(value, int | float):
        return math.ceil(value)
    numbers = NUMBER.findall(str(value))
    if not numbers:
        warnings.append(f"task {label}: estimated hours {value!r} is not a number of hours")
        return None
    # A range such as "2-4h" plans for its upper bound.
    return math.ceil(max(float(n) for n in numbers))


def _priority(value: Any, label: str, warnings: list[str]) -> int | None:
    if value is None or value == "":
        warnings.append(f"task {label} has no priority")
        return None
    if isinstance(value, bool):
        warnings.append(f"task {label}: priority {value!r} is not a priority")
        return None
    if isinstance(value, int | float):
        return math.ceil(value)
    text = str(value).strip().casefold()
    if text in PRIORITY_WORDS:
        return PRIORITY_WORDS[text]
    if match := re.fullmatch(r"p?(\d+)", text):
        return int(match.group(1))
    warnings.append(f"task {label}: priority {value!r} is not a priority")
    return None


def _references(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items: list[Any]
    if isinstance(value, list | tuple):
        items = list(value)
    elif isinstance(value, str):
        items = [] if value.strip().casefold() in NONE_WORDS else value.split(",")
    else:
        items = [value]
    references = []
    for item in items:
        if isinstance(item, dict):
            item = _first(item, (*KEY_FIELDS, *TITLE_FIELDS))
        text = _text(item)
        if text is not None and text.casefold() not in NONE_WORDS:
            references.append(text)
    return tuple(references)


def _criteria(value: Any) -> tuple[int, ...]:
    """Criterion numbers from `[1, 2]`, `["AC1", "AC-2"]`, `"1, 3"` or `"criterion 4"`.
    In a list, each entry names one criterion (its first number, as in "AC1: users can...")."""
    if value is None or isinstance(value, bool):
        return ()
    if isinstance(value, str):
        found = [int(n) for n in CRITERION.findall(value)]
    else:
        items = value if isinstance(value, list | tuple) else [value]
        found = []
        for item in items:
            if isinstance(item, int) and not isinstance(item, bool):
                found.append(item)
            elif not isinstance(item, bool) and (match := CRITERION.search(str(item))):
                found.append(int(match.group(1)))
    return tuple(dict.fromkeys(found))


def _first(mapping: Mapping[str, Any], names: Sequence[str]) -> Any:
    lowered = {str(key).casefold(): value for key, value in mapping.items()}
    for name in names:
        if name.casefold() in lowered:
            return lowered[name.casefold()]
    return None


# --- JSON ---------------------------------------------------------------------------------


def _json_candidates(text: str) -> Iterator[Any]:
    """Every JSON value that starts at a `{` or `[` and decodes, outermost first."""
    position = 0
    while True:
        starts = [i for i in (text.find("{", position), text.find("[", position)) if i >= 0]
        if not starts:
            return
        start = min(starts)
        decoded = _decode_at(text, start)
        if decoded is None:
            position = start + 1
            continue
        value, position = decoded
        yield value


def _without_trailing_commas(text: str) -> str:
    """Models often leave a comma before a closing bracket; drop it, outside strings only."""
    out: list[str] = []
    in_string = escaped = False
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "," and _next_significant(text, index + 1) in ("}", "]"):
            continue
        out.append(char)
    return "".join(out)


def _next_significant(text: str, start: int) -> str:
    index = start
    while index < len(text) and text[index].isspace():
        index += 1
    return text[index : index + 1]


def _decode_at(text: str, start: int) -> tuple[Any, int] | None:
    decoder = json.JSONDecoder()
    try:
        return decoder.raw_decode(text, start)
    except json.JSONDecodeError:
        pass
    try:
        value, end = decoder.raw_decode(_without_trailing_commas(text[start:]))
    except json.JSONDecodeError:
        return None
    return value, start + end


def _task_list(value: Any) -> list[Any] | None:
    if isinstance(value, list):
        return value if value and any(isinstance(item, dict) for item in value) else None
    if isinstance(value, dict):
        found = _first(value, TASK_LIST_FIELDS)
        if isinstance(found, list):
            return found
        for inner in value.values():
            if isinstance(inner, dict) and isinstance(_first(inner, TASK_LIST_FIELDS), list):
                found_inner: list[Any] = _first(inner, TASK_LIST_FIELDS)
                return found_inner
    return None


def _json_draft(item: Any, position: int, warnings: list[str]) -> TaskDraft:
    if not isinstance(item, dict):
        return TaskDraft(
            key=f"T{position}",
            title=None,
            description=str(item),
            role=None,
            estimated_hours=None,
            priority=None,
            depends_on=(),
            covers=(),
        )
    key = _text(_first(item, KEY_FIELDS)) or f"T{position}"
    title = _text(_first(item, TITLE_FIELDS))
    return TaskDraft(
        key=key,
        title=title,
        description=_text(_first(item, DESCRIPTION_FIELDS)) or "",
        role=_text(_first(item, ROLE_FIELDS)),
        estimated_hours=_hours(_first(item, HOURS_FIELDS), key, warnings),
        priority=_priority(_first(item, PRIORITY_FIELDS), key, warnings),
        depends_on=_references(_first(item, DEPENDS_FIELDS)),
        covers=_criteria(_first(item, COVERS_FIELDS)),
    )


def _parse_json(text: str) -> ParsedProposal | None:
    for candidate in _json_candidates(text):
        tasks = _task_list(candidate)
        if tasks is None:
            continue
        warnings: list[str] = []
        drafts = tuple(_json_draft(item, i, warnings) for i, item in enumerate(tasks, start=1))
        return ParsedProposal(ProposalFormat.JSON, drafts, tuple(warnings))
    return None


# --- legacy KEY: value blocks ------------------------------------------------------------


def _legacy_blocks(text: str) -> list[dict[str, str]]:
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last_field: str | None = None

    def close() -> None:
        nonlocal current, last_field
        if current:
            blocks.append(current)
        current, last_field = {}, None

    for line in text.splitlines():
        if SEPARATOR.match(line):
            close()
            continue
        match = LEGACY_LINE.match(line)
        if match:
            field = re.sub(r"[ _]", "", match.group(1).upper())
            field = LEGACY_FIELD_NAMES.get(field, field)
            value = match.group(2).strip().strip("*").strip()
            if field in ("TASK_ID", "TITLE") and field in current:
                close()  # the same field again: the next task has begun
            current[field] = value
            last_field = field
        elif not line.strip():
            # A blank line ends a block, except inside a description that may go on below.
            if last_field != "DESCRIPTION":
                close()
        elif last_field == "DESCRIPTION":
            current["DESCRIPTION"] = f"{current['DESCRIPTION']}\n{line.strip()}".strip()
    close()
    return [block for block in blocks if "TITLE" in block or "TASK_ID" in block]


def _parse_legacy(text: str) -> ParsedProposal | None:
    blocks = _legacy_blocks(text)
    if not blocks:
        return None
    warnings: list[str] = []
    drafts = []
    for position, block in enumerate(blocks, start=1):
        key = block.get("TASK_ID", "").strip() or f"T{position}"
        keywords = tuple(
            word.strip().casefold() for word in block.get("KEYWORDS", "").split(",") if word.strip()
        )
        drafts.append(
            TaskDraft(
                key=key,
                title=_text(block.get("TITLE")),
                description=block.get("DESCRIPTION", "").strip(),
                role=_text(block.get("ROLE")),
                estimated_hours=_hours(block.get("ESTIMATED_HOURS"), key, warnings),
                priority=_priority(block.get("PRIORITY"), key, warnings),
                depends_on=_references(block.get("DEPENDS_ON")),
                covers=(),
                keywords=keywords,
            )
        )
    if not any(draft.depends_on for draft in drafts):
        drafts, inferred = _infer_dependencies(drafts)
        if inferred:
            warnings.append(
                f"the answer names no dependency; {inferred} inferred from task keywords"
            )
    return ParsedProposal(ProposalFormat.LEGACY_BLOCKS, tuple(drafts), tuple(warnings))


def _infer_dependencies(drafts: list[TaskDraft]) -> tuple[list[TaskDraft], int]:
    """A later task whose title names an earlier task's keyword depends on it. Edges only
    ever point back to earlier tasks, so inference cannot create a cycle."""
    result, count = [], 0
    for index, draft in enumerate(drafts):
        title = (draft.title or "").casefold()
        earlier = [
            previous.key
            for previous in drafts[:index]
            if any(re.search(rf"\b{re.escape(word)}\b", title) for word in previous.keywords)
        ]
        if earlier:
            count += len(earlier)
            draft = replace(draft, depends_on=tuple(earlier), dependencies_inferred=True)
        result.append(draft)
    return result, count


# --- entry points -------------------------------------------------------------------------


def parse_proposal(text: str) -> ParsedProposal | UnparseableProposal:
    if not text.strip():
        return UnparseableProposal("empty", "the answer is empty")
    body = THINK_BLOCK.sub("", text).strip()
    if not body:
        return UnparseableProposal("empty", "the answer holds only the model's reasoning")
    parsed = _parse_json(body) or _parse_legacy(body)
    if parsed is not None:
        if not parsed.tasks:
            return UnparseableProposal("empty", "the answer's task list is empty")
        return parsed
    if REFUSAL.match(body):
        return UnparseableProposal("unparseable", f"the model refused: {body[:120]!r}")
    if body.lstrip("`json \n").startswith(("{", "[")) or "```" in body:
        return UnparseableProposal(
            "unparseable", "the answer's JSON is malformed or truncated (no complete task list)"
        )
    return UnparseableProposal("unparseable", "no task list found in the answer")


def _normalized_title(text: str) -> str:
    return " ".join(text.casefold().split())


class TaskReferences:
    """Resolves what a dependency names: a task id (numbers compare as numbers, "01" == "1")
    or a title (case and white space ignored). Ids win over titles; the first task wins."""

    def __init__(self, drafts: Sequence[TaskDraft]) -> None:
        self._by_key: dict[str, TaskDraft] = {}
        self._by_title: dict[str, TaskDraft] = {}
        for draft in drafts:
            self._by_key.setdefault(self._key(draft.key), draft)
            if draft.title is not None:
                self._by_title.setdefault(_normalized_title(draft.title), draft)

    @staticmethod
    def _key(text: str) -> str:
        stripped = text.strip()
        return str(int(stripped)) if stripped.isdigit() else stripped

    def resolve(self, reference: str) -> TaskDraft | None:
        found = self._by_key.get(self._key(reference))
        found = found or self._by_title.get(_normalized_title(reference))
        if found is None and (numbered := TASK_NUMBER.fullmatch(reference.strip())):
            # "Task 2" / "task #2" for an answer whose ids are plain numbers.
            found = self._by_key.get(self._key(numbered.group(1)))
        return found


def resolve_dependency(reference: str, drafts: Sequence[TaskDraft]) -> TaskDraft | None:
    """The task a dependency names, or None (see `TaskReferences`)."""
    return TaskReferences(drafts).resolve(reference)
