"""From an LLM answer to a valid task graph, or to every reason it is not one.

Parsing (`proposal`) reads what the model wrote; this module applies the derivation's rules:
roles resolved against the requested ones (`role_matching`), dependencies resolved to tasks,
fields turned into value objects, and the graph checks of `task_graph`. All problems are
reported together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from td_pipeline.domain.answer_model import AnswerWarning, WarningKind, merged_warnings
from td_pipeline.domain.answer_references import ResolvedBy, TaskReferences
from td_pipeline.domain.proposal import (
    ParsedProposal,
    ProposalFormat,
    TaskDraft,
    UnparseableProposal,
    parse_proposal,
)
from td_pipeline.domain.role_matching import match_role, role_read_loosely
from td_pipeline.domain.task_graph import (
    DependencyEdge,
    InvalidTaskGraph,
    Issue,
    IssueCode,
    TaskCountRange,
    TaskGraph,
    TaskNode,
)
from td_pipeline.domain.values import (
    Description,
    EstimatedHours,
    Priority,
    Role,
    TaskKey,
    Title,
)


@dataclass(frozen=True, slots=True)
class DerivationRules:
    """What a derivation allows: the requested roles (first = default), criteria and count."""

    allowed_roles: tuple[Role, ...]
    criteria_count: int
    task_count: TaskCountRange

    def __post_init__(self) -> None:
        if not self.allowed_roles:
            raise ValueError("a derivation needs at least one allowed role")
        if self.criteria_count < 0:
            raise ValueError("criteria_count must not be negative")


def _messages(notes: tuple[AnswerWarning, ...]) -> tuple[str, ...]:
    return tuple(note.message for note in notes)


@dataclass(frozen=True, slots=True)
class ValidProposal:
    graph: TaskGraph
    format: ProposalFormat
    notes: tuple[AnswerWarning, ...] = ()

    @property
    def warnings(self) -> tuple[str, ...]:
        """Every guess and gap of the answer, one line each."""
        return _messages(self.notes)

    def task_warnings(self) -> dict[str, tuple[str, ...]]:
        """Each task's warnings (without the task's name), by task key."""
        by_task: dict[str, list[str]] = {}
        for note in self.notes:
            for task in note.tasks:
                by_task.setdefault(task, []).append(note.text)
        return {task: tuple(texts) for task, texts in by_task.items()}


@dataclass(frozen=True, slots=True)
class InvalidProposal:
    issues: tuple[Issue, ...]
    notes: tuple[AnswerWarning, ...] = ()

    def __post_init__(self) -> None:
        if not self.issues:
            raise ValueError("an invalid proposal names at least one issue")

    @property
    def warnings(self) -> tuple[str, ...]:
        return _messages(self.notes)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(sorted({issue.code.value for issue in self.issues}))


ProposalVerdict = ValidProposal | InvalidProposal


@dataclass(frozen=True, slots=True)
class _CheckedDraft:
    node: TaskNode
    issues: tuple[Issue, ...]
    warnings: tuple[AnswerWarning, ...]


def _label(draft: TaskDraft) -> str:
    return f'{draft.key} "{draft.title}"' if draft.title else draft.key


def _check_draft(draft: TaskDraft, position: int, rules: DerivationRules) -> _CheckedDraft:
    """A node for the graph checks, with every field problem as an issue. Where a field is
    unusable a neutral stand-in keeps the rest of the graph checkable; a proposal with any
    issue is rejected, so stand-ins never leave this module."""
    issues: list[Issue] = []
    warnings: list[AnswerWarning] = []

    def invalid(message: str) -> None:
        issues.append(Issue(IssueCode.INVALID_FIELD, f"task {_label(draft)}: {message}"))

    try:
        key = TaskKey(draft.key)
    except ValueError as error:
        invalid(str(error))
        key = TaskKey(f"T{position}")

    title = Title(f"(task {key.value} without a title)")
    if draft.title is None:
        invalid("has no title")
    else:
        try:
            title = Title(draft.title)
        except ValueError as error:
            invalid(str(error))

    description = Description("")
    try:
        description = Description(draft.description)
    except ValueError as error:
        invalid(str(error))

    default_role = rules.allowed_roles[0]
    role = default_role
    if draft.role is None:
        warnings.append(
            AnswerWarning(
                WarningKind.VALUE_MISSING,
                f"no role given: assigned {default_role.value}",
                (key.value,),
            )
        )
    elif (matched := match_role(draft.role, rules.allowed_roles)) is not None:
        role = matched
        warnings.extend(role_read_loosely(draft.role, matched, key))
    else:
        allowed = ", ".join(r.value for r in rules.allowed_roles)
        issues.append(
            Issue(
                IssueCode.ROLE_NOT_ALLOWED,
                f"task {_label(draft)} has role {draft.role!r}, not one of {allowed}",
            )
        )

    hours: EstimatedHours | None = None
    if draft.estimated_hours is not None:
        try:
            hours = EstimatedHours(draft.estimated_hours)
        except ValueError as error:
            invalid(str(error))

    priority: Priority | None = None
    if draft.priority is not None:
        try:
            priority = Priority(draft.priority)
        except ValueError as error:
            invalid(str(error))

    if rules.criteria_count:
        beyond = [n for n in draft.covers if n > rules.criteria_count]
        if beyond:
            invalid(f"covers criteria {beyond}, but the story has {rules.criteria_count}")
    covers = tuple(n for n in draft.covers if n >= 1)

    node = TaskNode(
        key=key,
        title=title,
        description=description,
        role=role,
        estimated_hours=hours,
        priority=priority,
        covers=covers,
    )
    return _CheckedDraft(node=node, issues=tuple(issues), warnings=tuple(warnings))


_LOOSE_RESOLUTIONS = {
    ResolvedBy.TITLE: "by its title",
    ResolvedBy.NUMBER: "by its number",
    ResolvedBy.POSITION: "by its position",
}


@dataclass(frozen=True, slots=True)
class _Edges:
    edges: tuple[DependencyEdge, ...]
    issues: tuple[Issue, ...]
    warnings: tuple[AnswerWarning, ...]


def _edges(drafts: Sequence[TaskDraft], keys: Sequence[TaskKey]) -> _Edges:
    """The dependencies the drafts name, resolved to the tasks' checked keys (`keys`, in the
    drafts' order); a dependency resolved otherwise than by id earns a warning."""
    edges: list[DependencyEdge] = []
    issues: list[Issue] = []
    warnings: list[AnswerWarning] = []
    references = TaskReferences(drafts)
    key_of = {id(draft): key for draft, key in zip(drafts, keys, strict=True)}
    for draft, key in zip(drafts, keys, strict=True):
        reason = "inferred from keywords" if draft.dependencies_inferred else "depends_on"
        for reference in draft.depends_on:
            resolved, unknown = references.resolve_all(reference)
            issues.extend(
                Issue(
                    IssueCode.UNKNOWN_DEPENDENCY,
                    f"task {_label(draft)} depends on {part!r}, which is no task",
                )
                for part in unknown
            )
            for resolution in resolved:
                prerequisite = key_of[id(resolution.task)]
                edges.append(DependencyEdge(key, prerequisite, reason=reason))
                if (how := _LOOSE_RESOLUTIONS.get(resolution.by)) is not None:
                    warnings.append(
                        AnswerWarning(
                            WarningKind.REFERENCE,
                            f"dependency {resolution.written!r} read as {prerequisite.value} "
                            f"({how})",
                            (key.value,),
                        )
                    )
    return _Edges(tuple(edges), tuple(issues), tuple(warnings))


