"""Which text of an LLM answer is the plan.

The answer is what follows the model's reasoning (`<think>…</think>`, or everything up to a
lone closing `</think>` as vLLM's reasoning parsers leave it: `answer_reasoning`). Reasoning
that never closes is a cut-off answer, and a plan in it may be a draft: it is refused, unless it
holds exactly one complete plan, introduced as the final answer (`Final answer:`) and followed
by nothing but white space (or its code block's closing fence), which is then taken with a
warning. In the answer, every plan is a candidate: JSON (fenced or in prose), markdown tables
and legacy `KEY: value` blocks, and, only when none of those is there, markdown lists.
A candidate holding placeholders (`<title>`) is the answer's format, and one introduced as an
example is skipped when a real plan follows; of several plans the last is taken. Every such
choice is a warning; a JSON value that runs off the end of the answer refuses it as truncated.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from td_pipeline.domain.answer_json import scan_json
from td_pipeline.domain.answer_legacy import scan_legacy
from td_pipeline.domain.answer_lines import unmarked
from td_pipeline.domain.answer_lists import scan_lists
from td_pipeline.domain.answer_model import AnswerWarning, Candidate, WarningKind
from td_pipeline.domain.answer_reasoning import Answer, UnclosedReasoning, after_reasoning
from td_pipeline.domain.answer_tables import scan_tables

_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n]*$", re.MULTILINE)
_EXAMPLE = re.compile(
    r"\b(?:example|e\.g\.|for instance|schema|format|template|sample|like this|structure)\b",
    re.IGNORECASE,
)
# The line that introduces a plan as the model's last word: `Final answer:`, `**Final plan
# (JSON):**`, `Here is my final answer:`, `## Final answer`, `Final:`.
_FINAL_ANSWER = re.compile(
    r"(?:#{1,6}\s*)?(?:(?:here\s+is|here's|this\s+is)\s+)?(?:my\s+|the\s+)?"
    r"(?:final\s+(?:answer|plan|task\s+list|tasks)(?:\s+is)?(?:\s*\([^()]*\))?\s*:?|final\s*:)",
    re.IGNORECASE,
)
REFUSAL = re.compile(
    r"^\s*(i'?m sorry|sorry|i apologi[sz]e|i cannot|i can'?t|i am unable|i'm unable|as an ai)",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Refused:
    reason_code: str  # "empty" or "unparseable"
    message: str


@dataclass(frozen=True, slots=True)
class ChosenPlan:
    candidate: Candidate
    notes: tuple[AnswerWarning, ...]  # which text was taken, what was skipped


_NEVER_ENDED = Refused(
    "unparseable",
    "the model's reasoning never ended (<think> without </think>): the answer was truncated "
    "before its plan; a plan inside the reasoning is taken only when it is the only one, "
    "introduced as the final answer and followed by nothing",
)


def _note(text: str) -> AnswerWarning:
    return AnswerWarning(WarningKind.ANSWER_BLOCK, text)


@dataclass(frozen=True, slots=True)
class _Segment:
    start: int
    end: int
    may_be_cut: bool  # it runs to the end of the answer
    fenced: bool  # a code block's content: a fence line opened it (and closes it)


def _segments(text: str, start: int) -> list[_Segment]:
    """Prose and fenced code blocks, without the fence lines; an unclosed fence runs to the
    end of the answer."""
    segments: list[_Segment] = []
    position, opener = start, ""
    for fence in _FENCE.finditer(text, start):
        mark = fence.group(1)
        if opener and not (mark[0] == opener[0] and len(mark) >= len(opener)):
            continue
        segments.append(_Segment(position, fence.start(), False, bool(opener)))
        position, opener = fence.end(), "" if opener else mark
    segments.append(_Segment(position, len(text), True, bool(opener)))
    return [segment for segment in segments if text[segment.start : segment.end].strip()]


def _gaps(segments: Sequence[_Segment], taken: Sequence[Candidate]) -> list[_Segment]:
    """The parts of the segments that no candidate covers."""
    spans = sorted((c.start, c.end) for c in taken)
    gaps: list[_Segment] = []
    for segment in segments:
        position = segment.start
        for start, end in spans:
            if end <= position or start >= segment.end:
                continue
            if start > position:
                gaps.append(_Segment(position, start, False, segment.fenced))
            position = max(position, end)
        if position < segment.end:
            gaps.append(_Segment(position, segment.end, segment.may_be_cut, segment.fenced))
    return gaps


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _truncated(text: str, offset: int) -> Refused:
    return Refused(
        "unparseable",
        f"the answer is truncated: the plan at line {line_of(text, offset)} never ends "
        "(cut off by the token limit?); a shorter plan is not read from it",
    )


@dataclass(frozen=True, slots=True)
class _Found:
    structured: tuple[Candidate, ...]  # JSON, tables, legacy blocks, in text order
    lists: tuple[Candidate, ...]
    unreadable_json: tuple[int, ...]


def _find(text: str, segments: Sequence[_Segment]) -> _Found | Refused:
    json_plans: list[Candidate] = []
    unreadable: list[int] = []
    for segment in segments:
        scan = scan_json(text, segment.start, segment.end, may_be_cut=segment.may_be_cut)
        if scan.truncated_at is not None:
            return _truncated(text, scan.truncated_at)
        json_plans.extend(scan.candidates)
        unreadable.extend(scan.unreadable_at)
    tables: list[Candidate] = []
    for gap in _gaps(segments, json_plans):
        table_scan = scan_tables(text, gap.start, gap.end, may_be_cut=gap.may_be_cut)
        if table_scan.truncated_at is not None:
            return _truncated(text, table_scan.truncated_at)
        tables.extend(table_scan.candidates)
    gaps = _gaps(segments, [*json_plans, *tables])
    legacy = [found for gap in gaps if (found := scan_legacy(text, gap.start, gap.end))]
    gaps = _gaps(gaps, legacy)
    lists = [found for gap in gaps for found in scan_lists(text, gap.start, gap.end)]
    structured = sorted([*json_plans, *tables, *legacy], key=lambda c: c.start)
    return _Found(tuple(structured), tuple(lists), tuple(unreadable))


def _introduction(text: str, candidate: Candidate) -> list[str]:
    """The lines before a candidate (up to 400 characters, blank and fence lines left out)
    that introduce it; the last may be the start of the candidate's own line."""
    before = text[max(0, candidate.start - 400) : candidate.start].splitlines()
    return [line for line in before if line.strip() and not _FENCE.match(line)]


