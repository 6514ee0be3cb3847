"""Where an LLM answer's reasoning ends, for `answer_extraction`: after the last closing tag
(`</think>`, `</thinking>`, `</reasoning>`), even without an opening one as vLLM's reasoning
parsers leave it; or, when a reasoning block opens and never closes, where that block begins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from td_pipeline.domain.answer_model import AnswerWarning, WarningKind

_OPEN = re.compile(r"<(?:think|thinking|reasoning)>", re.IGNORECASE)
_CLOSE = re.compile(r"</(?:think|thinking|reasoning)>", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Answer:
    start: int  # where the answer begins, after the reasoning
    had_reasoning: bool
    notes: tuple[AnswerWarning, ...]


@dataclass(frozen=True, slots=True)
class UnclosedReasoning:
    start: int  # where the reasoning begins, after its opening tag


def after_reasoning(text: str) -> Answer | UnclosedReasoning:
    closes = list(_CLOSE.finditer(text))
    if closes:
        notes: tuple[AnswerWarning, ...] = ()
        if not _OPEN.search(text, 0, closes[-1].start()):
            notes = (
                AnswerWarning(
                    WarningKind.ANSWER_BLOCK,
                    "the answer has a closing </think> without an opening one: the text before "
                    "it was taken for the model's reasoning and set aside",
                ),
            )
        return Answer(closes[-1].end(), True, notes)
    if opening := _OPEN.search(text):
        return UnclosedReasoning(opening.end())
    return Answer(0, False, ())
