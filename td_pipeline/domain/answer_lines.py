"""The lines of an LLM answer with their offsets, and text without markdown emphasis: what the
table, list and legacy readers share.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Line:
    start: int  # offset in the answer
    end: int
    text: str


def lines_of(text: str, start: int, end: int) -> list[Line]:
    lines = []
    position = start
    for line in text[start:end].splitlines(keepends=True):
        lines.append(Line(position, position + len(line), line.rstrip("\r\n")))
        position += len(line)
    return lines


def unmarked(text: str) -> str:
    """A cell or a title without markdown emphasis, code marks or `<br>`."""
    text = re.sub(r"<br\s*/?>", "\n", text, flags=re.IGNORECASE)
    return re.sub(r"\*\*|__|`", "", text).strip()
