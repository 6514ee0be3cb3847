"""LLM answer text -> task drafts, tolerant of what models really write, and saying so.

`answer_extraction` finds the plan (after the reasoning, which `answer_reasoning` finds; format
blocks and examples skipped; the last of several plans), `answer_json`, `answer_tables`,
`answer_lists` and `answer_legacy` read its shape (`answer_lines` holds their line helpers,
`list_item_fields` a list item's fields), `answer_fields` its values, and
`answer_references` resolves its dependencies (in `validation`). Nothing is invented: a missing
or unreadable value stays missing with a warning, and dependencies are inferred only for legacy
answers that name none.
"""

from __future__ import annotations

from dataclasses import dataclass

from td_pipeline.domain.answer_extraction import Refused, choose_plan
from td_pipeline.domain.answer_fields import drafts_from
from td_pipeline.domain.answer_legacy import infer_dependencies
from td_pipeline.domain.answer_model import (
    AnswerWarning,
    ProposalFormat,
    TaskDraft,
    WarningKind,
    merged_warnings,
)
from td_pipeline.domain.answer_references import TaskReferences, resolve_dependency

__all__ = [
    "AnswerWarning",
    "ParsedProposal",
    "ProposalFormat",
    "TaskDraft",
    "TaskReferences",
    "UnparseableProposal",
    "WarningKind",
    "parse_proposal",
    "resolve_dependency",
]


@dataclass(frozen=True, slots=True)
class ParsedProposal:
    format: ProposalFormat
    tasks: tuple[TaskDraft, ...]
    notes: tuple[AnswerWarning, ...]

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(note.message for note in self.notes)


@dataclass(frozen=True, slots=True)
class UnparseableProposal:
    reason_code: str  # "empty" or "unparseable"
    message: str


def parse_proposal(text: str) -> ParsedProposal | UnparseableProposal:
    chosen = choose_plan(text)
    if isinstance(chosen, Refused):
        return UnparseableProposal(chosen.reason_code, chosen.message)
    candidate = chosen.candidate
    if not candidate.tasks:
        return UnparseableProposal("empty", "the answer's task list is empty")
    drafts, warnings = drafts_from(candidate.tasks)
    notes = [*chosen.notes, *warnings]
    if candidate.format is ProposalFormat.LEGACY_BLOCKS and not any(d.depends_on for d in drafts):
        drafts, inferred = infer_dependencies(drafts)
        if inferred:
            notes.append(
                AnswerWarning(
                    WarningKind.INFERRED,
                    f"the answer names no dependency; {inferred} inferred from task keywords",
                )
            )
    return ParsedProposal(candidate.format, drafts, merged_warnings(notes))
