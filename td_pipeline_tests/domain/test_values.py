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
    ValueReading,
    read_hours,
    read_priority,
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


@pytest.mark.parametrize(
    ("written", "hours", "guessed"),
    [
        (4, 4, ""),
        ("4h", 4, ""),
        ("6 hours", 6, ""),
        ("3 hrs", 3, ""),
        ("2-3 hours", 3, "upper bound"),
        ("2 to 3h", 3, "upper bound"),
        ("half a day", 4, "8 hours"),
        ("1 day", 8, "8 hours"),
        ("1.5 days", 12, "8 hours"),
        ("1 week", 40, "40 hours"),
        ("90 minutes", 2, "minutes"),
        ("~4h", 4, "approximate"),
        ("about 4 hours", 4, "approximate"),
        ("4+ hours", 4, "lower bound"),
        ("1.5", 2, "rounded up"),
        (2.2, 3, "rounded up"),
        ("an hour", 1, ""),
    ],
)
def test_hours_read_loosely_say_how(written: object, hours: int, guessed: str) -> None:
    reading = read_hours(written)
    assert (reading.value, reading.unreadable) == (hours, False)
    assert guessed in reading.guess
    assert bool(reading.guess) == bool(guessed)


@pytest.mark.parametrize(
    "written", ["soon", "a while", "3 pts", "4 story points", True, float("nan"), float("inf")]
)
def test_unreadable_hours_are_flagged_not_zero(written: object) -> None:
    assert read_hours(written) == ValueReading(None, unreadable=True)


@pytest.mark.parametrize("written", [None, "", "  "])
def test_missing_hours_are_missing_not_unreadable(written: object) -> None:
    assert read_hours(written) == ValueReading(None)


def test_free_text_needs_a_unit_to_be_hours() -> None:
    assert read_hours("3", unit_required=True).unreadable
    assert read_hours("3h", unit_required=True).value == 3


@pytest.mark.parametrize(
    ("written", "priority", "word"),
    [
        (1, 1, False),
        ("2", 2, False),
        ("P1", 1, False),
        ("p4", 4, False),
        ("P0", 0, False),
        ("critical", 1, True),
        ("High", 2, True),
        ("medium", 3, True),
        ("LOW", 4, True),
        ("urgent", 1, True),
        ("High (P2)", 2, True),
        ("priority: high", 2, True),
        (3.0, 3, False),
    ],
)
def test_priorities_read_loosely(written: object, priority: int, word: bool) -> None:
    reading = read_priority(written)
    assert reading.value == priority
    assert bool(reading.guess) == word


@pytest.mark.parametrize("written", ["asap", "P1 (high)", "must have", 2.5, False])
def test_unreadable_or_contradictory_priorities(written: object) -> None:
    assert read_priority(written).unreadable
