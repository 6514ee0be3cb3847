"""How a story's task graph looks in the Dagster UI: a markdown table of the tasks and a
picture of the dependency graph (an SVG embedded in markdown metadata as a data URI, which the
UI renders inline; no graphviz or plotting library needed)."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

from td_pipeline.domain.task_graph import TaskGraph, TaskNode
from td_pipeline.domain.values import TaskKey

NODE_WIDTH, NODE_HEIGHT = 230, 54
COLUMN_GAP, ROW_GAP, MARGIN = 70, 18, 20
TITLE_CHARACTERS = 27
CRITICAL, PLAIN, FILL, CRITICAL_FILL = "#d9480f", "#495057", "#f8f9fa", "#fff4e6"
MAX_DRAWN_TASKS = 200  # beyond this a picture is unreadable and heavy in the UI's metadata


def _cell(text: str) -> str:
    # Neither a pipe nor a line break may end a cell early, nor a `<` start raw HTML.
    flat = " ".join(text.split())
    return flat.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;")


def _hours(node: TaskNode) -> str:
    return str(node.estimated_hours.value) if node.estimated_hours else "?"


def _warnings_cell(texts: Sequence[str]) -> str:
    return "⚠ " + _cell("; ".join(texts)) if texts else "—"


def task_table_markdown(
    graph: TaskGraph, warnings: Mapping[str, Sequence[str]] | None = None
) -> str:
    """The tasks in the order they can be done; ★ marks the critical path. With `warnings`
    (each task's answer warnings by task key, `ValidProposal.task_warnings()`), a last column
    shows what was guessed or left out for each task."""
    critical = graph.critical_path()
    on_path = set(critical.keys)
    extra_header, extra_rule = (" warnings |", "---|") if warnings is not None else ("", "")
    rows = [
        f"| | key | title | role | hours | priority | depends on |{extra_header}",
        f"|---|---|---|---|---|---|---|{extra_rule}",
    ]
    for key in graph.topological_order():
        node = graph.node(key)
        depends = ", ".join(p.value for p in graph.prerequisites_of(key)) or "—"
        extra = f" {_warnings_cell(warnings.get(key.value, ()))} |" if warnings is not None else ""
        rows.append(
            f"| {'★' if key in on_path else ''} | {_cell(key.value)} | {_cell(node.title.value)} "
            f"| {node.role.value} | {_hours(node)} "
            f"| {node.priority.value if node.priority else '—'} | {_cell(depends)} |{extra}"
        )
    path = " → ".join(k.value for k in critical.keys) or "—"
    rows.append("")
    rows.append(f"Critical path: {_cell(path)} ({critical.hours} h) · {len(graph.waves())} waves")
    return "\n".join(rows)


@dataclass(frozen=True, slots=True)
class _Box:
    x: int
    y: int


def _layout(graph: TaskGraph) -> tuple[dict[TaskKey, _Box], int, int]:
    """A column per wave (left to right), the wave's tasks top to bottom."""
    boxes: dict[TaskKey, _Box] = {}
    waves = graph.waves()
    for column, wave in enumerate(waves):
        for row, key in enumerate(wave):
            boxes[key] = _Box(
                MARGIN + column * (NODE_WIDTH + COLUMN_GAP), MARGIN + row * (NODE_HEIGHT + ROW_GAP)
            )
    tallest = max((len(wave) for wave in waves), default=0)
    width = 2 * MARGIN + len(waves) * NODE_WIDTH + max(len(waves) - 1, 0) * COLUMN_GAP
    height = 2 * MARGIN + tallest * NODE_HEIGHT + max(tallest - 1, 0) * ROW_GAP
    return boxes, width, height


def _short(text: str) -> str:
    return text if len(text) <= TITLE_CHARACTERS else text[: TITLE_CHARACTERS - 1] + "…"


def task_graph_svg(graph: TaskGraph) -> str:
    """The dependency graph: prerequisites to the left, arrows towards the tasks that wait
    for them, the critical path in orange."""
    boxes, width, height = _layout(graph)
    path = graph.critical_path().keys
    critical_nodes = set(path)
    critical_edges = set(itertools.pairwise(path))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        "<defs>",
        *(
            f'<marker id="arrow-{name}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
            f'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{colour}"/>'
            "</marker>"
            for name, colour in (("plain", PLAIN), ("critical", CRITICAL))
        ),
        "</defs>",
    ]
    for edge in graph.edges:
        start, end = boxes[edge.prerequisite], boxes[edge.dependent]
        x1, y1 = start.x + NODE_WIDTH, start.y + NODE_HEIGHT // 2
        x2, y2 = end.x, end.y + NODE_HEIGHT // 2
        bend = (x2 - x1) // 2
        kind = "critical" if (edge.prerequisite, edge.dependent) in critical_edges else "plain"
        colour, stroke = (CRITICAL, 2) if kind == "critical" else (PLAIN, 1)
        parts.append(
            f'<path class="edge {kind}" d="M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} '
            f'{x2},{y2}" fill="none" stroke="{colour}" stroke-width="{stroke}" '
            f'marker-end="url(#arrow-{kind})"/>'
        )
    for node in graph.nodes:
        box = boxes[node.key]
        critical = node.key in critical_nodes
        parts.append(
            f'<g class="task{" critical" if critical else ""}">'
            f'<rect class="task-box" x="{box.x}" y="{box.y}" width="{NODE_WIDTH}" '
            f'height="{NODE_HEIGHT}" rx="8" fill="{CRITICAL_FILL if critical else FILL}" '
            f'stroke="{CRITICAL if critical else PLAIN}" stroke-width="{2 if critical else 1}"/>'
            f'<text x="{box.x + 10}" y="{box.y + 21}" font-weight="bold">'
            f"{escape(node.key.value)} · {escape(_short(node.title.value))}</text>"
            f'<text x="{box.x + 10}" y="{box.y + 41}" fill="#495057">'
            f"{escape(node.role.value)} · {_hours(node)} h</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def graph_picture_markdown(graph: TaskGraph) -> str:
    if len(graph.nodes) > MAX_DRAWN_TASKS:
        return f"{len(graph.nodes)} tasks: too many to draw; see the task table."
    encoded = base64.b64encode(task_graph_svg(graph).encode()).decode()
    return f"![task graph](data:image/svg+xml;base64,{encoded})"