def _introduced_as_example(text: str, candidate: Candidate) -> bool:
    return bool(_EXAMPLE.search(" ".join(_introduction(text, candidate)[-2:])))


def _introduced_as_final(text: str, candidate: Candidate) -> bool:
    lines = _introduction(text, candidate)
    return bool(lines) and _FINAL_ANSWER.fullmatch(unmarked(lines[-1])) is not None


def _choose(text: str, candidates: Sequence[Candidate]) -> ChosenPlan | None:
    """The last real plan, with notes on every candidate passed over; None when there is none
    (placeholders only)."""
    formats = [c for c in candidates if c.placeholder is not None]
    plans = [c for c in candidates if c.placeholder is None]
    examples = [c for c in plans if _introduced_as_example(text, c)]
    if len(examples) < len(plans):
        plans = [c for c in plans if c not in examples]
    else:
        examples = []
    if not plans:
        return None
    chosen = plans[-1]
    notes = [
        *(
            _note(
                f"skipped the answer format at line {line_of(text, c.start)} "
                f"(placeholder {c.placeholder!r})"
            )
            for c in formats
        ),
        *(_note(f"skipped the example at line {line_of(text, c.start)}") for c in examples),
    ]
    if len(plans) > 1:
        lines = ", ".join(str(line_of(text, c.start)) for c in plans)
        notes.append(
            _note(
                f"the answer holds {len(plans)} plans (at lines {lines}): took the last, at "
                f"line {line_of(text, chosen.start)}"
            )
        )
    return ChosenPlan(chosen, tuple(notes))


