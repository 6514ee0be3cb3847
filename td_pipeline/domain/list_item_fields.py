"""The fields in a markdown list item's text, for `answer_lists` (which finds the items):
`Key: value` lines, several to a line when separated (`Role: QA · Estimate: 3h`), inline groups
of bare values (`(QA, 3h, high)`, `QA · 3h`) and dependency phrases (`depends on 2, 3`, `after
T1`, `blocked by #2`).
"""

from __future__ import annotations

import re
from typing import Any

from td_pipeline.domain.answer_fields import canonical_field, is_none_word
from td_pipeline.domain.roles import canonical_role
from td_pipeline.domain.values import read_hours, read_priority

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


def line_fields(text: str) -> tuple[tuple[str, str], ...]:
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
    if key_values := line_fields(part):
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


def dependencies(text: str, fields: dict[str, Any]) -> str:
    """Dependency phrases taken out of `text` into `fields["depends_on"]`."""
    references: list[str] = fields.setdefault("depends_on", [])
    for match in _DEPENDENCY.finditer(text):
        if listed := match.group("refs") or match.group("weak"):
            references.extend(_REFERENCE_SPLIT.split(listed.strip()))
        elif not is_none_word(match.group("title")):
            references.append(match.group("title").strip())
    return _DEPENDENCY.sub("", text)


def inline_fields(text: str, fields: dict[str, Any]) -> str:
    """Fields taken out of free text; what is left is description."""
    text = dependencies(text, fields)

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
