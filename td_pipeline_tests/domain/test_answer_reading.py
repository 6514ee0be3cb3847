"""Which text is the answer, which shapes are read, and that every guess is a warning."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from td_pipeline.domain.proposal import (
    ProposalFormat,
    TaskReferences,
)
from td_pipeline.domain.task_graph import TaskCountRange
from td_pipeline.domain.validation import (
    DerivationRules,
    InvalidProposal,
    ValidProposal,
    validate_proposal,
)
from td_pipeline.domain.values import Role
from td_pipeline_tests.domain.test_proposal import parsed
from td_pipeline_tests.domain.test_proposal import unparseable as refused

RULES = DerivationRules((Role("DEVELOPER"), Role("QA")), 0, TaskCountRange(1, 30))


def plan(*titles: str, prefix: str = "T") -> str:
    tasks = [
        {"id": f"{prefix}{n}", "title": title, "role": "DEVELOPER", "estimated_hours": 2}
        | ({"depends_on": [f"{prefix}{n - 1}"]} if n > 1 else {})
        | {"priority": 1}
        for n, title in enumerate(titles, start=1)
    ]
    return json.dumps({"tasks": tasks})


def titles(text: str) -> list[str | None]:
    return [task.title for task in parsed(text).tasks]


DRAFT = plan("Draft task")
FINAL = plan("Final A", "Final B")


@pytest.mark.parametrize(
    "text",
    [
        f"<think>{DRAFT}</think>\n{FINAL}",
        f"<THINK>\n{DRAFT}\n</THINK>\n```json\n{FINAL}\n```",
        f"<thinking>{DRAFT}</thinking>{FINAL}",
        f"<reasoning>{DRAFT}</reasoning>{FINAL}",
    ],
)
def test_the_answer_is_what_follows_the_reasoning(text: str) -> None:
    result = parsed(text)
    assert [t.title for t in result.tasks] == ["Final A", "Final B"]
    assert result.warnings == ()


def test_a_lone_closing_tag_sets_the_draft_before_it_aside_and_says_so() -> None:
    result = parsed(f"Let me draft:\n{DRAFT}\nBetter:\n</think>\n\n{FINAL}")
    assert [t.title for t in result.tasks] == ["Final A", "Final B"]
    assert result.warnings == (
        "the answer has a closing </think> without an opening one: the text before it was "
        "taken for the model's reasoning and set aside",
    )


def test_reasoning_that_never_closes_is_a_truncated_answer() -> None:
    result = refused(f"<think>The plan: {FINAL} but wait, I")
    assert result.reason_code == "unparseable"
    assert "never ended" in result.message and "truncated" in result.message


UNCLOSED_FINAL = (
    "the model's reasoning never ended (<think> without </think>): took the one plan in it, "
    "at line {line}, introduced as the final answer"
)


@pytest.mark.parametrize(
    "introduction",
    ["Final answer:", "**Final Answer:**", "Here is my final plan:", "## Final answer", "Final:"],
)
def test_unclosed_reasoning_with_one_plan_introduced_as_final_gives_that_plan(
    introduction: str,
) -> None:
    result = parsed(
        f"<think>\nThe throttle comes first.\n\n{introduction}\n```json\n{FINAL}\n```\n"
    )
    assert [t.title for t in result.tasks] == ["Final A", "Final B"]
    assert result.warnings == (UNCLOSED_FINAL.format(line=6),)


def test_unclosed_reasoning_whose_final_answer_is_a_list() -> None:
    text = (
        "<think>\nTwo tasks will do.\nFinal answer:\n"
        "1. Add the throttle (Developer, 4h)\n"
        "2. Test the throttle (QA, 2h) - depends on 1\n"
    )
    result = parsed(text)
    assert [(t.title, t.role, t.estimated_hours, t.depends_on) for t in result.tasks] == [
        ("Add the throttle", "Developer", 4, ()),
        ("Test the throttle", "QA", 2, ("1",)),
    ]
    assert result.warnings[:2] == (UNCLOSED_FINAL.format(line=4), "tasks read from a markdown list")


@pytest.mark.parametrize(
    ("final", "line"),
    [
        (FINAL, 4),
        (f"{FINAL}\n", 4),
        (f"{FINAL}\n\n  \n\t\n", 4),
        (f"```json\n{FINAL}\n```", 5),
        (f"```json\n{FINAL}\n```\n\n", 5),
        (f"````json\n{FINAL}\n````  \n", 5),
        (f"```json\n{FINAL}\n", 5),
    ],
    ids=[
        "nothing",
        "newline",
        "blank-lines",
        "its-fence",
        "its-fence-blank-lines",
        "its-longer-fence",
        "its-fence-never-closed",
    ],
)
def test_unclosed_reasoning_ended_by_its_final_plan_gives_that_plan(final: str, line: int) -> None:
    result = parsed(f"<think>\nThe throttle comes first.\nFinal answer:\n{final}")
    assert [t.title for t in result.tasks] == ["Final A", "Final B"]
    assert result.warnings == (UNCLOSED_FINAL.format(line=line),)


@pytest.mark.parametrize(
    "text",
    [
        f"<think>\nFinal answer:\n{FINAL}\nBut wait, task 3 should come first",
        f"<think>\nFinal answer:\n{FINAL}\n\nBut wait, task 3 should come first...\n",
        f"<think>\nFinal answer:\n```json\n{FINAL}\n```\nHmm, the e-mail is missing.",
        f"<think>\nFinal answer:\n```json\n{FINAL}\nWait, no.\n```\n",
        f"<think>\nFinal answer:\n{FINAL}\n```\nLet me check the roles.\n```\n",
        f"<think>\nFinal answer:\n{FINAL}\n```\n",
        "<think>\nFinal answer:\n1. Add the throttle (Developer, 4h)\n"
        "2. Test the throttle (QA, 2h)\n\nBut wait, the lockout is missing.\n",
    ],
    ids=[
        "words-after-json",
        "paragraph-after-json",
        "words-after-fenced-json",
        "words-in-its-fence",
        "fenced-words-after",
        "fence-it-did-not-open",
        "paragraph-after-list",
    ],
)
def test_unclosed_reasoning_is_refused_when_more_follows_its_final_plan(text: str) -> None:
    """Words after the "final" plan: the model was still thinking when it was cut off."""
    result = refused(text)
    assert result.reason_code == "unparseable"
    assert "reasoning never ended" in result.message and "truncated" in result.message


@pytest.mark.parametrize(
    "text",
    [
        f"<think>\nDraft:\n{DRAFT}\n\nFinal answer:\n{FINAL}\n",
        f"<think>\nFinal answer:\n{DRAFT}\n\nBetter:\n{FINAL}\n",
        f"<think>\nFor example:\n{DRAFT}\n\nFinal answer:\n{FINAL}\n",
        f"<think>\nThe tasks could be:\n{FINAL}\n",
        f"<think>\nThis is not the final answer:\n{FINAL}\n",
        f"<think>\nFinal answer:\n{FINAL[:60]}",
        '<think>\n{"tasks": [{"title": "A"} {"title": "B"}]}\nFinal answer:\n' + FINAL,
    ],
    ids=[
        "draft-then-final",
        "final-then-another",
        "example-then-final",
        "not-marked-final",
        "not-the-final",
        "final-cut-off",
        "malformed-then-final",
    ],
)
def test_unclosed_reasoning_is_refused_when_its_plan_may_be_a_draft(text: str) -> None:
    result = refused(text)
    assert result.reason_code == "unparseable"
    assert "never ended" in result.message


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (f"<think>{FINAL}</think>", "empty"),
        (f"<think>{FINAL}</think>\nThe tasks are listed above.", "unparseable"),
        (f"{DRAFT}\n</think>\nSee my reasoning.", "unparseable"),
    ],
)
def test_a_plan_only_inside_the_reasoning_is_refused(text: str, code: str) -> None:
    result = refused(text)
    assert result.reason_code == code
    assert "reasoning" in result.message or "no task list" in result.message


FORMAT = json.dumps(
    {"tasks": [{"id": "<id>", "title": "<title>", "depends_on": ["<id of a prerequisite>"]}]}
)


@pytest.mark.parametrize(
    ("before", "skipped"),
    [
        (f"Answer format:\n{FORMAT}\n\nAnswer:\n", "skipped the answer format at line 2"),
        (f"```json\n{FORMAT}\n```\nNow the real one:\n", "skipped the answer format at line 2"),
        (f"For example:\n{DRAFT}\n\nThe plan:\n", "skipped the example at line 2"),
        (f"The schema is:\n{DRAFT}\n\nHere it is:\n", "skipped the example at line 2"),
    ],
)
def test_a_format_or_example_block_is_skipped_when_a_plan_follows(
    before: str, skipped: str
) -> None:
    result = parsed(before + FINAL)
    assert [t.title for t in result.tasks] == ["Final A", "Final B"]
    assert any(warning.startswith(skipped) for warning in result.warnings), result.warnings


def test_a_plan_introduced_as_in_the_requested_format_is_still_the_plan() -> None:
    assert titles(f"Here is the plan in the requested format:\n{FINAL}") == ["Final A", "Final B"]


def test_only_a_format_block_is_refused() -> None:
    assert "only the answer's format" in refused(f"Use this format:\n{FORMAT}").message


def test_of_two_plans_the_last_is_taken_and_named() -> None:
    result = parsed(f"First try:\n{DRAFT}\n\nRevised:\n{FINAL}\n")
    assert [t.title for t in result.tasks] == ["Final A", "Final B"]
    assert result.warnings == (
        "the answer holds 2 plans (at lines 2, 5): took the last, at line 5",
    )


@pytest.mark.parametrize(
    "text",
    [
        '{"tasks": [{"title": "A"}, {"title": "B", "descr',
        '```json\n{"tasks": [{"title": "A"}, {"title": "B"',
        '{"tasks": [{"title": "A"}, {"title": "Persist carts in Post\n',
        f"{DRAFT}\n\nFinal:\n" + '{"tasks": [{"title": "A"}, {"title": "B"',
        "{'tasks': [{'title': 'A'}, // first\n {'title': 'B', ",
        "| id | title |\n|---|---|\n| T1 | A |\n| T2 | Persist carts in Po",
    ],
    ids=["json", "fenced", "in-string", "after-draft", "json5", "table"],
)
def test_a_truncated_answer_is_refused_never_read_as_a_shorter_plan(text: str) -> None:
    result = refused(text)
    assert result.reason_code == "unparseable"
    assert "truncated" in result.message


def test_a_malformed_plan_after_a_good_one_refuses_the_answer() -> None:
    broken = '{"tasks": [{"title": "A"} {"title": "B"}]}\nThat is all.'
    result = refused(f"{DRAFT}\nFinal:\n{broken}")
    assert "malformed" in result.message and "not taken in its place" in result.message


def test_a_malformed_block_before_the_plan_is_ignored_with_a_warning() -> None:
    result = parsed('{"tasks": [{"title": "A"} {"title": "B"}]}\nFixed:\n' + FINAL)
    assert result.warnings[0] == "ignored JSON at line 1 that could not be read"


@pytest.mark.parametrize(
    ("text", "note"),
    [
        ('{"tasks": [{"title": "A",}, /* x */ {"title": "B"}],}', "read as JSON5"),
        ("{tasks: [{title: 'A'}, {title: 'B'}]}", "read as JSON5"),
        ("{'tasks': [{'title': 'A', 'x': None}, {'title': 'B', 'y': True}]}", "Python literal"),
        ('{"tasks": {"T1": {"title": "A"}, "T2": {"title": "B"}}}', "keyed by id"),
        ('{"T1": {"title": "A"}, "T2": {"title": "B"}}', "keyed by id"),
        ('{"tasks": ["A", "B"]}', "plain strings"),
    ],
)
def test_lenient_shapes_are_read_and_named(text: str, note: str) -> None:
    result = parsed(text)
    assert [t.title for t in result.tasks] == ["A", "B"]
    assert any(note in warning for warning in result.warnings), result.warnings


def test_an_object_keyed_by_id_gives_the_ids() -> None:
    result = parsed('{"tasks": {"X1": {"title": "A"}, "X2": {"title": "B", "depends_on": "X1"}}}')
    assert [(t.key, t.depends_on) for t in result.tasks] == [("X1", ()), ("X2", ("X1",))]


def test_task_lists_nested_deeper_than_one_level_are_not_taken_piecemeal() -> None:
    phases = {"plan": {"phases": [{"tasks": [{"title": "A"}]}, {"tasks": [{"title": "B"}]}]}}
    assert refused(json.dumps(phases)).reason_code == "unparseable"


def test_a_markdown_table_with_recognisable_headers() -> None:
    text = (
        "| # | Task | Owner | Effort (h) | Prio | Blocked by | Notes |\n"
        "|:-:|------|-------|-----------:|------|------------|-------|\n"
        "| 1 | **Add** the `cache` | backend developer | 3 | P1 | — | fast |\n"
        "| 2 | Test it \\| twice | QA | 2-3h | low | 1 | |\n"
    )
    result = parsed(text)
    first, second = result.tasks
    assert result.format is ProposalFormat.MARKDOWN_TABLE
    assert (first.key, first.title, first.role, first.estimated_hours, first.priority) == (
        "1",
        "Add the cache",
        "backend developer",
        3,
        1,
    )
    assert (second.title, second.estimated_hours, second.priority, second.depends_on) == (
        "Test it | twice",
        3,
        4,
        ("1",),
    )
    assert "tasks 1, 2: fields not read: 'Notes'" in result.warnings


def test_a_table_without_a_title_column_is_no_plan() -> None:
    assert refused("| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |\n").reason_code == "unparseable"


def test_a_numbered_list_with_inline_fields_and_dependency_phrases() -> None:
    text = (
        "1. Design the schema (Developer, 3h, P1)\n"
        "2. Build the API - depends on 1 (Developer, 1 day)\n"
        "3. Write the client after 2 hours of review (Developer)\n"
        "4. **Test everything**: blocked by #2, #3 [QA, 2-3 hours]\n"
    )
    result = parsed(text)
    assert result.format is ProposalFormat.MARKDOWN_LIST
    assert [(t.key, t.title, t.role, t.estimated_hours) for t in result.tasks] == [
        ("1", "Design the schema", "Developer", 3),
        ("2", "Build the API", "Developer", 8),
        ("3", "Write the client after 2 hours of review", "Developer", None),
        ("4", "Test everything", "QA", 3),
    ]
    assert [t.depends_on for t in result.tasks] == [(), ("1",), (), ("#2", "#3")]


def test_item_numbers_of_four_digits_and_more_continue_a_list() -> None:
    text = "".join(
        f"{n}. Build part {n} (Developer, 2h){f' - depends on {n - 1}' if n > 998 else ''}\n"
        for n in range(998, 1003)
    )
    result = parsed(text)
    assert [(t.key, t.title, t.description) for t in result.tasks] == [
        (str(n), f"Build part {n}", "") for n in range(998, 1003)
    ]
    assert [t.depends_on for t in result.tasks] == [(), ("998",), ("999",), ("1000",), ("1001",)]


@pytest.mark.parametrize(
    "after",
    ["\n2025. Next year we add caching.\n", "\n1000) requests a minute stay allowed.\n"],
)
def test_a_line_opening_with_a_year_or_an_amount_is_no_item(after: str) -> None:
    """Four digits and more number an item only right after the number before them."""
    result = parsed(f"1. Build the API (Developer, 3h)\n2. Test it (QA, 2h)\n{after}")
    assert [(t.key, t.title, t.description) for t in result.tasks] == [
        ("1", "Build the API", ""),
        ("2", "Test it", ""),
    ]


@pytest.mark.parametrize("separator", [" · ", "·", " • ", " | ", "; ", " - ", " \u2013 "])
def test_a_field_line_may_give_several_fields(separator: str) -> None:
    text = (
        "1. **Design the schema**\n"
        f"   - Role: Developer{separator}Estimate: 3h{separator}Priority: P1\n"
        "2. **Build the API**\n"
        f"   **Role:** QA{separator}**Estimate:** 1 day{separator}**Depends on:** 1\n"
    )
    result = parsed(text)
    assert [(t.role, t.estimated_hours, t.priority, t.depends_on) for t in result.tasks] == [
        ("Developer", 3, 1, ()),
        ("QA", 8, None, ("1",)),
    ]
    assert result.warnings == (
        "tasks read from a markdown list",
        "task 2: estimate '1 day' read as 8 (a day counted as 8 hours)",
        "task 2: no priority given",
    )


def test_a_separator_splits_a_field_line_only_before_another_field() -> None:
    text = (
        "1. **Migrate the tables**\n"
        "   - Role: Developer | QA\n"
        "   - Estimate: 2 - 3 hours\n"
        "   - Description: Online; time: ten minutes of downtime · Priority: P2\n"
        "2. **Test the migration**\n"
        "   - Depends on: 1; 3\n"
    )
    first, second = parsed(text).tasks
    assert (first.role, first.estimated_hours, first.priority) == ("Developer | QA", 3, 2)
    assert first.description == "Online; time: ten minutes of downtime"
    assert (second.estimated_hours, second.depends_on) == (None, ("1; 3",))


def test_fields_separated_by_middle_dots_on_an_item_line() -> None:
    text = (
        "1. Design the schema \u2014 Role: Developer · Estimate: 3h · Priority: P1\n"
        "2. Build the API (QA · 1 day · low) \u2014 Redis · in-memory fallback\n"
    )
    result = parsed(text)
    assert [
        (t.title, t.role, t.estimated_hours, t.priority, t.description) for t in result.tasks
    ] == [
        ("Design the schema", "Developer", 3, 1, ""),
        ("Build the API", "QA", 8, 4, "Redis · in-memory fallback"),
    ]


def test_questions_and_refusals_written_as_lists_are_no_plans() -> None:
    assert refused("Questions first:\n1. Which DB?\n2. Which queue?\n").reason_code == (
        "unparseable"
    )
    assert "refused" in refused("I'm sorry, I can't.\n1. Add more detail\n2. Retry\n").message


def test_a_list_after_a_json_plan_is_not_a_second_plan() -> None:
    result = parsed(f"{FINAL}\n\nNotes:\n1. Deploy on Monday\n2. Tell support\n")
    assert [t.title for t in result.tasks] == ["Final A", "Final B"]
    assert result.warnings == ()


def verdict(text: str) -> ValidProposal:
    result = validate_proposal(text, RULES)
    assert isinstance(result, ValidProposal), result
    return result


def edges(result: ValidProposal) -> list[tuple[str, str]]:
    return sorted((e.dependent.value, e.prerequisite.value) for e in result.graph.edges)


def test_references_by_position_when_ids_are_t_numbers_and_the_number_matches() -> None:
    text = json.dumps(
        [
            {"id": "T1", "title": "A"},
            {"id": "T2", "title": "B", "depends_on": [1]},
            {"id": "T3", "title": "C", "depends_on": "1, 2"},
        ]
    )
    result = verdict(text)
    assert edges(result) == [("T2", "T1"), ("T3", "T1"), ("T3", "T2")]
    assert "tasks T2, T3: dependency '1' read as T1 (by its position)" in result.warnings


def test_a_position_whose_id_has_another_number_resolves_nothing() -> None:
    text = json.dumps([{"id": "T2", "title": "A"}, {"id": "T1", "title": "B", "depends_on": [1]}])
    result = validate_proposal(text, RULES)
    assert isinstance(result, InvalidProposal)
    assert result.codes == ("unknown_dependency",)


def test_references_by_title_id_and_title_and_objects() -> None:
    text = json.dumps(
        [
            {"id": "a", "title": "Build, then ship"},
            {"id": "b", "title": "Second", "depends_on": ["  BUILD,  then SHIP "]},
            {"id": "c", "title": "Third", "depends_on": ["b: Second", {"title": "second"}]},
        ]
    )
    result = verdict(text)
    assert edges(result) == [("b", "a"), ("c", "b")]
    by_reference = [w for w in result.warnings if "dependency" in w]
    assert by_reference == [
        "task b: dependency 'BUILD,  then SHIP' read as a (by its title)",
        "task c: dependency 'second' read as b (by its title)",
    ]


def test_references_that_name_no_task_are_reported_each() -> None:
    references = TaskReferences(parsed(plan("A", "B")).tasks)
    resolved, unknown = references.resolve_all("T1, T7 and T2")
    assert [r.task.key for r in resolved] == ["T1", "T2"]
    assert unknown == ("T7",)


def test_role_spellings_and_job_titles_are_read_and_named() -> None:
    text = json.dumps(
        [
            {"title": "A", "role": "Backend Developer"},
            {"title": "B", "role": "qa engineer"},
            {"title": "C", "role": "developer"},
        ]
    )
    result = verdict(text)
    assert [n.role.value for n in result.graph.nodes] == ["DEVELOPER", "QA", "DEVELOPER"]
    assert "task T1: role 'Backend Developer' read as DEVELOPER" in result.warnings
    assert "task T2: role 'qa engineer' read as QA" in result.warnings
    assert not any("'developer'" in warning for warning in result.warnings)


def test_no_value_is_dropped_without_a_warning() -> None:
    text = json.dumps(
        [
            {
                "id": "T1",
                "title": "A",
                "hours": "a while",
                "priority": "asap",
                "covers": ["users can pay"],
                "depends_on": [["nested"]],
                "points": 3,
                "description": {"text": "x"},
            }
        ]
    )
    warnings = parsed(text).warnings
    assert warnings == (
        "task T1: description {'text': 'x'} is not text: left out",
        "task T1: estimate 'a while' is not a number of hours: left out",
        "task T1: priority 'asap' is not a priority: left out",
        "task T1: dependency ['nested'] names no task: left out",
        "task T1: covered criterion 'users can pay' names no criterion number: left out",
        "task T1: fields not read: 'points'",
    )


def test_priorities_written_from_p0_are_shifted_to_start_at_one() -> None:
    text = json.dumps([{"title": "A", "priority": "P0"}, {"title": "B", "priority": "P2"}])
    result = parsed(text)
    assert [t.priority for t in result.tasks] == [1, 3]
    assert any("start at 0" in warning for warning in result.warnings)


def test_warnings_for_the_same_guess_name_all_their_tasks_once() -> None:
    text = json.dumps([{"id": k, "title": k, "hours": "1 day"} for k in ("A", "B", "C")])
    assert (
        parsed(text).warnings.count(
            "tasks A, B, C: estimate '1 day' read as 8 (a day counted as 8 hours)"
        )
        == 1
    )


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(list("{}[]\"':,-|#*\n 0123456789abTtitleasksdpn<>/`")),
        max_size=300,
    )
)
def test_any_text_gets_a_verdict_never_an_exception(text: str) -> None:
    assert isinstance(validate_proposal(text, RULES), ValidProposal | InvalidProposal)


@pytest.mark.parametrize(
    ("written", "role"),
    [
        ("Senior Backend Engineer", "DEVELOPER"),
        ("iOS developer", "DEVELOPER"),
        ("QA Automation Engineer", "QA"),
        ("Software Tester", "QA"),
    ],
)
def test_common_job_titles_read_as_the_requested_role(written: str, role: str) -> None:
    text = json.dumps([{"title": "A", "role": written}])
    result = verdict(text)
    assert result.graph.nodes[0].role.value == role
    assert f"task T1: role {written!r} read as {role}" in result.warnings


def test_weak_dependency_words_take_only_a_task_number_that_ends_the_phrase() -> None:
    text = (
        "1. Upload files (requires S3 bucket) (Developer, 2h)\n"
        "2. Retry after 3 retries fail - after 1\n"
        "3. Report after 2019 data is loaded; needs #2 (QA, 1h)\n"
    )
    tasks = parsed(text).tasks
    assert [(t.title, t.depends_on) for t in tasks] == [
        ("Upload files", ()),
        ("Retry after 3 retries fail", ("1",)),
        ("Report after 2019 data is loaded", ("#2",)),
    ]
    assert tasks[0].description == "(requires S3 bucket)"
