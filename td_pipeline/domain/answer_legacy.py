"""The fleet's legacy answer format: `KEY: value` blocks (`TASK_ID`, `TITLE`, `DESCRIPTION`,
`ROLE`, `ESTIMATED_HOURS`, `PRIORITY`, `KEYWORDS`, `DEPENDS_ON`), one field per line, blocks
separated by `---` or blank lines, with or without markdown bold. Dependencies are inferred
from keywords only when an answer names none.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from td_pipeline.domain.answer_lines import lines_of
from td_pipeline.domain.answer_model import Candidate, ProposalFormat, RawTask, TaskDraft

# `TASK_ID:`, `Task ID:`, `**TITLE:**`, `- ROLE:` ... one field per line.
_LEGACY_LINE = re.compile(
    r"^[ \t]*(?:[-*][ \t]*)?(?:\*+[ \t]*)?(TASK[ _]?ID|TITLE|DESCRIPTION|ROLE|ESTIMATED[ _]HOURS"
    r"|PRIORITY|KEYWORDS|DEPENDS[ _]ON)[ \t]*(?:\*+[ \t]*)?:[ \t]*\**[ \t]*(.*?)\s*$",
    re.IGNORECASE,
)
_SEPARATOR = re.compile(r"^\s*-{3,}\s*$")


def _field(written: str) -> str:
    return re.sub(r"[ _]", "", written.upper())


def scan_legacy(text: str, start: int, end: int) -> Candidate | None:
    """All the legacy blocks between `start` and `end`, as one plan, or None."""
    blocks: list[tuple[int, dict[str, str], int]] = []
    current: dict[str, str] = {}
    block_start = block_end = start
    last_field: str | None = None

    def close() -> None:
        nonlocal current, last_field
        if "TITLE" in current or "TASKID" in current:
            blocks.append((block_start, current, block_end))
        current, last_field = {}, None

    for line in lines_of(text, start, end):
        match = _LEGACY_LINE.match(line.text)
        if _SEPARATOR.match(line.text):
            close()
        elif match:
            field = _field(match.group(1))
            if field in ("TASKID", "TITLE") and field in current:
                close()  # the same field again: the next task has begun
            if not current:
                block_start = line.start
            current[field] = match.group(2).strip().strip("*").strip()
            last_field, block_end = field, line.end
        elif not line.text.strip():
            # A blank line ends a block, except inside a description that may go on below.
            if last_field != "DESCRIPTION":
                close()
        elif last_field == "DESCRIPTION":
            current["DESCRIPTION"] = f"{current['DESCRIPTION']}\n{line.text.strip()}".strip()
            block_end = line.end
    close()
    if not blocks:
        return None
    tasks = tuple(RawTask(fields) for _, fields, _ in blocks)
    return Candidate(ProposalFormat.LEGACY_BLOCKS, blocks[0][0], blocks[-1][2], tasks)


def _names(title: str, keyword: str) -> bool:
    """Whether a title holds a keyword as whole words (the substring test first: it is cheap)."""
    return keyword in title and re.search(rf"\b{re.escape(keyword)}\b", title) is not None


def infer_dependencies(drafts: Sequence[TaskDraft]) -> tuple[tuple[TaskDraft, ...], int]:
    """A later task whose title names an earlier task's keyword depends on it. Edges only
    ever point back to earlier tasks, so inference cannot create a cycle."""
    result, count = [], 0
    for index, draft in enumerate(drafts):
        title = (draft.title or "").casefold()
        earlier = [
            previous.key
            for previous in drafts[:index]
            if any(_names(title, word) for word in previous.keywords)
        ]
        if earlier:
            count += len(earlier)
            draft = replace(draft, depends_on=tuple(earlier), dependencies_inferred=True)
        result.append(draft)
    return tuple(result), count
