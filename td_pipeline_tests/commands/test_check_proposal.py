"""`td-pipeline check-proposal` over the answer corpus: the verdict, the JSON shape, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from td_pipeline.cli import main

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
EXPECTED: dict[str, dict[str, Any]] = json.loads((CORPUS / "expected.json").read_text())
VALID_KEYS = {
    "tasks",
    "edges",
    "order",
    "waves",
    "critical_path",
    "redundant_edges",
    "uncovered_criteria",
    "warnings",
}
TASK_KEYS = {
    "key",
    "title",
    "description",
    "role",
    "estimated_hours",
    "priority",
    "covers",
    "warnings",
}
EXPECTED_TASK_FIELDS = ("key", "title", "description", "role", "estimated_hours", "priority")


def check(path: Path, expected: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> Any:
    code = main(
        [
            "check-proposal",
            str(path),
            "--roles",
            ",".join(expected["roles"]),
            "--criteria",
            str(expected["criteria"]),
            "--min-tasks",
            str(expected["min_tasks"]),
            "--max-tasks",
            str(expected["max_tasks"]),
            "--json",
        ]
    )
    verdict = json.loads(capsys.readouterr().out)
    assert code == (0 if expected["valid"] else 1), verdict
    return verdict


def test_the_corpus_is_large_and_varied() -> None:
    answers = sorted((CORPUS / "answers").iterdir())
    assert {path.name for path in answers} == set(EXPECTED)
    assert len(answers) >= 70
    assert all("warnings" in e and ("tasks" in e) == e["valid"] for e in EXPECTED.values())
    assert sum(e["valid"] for e in EXPECTED.values()) >= 10
    assert sum(not e["valid"] for e in EXPECTED.values()) >= 10


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_verdict_on_each_corpus_answer(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    expected = EXPECTED[name]
    verdict = check(CORPUS / "answers" / name, expected, capsys)

    if expected["valid"]:
        assert set(verdict) == VALID_KEYS
        assert len(verdict["tasks"]) == expected["task_count"]
        assert len(verdict["edges"]) == expected["edges"]
        assert all(set(task) == TASK_KEYS for task in task_list(verdict))
        position = {key: index for index, key in enumerate(verdict["order"])}
        assert all(position[e["to"]] < position[e["from"]] for e in verdict["edges"])
        assert sorted(k for wave in verdict["waves"] for k in wave) == sorted(position)
        assert [
            {field: task[field] for field in EXPECTED_TASK_FIELDS} for task in task_list(verdict)
        ] == expected["tasks"]
        assert sorted([e["from"], e["to"]] for e in verdict["edges"]) == expected["dependencies"]
    else:
        assert set(verdict) == {"errors", "warnings"}
        assert sorted({error["code"] for error in verdict["errors"]}) == expected["error_codes"]
        assert all(error["message"] for error in verdict["errors"])
        messages = " ".join(error["message"] for error in verdict["errors"])
        assert expected.get("message", "") in messages
    assert verdict["warnings"] == expected["warnings"]


def test_each_task_lists_the_warnings_that_name_it(capsys: pytest.CaptureFixture[str]) -> None:
    name = "66-hours-loose.txt"
    verdict = check(CORPUS / "answers" / name, EXPECTED[name], capsys)

    by_key = {task["key"]: task["warnings"] for task in task_list(verdict)}
    assert by_key["T1"] == []
    assert by_key["T3"] == ["estimate 'half a day' read as 4 (a day counted as 8 hours)"]
    assert f"task T3: {by_key['T3'][0]}" in verdict["warnings"]


@pytest.mark.parametrize(
    "name",
    [
        "66-hours-loose.txt",
        "52-numbered-list-depends-on.txt",
        "57-python-dict-literal.txt",
        "86-list-fields-on-one-line.txt",
        "87-think-unclosed-final-answer.txt",
    ],
)
def test_readable_report_of_a_valid_answer_prints_the_tasks_and_each_warning(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = EXPECTED[name]
    path = CORPUS / "answers" / name
    code = main(["check-proposal", str(path), "--roles", ",".join(expected["roles"])])
    lines = capsys.readouterr().out.splitlines()

    assert code == 0, lines
    assert lines[0].startswith(f"VALID  {path}: {expected['task_count']} tasks, ")
    assert lines[0].endswith(f"{len(expected['warnings'])} warning(s)")
    prerequisites: dict[str, list[str]] = {}
    for dependent, prerequisite in expected["dependencies"]:
        prerequisites.setdefault(dependent, []).append(prerequisite)
    rows = {line.split()[0]: line for line in lines[3:] if line.startswith("  ") and line.strip()}
    for task in expected["tasks"]:
        row = rows[task["key"]]
        hours = "-" if task["estimated_hours"] is None else str(task["estimated_hours"])
        priority = "-" if task["priority"] is None else str(task["priority"])
        *columns, rest = row.split(maxsplit=4)
        assert columns == [task["key"], task["role"], hours, priority], row
        title, _, listed = rest.partition("  [")
        assert title == task["title"], row
        assert sorted(listed.rstrip("]").split(", ") if listed else []) == sorted(
            prerequisites.get(task["key"], [])
        ), row
    assert [line for line in lines if line.startswith("  warning: ")] == [
        f"  warning: {warning}" for warning in expected["warnings"]
    ]
    assert lines[-len(expected["warnings"]) :] == [
        f"  warning: {warning}" for warning in expected["warnings"]
    ]


def test_fields_given_on_one_line_keep_their_estimates(capsys: pytest.CaptureFixture[str]) -> None:
    """`Role: Developer · Estimate: 3h` under a list item: the estimate is read with the role."""
    name = "86-list-fields-on-one-line.txt"
    verdict = check(CORPUS / "answers" / name, EXPECTED[name], capsys)

    assert [(t["role"], t["estimated_hours"], t["priority"]) for t in task_list(verdict)] == [
        ("DEVELOPER", 3, 2),
        ("DEVELOPER", 4, 2),
        ("DEVELOPER", 4, 3),
        ("QA", 3, 3),
    ]
    assert verdict["critical_path"] == {"keys": ["1", "2", "3", "4"], "hours": 14}
    assert not any("no estimate" in warning for warning in verdict["warnings"])


def test_unclosed_reasoning_gives_its_one_plan_introduced_as_final(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`<think>` never closed, one plan after `Final answer:`: the report shows that plan and
    says how it was taken; with a draft before it, the answer is still refused."""
    final = CORPUS / "answers" / "87-think-unclosed-final-answer.txt"
    code = main(["check-proposal", str(final), "--roles", "DEVELOPER,QA"])
    lines = capsys.readouterr().out.splitlines()

    assert code == 0, lines
    assert lines[0] == f"VALID  {final}: 4 tasks, 4 dependencies (json), 1 warning(s)"
    assert [line.split()[:3] for line in lines[3:7]] == [
        ["T1", "DEVELOPER", "3"],
        ["T2", "DEVELOPER", "4"],
        ["T3", "DEVELOPER", "2"],
        ["T4", "QA", "3"],
    ]
    assert lines[-1] == (
        "  warning: the model's reasoning never ended (<think> without </think>): took the one "
        "plan in it, at line 8, introduced as the final answer"
    )

    draft = CORPUS / "answers" / "88-think-unclosed-draft-then-final.txt"
    code = main(["check-proposal", str(draft), "--roles", "DEVELOPER,QA"])
    report = capsys.readouterr().out

    assert code == 1
    assert report.startswith(f"INVALID  {draft}: 1 problem(s)\n  [unparseable] the model's")
    assert "reasoning never ended" in report


