"""Plans written as markdown lists: numbered or bulleted items (or `### Task 1: ...` headings)
with inline fields: `(QA, 3h, high)`, `depends on 2, 3`, `after T1`, `blocked by #2`, or
`Role: QA` lines under the item, several fields to a line when separated (`Role: QA · Estimate:
3h`). This module finds the items, their titles and which runs of them are plans;
`list_item_fields` reads the fields in their text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from td_pipeline.domain.answer_lines import Line, lines_of, unmarked
from td_pipeline.domain.answer_model import (
    AnswerWarning,
    Candidate,
    ProposalFormat,
    RawTask,
    WarningKind,
)
from td_pipeline.domain.list_item_fields import dependencies, inline_fields, line_fields

_ITEM = re.compile(r"^(?P<indent>[ \t]*)(?:(?P<number>\d+)[.)]|[-*+\u2022])[ \t]+(?P<text>\S.*)$")
_HEADING = re.compile(r"^(?:#{2,6}[ \t]+(?P<heading>.+?)[ \t#]*|\*\*(?P<bold>[^*]+)\*\*:?\s*)$")
_TASK_LABEL = re.compile(
    r"^(?:\*\*|__)?(?:(?:task|step)\s*#?\s*(?P<number>\d+)|(?P<id>[A-Z][A-Z]{0,5}-?\d+))"
    r"(?:\*\*|__)?(?:\s*[:.)\u2013\u2014-]\s*|\s*$)",
    re.IGNORECASE,
)
_BOLD_TITLE = re.compile(r"^\*\*(?P<title>.+?):?\*\*:?\s*(?P<rest>.*)$")
_TITLE_END = re.compile(r"\s+\(|\s+\[|\s+[\u2013\u2014-]\s+|:\s+")
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
    description = [inline_fields(rest, fields)]
    fields["title"] = dependencies(title, fields).strip(_LEADING + ";,")
    for line in item.more:
        fields_on_line = line_fields(line)
        for field, value in fields_on_line:
            if field == "depends_on":
                fields["depends_on"].append(value.strip())
            elif field == "description":
                description.append(value)
            else:
                fields[field] = value.strip()
        if not fields_on_line and line.strip():
            description.append(dependencies(re.sub(r"^\s*[-*+\u2022]\s+", "", line), fields))
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
