"""How a tick's work becomes runs: one run for a lone story (as fast as before, when idle),
batched runs when there is a queue.

A Dagster run costs a new Python process, seconds of CPU on two cores, whatever it does: that
floor, not our code, bounds one-run-per-story throughput. A batched run does the same per-story
steps for many stories in one process. A story is never twice in one batch, nor in a batch
while another run of it is in flight: the story concurrency limit (one run per partition)
cannot see a batch, so such a story gets its own runs, which the limit runs one at a time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass
from math import ceil
from typing import Generic, TypeVar

T = TypeVar("T")


def group_into_runs(items: Sequence[T], batch_size: int) -> list[list[T]]:
    """Split items into runs of at most `batch_size`, as even as possible (51 items at 50 make
    runs of 26 and 25, not 50 and 1), in the order they came."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, not {batch_size}")
    if not items:
        return []
    count = ceil(len(items) / batch_size)
    size, extra = divmod(len(items), count)
    runs: list[list[T]] = []
    start = 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        runs.append(list(items[start:end]))
        start = end
    return runs


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
    """What becomes of a tick's items:

    - an item whose story a batch in flight serves waits, if it `may_wait`;
    - an item whose story has a run in flight (its own, or a batch it may not wait for), or
      comes twice in the tick, gets its own run: the limit runs the story's runs one at a time;
    - the others go in runs of at most `batch_size` stories (`group_into_runs`), a group of one
      being the story's own run."""
    waiting = [item for item in items if story_of(item) in in_batch and may_wait(item)]
    ready = [item for item in items if not (story_of(item) in in_batch and may_wait(item))]
    times = Counter(story_of(item) for item in ready)
    busy = {story for story, count in times.items() if count > 1} | in_batch | own_run_in_flight
    alone = [item for item in ready if story_of(item) in busy]
    batches: list[list[T]] = []
    for group in group_into_runs(
        [item for item in ready if story_of(item) not in busy], batch_size
    ):
        if len(group) == 1:
            alone += group
        else:
            batches.append(group)
    return RunPlan(batches, alone, waiting)
