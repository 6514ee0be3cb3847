"""How parse + validate + analyse cost grows with the size of an LLM answer.

Run with `make bench`. Prints, for answers of 20, 200 and 2,000 tasks, the best of several
runs for each phase and each size's total as a ratio of the 20-task total, all taken in one
run (these machines are noisy; compare ratios, not absolute figures across runs).

Then the same 2,000-task plan in each shape the answer reader accepts besides strict JSON
(JSON5-ish with comments, trailing commas and single quotes; a markdown table; a numbered list
with "(depends on N)" phrases), each total against the 1 s budget of issue 11.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from td_pipeline.domain import answer_json
from td_pipeline.domain.proposal import ParsedProposal, parse_proposal
from td_pipeline.domain.task_graph import TaskCountRange, TaskGraph
from td_pipeline.domain.validation import DerivationRules, ValidProposal, validate_drafts
from td_pipeline.domain.values import Role

SIZES = (20, 200, 2_000)
SHAPE_SIZE = 2_000
BUDGET_S = 1.0  # issue 11: "The parse benchmark stays within 1 s for 2,000 tasks"
CRITERIA = 5
PRIORITY_WORDS = {1: "Critical", 2: "High", 3: "Medium", 4: "Low", 5: "Low"}


def synthetic_tasks(task_count: int, seed: int = 7) -> list[dict[str, object]]:
    """A model's plan, each task depending on up to 3 earlier ones."""
    rng = random.Random(seed)
    tasks: list[dict[str, object]] = []
    for index in range(1, task_count + 1):
        earlier = range(1, index)
        depends_on = [f"T{k}" for k in rng.sample(earlier, min(len(earlier), rng.randint(0, 3)))]
        tasks.append(
            {
                "id": f"T{index}",
                "title": f"Task {index}: implement part {index} of the feature",
                "description": "Build, test and document this part. " * 3,
                "role": "DEVELOPER" if index % 3 else "QA",
                "estimated_hours": rng.randint(1, 16),
                "priority": rng.randint(1, 5),
                "depends_on": depends_on,
                "covers": [1 + index % CRITERIA],
            }
        )
    return tasks


def synthetic_answer(task_count: int, seed: int = 7) -> str:
    """A strict JSON answer, fenced, with a line of prose before it."""
    tasks = synthetic_tasks(task_count, seed)
    return "Here is the plan:\n```json\n" + json.dumps({"tasks": tasks}, indent=2) + "\n```\n"


def _single_quoted(value: object) -> str:
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ", ".join(_single_quoted(item) for item in value) + (",]" if value else "]")
    return json.dumps(value)


def json5_answer(task_count: int, seed: int = 7, compact: bool = False) -> str:
    """JSON5-ish: `//` and `/* */` comments, trailing commas, single-quoted keys and strings.
    `compact`: no description or covers and short titles, to stay under the reader's
    `LENIENT_LIMIT` (past it, only strict JSON is read)."""
    lines = ["```json", "{", "  // tasks in the order they can be done", "  'tasks': ["]
    for index, task in enumerate(synthetic_tasks(task_count, seed), start=1):
        if compact:
            task = {
                key: value for key, value in task.items() if key not in ("description", "covers")
            }
            task["title"] = f"Part {index}"
            task["hours"] = task.pop("estimated_hours")
        if index % 50 == 1:
            lines.append(f"    /* part {index // 50 + 1} of the plan */")
        fields = ", ".join(f"'{key}': {_single_quoted(value)}" for key, value in task.items())
        lines.append(f"    {{{fields},}},")
    lines += ["  ],", "}", "```"]
    return "\n".join(lines) + "\n"


def _words(task: dict[str, object]) -> tuple[str, str, str]:
    """The title without its `Task N:` prefix (so it reads as no reference), role, priority."""
    title = str(task["title"]).split(": ", 1)[1]
    role = "Developer" if task["role"] == "DEVELOPER" else "QA"
    return title, role, PRIORITY_WORDS[int(str(task["priority"]))]


def markdown_table_answer(task_count: int, seed: int = 7) -> str:
    """A markdown table with the usual headers; dependencies by id."""
    lines = [
        "Here is the task breakdown:",
        "",
        "| ID | Task | Role | Estimate | Priority | Depends on |",
        "|----|------|------|----------|----------|------------|",
    ]
    for task in synthetic_tasks(task_count, seed):
        title, role, priority = _words(task)
        depends = ", ".join(task["depends_on"]) or "-"  # type: ignore[arg-type]
        lines.append(
            f"| {task['id']} | {title} | {role} | {task['estimated_hours']}h | {priority} "
            f"| {depends} |"
        )
    return "\n".join(lines) + "\n"


def numbered_list_answer(task_count: int, seed: int = 7) -> str:
    """A numbered list, "(depends on 1, 2)" by position, "(Role, Nh)" after each title."""
    lines = ["Tasks:", ""]
    for index, task in enumerate(synthetic_tasks(task_count, seed), start=1):
        title, role, _ = _words(task)
        positions = ", ".join(str(key)[1:] for key in task["depends_on"])  # type: ignore[attr-defined]
        depends = f" (depends on {positions})" if positions else ""
        lines.append(f"{index}. {title}{depends} ({role}, {task['estimated_hours']}h)")
    return "\n".join(lines) + "\n"


def analyse(graph: TaskGraph) -> None:
    graph.topological_order()
    graph.waves()
    graph.critical_path()
    graph.redundant_edges()
    graph.uncovered_criteria(CRITERIA)


def best_of(repeats: int, action: Callable[[], object]) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        timings.append(time.perf_counter() - start)
    return min(timings)


