from __future__ import annotations

import pytest

from td_pipeline.domain.values import (
    DerivationId,
    Description,
    EstimatedHours,
    PlanId,
    Priority,
    Role,
    StoryId,
    TaskKey,
    Title,
)


@pytest.mark.parametrize("kind", [PlanId, StoryId, DerivationId])
def test_identifiers_are_stripped(kind: type[PlanId]) -> None:
    assert kind("  S-42 ").value == "S-42"


@pytest.mark.parametrize("kind", [PlanId, StoryId, DerivationId])
@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("", "blank"),
        ("   ", "blank"),
        ("S-1,S-2", "comma"),
        ("S-1\nS-2", "control character"),
        ("S\x00", "control character"),
        ("x" * 201, "longer than 200"),
    ],
)
def test_identifiers_reject_what_cannot_be_a_partition_key(
    kind: type[PlanId], value: str, complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        kind(value)


def test_task_key_allows_commas_but_not_blank() -> None:
    assert TaskKey(" 7 ").value == "7"
    with pytest.raises(ValueError, match="blank"):
        TaskKey(" ")


def test_title_normalized_ignores_case_and_white_space() -> None:
    assert Title("  Write  the API   Docs ").normalized == "write the api docs"
    assert Title("Write the API docs").value == "Write the API docs"


@pytest.mark.parametrize(("value", "complaint"), [(" ", "blank"), ("x" * 301, "longer than 300")])
def test_title_rejects(value: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        Title(value)


def test_description_may_be_empty_but_not_huge() -> None:
    assert Description("").value == ""
    with pytest.raises(ValueError, match="longer"):
        Description("x" * 20_001)


@pytest.mark.parametrize("kind", [EstimatedHours, Priority])
@pytest.mark.parametrize("value", [0, -1, True, 2.5])
def test_numbers_reject_out_of_range_and_non_integers(kind: type[Priority], value: object) -> None:
    with pytest.raises(ValueError):
        kind(value)  # type: ignore[arg-type]


def test_bounds() -> None:
    assert EstimatedHours(1000).value == 1000
    assert Priority(10).value == 10
    with pytest.raises(ValueError, match=r"outside 1\.\.1000"):
        EstimatedHours(1001)
    with pytest.raises(ValueError, match=r"outside 1\.\.10"):
        Priority(11)


@pytest.mark.parametrize(
    ("word", "number"), [("critical", 1), ("High", 2), (" medium ", 3), ("LOW", 4)]
)
def test_priority_words(word: str, number: int) -> None:
    assert Priority.from_word(word) == Priority(number)


def test_unknown_priority_word() -> None:
    with pytest.raises(ValueError, match="not one of critical, high, medium, low"):
        Priority.from_word("soon")


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("developer", "DEVELOPER"),
        (" qa ", "QA"),
        ("data-engineer", "DATA_ENGINEER"),
        ("Dev Ops", "DEV_OPS"),
    ],
)
def test_role_is_canonical_upper_case(text: str, canonical: str) -> None:
    assert Role(text).value == canonical
    assert Role(text) == Role(canonical)


@pytest.mark.parametrize("text", ["", "  ", "9LIVES", "QA!", "dév"])
def test_role_rejects_non_names(text: str) -> None:
    with pytest.raises(ValueError, match="not a role name"):
        Role(text)