def validate_drafts(parsed: ParsedProposal, rules: DerivationRules) -> ProposalVerdict:
    checked = [
        _check_draft(draft, position, rules) for position, draft in enumerate(parsed.tasks, start=1)
    ]
    issues = [issue for item in checked for issue in item.issues]
    nodes = [item.node for item in checked]
    found = _edges(parsed.tasks, [node.key for node in nodes])
    warnings = [
        *parsed.notes,
        *(w for item in checked for w in item.warnings),
        *found.warnings,
    ]
    issues.extend(found.issues)
    edges = found.edges
    try:
        graph = TaskGraph.build(
            nodes,
            edges,
            allowed_roles=frozenset(rules.allowed_roles),
            task_count=rules.task_count,
        )
    except InvalidTaskGraph as invalid_graph:
        issues.extend(invalid_graph.issues)
    if issues:
        return InvalidProposal(issues=tuple(issues), notes=merged_warnings(warnings))
    uncovered = graph.uncovered_criteria(rules.criteria_count)
    if uncovered:
        warnings.append(
            AnswerWarning(
                WarningKind.COVERAGE,
                f"acceptance criteria not covered by any task: {list(uncovered)}",
            )
        )
    return ValidProposal(graph=graph, format=parsed.format, notes=merged_warnings(warnings))


def validate_proposal(text: str, rules: DerivationRules) -> ProposalVerdict:
    """The pipeline's one verdict on an LLM answer."""
    parsed = parse_proposal(text)
    if isinstance(parsed, UnparseableProposal):
        code = IssueCode.EMPTY if parsed.reason_code == "empty" else IssueCode.UNPARSEABLE
        return InvalidProposal(issues=(Issue(code, parsed.message),))
    return validate_drafts(parsed, rules)
