"""How a tick's work becomes runs: one run for a lone story (as fast as before, when idle),
batched runs when there is a queue.

A Dagster run costs a new Python process, seconds of CPU on two cores, whatever it does: that
floor, not our code, bounds one-run-per-story throughput. A batched run does the same per-story
steps for many stories in one process. A story is never twice in one batch: its second item of
a tick waits for the next tick, so that its two derivations never race inside one run."""

from __future__ import annotations

from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass
from math import ceil
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Grouped(Generic[T]):
    runs: list[list[T]]  # one list per run to launch: a single item is a one-story run
    held: list[T]  # a story's later items in this tick: left for the next tick


def group_into_runs(
    items: Sequence[T], story_of: Callable[[T], str], batch_size: int
) -> Grouped[T]:
    """Split a tick's items into runs of at most `batch_size` stories, as even as possible
    (51 items at 50 make runs of 26 and 25, not 50 and 1), in the order they came."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, not {batch_size}")
    seen: set[str] = set()
    firsts: list[T] = []
    held: list[T] = []
    for item in items:
        story = story_of(item)
        (held if story in seen else firsts).append(item)
        seen.add(story)
    if not firsts:
        return Grouped([], held)
    count = ceil(len(firsts) / batch_size)
    size, extra = divmod(len(firsts), count)
    runs: list[list[T]] = []
    start = 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        runs.append(firsts[start:end])
        start = end
    return Grouped(runs, held)


@dataclass(frozen=True, slots=True)
class RunPlan(Generic[T]):
    batches: list[list[T]]  # each a batched run, of two stories or more
    alone: list[T]  # each in its story's own run
    waiting: list[T]  # left in the stream for a later tick


def plan_runs(
    items: Sequence[T],
    story_of: Callable[[T], str],
    batch_size: int,
    *,
    in_batch: Set[str] = frozenset(),
    own_run_in_flight: Set[str] = frozenset(),
    may_wait: Callable[[T], bool] = lambda item: False,
) -> RunPlan[T]:
    """What becomes of a tick's items, keeping one run per story at a time although the story
    concurrency limit (on the partition) cannot see a batch:

    - an item whose story a batch in flight serves waits, if it `may_wait`;
    - an item whose story has a run in flight (its own, or a batch it may not wait for) gets
      its own run: the limit queues it behind the story's own run;
    - the others go in runs of at most `batch_size` stories (`group_into_runs`), a group of one
      being the story's own run; a story's second item of the tick waits."""
    waits = [story_of(item) in in_batch and may_wait(item) for item in items]
    ready = [item for item, waiting in zip(items, waits, strict=True) if not waiting]
    grouped = group_into_runs(ready, story_of, batch_size)
    busy = in_batch | own_run_in_flight
    batches: list[list[T]] = []
    alone: list[T] = []
    for group in grouped.runs:
        free = [item for item in group if story_of(item) not in busy]
        alone += [item for item in group if story_of(item) in busy]
        if len(free) == 1:
            alone += free
        elif free:
            batches.append(free)
    waiting = [item for item, waiting in zip(items, waits, strict=True) if waiting]
    return RunPlan(batches, alone, [*waiting, *grouped.held])
