from __future__ import annotations

import json

import pytest

from td_pipeline.domain.proposal import (
    ParsedProposal,
    ProposalFormat,
    TaskDraft,
    TaskReferences,
    UnparseableProposal,
    parse_proposal,
    resolve_dependency,
)


def parsed(text: str) -> ParsedProposal:
    result = parse_proposal(text)
    assert isinstance(result, ParsedProposal), result
    return result


def unparseable(text: str) -> UnparseableProposal:
    result = parse_proposal(text)
    assert isinstance(result, UnparseableProposal), result
    return result


TWO_TASKS = {
    "tasks": [
        {"id": "T1", "title": "Schema", "role": "DEVELOPER", "estimated_hours": 2, "priority": 1},
        {
            "id": "T2",
            "title": "API",
            "role": "QA",
            "estimated_hours": 3,
            "priority": 2,
            "depends_on": ["T1"],
            "covers": [1, 2],
        },
    ]
}


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(TWO_TASKS),
        f"Here you go:\n```json\n{json.dumps(TWO_TASKS)}\n```\nHope it helps.",
        f"<think>Maybe {{tasks}}? Let me plan.</think>\n{json.dumps(TWO_TASKS)}",
        json.dumps({"plan": {"tasks": TWO_TASKS["tasks"]}}),
        json.dumps(TWO_TASKS["tasks"]),
        "As a list [1] of ideas, see " + json.dumps(TWO_TASKS),
    ],
    ids=["plain", "fenced-prose", "think", "one-level-down", "array", "prose-brackets"],
)
def test_json_answers_in_every_wrapping(text: str) -> None:
    result = parsed(text)

    assert result.format is ProposalFormat.JSON
    assert [t.key for t in result.tasks] == ["T1", "T2"]
    assert result.tasks[1] == TaskDraft(
        key="T2",
        title="API",
        description="",
        role="QA",
        estimated_hours=3,
        priority=2,
        depends_on=("T1",),
        covers=(1, 2),
    )


def test_key_synonyms() -> None:
    text = json.dumps(
        [
            {
                "task_id": 7,
                "name": "A",
                "details": "d",
                "assigned_role": "dev",
                "hours": 1,
                "dependencies": [],
                "acceptance_criteria": ["AC1", "AC-2"],
            },
            {"key": "k", "title": "B", "estimate": 2, "dependsOn": [{"id": 7}], "criteria": "#3"},
        ]
    )
    first, second = parsed(text).tasks
    assert (first.key, first.title, first.description, first.role) == ("7", "A", "d", "dev")
    assert first.covers == (1, 2)
    assert (second.key, second.estimated_hours, second.depends_on, second.covers) == (
        "k",
        2,
        ("7",),
        (3,),
    )


@pytest.mark.parametrize(
    ("hours", "expected"),
    [(4, 4), ("4h", 4), ("6 hours", 6), ("1.5", 2), (2.2, 3), ("2-4h", 4), (None, None)],
)
def test_loose_hours(hours: object, expected: int | None) -> None:
    (task,) = parsed(json.dumps([{"title": "A", "hours": hours}])).tasks
    assert task.estimated_hours == expected


@pytest.mark.parametrize(
    ("priority", "expected"),
    [(1, 1), ("2", 2), ("critical", 1), ("High", 2), ("medium", 3), ("LOW", 4), ("P3", 3)],
)
def test_loose_priorities(priority: object, expected: int) -> None:
    (task,) = parsed(json.dumps([{"title": "A", "priority": priority}])).tasks
    assert task.priority == expected


def test_missing_and_unreadable_values_warn_instead_of_inventing() -> None:
    result = parsed(json.dumps([{"id": "X", "title": "A", "hours": "soon", "priority": "asap"}]))
    (task,) = result.tasks
    assert (task.estimated_hours, task.priority) == (None, None)
    assert any("'soon' is not a number of hours" in w for w in result.warnings)
    assert any("'asap' is not a priority" in w for w in result.warnings)


def test_tasks_without_ids_are_numbered_by_position() -> None:
    result = parsed(json.dumps([{"title": "A"}, {"title": "B"}, "not an object"]))
    assert [t.key for t in result.tasks] == ["T1", "T2", "T3"]
    assert result.tasks[2].title is None


@pytest.mark.parametrize("depends_on", [["T1", "T2"], "T1, T2", ["T1", {"key": "T2"}]])
def test_dependency_lists_in_any_shape(depends_on: object) -> None:
    text = json.dumps(
        [
            {"id": "T1", "title": "A"},
            {"id": "T2", "title": "B"},
            {"id": "T3", "title": "C", "depends_on": depends_on},
        ]
    )
    tasks = parsed(text).tasks
    resolved, unknown = TaskReferences(tasks).resolve_all(", ".join(tasks[2].depends_on))
    assert [resolution.task.key for resolution in resolved] == ["T1", "T2"]
    assert unknown == ()


