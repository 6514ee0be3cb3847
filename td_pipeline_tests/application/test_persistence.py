from __future__ import annotations

import pytest

from td_pipeline.application.persistence import persist_task_graph
from td_pipeline.application.ports import Unavailable
from td_pipeline.domain.task_graph import TaskCountRange, TaskGraph
from td_pipeline.domain.validation import DerivationRules, ValidProposal, validate_proposal
from td_pipeline.domain.values import PlanId, Role, StoryId, TaskKey
from td_pipeline.infrastructure.grpc_channel import ChannelSettings
from td_pipeline.infrastructure.planning_client import GrpcPlanningClient
from td_pipeline.sandbox.planning import PlanningFaults, serve_planning
from td_pipeline.sandbox.planning_store import PlanningStore, load_sample_stories
from td_pipeline_tests.fakes import FakePlanning

PLAN, STORY = PlanId("PLAN-PAY-1"), StoryId("STORY-REFUNDS")
ANSWER = """{"tasks": [
  {"id": "A", "title": "Design the refund API", "role": "DEVELOPER", "hours": 2},
  {"id": "B", "title": "Implement refunds", "role": "DEVELOPER", "hours": 5, "depends_on": ["A"]},
  {"id": "C", "title": "Audit trail", "role": "DEVELOPER", "hours": 3, "depends_on": ["A"]},
  {"id": "D", "title": "Test refunds", "role": "QA", "hours": 2, "depends_on": ["B", "C"]}
]}"""


def graph() -> TaskGraph:
    verdict = validate_proposal(
        ANSWER, DerivationRules((Role("DEVELOPER"), Role("QA")), 0, TaskCountRange())
    )
    assert isinstance(verdict, ValidProposal)
    return verdict.graph


def test_first_run_creates_everything_with_edges_on_real_ids() -> None:
    planning = FakePlanning()

    result = persist_task_graph(planning, PLAN, STORY, graph())

    assert result.created == tuple(TaskKey(k) for k in "ABCD") and result.reused == ()
    ids = result.task_ids
    assert {(e.dependent_id, e.prerequisite_id) for e in planning.edges[STORY]} == {
        (ids[TaskKey("B")], ids[TaskKey("A")]),
        (ids[TaskKey("C")], ids[TaskKey("A")]),
        (ids[TaskKey("D")], ids[TaskKey("B")]),
        (ids[TaskKey("D")], ids[TaskKey("C")]),
    }
    assert planning.calls[0] == "list_story_tasks"


def test_running_twice_creates_nothing_new() -> None:
    planning = FakePlanning()
    first = persist_task_graph(planning, PLAN, STORY, graph())

    second = persist_task_graph(planning, PLAN, STORY, graph())

    assert second.created == () and len(second.reused) == 4
    assert second.task_ids == first.task_ids
    assert len(planning.tasks[STORY]) == 4 and len(planning.edges[STORY]) == 4
    assert planning.calls.count("create_tasks") == 1


def test_a_rerun_after_a_partial_failure_creates_only_the_missing_tasks() -> None:
    planning = FakePlanning(fail_after_creates=2)
    with pytest.raises(Unavailable):
        persist_task_graph(planning, PLAN, STORY, graph())
    assert [t.title.value for t in planning.tasks[STORY]] == [
        "Design the refund API",
        "Implement refunds",
    ]

    result = persist_task_graph(planning, PLAN, STORY, graph())

    assert result.created == (TaskKey("C"), TaskKey("D"))
    assert len(planning.tasks[STORY]) == 4 and len(planning.edges[STORY]) == 4


def test_titles_match_ignoring_case_and_white_space() -> None:
    planning = FakePlanning()
    persist_task_graph(planning, PLAN, STORY, graph())
    renamed = ANSWER.replace("Audit trail", "  audit   TRAIL ")
    verdict = validate_proposal(
        renamed, DerivationRules((Role("DEVELOPER"), Role("QA")), 0, TaskCountRange())
    )
    assert isinstance(verdict, ValidProposal)

    assert persist_task_graph(planning, PLAN, STORY, verdict.graph).created == ()


def test_against_planning_over_grpc_with_a_failure_part_way() -> None:
    store = PlanningStore()
    store.seed(load_sample_stories())
    faults = PlanningFaults(fail_after_creates=3)
    running = serve_planning(store, faults)
    planning = GrpcPlanningClient(ChannelSettings(running.address, timeout_seconds=3))
    try:
        with pytest.raises(Unavailable):
            persist_task_graph(planning, PLAN, STORY, graph())
        persist_task_graph(planning, PLAN, STORY, graph())
        persist_task_graph(planning, PLAN, STORY, graph())
    finally:
        planning.close()
        running.stop()

    titles = [t.title for t in store.tasks(STORY.value)]
    assert sorted(titles) == sorted(
        ["Design the refund API", "Implement refunds", "Audit trail", "Test refunds"]
    )
    by_id = {t.task_id: t.title for t in store.tasks(STORY.value)}
    assert sorted(
        (by_id[d.from_task_id], by_id[d.to_task_id]) for d in store.dependencies(STORY.value)
    ) == [
        ("Audit trail", "Design the refund API"),
        ("Implement refunds", "Design the refund API"),
        ("Test refunds", "Audit trail"),
        ("Test refunds", "Implement refunds"),
    ]
