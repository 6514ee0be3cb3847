"""How a tick's items become runs: a lone story at once, a queue in even batches, never a
story twice in one run."""

from __future__ import annotations

import pytest

from td_pipeline.application.batching import group_into_runs, plan_runs


def story_of(item: tuple[str, int]) -> str:
    return item[0]


def items(count: int) -> list[tuple[str, int]]:
    """One item for each of `count` stories, in the order they came."""
    return [(f"STORY-{number}", number) for number in range(count)]


def test_a_lone_item_is_one_run() -> None:
    assert group_into_runs([("STORY-A", 1)], 50) == [[("STORY-A", 1)]]


def test_nothing_makes_no_run() -> None:
    assert group_into_runs([], 50) == []


def test_one_item_over_the_size_makes_two_even_runs_in_order() -> None:
    queue = items(51)

    runs = group_into_runs(queue, 50)

    assert [len(run) for run in runs] == [26, 25]  # not 50 and 1
    assert runs[0] + runs[1] == queue  # nothing lost, nothing reordered


@pytest.mark.parametrize(("count", "sizes"), [(50, [50]), (100, [50, 50]), (101, [34, 34, 33])])
def test_no_run_is_over_the_size(count: int, sizes: list[int]) -> None:
    assert [len(run) for run in group_into_runs(items(count), 50)] == sizes


def test_size_one_gives_each_item_its_own_run() -> None:
    queue = items(3)

    assert group_into_runs(queue, 1) == [[item] for item in queue]


@pytest.mark.parametrize("size", [0, -1])
def test_a_size_below_one_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        group_into_runs(items(2), size)


def test_a_queue_of_free_stories_is_batched_and_a_lone_one_runs_alone() -> None:
    plan = plan_runs(items(3), story_of, 50)
    lone = plan_runs(items(1), story_of, 50)

    assert (plan.batches, plan.alone, plan.waiting) == ([items(3)], [], [])
    assert (lone.batches, lone.alone, lone.waiting) == ([], items(1), [])


def test_a_story_a_batch_in_flight_serves_waits_when_it_may() -> None:
    queue = items(3)
    busy = queue[1][0]

    plan = plan_runs(queue, story_of, 50, in_batch={busy}, may_wait=lambda item: True)

    assert plan.waiting == [queue[1]]
    assert plan.batches == [[queue[0], queue[2]]] and plan.alone == []


def test_a_story_with_a_run_in_flight_is_never_batched() -> None:
    queue = items(4)
    own, batched = queue[0][0], queue[1][0]

    # An answer may not wait (its batch is done with the story); nor a request's last delivery.
    plan = plan_runs(queue, story_of, 50, in_batch={batched}, own_run_in_flight={own})

    assert sorted(plan.alone) == sorted([queue[0], queue[1]])
    assert plan.batches == [[queue[2], queue[3]]] and plan.waiting == []


def test_a_single_free_story_beside_busy_ones_runs_alone_not_as_a_batch_of_one() -> None:
    queue = items(2)

    plan = plan_runs(queue, story_of, 50, own_run_in_flight={queue[0][0]})

    assert plan.batches == [] and sorted(plan.alone) == sorted(queue)


def test_a_story_twice_in_a_tick_gets_its_own_runs_and_is_not_batched() -> None:
    queue = [("STORY-A", 1), ("STORY-B", 1), ("STORY-C", 1), ("STORY-A", 2)]

    plan = plan_runs(queue, story_of, 50)

    # The story concurrency limit runs STORY-A's two runs one after the other; nothing waits.
    assert plan.alone == [("STORY-A", 1), ("STORY-A", 2)]
    assert plan.batches == [[("STORY-B", 1), ("STORY-C", 1)]] and plan.waiting == []
