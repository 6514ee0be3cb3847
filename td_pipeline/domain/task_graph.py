"""The task dependency graph: validation that names every problem, and its analysis.

Internally a networkx DiGraph with edges prerequisite -> dependent, so that a topological
order lists prerequisites first and a longest path is the critical path.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import networkx as nx

from td_pipeline.domain.values import Description, EstimatedHours, Priority, Role, TaskKey, Title

MAX_REPORTED_CYCLES = 20


class IssueCode(StrEnum):
    EMPTY = "empty"
    UNPARSEABLE = "unparseable"
    INVALID_FIELD = "invalid_field"
    UNKNOWN_DEPENDENCY = "unknown_dependency"
    SELF_DEPENDENCY = "self_dependency"
    DUPLICATE_TITLE = "duplicate_title"
    DUPLICATE_KEY = "duplicate_key"
    CYCLE = "cycle"
    ROLE_NOT_ALLOWED = "role_not_allowed"
    TOO_FEW_TASKS = "too_few_tasks"
    TOO_MANY_TASKS = "too_many_tasks"


@dataclass(frozen=True, slots=True)
class Issue:
    code: IssueCode
    message: str


@dataclass(frozen=True, slots=True)
class TaskNode:
    key: TaskKey
    title: Title
    description: Description
    role: Role
    estimated_hours: EstimatedHours | None
    priority: Priority | None
    covers: tuple[int, ...]  # acceptance-criterion numbers, from 1

    def __post_init__(self) -> None:
        if any(number < 1 for number in self.covers):
            raise ValueError(f"task {self.key.value}: criterion numbers start at 1")
        if len(set(self.covers)) != len(self.covers):
            raise ValueError(f"task {self.key.value}: a criterion is listed twice")

    @property
    def label(self) -> str:
        return f'{self.key.value} "{self.title.value}"'


@dataclass(frozen=True, slots=True)
class DependencyEdge:
    """`dependent` waits for `prerequisite` (the wire's from_task_id / to_task_id).

    Self-edges are representable on purpose: validation reports them as self_dependency."""

    dependent: TaskKey
    prerequisite: TaskKey
    reason: str = ""


@dataclass(frozen=True, slots=True)
class TaskCountRange:
    minimum: int = 1
    maximum: int = 30

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.maximum:
            raise ValueError(
                f"task count range {self.minimum}..{self.maximum} needs 1 <= minimum <= maximum"
            )


@dataclass(frozen=True, slots=True)
class CriticalPath:
    keys: tuple[TaskKey, ...]
    hours: int


class InvalidTaskGraph(ValueError):
    def __init__(self, issues: Sequence[Issue]) -> None:
        self.issues = tuple(issues)
        super().__init__("; ".join(f"[{issue.code}] {issue.message}" for issue in self.issues))


def _count_issues(count: int, task_count: TaskCountRange) -> list[Issue]:
    if count == 0:
        return [Issue(IssueCode.EMPTY, "the answer contains no task")]
    if count < task_count.minimum:
        return [
            Issue(
                IssueCode.TOO_FEW_TASKS,
                f"{count} task(s), fewer than the minimum of {task_count.minimum}",
            )
        ]
    if count > task_count.maximum:
        return [
            Issue(
                IssueCode.TOO_MANY_TASKS,
                f"{count} tasks, more than the maximum of {task_count.maximum}",
            )
        ]
    return []


def _duplicates(nodes: Sequence[TaskNode]) -> list[Issue]:
    issues = []
    by_key: dict[TaskKey, list[TaskNode]] = {}
    by_title: dict[str, list[TaskNode]] = {}
    for node in nodes:
        by_key.setdefault(node.key, []).append(node)
        by_title.setdefault(node.title.normalized, []).append(node)
    for key, same_key in by_key.items():
        if len(same_key) > 1:
            titles = ", ".join(f'"{n.title.value}"' for n in same_key)
            issues.append(
                Issue(
                    IssueCode.DUPLICATE_KEY, f"{len(same_key)} tasks share id {key.value}: {titles}"
                )
            )
    for same_title in by_title.values():
        if len(same_title) > 1:
            labels = ", ".join(n.label for n in same_title)
            issues.append(Issue(IssueCode.DUPLICATE_TITLE, f"tasks with the same title: {labels}"))
    return issues


def _dependency_issues(nodes: Sequence[TaskNode], edges: Sequence[DependencyEdge]) -> list[Issue]:
    labels = {node.key: node.label for node in nodes}
    issues = []
    for edge in edges:
        dependent = labels.get(edge.dependent, edge.dependent.value)
        if edge.dependent == edge.prerequisite:
            issues.append(Issue(IssueCode.SELF_DEPENDENCY, f"task {dependent} depends on itself"))
        for end in (edge.dependent, edge.prerequisite):
            if end not in labels:
                issues.append(
                    Issue(
                        IssueCode.UNKNOWN_DEPENDENCY,
                        f"dependency {dependent} -> {edge.prerequisite.value} names "
                        f"{end.value}, which is no task",
                    )
                )
    return issues


def _cycle_issues(nodes: Sequence[TaskNode], edges: Sequence[DependencyEdge]) -> list[Issue]:
    known = {node.key: node for node in nodes}
    graph = nx.DiGraph()
    graph.add_edges_from(
        (edge.prerequisite, edge.dependent)
        for edge in edges
        if edge.dependent != edge.prerequisite
        and {edge.dependent, edge.prerequisite} <= known.keys()
    )
    order = {node.key: index for index, node in enumerate(nodes)}
    cycles = []
    for cycle in itertools.islice(nx.simple_cycles(graph), MAX_REPORTED_CYCLES + 1):
        # Start each cycle at its earliest task so the report is deterministic; the path is
        # written in dependency direction: each task depends on the next.
        start = min(range(len(cycle)), key=lambda i: order[cycle[i]])
        rotated = cycle[start:] + cycle[:start]
        path = [rotated[0], *reversed(rotated[1:]), rotated[0]]
        cycles.append(" -> ".join(known[key].label for key in path))
    issues = [
        Issue(IssueCode.CYCLE, f"dependency cycle: {path}")
        for path in sorted(cycles[:MAX_REPORTED_CYCLES])
    ]
    if len(cycles) > MAX_REPORTED_CYCLES:
        issues.append(Issue(IssueCode.CYCLE, f"more than {MAX_REPORTED_CYCLES} cycles"))
    return issues


def find_issues(
    nodes: Sequence[TaskNode],
    edges: Sequence[DependencyEdge],
    *,
    allowed_roles: frozenset[Role],
    task_count: TaskCountRange,
) -> tuple[Issue, ...]:
    """Every problem of the graph, not just the first, in a stable order."""
    role_issues = [
        Issue(
            IssueCode.ROLE_NOT_ALLOWED,
            f"task {node.label} has role {node.role.value}, not one of "
            f"{', '.join(sorted(role.value for role in allowed_roles))}",
        )
        for node in nodes
        if node.role not in allowed_roles
    ]
    return (
        *_count_issues(len(nodes), task_count),
        *_duplicates(nodes),
        *role_issues,
        *_dependency_issues(nodes, edges),
        *_cycle_issues(nodes, edges),
    )


def _hours(node: TaskNode) -> int:
    return node.estimated_hours.value if node.estimated_hours else 0


class TaskGraph:
    """A valid task graph; build it with `TaskGraph.build`, which rejects anything invalid."""

    def __init__(self, nodes: Sequence[TaskNode], edges: Sequence[DependencyEdge]) -> None:
        self._nodes = tuple(nodes)
        self._by_key = {node.key: node for node in self._nodes}
        self._position = {node.key: index for index, node in enumerate(self._nodes)}
        self._edges = tuple(edges)
        self._graph: Any = nx.DiGraph()
        self._graph.add_nodes_from(self._by_key)
        self._graph.add_edges_from((e.prerequisite, e.dependent) for e in self._edges)

    @classmethod
    def build(
        cls,
        nodes: Sequence[TaskNode],
        edges: Iterable[DependencyEdge],
        *,
        allowed_roles: frozenset[Role],
        task_count: TaskCountRange,
    ) -> TaskGraph:
        unique: dict[tuple[TaskKey, TaskKey], DependencyEdge] = {}
        for edge in edges:
            unique.setdefault((edge.dependent, edge.prerequisite), edge)
        merged = list(unique.values())
        issues = find_issues(nodes, merged, allowed_roles=allowed_roles, task_count=task_count)
        if issues:
            raise InvalidTaskGraph(issues)
        return cls(nodes, merged)

    @property
    def nodes(self) -> tuple[TaskNode, ...]:
        return self._nodes

    @property
    def edges(self) -> tuple[DependencyEdge, ...]:
        return self._edges

    def node(self, key: TaskKey) -> TaskNode:
        return self._by_key[key]

    def prerequisites_of(self, key: TaskKey) -> tuple[TaskKey, ...]:
        return tuple(sorted(self._graph.predecessors(key), key=self._position.__getitem__))

    def topological_order(self) -> tuple[TaskKey, ...]:
        """Prerequisites first; among tasks free to go, the answer's order."""
        return tuple(
            nx.lexicographical_topological_sort(self._graph, key=self._position.__getitem__)
        )

    def waves(self) -> tuple[tuple[TaskKey, ...], ...]:
        """Tasks that can run in parallel: wave n waits only for waves before it."""
        wave_of: dict[TaskKey, int] = {}
        for key in self.topological_order():
            wave_of[key] = max((wave_of[p] + 1 for p in self._graph.predecessors(key)), default=0)
        waves: list[list[TaskKey]] = [[] for _ in range(max(wave_of.values(), default=-1) + 1)]
        for node in self._nodes:
            waves[wave_of[node.key]].append(node.key)
        return tuple(tuple(wave) for wave in waves)

    def critical_path(self) -> CriticalPath:
        """The chain of dependent tasks with the most hours (unestimated tasks count 0)."""
        best: dict[TaskKey, tuple[int, tuple[TaskKey, ...]]] = {}
        for key in self.topological_order():
            before = max(
                (best[p] for p in self.prerequisites_of(key)),
                key=lambda item: item[0],
                default=(0, ()),
            )
            best[key] = (before[0] + _hours(self._by_key[key]), (*before[1], key))
        if not best:
            return CriticalPath(keys=(), hours=0)
        # max() keeps the first of equals; iterate in answer order for a stable tie-break.
        hours, keys = max((best[node.key] for node in self._nodes), key=lambda item: item[0])
        return CriticalPath(keys=keys, hours=hours)

    def redundant_edges(self) -> tuple[DependencyEdge, ...]:
        """Edges implied by others (a transitive reduction removes them)."""
        kept = set(nx.transitive_reduction(self._graph).edges())
        return tuple(e for e in self._edges if (e.prerequisite, e.dependent) not in kept)

    def uncovered_criteria(self, criteria_count: int) -> tuple[int, ...]:
        covered = {number for node in self._nodes for number in node.covers}
        return tuple(n for n in range(1, criteria_count + 1) if n not in covered)
