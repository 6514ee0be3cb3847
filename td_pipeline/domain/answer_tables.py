"""Plans written as markdown tables with recognisable headers (a column that holds the titles);
a last row cut short at the very end of the answer makes it truncated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from td_pipeline.domain.answer_fields import canonical_field
from td_pipeline.domain.answer_lines import Line, lines_of, unmarked
from td_pipeline.domain.answer_model import (
    AnswerWarning,
    Candidate,
    ProposalFormat,
    RawTask,
    WarningKind,
)

_SEPARATOR_ROW = re.compile(r"^\s*\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)*\|?\s*$")


def _cells(line: str) -> list[str]:
    row = line.strip()
    row = row[1:] if row.startswith("|") else row
    row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
    return [unmarked(cell.replace("\\|", "|")) for cell in re.split(r"(?<!\\)\|", row)]


def _header_names(cells: list[str]) -> list[str] | None:
    """Field names for a header row, or None when no column holds the titles. A `Task`
    column beside a `Title` column holds the ids."""
    fields = [canonical_field(cell) for cell in cells]
    if "title" not in fields:
        return None
    task_is_id = fields.count("title") > 1
    return ["id" if task_is_id and cell.casefold() == "task" else cell for cell in cells]


def _last_line(lines: list[Line]) -> Line | None:
    return next((line for line in reversed(lines) if line.text.strip()), None)


def _cut_short(header: Line, row: Line, cells: list[str], names: list[str]) -> bool:
    """A last row with fewer cells than the header, or without the closing pipe the header
    has, was cut off."""
    closed = header.text.rstrip().endswith("|")
    return len(cells) < len(names) or (closed and not row.text.rstrip().endswith("|"))


@dataclass(frozen=True, slots=True)
class MarkdownScan:
    candidates: tuple[Candidate, ...]
    truncated_at: int | None


def scan_tables(text: str, start: int, end: int, *, may_be_cut: bool) -> MarkdownScan:
    """Every table whose header names a title column; a last row cut short at the very end of
    the answer makes it truncated."""
    lines = lines_of(text, start, end)
    candidates: list[Candidate] = []
    index = 0
    while index + 1 < len(lines):
        header = lines[index]
        names = _header_names(_cells(header.text)) if "|" in header.text else None
        if names is None or not _SEPARATOR_ROW.match(lines[index + 1].text):
            index += 1
            continue
        rows: list[Line] = []
        index += 2
        while index < len(lines) and "|" in lines[index].text:
            rows.append(lines[index])
            index += 1
        tasks = []
        for row in rows:
            cells = _cells(row.text)
            if may_be_cut and row is _last_line(lines) and _cut_short(header, row, cells, names):
                return MarkdownScan(tuple(candidates), row.start)
            tasks.append(RawTask(dict(zip(names, cells, strict=False))))
        note = AnswerWarning(WarningKind.SHAPE, "tasks read from a markdown table")
        last = rows[-1].end if rows else lines[index - 1].end
        candidates.append(
            Candidate(ProposalFormat.MARKDOWN_TABLE, header.start, last, tuple(tasks), (note,))
        )
    return MarkdownScan(tuple(candidates), None)
