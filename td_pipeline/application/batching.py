"""How a tick's work becomes runs: one run for a lone story (as fast as before, when idle),
batched runs when there is a queue.

A Dagster run costs a new Python process, seconds of CPU on two cores, whatever it does: that
floor, not our code, bounds one-run-per-story throughput. A batched run does the same per-story
steps for many stories in one process. A story is never twice in one batch: its second item of
a tick waits for the next tick, so that its two derivations never race inside one run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
