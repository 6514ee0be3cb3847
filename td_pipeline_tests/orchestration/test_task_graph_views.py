from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET

from td_pipeline.domain.task_graph import TaskGraph
from td_pipeline.orchestration.task_graph_views import (
    graph_picture_markdown,
    task_graph_svg,
    task_table_markdown,
)
from td_pipeline_tests.domain.test_task_graph import QA, build, edge, node

SVG = "{http://www.w3.org/2000/svg}"


def diamond() -> TaskGraph:
    # A (2h) -> B (5h) -> D (1h); A -> C (1h) -> D: the critical path is A, B, D (8 h).
    return build(
        [
            node("A", "Design | <schema> & v2", hours=2),
            node("B", "Build the API", hours=5),
            node("C", "Write fixtures", hours=1, role=QA),
            node("D", "Test end to end", hours=1, role=QA),
        ],
        [edge("B", "A"), edge("C", "A"), edge("D", "B"), edge("D", "C")],
    )


def cells(row: str) -> list[str]:
    """A markdown row's cells (an escaped pipe stays inside its cell)."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]]


def test_the_table_lists_tasks_in_order_with_what_they_wait_for() -> None:
    lines = task_table_markdown(diamond()).splitlines()
    rows = [cells(line) for line in lines[2:] if line.startswith("|")]

    assert all(len(row) == len(cells(lines[0])) == 7 for row in rows)  # no cell broke out
    assert [row[1] for row in rows] == ["A", "B", "C", "D"]
    assert rows[0][2] == "Design \\| &lt;schema> & v2"
    assert [row[6] for row in rows] == ["—", "A", "A", "B, C"]
    assert [row[0] for row in rows] == ["★", "★", "", "★"]
    assert lines[-1] == "Critical path: A → B → D (8 h) · 3 waves"


def test_the_picture_has_a_box_per_task_an_arrow_per_edge_and_the_critical_path_marked() -> None:
    svg = ET.fromstring(task_graph_svg(diamond()))

    boxes = svg.findall(f".//{SVG}rect[@class='task-box']")
    edges = svg.findall(f".//{SVG}path[@class]")
    x_of = {key_of(group): float(group.find(f"{SVG}rect").get("x", "")) for group in tasks(svg)}  # type: ignore[union-attr]
    critical = sorted(key_of(g) for g in tasks(svg) if g.get("class") == "task critical")

    assert len(boxes) == 4 and len(edges) == 4
    assert critical == ["A", "B", "D"]
    assert len([e for e in edges if e.get("class") == "edge critical"]) == 2
    assert x_of["A"] < x_of["B"] == x_of["C"] < x_of["D"]  # waves run left to right


def tasks(svg: ET.Element) -> list[ET.Element]:
    return svg.findall(f".//{SVG}g")


def key_of(group: ET.Element) -> str:
    return "".join(group.itertext()).split(" ")[0]


def test_the_markdown_embeds_the_picture_as_a_data_uri() -> None:
    markdown = graph_picture_markdown(diamond())
    prefix = "![task graph](data:image/svg+xml;base64,"

    assert markdown.startswith(prefix) and markdown.endswith(")")
    assert base64.b64decode(markdown[len(prefix) : -1]).decode() == task_graph_svg(diamond())


def test_a_huge_graph_is_described_not_drawn() -> None:
    nodes = [node(f"T{i}") for i in range(2_000)]
    chain = [edge(f"T{i}", f"T{i - 1}") for i in range(1, 2_000)]
    graph = build(nodes, chain, maximum=2_000)

    assert "too many to draw" in graph_picture_markdown(graph)
    ET.fromstring(task_graph_svg(graph))  # still a valid picture when asked for directly