def _nothing_found(text: str, answer: Answer, found: _Found) -> Refused:
    body = text[answer.start :]
    if REFUSAL.match(body):
        return Refused("unparseable", f"the model refused: {body.strip()[:120]!r}")
    if found.structured or found.lists:
        return Refused(
            "unparseable", "the answer holds only the answer's format (placeholders), no plan"
        )
    if found.unreadable_json or body.lstrip("`json \n").startswith(("{", "[")) or "```" in body:
        return Refused("unparseable", "the answer's JSON is malformed or holds no task list")
    if answer.had_reasoning:
        return Refused(
            "unparseable",
            "no task list found after the model's reasoning (a plan inside the reasoning is "
            "not taken)",
        )
    return Refused("unparseable", "no task list found in the answer")


def _ends_the_text(text: str, candidate: Candidate, segments: Sequence[_Segment]) -> bool:
    """Whether only white space follows the candidate, or the fence line closing the code
    block it is in: any more words mean the model was still thinking when it was cut off."""
    segment = next(s for s in segments if s.start <= candidate.start < s.end)
    after = text[candidate.end :]
    if segment.fenced and not segment.may_be_cut:  # its closing fence line starts at its end
        after = text[candidate.end : segment.end] + text[segment.end :].partition("\n")[2]
    return not after.strip()


def _final_plan_in_reasoning(text: str, reasoning: UnclosedReasoning) -> ChosenPlan | Refused:
    """The plan of an answer whose reasoning never closed: refused, since the answer may have
    been cut off and a plan in the reasoning may be a draft, unless the reasoning holds exactly
    one complete plan, introduces it as the final answer and ends with it (the model forgot to
    close its reasoning, or wrote its answer inside it). A malformed or cut-off JSON value, a
    second plan or an example counts as another plan; a format block (placeholders) does not."""
    segments = _segments(text, reasoning.start)
    found = _find(text, segments)
    if isinstance(found, Refused) or found.unreadable_json:
        return _NEVER_ENDED
    candidates = [*found.structured, *found.lists]
    plans = [c for c in candidates if c.placeholder is None]
    chosen = _choose(text, candidates) if len(plans) == 1 else None
    if (
        chosen is None
        or not _introduced_as_final(text, chosen.candidate)
        or not _ends_the_text(text, chosen.candidate, segments)
    ):
        return _NEVER_ENDED
    note = _note(
        "the model's reasoning never ended (<think> without </think>): took the one plan in "
        f"it, at line {line_of(text, chosen.candidate.start)}, introduced as the final answer"
    )
    return ChosenPlan(chosen.candidate, (note, *chosen.notes, *chosen.candidate.notes))


def choose_plan(text: str) -> ChosenPlan | Refused:
    """The plan an answer gives, with notes on how it was chosen, or why there is none."""
    if not text.strip():
        return Refused("empty", "the answer is empty")
    answer = after_reasoning(text)
    if isinstance(answer, UnclosedReasoning):
        return _final_plan_in_reasoning(text, answer)
    if not text[answer.start :].strip():
        return Refused(
            "empty",
            "the answer holds only the model's reasoning (a plan inside it is not taken)",
        )
    found = _find(text, _segments(text, answer.start))
    if isinstance(found, Refused):
        return found
    chosen = _choose(text, found.structured)
    if chosen is None and not REFUSAL.match(text[answer.start :]):
        chosen = _choose(text, found.lists)
    if chosen is None:
        return _nothing_found(text, answer, found)
    if later := [offset for offset in found.unreadable_json if offset > chosen.candidate.start]:
        return Refused(
            "unparseable",
            f"the answer's JSON at line {line_of(text, later[-1])} is malformed or truncated; "
            f"the plan before it, at line {line_of(text, chosen.candidate.start)}, is not "
            "taken in its place",
        )
    ignored = [
        _note(f"ignored JSON at line {line_of(text, offset)} that could not be read")
        for offset in found.unreadable_json
    ]
    return ChosenPlan(
        chosen.candidate, (*answer.notes, *ignored, *chosen.notes, *chosen.candidate.notes)
    )
