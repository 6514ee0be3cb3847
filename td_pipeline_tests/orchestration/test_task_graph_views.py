from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from td_pipeline.domain.task_graph import TaskCountRange, TaskGraph
from td_pipeline.domain.validation import DerivationRules, ValidProposal, validate_proposal
from td_pipeline.domain.values import Role
from td_pipeline.orchestration.task_graph_views import (
    graph_picture_markdown,
    task_graph_svg,
    task_table_markdown,
)
from td_pipeline_tests.domain.test_task_graph import QA, build, edge, node

SVG = "{http://www.w3.org/2000/svg}"
CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "answers"


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


def test_the_table_shows_each_tasks_warnings_in_its_row() -> None:
    warnings = {
        "B": ["estimate '2-3 hours' read as 3", "priority 'high' read as 2"],
        "D": ["a | b <c>"],
    }
    lines = task_table_markdown(diamond(), warnings).splitlines()
    rows = {row[1]: row for row in (cells(line) for line in lines[2:] if line.startswith("|"))}

    assert cells(lines[0])[-1] == "warnings"
    assert all(len(row) == len(cells(lines[0])) == 8 for row in rows.values())
    assert rows["B"][7] == "⚠ estimate '2-3 hours' read as 3; priority 'high' read as 2"
    assert rows["D"][7] == "⚠ a \\| b &lt;c>"  # escaped: the row keeps its columns
    assert rows["A"][7] == rows["C"][7] == "—"  # no warnings: the empty marker


def test_the_table_shows_the_warnings_of_a_loosely_read_answer() -> None:
    """As the persist asset calls it: `ValidProposal.task_warnings()` of a corpus answer."""
    rules = DerivationRules(
        allowed_roles=(Role("DEVELOPER"), Role("QA")),
        criteria_count=0,
        task_count=TaskCountRange(minimum=1, maximum=30),
    )
    verdict = validate_proposal((CORPUS / "66-hours-loose.txt").read_text(), rules)
    assert isinstance(verdict, ValidProposal), verdict

    lines = task_table_markdown(verdict.graph, verdict.task_warnings()).splitlines()
    warning_of = {
        row[1]: row[7] for row in (cells(line) for line in lines[2:] if line.startswith("|"))
    }

    assert warning_of == {
        "T1": "—",
        "T2": "⚠ estimate '2-3 hours' read as 3 (the upper bound of a range)",
        "T3": "⚠ estimate 'half a day' read as 4 (a day counted as 8 hours)",
        "T4": "⚠ estimate '1 day' read as 8 (a day counted as 8 hours)",
        "T5": "⚠ estimate '90 minutes' read as 2 (minutes, a fraction rounded up)",
    }


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
