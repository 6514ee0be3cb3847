"""Plans written as markdown lists: numbered or bulleted items (or `### Task 1: ...` headings)
with inline fields: `(QA, 3h, high)`, `depends on 2, 3`, `after T1`, `blocked by #2`, or
`Role: QA` lines under the item, several fields to a line when separated (`Role: QA · Estimate:
3h`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from td_pipeline.domain.answer_fields import canonical_field, is_none_word
from td_pipeline.domain.answer_lines import Line, lines_of, unmarked
from td_pipeline.domain.answer_model import (
    AnswerWarning,
    Candidate,
    ProposalFormat,
    RawTask,
    WarningKind,
)
from td_pipeline.domain.roles import canonical_role
from td_pipeline.domain.values import read_hours, read_priority

_ITEM = re.compile(r"^(?P<indent>[ \t]*)(?:(?P<number>\d+)[.)]|[-*+\u2022])[ \t]+(?P<text>\S.*)$")
_HEADING = re.compile(r"^(?:#{2,6}[ \t]+(?P<heading>.+?)[ \t#]*|\*\*(?P<bold>[^*]+)\*\*:?\s*)$")
_TASK_LABEL = re.compile(
    r"^(?:\*\*|__)?(?:(?:task|step)\s*#?\s*(?P<number>\d+)|(?P<id>[A-Z][A-Z]{0,5}-?\d+))"
    r"(?:\*\*|__)?(?:\s*[:.)\u2013\u2014-]\s*|\s*$)",
    re.IGNORECASE,
)
_BOLD_TITLE = re.compile(r"^\*\*(?P<title>.+?):?\*\*:?\s*(?P<rest>.*)$")
_TITLE_END = re.compile(r"\s+\(|\s+\[|\s+[\u2013\u2014-]\s+|:\s+")
_KEY_VALUE = re.compile(
    r"^\s*(?:[-*+\u2022]\s*)?(?:\*\*|__)?(?P<key>[A-Za-z][A-Za-z #()./_-]{0,30}?)(?:\*\*|__)?"
    r"\s*:\s*(?:\*\*|__)?\s*(?P<value>.*)$"
)
_NOT_A_DURATION = r"(?!\s*(?:h\b|hrs?\b|hours?\b|days?\b|mins?\b|minutes?\b|weeks?\b|%|am\b|pm\b))"
_ID = rf"(?:(?:tasks?|steps?)\s*)?#?(?:[A-Z]{{1,6}}-?\d+|\d+)\b{_NOT_A_DURATION}"
_TASK_NUMBER = rf"(?:(?:tasks?|steps?)\s*#?\s*\d+|#\d+|T-?\d+|\d+)\b{_NOT_A_DURATION}"


def _listed(reference: str) -> str:
    return rf"{reference}(?:\s*(?:,|&|\band\b|/)\s*{reference})*"


# "depends on" and "blocked by" name tasks by any id, or by title; "after", "requires" and
# "needs" only by a task number that ends the phrase ("after 2", not "after 2 retries").
_DEPENDENCY = re.compile(
    r"\b(?:depends\s+on|dependent\s+on|depending\s+on|blocked\s+by|prerequisites?)\s*:?\s*"
    rf"(?P<refs>{_listed(_ID)})"
    rf"|\b(?:requires|needs|after)\s*:?\s*(?P<weak>{_listed(_TASK_NUMBER)})"
    r"(?=\s*(?:[,;.()\[\]\u2013\u2014-]|$))"
    r"|\b(?:depends\s+on|blocked\s+by)\s*:?\s*(?P<title>[^;,()\[\]\n.]+)",
    re.IGNORECASE,
)
_REFERENCE_SPLIT = re.compile(r"\s*(?:,|&|\band\b|/)\s*", re.IGNORECASE)
_GROUP = re.compile(r"\(([^()]*)\)|\[([^\[\]]*)\]")
_PART_SPLIT = re.compile(r"\s*(?:[,;|]|\s[\u2013\u2014-]\s)\s*")
_PRIORITY_PART = re.compile(
    r"(?:priority\s*:?\s*)?(?:p\d|critical|high|medium|low|urgent|blocker|normal)"
    r"(?:\s+priority)?",
    re.IGNORECASE,
)


# Between two fields on one line (`Role: QA · Estimate: 3h`): a middle dot, a bullet, a pipe,
# a semicolon or a spaced dash. It ends a value only where another field's name and colon
# follow, so `Depends on: 1; 2`, `Role: Developer | QA` or `Estimate: 2 - 3 h` stay one value.
_FIELD_SEPARATOR = re.compile(r"(\s*[\u00b7\u2022|;]\s*|\s+[\u2013\u2014-]\s+)")
# A middle dot or a bullet is never punctuation inside a sentence (unlike `;`, `|` or a
# dash): the only separators that end a description (`Description: Cache it; time: 10 min
# TTL` is one description) and that split an inline part of bare values (`Developer · 3h`).
_DOT = re.compile(r"\s*[\u00b7\u2022]\s*")


def _key_value(text: str) -> tuple[str, str] | None:
    """The field and the value of a `Key: value` text whose key names a field, else None."""
    key_value = _KEY_VALUE.match(text)
    if key_value is None or (field := canonical_field(key_value.group("key"))) is None:
        return None
    return field, key_value.group("value")


def _line_fields(text: str) -> tuple[tuple[str, str], ...]:
    """The fields a `Key: value` text gives, in order: one, or several on one line
    (`Role: QA · Estimate: 3h`); none when its key names no field. A value that is not split
    is kept exactly as written, separators included."""
    first = _key_value(text)
    if first is None:
        return ()
    field, value = first
    pieces = _FIELD_SEPARATOR.split(value)
    found = [(field, pieces[0])]
    for separator, piece in zip(pieces[1::2], pieces[2::2], strict=True):
        in_prose = found[-1][0] == "description" and not _DOT.fullmatch(separator)
        if not in_prose and (next_field := _key_value(piece)) is not None:
            found.append(next_field)
        else:
            found[-1] = (found[-1][0], found[-1][1] + separator + piece)
    return tuple(found)


def _part_fields(part: str) -> tuple[tuple[str, Any], ...]:
    """What one inline part (`QA`, `3h`, `high priority`, `Role: QA`, `Role: QA · Estimate:
    3h`, `QA · 3h`) gives, if anything: all of it is fields, or it gives none."""
    if key_values := _line_fields(part):
        return tuple((field, value.strip()) for field, value in key_values)
    if canonical_role(part) is not None:
        return (("role", part),)
    if read_hours(part, unit_required=True).value is not None:
        return (("estimated_hours", part),)
    if _PRIORITY_PART.fullmatch(part) and read_priority(part).value is not None:
        return (("priority", part),)
    pieces = _DOT.split(part)
    if len(pieces) > 1 and all(found := [_part_fields(piece) for piece in pieces]):
        return tuple(field for piece_fields in found for field in piece_fields)
    return ()


def _dependencies(text: str, fields: dict[str, Any]) -> str:
    """Dependency phrases taken out of `text` into `fields["depends_on"]`."""
    references: list[str] = fields.setdefault("depends_on", [])
    for match in _DEPENDENCY.finditer(text):
        if listed := match.group("refs") or match.group("weak"):
            references.extend(_REFERENCE_SPLIT.split(listed.strip()))
        elif not is_none_word(match.group("title")):
            references.append(match.group("title").strip())
    return _DEPENDENCY.sub("", text)


def _inline_fields(text: str, fields: dict[str, Any]) -> str:
    """Fields taken out of free text; what is left is description."""
    text = _dependencies(text, fields)

    def group(match: re.Match[str]) -> str:
        parts = _PART_SPLIT.split((match.group(1) or match.group(2) or "").strip())
        found = [_part_fields(part) for part in parts if part]
        if not found and not any(parts):
            return ""
        if not found or () in found:
            return match.group()
        fields.update(field for part_fields in found for field in part_fields)
        return ""

    text = _GROUP.sub(group, text)
    kept = []
    for part in _PART_SPLIT.split(text):
        found = _part_fields(part) if part else ()
        if not found:
            kept.append(part)
        for field, value in found:
            fields.setdefault(field, value)
    return ", ".join(part for part in kept if part.strip(" ,;:-\u2013\u2014"))


_LEADING = " :-\u2013\u2014"


def _title_and_rest(text: str) -> tuple[str, str]:
    if bold := _BOLD_TITLE.match(text):
        return unmarked(bold.group("title")), bold.group("rest").lstrip(_LEADING)
    end = _TITLE_END.search(text)
    if end is None:
        return unmarked(text), ""
    return unmarked(text[: end.start()]), text[end.start() :].lstrip(_LEADING)


@dataclass(frozen=True, slots=True)
class _Item:
    key: str | None
    first: str
    more: tuple[str, ...]


def _item_task(item: _Item) -> RawTask:
    title, rest = _title_and_rest(item.first)
    fields: dict[str, Any] = {}
    description = [_inline_fields(rest, fields)]
    fields["title"] = _dependencies(title, fields).strip(_LEADING + ";,")
    for line in item.more:
        line_fields = _line_fields(line)
        for field, value in line_fields:
            if field == "depends_on":
                fields["depends_on"].append(value.strip())
            elif field == "description":
                description.append(value)
            else:
                fields[field] = value.strip()
        if not line_fields and line.strip():
            description.append(_dependencies(re.sub(r"^\s*[-*+\u2022]\s+", "", line), fields))
    fields["description"] = "\n".join(unmarked(part) for part in description if part.strip())
    if not fields["depends_on"]:
        del fields["depends_on"]
    return RawTask(fields, key=item.key)


def _label(text: str) -> tuple[str | None, str]:
    label = _TASK_LABEL.match(text)
    if label is None:
        return None, text
    return label.group("number") or label.group("id"), text[label.end() :]


def _is_item_number(number: str, earlier: set[int]) -> bool:
    """Whether the number opening a line numbers a list item: up to three digits, always; a
    longer one only where it continues the numbering (1000 after 999), since elsewhere it is
    prose opening with a year or an amount (`2025. Next year we add caching.`). Ten digits
    and more never continue a list (and `int` refuses over 4300)."""
    return len(number) <= 3 or (len(number) < 10 and int(number) - 1 in earlier)


def _item_matches(lines: list[Line]) -> dict[int, re.Match[str]]:
    """The lines that are list items, by index."""
    items: dict[int, re.Match[str]] = {}
    numbers: set[int] = set()
    for i, line in enumerate(lines):
        if (match := _ITEM.match(line.text)) is None:
            continue
        if (number := match.group("number")) is not None:
            if not _is_item_number(number, numbers):
                continue
            numbers.add(int(number))
        items[i] = match
    return items


def _list_items(lines: list[Line]) -> list[tuple[int, _Item, int]]:
    """Top-level items as (start offset, item, end offset): task headings, else numbered
    items at the outermost indent, else bullets at the outermost indent."""
    headings = [
        (i, m.group("heading") or m.group("bold"))
        for i, line in enumerate(lines)
        if (m := _HEADING.match(line.text))
        and _TASK_LABEL.match(m.group("heading") or m.group("bold"))
    ]
    matches = _item_matches(lines)
    tops = (
        [(i, *_label(text)) for i, text in headings]
        if headings
        else _outermost_items(lines, matches)
    )
    items = []
    for n, (i, key, first) in enumerate(tops):
        stop = tops[n + 1][0] if n + 1 < len(tops) else len(lines)
        more = _item_lines(lines, i + 1, stop, matches, heading=bool(headings))
        items.append(
            (
                lines[i].start,
                _Item(key, first, tuple(lines[j].text for j in more)),
                lines[(more[-1] if more else i)].end,
            )
        )
    return items


def _outermost_items(
    lines: list[Line], matches: dict[int, re.Match[str]]
) -> list[tuple[int, str | None, str]]:
    """Items at the outermost indent; a bullet right under a numbered item (no paragraph
    between) belongs to that item."""
    found = sorted(matches.items())
    indent = min((len(m.group("indent")) for _, m in found), default=0)
    tops: list[tuple[int, str | None, str]] = []
    for i, match in found:
        if len(match.group("indent")) != indent:
            continue
        under_number = bool(tops) and lines[tops[-1][0]].text.lstrip()[:1].isdigit()
        if match.group("number") is None and under_number:
            continued = _item_lines(lines, tops[-1][0] + 1, i, matches, heading=False)
            if len(continued) == i - tops[-1][0] - 1:
                continue
        key, text = _label(match.group("text"))
        tops.append((i, key or match.group("number"), text))
    return tops


def _item_lines(
    lines: list[Line], start: int, stop: int, matches: dict[int, re.Match[str]], *, heading: bool
) -> list[int]:
    """The lines that belong to an item: up to the next item, or, in a list, up to a
    paragraph that follows a blank line without indentation (the list has ended); `matches`
    are the list's item lines."""
    taken = []
    for j in range(start, stop):
        text = lines[j].text
        after_blank = j > start and not lines[j - 1].text.strip()
        if (
            not heading
            and after_blank
            and text.strip()
            and not text[:1].isspace()
            and j not in matches
        ):
            break
        if heading and _HEADING.match(text):
            break
        taken.append(j)
    return taken


