"""`td-pipeline check-proposal`: lint an LLM answer exactly the way the pipeline will."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from td_pipeline.domain.roles import role_from_text
from td_pipeline.domain.task_graph import TaskCountRange, TaskGraph
from td_pipeline.domain.validation import (
    DerivationRules,
    InvalidProposal,
    ProposalVerdict,
    ValidProposal,
    validate_proposal,
)

EXIT_VALID, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
DEFAULT_ROLES = "DEVELOPER"  # what the pipeline assumes when a request names no role


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "check-proposal",
        description=(
            "Parse, validate and analyse an LLM answer. Exit 0 when valid, 1 when invalid, "
            "2 on a usage error."
        ),
    )
    parser.add_argument("file", help="the answer's text file, or - for standard input")
    parser.add_argument(
        "--roles",
        default=DEFAULT_ROLES,
        help=f"requested roles, comma-separated; the first is the default ({DEFAULT_ROLES})",
    )
    parser.add_argument(
        "--criteria",
        type=int,
        default=0,
        help="number of acceptance criteria, to check coverage (default: 0, not checked)",
    )
    defaults = TaskCountRange()
    parser.add_argument("--min-tasks", type=int, default=defaults.minimum)
    parser.add_argument("--max-tasks", type=int, default=defaults.maximum)
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON")
    parser.set_defaults(handler=run)


def _usage_error(message: str) -> int:
    print(f"td-pipeline check-proposal: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _rules(args: argparse.Namespace) -> DerivationRules:
    roles = tuple(role_from_text(text) for text in args.roles.split(",") if text.strip())
    if not roles:
        raise ValueError("--roles names no role")
    if len(set(roles)) != len(roles):
        raise ValueError("--roles names a role twice")
    return DerivationRules(
        allowed_roles=roles,
        criteria_count=args.criteria,
        task_count=TaskCountRange(minimum=args.min_tasks, maximum=args.max_tasks),
    )


def _read(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    return Path(source).read_text(encoding="utf-8", errors="replace")


def run(args: argparse.Namespace) -> int:
    try:
        rules = _rules(args)
    except ValueError as error:
        return _usage_error(str(error))
    try:
        text = _read(args.file)
    except OSError as error:
        return _usage_error(f"cannot read {args.file}: {error.strerror or error}")

    verdict = validate_proposal(text, rules)
    if args.json:
        print(json.dumps(verdict_as_json(verdict, rules), indent=2, ensure_ascii=False))
    else:
        print(verdict_report(verdict, args.file, rules))
    return EXIT_VALID if isinstance(verdict, ValidProposal) else EXIT_INVALID


def graph_as_json(graph: TaskGraph, criteria_count: int) -> dict[str, Any]:
    critical = graph.critical_path()
    return {
        "tasks": [
            {
                "key": node.key.value,
                "title": node.title.value,
                "description": node.description.value,
                "role": node.role.value,
                "estimated_hours": node.estimated_hours.value if node.estimated_hours else None,
                "priority": node.priority.value if node.priority else None,
                "covers": list(node.covers),
            }
            for node in graph.nodes
        ],
        "edges": [
            {"from": edge.dependent.value, "to": edge.prerequisite.value, "reason": edge.reason}
            for edge in graph.edges
        ],
        "order": [key.value for key in graph.topological_order()],
        "waves": [[key.value for key in wave] for wave in graph.waves()],
        "critical_path": {"keys": [key.value for key in critical.keys], "hours": critical.hours},
        "redundant_edges": [
            {"from": edge.dependent.value, "to": edge.prerequisite.value}
            for edge in graph.redundant_edges()
        ],
        "uncovered_criteria": list(graph.uncovered_criteria(criteria_count)),
    }


def verdict_as_json(verdict: ProposalVerdict, rules: DerivationRules) -> dict[str, Any]:
    if isinstance(verdict, InvalidProposal):
        return {
            "errors": [
                {"code": issue.code.value, "message": issue.message} for issue in verdict.issues
            ],
            "warnings": list(verdict.warnings),
        }
    graph_json = graph_as_json(verdict.graph, rules.criteria_count)
    task_warnings = verdict.task_warnings()
    for task in graph_json["tasks"]:
        task["warnings"] = list(task_warnings.get(task["key"], ()))
    return {**graph_json, "warnings": list(verdict.warnings)}


def verdict_report(verdict: ProposalVerdict, source: str, rules: DerivationRules) -> str:
    if isinstance(verdict, InvalidProposal):
        lines = [f"INVALID  {source}: {len(verdict.issues)} problem(s)"]
        lines += [f"  [{issue.code.value}] {issue.message}" for issue in verdict.issues]
    else:
        lines = _valid_report(verdict, source, rules)
    lines += [f"  warning: {warning}" for warning in verdict.warnings]
    return "\n".join(lines)


def _valid_report(verdict: ValidProposal, source: str, rules: DerivationRules) -> list[str]:
    graph = verdict.graph
    critical = graph.critical_path()
    lines = [
        f"VALID  {source}: {len(graph.nodes)} tasks, {len(graph.edges)} dependencies "
        f"({verdict.format.value}), {len(verdict.warnings)} warning(s)",
        "",
        f"  {'key':<8} {'role':<12} {'hours':>5} {'prio':>4}  title  [depends on]",
    ]
    for key in graph.topological_order():
        node = graph.node(key)
        hours = node.estimated_hours.value if node.estimated_hours else "-"
        priority = node.priority.value if node.priority else "-"
        prerequisites = ", ".join(k.value for k in graph.prerequisites_of(key))
        after = f"  [{prerequisites}]" if prerequisites else ""
        lines.append(
            f"  {key.value:<8} {node.role.value:<12} {hours:>5} {priority:>4}  "
            f"{node.title.value}{after}"
        )
    waves = " | ".join(", ".join(k.value for k in wave) for wave in graph.waves())
    lines += [
        "",
        f"  waves: {waves}",
        f"  critical path: {' -> '.join(k.value for k in critical.keys)} ({critical.hours} h)",
    ]
    if redundant := graph.redundant_edges():
        pairs = ", ".join(f"{e.dependent.value} -> {e.prerequisite.value}" for e in redundant)
        lines.append(f"  redundant dependencies: {pairs}")
    if uncovered := graph.uncovered_criteria(rules.criteria_count):
        lines.append(f"  uncovered acceptance criteria: {', '.join(map(str, uncovered))}")
    return lines
