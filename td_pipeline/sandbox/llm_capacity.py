"""How the fleet's LLM behaves under load, as a pure model the executor stand-in plays
(`sandbox up --llm-slots N --llm-seconds S`; contracts.md §1.3, "under load").

The real executor takes every job at once; each agent job calls vLLM with a 60 s total
timeout; vLLM serves a bounded number of sequences and queues the rest, and the time in its
queue counts against those 60 s. So a job here is served in arrival order by one of N slots
for S seconds, and fails with a timeout once it has been queued and served for T seconds in
all. A job that times out gives its slot up at once (vLLM aborts a request whose client has
gone), and one that times out in the queue never holds a slot.

Times are plain seconds on one clock (the stand-in uses `time.monotonic`); nothing here reads
a clock. In arrival order, each job's end never comes before an earlier job's end, since
earlier jobs get slots first.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

DEFAULT_TIMEOUT_SECONDS = 60.0  # the fleet's agent job: aiohttp ClientTimeout(total=60)


@dataclass(frozen=True, slots=True)
class LlmCapacity:
    """N slots (None: as many as there are jobs), S seconds of service each, T seconds in all
    before a job times out."""

    slots: int | None
    service_seconds: float
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS

    def __post_init__(self) -> None:
        if self.slots is not None and self.slots < 1:
            raise ValueError(f"LLM slots must be at least 1, not {self.slots}")
        if not self.service_seconds > 0 or not math.isfinite(self.service_seconds):
            raise ValueError(f"LLM seconds must be above 0, not {self.service_seconds}")
        if not self.timeout_seconds > 0 or not math.isfinite(self.timeout_seconds):
            raise ValueError(f"LLM timeout must be above 0 seconds, not {self.timeout_seconds}")

    def floor_seconds(self, jobs: int) -> float:
        """The least time `jobs` jobs submitted at once can take: ceil(jobs / slots) rounds of
        service (one round when the slots are unlimited)."""
        rounds = 1 if self.slots is None else math.ceil(jobs / self.slots)
        return rounds * self.service_seconds if jobs > 0 else 0.0

    @property
    def slots_wording(self) -> str:
        return {None: "unlimited slots", 1: "1 slot"}.get(self.slots, f"{self.slots} slots")

    def describe(self) -> str:
        return (
            f"{self.slots_wording} x {self.service_seconds:g} s, timeout {self.timeout_seconds:g} s"
        )


@dataclass(frozen=True, slots=True)
class JobPlan:
    """One job's fate, known when it arrives."""

    arrival: float
    start: float | None  # when a slot began serving it; None: it timed out in the queue
    end: float  # when it was answered, or timed out
    timed_out: bool

    def shifted(self, origin: float) -> JobPlan:
        """The same plan with times counted from `origin`."""
        start = None if self.start is None else self.start - origin
        return replace(self, arrival=self.arrival - origin, start=start, end=self.end - origin)


class ServiceQueue:
    """The slots' state: when each becomes free. `admit` is the whole model; jobs must be
    admitted in arrival order."""

    def __init__(self, capacity: LlmCapacity) -> None:
        self._capacity = capacity
        # One entry per slot: the time it is free from (a heap). Unlimited slots: none kept.
        self._free_at = [0.0] * (capacity.slots or 0)
        self._last_arrival = -math.inf

    def admit(self, arrival: float) -> JobPlan:
        if arrival < self._last_arrival:
            raise ValueError(f"arrival {arrival} is before the last one ({self._last_arrival})")
        self._last_arrival = arrival
        service, deadline = self._capacity.service_seconds, arrival + self._capacity.timeout_seconds
        if self._capacity.slots is None:
            start = arrival
        else:
            start = max(arrival, self._free_at[0])
            if start >= deadline:  # still queued at its deadline: never served
                return JobPlan(arrival, None, deadline, timed_out=True)
        end = min(start + service, deadline)
        if self._capacity.slots is not None:
            heapq.heapreplace(self._free_at, end)
        return JobPlan(arrival, start, end, timed_out=start + service > deadline)


def plan_jobs(arrivals: Iterable[float], capacity: LlmCapacity) -> list[JobPlan]:
    """Each job's plan, for jobs arriving at these times (in order)."""
    queue = ServiceQueue(capacity)
    return [queue.admit(arrival) for arrival in arrivals]


@dataclass(frozen=True, slots=True)
class LlmLoad:
    """The jobs at one moment: accepted and not yet answered or timed out (in flight: queued
    or served), and those finished so far."""

    queued: int
    served: int
    answered: int
    timed_out: int

    @property
    def in_flight(self) -> int:
        return self.queued + self.served

    def describe(self) -> str:
        return (
            f"{self.in_flight} in flight ({self.served} served, {self.queued} queued), "
            f"{self.answered} answered, {self.timed_out} timed out"
        )


def load_at(plans: Iterable[JobPlan], now: float) -> LlmLoad:
    queued = served = answered = timed_out = 0
    for plan in plans:
        if plan.arrival > now:
            continue
        if plan.end <= now:
            timed_out += plan.timed_out
            answered += not plan.timed_out
        elif plan.start is not None and plan.start <= now:
            served += 1
        else:
            queued += 1
    return LlmLoad(queued, served, answered, timed_out)


Point = tuple[float, float]  # (seconds, value)


def in_flight_steps(plans: Sequence[JobPlan]) -> list[Point]:
    """Jobs in flight over time as a step function: (time, count from then on), one point per
    moment the count changes, starting at (first arrival, ...). Empty without jobs."""
    changes: dict[float, int] = {}
    for plan in plans:
        changes[plan.arrival] = changes.get(plan.arrival, 0) + 1
        changes[plan.end] = changes.get(plan.end, 0) - 1
    steps: list[Point] = []
    count = 0
    for moment in sorted(changes):
        count += changes[moment]
        steps.append((moment, float(count)))
    return steps


def peak_in_flight(plans: Sequence[JobPlan]) -> int:
    return int(max((count for _, count in in_flight_steps(plans)), default=0))
