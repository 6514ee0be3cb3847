"""Properties of the graph over random answers: DAGs validate, back edges are cycles."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from td_pipeline.domain.task_graph import (
    DependencyEdge,
    IssueCode,
    TaskCountRange,
    TaskGraph,
    TaskNode,
    find_issues,
)
from td_pipeline.domain.values import Description, EstimatedHours, Priority, Role, TaskKey, Title

ROLE = Role("DEVELOPER")
LIMITS = TaskCountRange(1, 60)


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[TaskNode], list[DependencyEdge]]:
    size = draw(st.integers(1, 25))
    nodes = [
        TaskNode(
            key=TaskKey(f"T{i}"),
            title=Title(f"Task number {i}"),
            description=Description(""),
            role=ROLE,
            estimated_hours=EstimatedHours(draw(st.integers(1, 40))),
            priority=Priority(draw(st.integers(1, 5))),
            covers=(),
        )
        for i in range(size)
    ]
    pairs = draw(
        st.sets(st.tuples(st.integers(0, size - 1), st.integers(0, size - 1)), max_size=60)
    )
    # Only later tasks depend on earlier ones: acyclic by construction.
    edges = [
        DependencyEdge(TaskKey(f"T{max(a, b)}"), TaskKey(f"T{min(a, b)}"))
        for a, b in sorted(pairs)
        if a != b
    ]
    return nodes, edges


def build(nodes: list[TaskNode], edges: list[DependencyEdge]) -> TaskGraph:
    return TaskGraph.build(nodes, edges, allowed_roles=frozenset({ROLE}), task_count=LIMITS)


@settings(max_examples=60, deadline=None)
@given(dags())
def test_random_dags_validate_and_order_respects_every_edge(
    dag: tuple[list[TaskNode], list[DependencyEdge]],
) -> None:
    graph = build(*dag)

    position = {key: i for i, key in enumerate(graph.topological_order())}
    wave_of = {key: i for i, wave in enumerate(graph.waves()) for key in wave}
    assert sorted(position, key=str) == sorted((n.key for n in graph.nodes), key=str)
    for edge in graph.edges:
        assert position[edge.prerequisite] < position[edge.dependent]
        assert wave_of[edge.prerequisite] < wave_of[edge.dependent]
    critical = graph.critical_path()
    assert all(
        critical.hours >= (n.estimated_hours.value if n.estimated_hours else 0) for n in graph.nodes
    )
    assert critical.hours == sum(
        graph.node(k).estimated_hours.value
        for k in critical.keys  # type: ignore[union-attr]
    )


@settings(max_examples=60, deadline=None)
@given(dags(), st.data())
def test_any_back_edge_along_a_path_is_a_cycle(
    dag: tuple[list[TaskNode], list[DependencyEdge]], data: st.DataObject
) -> None:
    nodes, edges = dag
    if not edges:
        return
    graph = build(nodes, edges)
    order = graph.topological_order()
    # Pick an edge and close a path through it: its prerequisite now waits for its dependent.
    closing = data.draw(st.sampled_from(graph.edges))
    back = DependencyEdge(closing.prerequisite, closing.dependent)
    issues = find_issues(nodes, [*edges, back], allowed_roles=frozenset({ROLE}), task_count=LIMITS)
    assert IssueCode.CYCLE in {issue.code for issue in issues}
    assert order  # the DAG itself had an order