def task_list(verdict: dict[str, Any]) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = verdict["tasks"]
    return tasks


def test_analysis_of_a_known_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    answer = tmp_path / "answer.json"
    answer.write_text(
        json.dumps(
            {
                "tasks": [
                    {"id": "A", "title": "Schema", "role": "dev", "hours": 2, "covers": [1]},
                    {"id": "B", "title": "API", "role": "DEV", "hours": "5h", "depends_on": ["A"]},
                    {"id": "C", "title": "UI", "role": "developer", "hours": 3, "depends_on": "A"},
                    {"id": "D", "title": "E2E", "role": "qa", "hours": 1, "depends_on": "B,C,A"},
                ]
            }
        )
    )
    code = main(
        ["check-proposal", str(answer), "--roles", "developer,qa", "--criteria", "2", "--json"]
    )
    verdict = json.loads(capsys.readouterr().out)

    assert code == 0
    assert verdict["order"] == ["A", "B", "C", "D"]
    assert verdict["waves"] == [["A"], ["B", "C"], ["D"]]
    assert verdict["critical_path"] == {"keys": ["A", "B", "D"], "hours": 8}
    assert verdict["redundant_edges"] == [{"from": "D", "to": "A"}]
    assert verdict["uncovered_criteria"] == [2]
    assert [t["role"] for t in verdict["tasks"]] == ["DEVELOPER", "DEVELOPER", "DEVELOPER", "QA"]


def test_readable_report_names_the_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = tmp_path / "cyclic.json"
    answer.write_text(
        '{"tasks": [{"id": "1", "title": "Build", "depends_on": [2]},'
        ' {"id": "2", "title": "Test", "depends_on": [1]}]}'
    )

    code = main(["check-proposal", str(answer)])
    report = capsys.readouterr().out

    assert code == 1
    assert report.startswith("INVALID")
    assert "[cycle]" in report and "Build" in report and "Test" in report


@pytest.mark.parametrize(
    "arguments",
    [
        ["check-proposal", "/nonexistent/answer.txt"],
        ["check-proposal", "-", "--roles", " , "],
        ["check-proposal", "-", "--min-tasks", "5", "--max-tasks", "2"],
        ["check-proposal", "-", "--criteria", "many"],
        ["check-proposal"],
    ],
)
def test_usage_errors_exit_2(arguments: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(arguments)
    except SystemExit as exit_:  # argparse's own usage errors
        code = int(exit_.code or 0)
    assert code == 2
    assert "error" in capsys.readouterr().err


def test_console_script_reads_standard_input() -> None:
    script = Path(sys.executable).with_name("td-pipeline")
    answer = (
        '```json\n{"tasks": [{"title": "Write the migration", "hours": 2, "priority": "high"}]}'
        "\n```"
    )

    result = subprocess.run(
        [str(script), "check-proposal", "-", "--json"],
        input=answer,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["tasks"][0]["key"] == "T1"
    assert verdict["tasks"][0]["priority"] == 2
    assert any("role" in warning for warning in verdict["warnings"])


def test_roles_in_planning_spellings(capsys: pytest.CaptureFixture[str]) -> None:
    """`--roles DEV,QA` as Planning sends them: the same roles as DEVELOPER,QA."""
    answer = CORPUS / "answers" / "50-markdown-table.txt"
    assert main(["check-proposal", str(answer), "--roles", "DEV,QA", "--json"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert {task["role"] for task in verdict["tasks"]} == {"DEVELOPER", "QA"}
