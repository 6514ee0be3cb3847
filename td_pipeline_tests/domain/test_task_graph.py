from __future__ import annotations

from collections.abc import Sequence

import pytest

from td_pipeline.domain.task_graph import (
    CriticalPath,
    DependencyEdge,
    InvalidTaskGraph,
    IssueCode,
    TaskCountRange,
    TaskGraph,
    TaskNode,
    find_issues,
)
from td_pipeline.domain.values import Description, EstimatedHours, Priority, Role, TaskKey, Title

DEV, QA = Role("DEVELOPER"), Role("QA")
ROLES = frozenset({DEV, QA})


def node(
    key: str,
    title: str = "",
    hours: int | None = 1,
    role: Role = DEV,
    covers: Sequence[int] = (),
) -> TaskNode:
    return TaskNode(
        key=TaskKey(key),
        title=Title(title or f"Task {key}"),
        description=Description(""),
        role=role,
        estimated_hours=EstimatedHours(hours) if hours else None,
        priority=Priority(2),
        covers=tuple(covers),
    )


def edge(dependent: str, prerequisite: str) -> DependencyEdge:
    return DependencyEdge(TaskKey(dependent), TaskKey(prerequisite), "needs it")


def keys(*values: str) -> tuple[TaskKey, ...]:
    return tuple(TaskKey(v) for v in values)


def build(nodes: list[TaskNode], edges: list[DependencyEdge], **limits: int) -> TaskGraph:
    return TaskGraph.build(nodes, edges, allowed_roles=ROLES, task_count=TaskCountRange(**limits))


def codes_of(nodes: list[TaskNode], edges: list[DependencyEdge], **limits: int) -> list[str]:
    issues = find_issues(nodes, edges, allowed_roles=ROLES, task_count=TaskCountRange(**limits))
    return [issue.code.value for issue in issues]


@pytest.fixture
def diamond() -> TaskGraph:
    # A <- B, A <- C, B and C <- D, plus the redundant D -> A.
    return build(
        [
            node("A", hours=2, covers=[1]),
            node("B", hours=5),
            node("C", hours=3, role=QA),
            node("D", hours=1, covers=[3]),
        ],
        [edge("B", "A"), edge("C", "A"), edge("D", "B"), edge("D", "C"), edge("D", "A")],
    )


def test_analysis_of_a_diamond(diamond: TaskGraph) -> None:
    assert diamond.topological_order() == keys("A", "B", "C", "D")
    assert diamond.waves() == (keys("A"), keys("B", "C"), keys("D"))
    assert diamond.critical_path() == CriticalPath(keys("A", "B", "D"), 8)
    assert diamond.redundant_edges() == (edge("D", "A"),)
    assert diamond.uncovered_criteria(4) == (2, 4)
    assert diamond.prerequisites_of(TaskKey("D")) == keys("A", "B", "C")


def test_ties_keep_the_answers_order() -> None:
    graph = build([node("Z"), node("Y"), node("X", hours=None)], [])
    assert graph.topological_order() == keys("Z", "Y", "X")
    assert graph.waves() == (keys("Z", "Y", "X"),)
    assert graph.critical_path() == CriticalPath(keys("Z"), 1)


def test_duplicate_edges_are_merged() -> None:
    graph = build([node("A"), node("B")], [edge("B", "A"), edge("B", "A")])
    assert graph.edges == (edge("B", "A"),)


@pytest.mark.parametrize(
    ("nodes", "edges", "limits", "expected"),
    [
        ([], [], {}, ["empty"]),
        ([node("A")], [], {"minimum": 2, "maximum": 5}, ["too_few_tasks"]),
        ([node("A"), node("B"), node("C")], [], {"maximum": 2}, ["too_many_tasks"]),
        ([node("A"), node("A", "Other")], [], {}, ["duplicate_key"]),
        ([node("A", "Ship it"), node("B", " ship  IT")], [], {}, ["duplicate_title"]),
        ([node("A", role=Role("DESIGNER"))], [], {}, ["role_not_allowed"]),
        ([node("A")], [edge("A", "A")], {}, ["self_dependency"]),
        ([node("A")], [edge("A", "Q")], {}, ["unknown_dependency"]),
        ([node("A"), node("B")], [edge("A", "B"), edge("B", "A")], {}, ["cycle"]),
    ],
)
def test_each_problem_has_its_code(
    nodes: list[TaskNode], edges: list[DependencyEdge], limits: dict[str, int], expected: list[str]
) -> None:
    assert codes_of(nodes, edges, **limits) == expected
    with pytest.raises(InvalidTaskGraph) as raised:
        build(nodes, edges, **limits)
    assert [issue.code.value for issue in raised.value.issues] == expected


def test_every_cycle_is_reported_with_its_path() -> None:
    nodes = [node("A", "Api"), node("B", "Backend"), node("C", "Cli"), node("D", "Docs")]
    edges = [edge("A", "B"), edge("B", "A"), edge("C", "D"), edge("D", "C")]

    issues = find_issues(nodes, edges, allowed_roles=ROLES, task_count=TaskCountRange())

    assert [issue.code for issue in issues] == [IssueCode.CYCLE, IssueCode.CYCLE]
    assert issues[0].message == 'dependency cycle: A "Api" -> B "Backend" -> A "Api"'
    assert issues[1].message == 'dependency cycle: C "Cli" -> D "Docs" -> C "Cli"'


def test_cycle_path_follows_dependency_direction() -> None:
    nodes = [node("A"), node("B"), node("C")]
    # A needs B, B needs C, C needs A.
    edges = [edge("A", "B"), edge("B", "C"), edge("C", "A")]
    (issue,) = find_issues(nodes, edges, allowed_roles=ROLES, task_count=TaskCountRange())
    assert issue.message == (
        'dependency cycle: A "Task A" -> B "Task B" -> C "Task C" -> A "Task A"'
    )


def test_all_problems_are_reported_together() -> None:
    nodes = [node("A", "Same"), node("B", "same", role=Role("OPS")), node("C")]
    edges = [edge("C", "C"), edge("A", "Z"), edge("A", "B"), edge("B", "A")]
    assert sorted(codes_of(nodes, edges)) == sorted(
        ["duplicate_title", "role_not_allowed", "self_dependency", "unknown_dependency", "cycle"]
    )


@pytest.mark.parametrize(("minimum", "maximum"), [(0, 3), (4, 3)])
def test_task_count_range_is_checked(minimum: int, maximum: int) -> None:
    with pytest.raises(ValueError, match="minimum"):
        TaskCountRange(minimum, maximum)


def test_covers_must_be_positive_and_unique() -> None:
    with pytest.raises(ValueError, match="start at 1"):
        node("A", covers=[0])
    with pytest.raises(ValueError, match="twice"):
        node("A", covers=[1, 1])
