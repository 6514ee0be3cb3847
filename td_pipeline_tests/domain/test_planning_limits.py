"""Planning's limits (contracts.md §1.3c): a task over them is shortened with a warning, never
sent as is, and the titles stay unique; priorities sent are ones Planning understands."""

from __future__ import annotations

from td_pipeline.application.persistence import persist_task_graph
from td_pipeline.domain.planning_limits import (
    MAX_DESCRIPTION_CHARACTERS,
    MAX_TITLE_CHARACTERS,
    fit_for_planning,
)
from td_pipeline.domain.task_graph import TaskCountRange, TaskGraph, TaskNode
from td_pipeline.domain.values import (
    Description,
    PlanId,
    Priority,
    Role,
    StoryId,
    TaskKey,
    Title,
)
from td_pipeline_tests.fakes import FakePlanning

LONG_START = "Implement the refund flow for card payments across every region " * 4


def node(key: str, title: str, description: str = "") -> TaskNode:
    return TaskNode(
        key=TaskKey(key),
        title=Title(title),
        description=Description(description),
        role=Role("DEVELOPER"),
        estimated_hours=None,
        priority=Priority(2),
        covers=(),
    )


def test_tasks_within_the_limits_are_sent_as_they_are() -> None:
    tasks = (node("T1", "Design the refund API", "Short enough."),)

    fitted = fit_for_planning(tasks)

    assert fitted.nodes == tasks and fitted.warnings == ()


def test_a_long_title_and_description_are_shortened_with_a_warning_each() -> None:
    long = node("T1", "x" * 250, "y" * 2_500)

    fitted = fit_for_planning([long])

    (task,) = fitted.nodes
    assert len(task.title.value) == MAX_TITLE_CHARACTERS and task.title.value.endswith("…")
    assert len(task.description.value) == MAX_DESCRIPTION_CHARACTERS
    assert fitted.warnings == (
        "task T1: title shortened from 250 to 200 characters (Planning's limit is 200)",
        "task T1: description shortened from 2500 to 2000 characters (Planning's limit is 2000)",
    )


def test_long_titles_alike_in_their_first_words_stay_unique() -> None:
    tasks = [node("T1", LONG_START + "in Europe"), node("T2", LONG_START + "in Asia")]

    fitted = fit_for_planning(tasks)

    first, second = (task.title.value for task in fitted.nodes)
    assert first != second and second.endswith("… (2)")
    assert all(len(title) <= MAX_TITLE_CHARACTERS for title in (first, second))
    assert len(fitted.warnings) == 2


def test_persistence_sends_planning_the_shortened_tasks_and_matches_them_on_a_rerun() -> None:
    planning = FakePlanning()
    graph = TaskGraph.build(
        [node("T1", LONG_START + "in Europe", "d" * 3_000), node("T2", LONG_START + "in Asia")],
        [],
        allowed_roles=frozenset({Role("DEVELOPER")}),
        task_count=TaskCountRange(),
    )
    plan, story = PlanId("PLAN-PAY-1"), StoryId("STORY-REFUNDS")

    first = persist_task_graph(planning, plan, story, graph)
    again = persist_task_graph(planning, plan, story, graph)

    stored = [task.title.value for task in planning.tasks[story]]
    assert all(len(title) <= MAX_TITLE_CHARACTERS for title in stored)
    assert len(set(stored)) == 2 and len(first.created) == 2
    assert again.created == () and len(again.reused) == 2  # matched on the shortened titles