_NOT_TASKS = re.compile(
    r"\b(?:notes?|assumptions?|risks?|questions?|caveats?|remarks?|considerations?"
    r"|open points?)\b[^\n]*:?\s*$",
    re.IGNORECASE,
)


def _is_plan(tasks: list[RawTask], introduction: str) -> bool:
    """Whether a list is a plan: not questions, not introduced as notes or risks, and more
    than one item or an item with fields."""
    if any(str(task.fields.get("title", "")).endswith("?") for task in tasks):
        return False
    if _NOT_TASKS.search(introduction):
        return False
    return len(tasks) >= 2 or any(len(task.fields) > 2 for task in tasks)


def _introduction(text: str, start: int) -> str:
    """The last line of text before `start` that is not blank."""
    before = text[max(0, start - 300) : start].rstrip().rsplit("\n", 1)
    return before[-1] if before else ""


def scan_lists(text: str, start: int, end: int) -> tuple[Candidate, ...]:
    """The list plans between `start` and `end`: each run of items that no paragraph
    interrupts is one candidate."""
    lines = lines_of(text, start, end)
    items = _list_items(lines)
    runs: list[list[tuple[int, _Item, int]]] = []
    for item in items:
        between = text[runs[-1][-1][2] : item[0]] if runs else ""
        if runs and not between.strip():
            runs[-1].append(item)
        else:
            runs.append([item])
    candidates = []
    for run in runs:
        tasks = [_item_task(item) for _, item, _ in run]
        if _is_plan(tasks, _introduction(text, run[0][0])):
            note = AnswerWarning(WarningKind.SHAPE, "tasks read from a markdown list")
            candidates.append(
                Candidate(
                    ProposalFormat.MARKDOWN_LIST, run[0][0], run[-1][2], tuple(tasks), (note,)
                )
            )
    return tuple(candidates)