@dataclass(frozen=True, slots=True)
class Shape:
    name: str
    answer: Callable[[int], str]
    lenient_limit: int | None = None  # None: the reader's own LENIENT_LIMIT


SHAPES = (
    Shape("strict JSON", synthetic_answer),
    Shape("JSON5-ish", json5_answer),
    Shape("JSON5-ish, compact", lambda size: json5_answer(size, compact=True)),
    Shape("JSON5-ish, no limit", json5_answer, lenient_limit=10_000_000),
    Shape("markdown table", markdown_table_answer),
    Shape("numbered list", numbered_list_answer),
)


def timed(text: str, rules: DerivationRules, repeats: int) -> tuple[int, float, float, float]:
    """Edges and the best parse, validate and analyse times of one answer (checked valid)."""
    parsed = parse_proposal(text)
    assert isinstance(parsed, ParsedProposal), parsed
    assessment = validate_drafts(parsed, rules)
    assert isinstance(assessment, ValidProposal), assessment
    graph = assessment.graph
    assert len(graph.nodes) == rules.task_count.maximum, len(graph.nodes)
    parse_s = best_of(repeats, lambda: parse_proposal(text))
    validate_s = best_of(repeats, lambda: validate_drafts(parsed, rules))
    analyse_s = best_of(repeats, lambda: analyse(graph))
    return len(graph.edges), parse_s, validate_s, analyse_s


def shapes_table(repeats: int = 3) -> None:
    """Each shape at 2,000 tasks: the same plan, its total against the 1 s budget."""
    rules = DerivationRules(
        allowed_roles=(Role("DEVELOPER"), Role("QA")),
        criteria_count=CRITERIA,
        task_count=TaskCountRange(minimum=1, maximum=SHAPE_SIZE),
    )
    print()
    print(
        f"{'shape (2,000 tasks)':<20} {'kB':>5} {'edges':>6} {'parse ms':>9} {'validate ms':>12}"
        f" {'analyse ms':>11} {'total ms':>9} {'x 1 s':>6}"
    )
    default_limit = answer_json.LENIENT_LIMIT
    for shape in SHAPES:
        text = shape.answer(SHAPE_SIZE)
        answer_json.LENIENT_LIMIT = shape.lenient_limit or default_limit
        try:
            parsed = parse_proposal(text)
            if not isinstance(parsed, ParsedProposal):
                parse_s = best_of(repeats, lambda: parse_proposal(text))  # noqa: B023
                limit = answer_json.LENIENT_LIMIT
                why = f" (longer than LENIENT_LIMIT, {limit:,})" if len(text) > limit else ""
                print(
                    f"{shape.name:<20} {len(text) // 1000:>5} {'-':>6} {parse_s * 1e3:>9.2f}"
                    f"  refused{why}: {parsed.message}"
                )
                continue
            verdict = validate_drafts(parsed, rules)
            if not isinstance(verdict, ValidProposal):
                parse_s = best_of(repeats, lambda: parse_proposal(text))  # noqa: B023
                print(
                    f"{shape.name:<20} {len(text) // 1000:>5} {'-':>6} {parse_s * 1e3:>9.2f}"
                    f"  invalid, {len(verdict.issues)} issue(s), the first:"
                    f" {verdict.issues[0].message[:120]}"
                )
                continue
            edges, parse_s, validate_s, analyse_s = timed(text, rules, repeats)
        finally:
            answer_json.LENIENT_LIMIT = default_limit
        total = parse_s + validate_s + analyse_s
        over = "  OVER BUDGET" if total > BUDGET_S else ""
        print(
            f"{shape.name:<20} {len(text) // 1000:>5} {edges:>6} {parse_s * 1e3:>9.2f}"
            f" {validate_s * 1e3:>12.2f} {analyse_s * 1e3:>11.2f} {total * 1e3:>9.2f}"
            f" {total / BUDGET_S:>6.2f}{over}"
        )


def main() -> None:
    rules_for = {
        size: DerivationRules(
            allowed_roles=(Role("DEVELOPER"), Role("QA")),
            criteria_count=CRITERIA,
            task_count=TaskCountRange(minimum=1, maximum=size),
        )
        for size in SIZES
    }
    rows = []
    for size in SIZES:
        text = synthetic_answer(size)
        rules = rules_for[size]
        repeats = 20 if size < 2_000 else 3
        parsed = parse_proposal(text)
        assert isinstance(parsed, ParsedProposal)
        assessment = validate_drafts(parsed, rules)
        assert isinstance(assessment, ValidProposal), assessment
        graph = assessment.graph

        parse_s = best_of(repeats, lambda: parse_proposal(text))  # noqa: B023
        validate_s = best_of(repeats, lambda: validate_drafts(parsed, rules))  # noqa: B023
        analyse_s = best_of(repeats, lambda: analyse(graph))  # noqa: B023
        rows.append((size, len(graph.edges), parse_s, validate_s, analyse_s))

    base_total = sum(rows[0][2:])
    print(
        f"{'tasks':>6} {'edges':>6} {'parse ms':>9} {'validate ms':>12} {'analyse ms':>11}"
        f" {'total ms':>9} {'x 20-task':>10} {'per task us':>12}"
    )
    for size, edges, parse_s, validate_s, analyse_s in rows:
        total = parse_s + validate_s + analyse_s
        print(
            f"{size:>6} {edges:>6} {parse_s * 1e3:>9.2f} {validate_s * 1e3:>12.2f}"
            f" {analyse_s * 1e3:>11.2f} {total * 1e3:>9.2f} {total / base_total:>10.1f}"
            f" {total / size * 1e6:>12.1f}"
        )
    shapes_table()


if __name__ == "__main__":
    main()
