"""From an LLM answer to a valid task graph, or to every reason it is not one.

Parsing (`proposal`) reads what the model wrote; this module applies the derivation's rules:
roles resolved against the requested ones, dependencies resolved to tasks, fields turned into
value objects, and the graph checks of `task_graph`. All problems are reported together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from td_pipeline.domain.proposal import (
    ParsedProposal,
    ProposalFormat,
    TaskDraft,
    TaskReferences,
    UnparseableProposal,
    parse_proposal,
)
from td_pipeline.domain.roles import canonical_role
from td_pipeline.domain.task_graph import (
    DependencyEdge,
    InvalidTaskGraph,
    Issue,
    IssueCode,
    TaskCountRange,
    TaskGraph,
    TaskNode,
)
from td_pipeline.domain.values import Description, EstimatedHours, Priority, Role, TaskKey, Title


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


@dataclass(frozen=True, slots=True)
class ValidProposal:
    graph: TaskGraph
    format: ProposalFormat
    warnings: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class InvalidProposal:
    issues: tuple[Issue, ...]
    warnings: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.issues:
            raise ValueError("an invalid proposal names at least one issue")

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(sorted({issue.code.value for issue in self.issues}))


ProposalAssessment = ValidProposal | InvalidProposal


def match_role(answer_role: str, allowed: Sequence[Role]) -> Role | None:
    """The requested role an answer's role means: any spelling of it (`DEV`, `tester`, `QA
    engineer`, see `roles`), or an unambiguous prefix either way round (`DEVOPS_ENG`)."""
    canonical = canonical_role(answer_role)
    if canonical is not None:
        return canonical if canonical in allowed else None
    wanted = "_".join(answer_role.replace("-", " ").upper().split())
    if not wanted:
        return None
    prefixed = [
        role
        for role in allowed
        if role.value.startswith(wanted) or wanted.startswith(f"{role.value}_")
    ]
    return prefixed[0] if len(prefixed) == 1 else None


@dataclass(frozen=True, slots=True)
class _CheckedDraft:
    node: TaskNode
    issues: tuple[Issue, ...]
    warnings: tuple[str, ...]


def _label(draft: TaskDraft) -> str:
    return f'{draft.key} "{draft.title}"' if draft.title else draft.key


def _check_draft(draft: TaskDraft, position: int, rules: DerivationRules) -> _CheckedDraft:
    """A node for the graph checks, with every field problem as an issue. Where a field is
    unusable a neutral stand-in keeps the rest of the graph checkable; a proposal with any
    issue is rejected, so stand-ins never leave this module."""
    issues: list[Issue] = []
    warnings: list[str] = []

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
        warnings.append(f"task {_label(draft)} has no role; assigned {default_role.value}")
    elif (matched := match_role(draft.role, rules.allowed_roles)) is not None:
        role = matched
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


def _edges(drafts: Sequence[TaskDraft]) -> tuple[list[DependencyEdge], list[Issue]]:
    edges: list[DependencyEdge] = []
    issues: list[Issue] = []
    references = TaskReferences(drafts)
    for draft in drafts:
        for reference in draft.depends_on:
            prerequisite = references.resolve(reference)
            if prerequisite is None:
                issues.append(
                    Issue(
                        IssueCode.UNKNOWN_DEPENDENCY,
                        f"task {_label(draft)} depends on {reference!r}, which is no task",
                    )
                )
                continue
            reason = "inferred from keywords" if draft.dependencies_inferred else "depends_on"
            edges.append(
                DependencyEdge(
                    dependent=TaskKey(draft.key),
                    prerequisite=TaskKey(prerequisite.key),
                    reason=reason,
                )
            )
    return edges, issues


def assess_drafts(parsed: ParsedProposal, rules: DerivationRules) -> ProposalAssessment:
    checked = [
        _check_draft(draft, position, rules) for position, draft in enumerate(parsed.tasks, start=1)
    ]
    issues = [issue for item in checked for issue in item.issues]
    warnings = [*parsed.warnings, *(w for item in checked for w in item.warnings)]
    edges, edge_issues = _edges(parsed.tasks)
    issues.extend(edge_issues)
    nodes = [item.node for item in checked]
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
        return InvalidProposal(issues=tuple(issues), warnings=tuple(warnings))
    uncovered = graph.uncovered_criteria(rules.criteria_count)
    if uncovered:
        warnings.append(f"acceptance criteria not covered by any task: {list(uncovered)}")
    return ValidProposal(graph=graph, format=parsed.format, warnings=tuple(warnings))


def assess_proposal(text: str, rules: DerivationRules) -> ProposalAssessment:
    """The pipeline's one verdict on an LLM answer."""
    parsed = parse_proposal(text)
    if isinstance(parsed, UnparseableProposal):
        code = IssueCode.EMPTY if parsed.reason_code == "empty" else IssueCode.UNPARSEABLE
        return InvalidProposal(issues=(Issue(code, parsed.message),), warnings=())
    return assess_drafts(parsed, rules)