def test_resolve_dependency_by_id_number_or_title() -> None:
    tasks = parsed(
        json.dumps([{"id": 1, "title": "Write the  Schema"}, {"id": "T2", "title": "B"}])
    ).tasks
    assert resolve_dependency("1", tasks) is tasks[0]
    assert resolve_dependency("01", tasks) is tasks[0]
    assert resolve_dependency("write the schema", tasks) is tasks[0]
    assert resolve_dependency("T2", tasks) is tasks[1]
    assert resolve_dependency("T9", tasks) is None


LEGACY = """TASK_ID: 1
TITLE: Create the schema
DESCRIPTION: Tables for jobs.
  Include an index on status.
ROLE: DEVELOPER
ESTIMATED_HOURS: 3h
PRIORITY: high
KEYWORDS: schema
DEPENDS_ON: none
---
TASK_ID: 2
TITLE: Build the worker
ROLE: dev
ESTIMATED_HOURS: 5
PRIORITY: 2
DEPENDS_ON: 1
"""


def test_legacy_blocks_separated_by_dashes() -> None:
    result = parsed(LEGACY)
    first, second = result.tasks
    assert result.format is ProposalFormat.LEGACY_BLOCKS
    assert (first.key, first.title, first.estimated_hours, first.priority) == (
        "1",
        "Create the schema",
        3,
        2,
    )
    assert first.description == "Tables for jobs.\nInclude an index on status."
    assert first.depends_on == ()
    assert second.depends_on == ("1",)
    assert not second.dependencies_inferred


def test_legacy_blocks_separated_by_blank_lines_infer_dependencies_from_keywords() -> None:
    text = (
        "TITLE: Provision the queue\nROLE: DEVELOPER\nKEYWORDS: queue, broker\n\n"
        "TITLE: Consume from the queue\nROLE: DEVELOPER\nKEYWORDS: consumer\n\n"
        "TITLE: Load test the consumer and the broker\nROLE: QA\nKEYWORDS: load\n"
    )
    result = parsed(text)
    assert [t.depends_on for t in result.tasks] == [(), ("T1",), ("T1", "T2")]
    assert all(t.dependencies_inferred for t in result.tasks[1:])
    assert any("inferred from task keywords" in w for w in result.warnings)


def test_inference_only_points_to_earlier_tasks() -> None:
    text = (
        "TITLE: Write the docs for the cache\nKEYWORDS: docs\n---\n"
        "TITLE: Build the cache\nKEYWORDS: cache\n"
    )
    # "cache" is a later task's keyword in an earlier title: no edge forward, so no cycle.
    assert [t.depends_on for t in parsed(text).tasks] == [(), ()]


def test_legacy_answer_with_any_dependency_infers_nothing() -> None:
    text = (
        "TITLE: Build the cache\nKEYWORDS: cache\nDEPENDS_ON: none\n---\n"
        "TITLE: Warm the cache\nKEYWORDS: warm\n---\n"
        "TITLE: Test it\nDEPENDS_ON: Warm the cache\n"
    )
    assert [t.depends_on for t in parsed(text).tasks] == [(), (), ("Warm the cache",)]


@pytest.mark.parametrize(
    ("text", "code", "says"),
    [
        ("", "empty", "empty"),
        ("  \n ", "empty", "empty"),
        ("<think>hmm</think>", "empty", "reasoning"),
        ('{"tasks": []}', "empty", "task list is empty"),
        ("I'm sorry, but I can't help with that.", "unparseable", "refused"),
        ('{"tasks": [{"title": "A"}, {"ti', "unparseable", "truncated"),
        ('```json\n{"summary": "x"}\n```', "unparseable", "malformed"),
        ("We should build it and test it.", "unparseable", "no task list"),
    ],
)
def test_unparseable_answers_say_why(text: str, code: str, says: str) -> None:
    result = unparseable(text)
    assert result.reason_code == code
    assert says in result.message


def test_trailing_commas_are_tolerated() -> None:
    result = parsed('{"tasks": [{"title": "A", "covers": [1,],}, {"title": "B, C",},],}')
    assert [t.title for t in result.tasks] == ["A", "B, C"]


def test_legacy_keys_with_spaces_and_any_case() -> None:
    text = (
        "Task ID: 1\nTitle: Add the importer\nEstimated Hours: 4\nDepends On: none\n\n"
        "Task ID: 2\nTitle: Test the importer\nRole: QA\nEstimated hours: 2\nDepends on: 1\n"
    )
    first, second = parsed(text).tasks
    assert (first.key, first.estimated_hours, second.key, second.depends_on) == (
        "1",
        4,
        "2",
        ("1",),
    )


@pytest.mark.parametrize("reference", ["Task 1", "task #1", "TASK1"])
def test_task_number_references(reference: str) -> None:
    tasks = parsed(json.dumps([{"id": 1, "title": "A"}, {"id": 2, "title": "B"}])).tasks
    assert resolve_dependency(reference, tasks) is tasks[0]


@pytest.mark.parametrize(
    ("covers", "expected"),
    [("1, 3", (1, 3)), (["AC1: users can pay", "AC-2"], (1, 2)), (2, (2,)), ([1, 1, 2], (1, 2))],
)
def test_criteria_in_any_shape(covers: object, expected: tuple[int, ...]) -> None:
    (task,) = parsed(json.dumps([{"title": "A", "covers": covers}])).tasks
    assert task.covers == expected
