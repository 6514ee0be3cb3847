"""How parse + validate + analyse cost grows with the size of an LLM answer.

Run with `make bench`. Prints, for answers of 20, 200 and 2,000 tasks, the best of several
runs for each phase and each size's total as a ratio of the 20-task total, all taken in one
run (these machines are noisy; compare ratios, not absolute figures across runs).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable

from td_pipeline.domain.proposal import ParsedProposal, parse_proposal
from td_pipeline.domain.task_graph import TaskCountRange, TaskGraph
from td_pipeline.domain.validation import DerivationRules, ValidProposal, validate_drafts
from td_pipeline.domain.values import Role

SIZES = (20, 200, 2_000)
CRITERIA = 5


def synthetic_answer(task_count: int, seed: int = 7) -> str:
    """A JSON answer shaped like a model's, each task depending on up to 3 earlier ones."""
    rng = random.Random(seed)
    tasks = []
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
    return "Here is the plan:\n```json\n" + json.dumps({"tasks": tasks}, indent=2) + "\n```\n"


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


if __name__ == "__main__":
    main()
