"""How many LLM jobs may be in flight: a window learned from how fast answers come back.

The fleet's executor takes every job at once and vLLM queues what it cannot serve; a job past
the executor's 60 s (queue included) fails. Queueing shows as latency before it shows as
failures, so the window follows latency, as TCP Vegas and Netflix's gradient limiter do
(docs/architecture.md, "The LLM window"):

- while answers come back about as fast as the fastest recent one, every answer widens the
  window by one (slow start: it doubles per round trip, so a fast LLM is not throttled), and,
  once the window has met congestion, by one per window's worth of answers;
- when they come back slower, the window shrinks in proportion to how much slower, and a
  timeout halves it, once per round trip: answers to jobs handed over before the last shrink
  tell of the queue that shrink already drains, and are not counted against it again;
- `TD_LLM_MAX_IN_FLIGHT` bounds it.

Pure: the result sensor feeds it each tick's answers, the request sensor reads it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from math import floor

INITIAL_LIMIT = 4.0  # small enough that one slow GPU slot serves it within 60 s
MIN_LIMIT = 1.0
# "About as fast as the fastest": at most twice it (jobs reach the LLM a tick's worth at a
# time, so some wait one service time even when it keeps up; a queue of one service time is
# far from the 60 s), or a second more (a fast LLM's answers vary by more than their length).
SLOWER_BY_FACTOR = 1.0
SLOWER_BY_SECONDS = 1.0
# The fastest answer is forgotten slowly (per tick), so that a model that became slower is
# learnt.
FASTEST_DRIFT = 1.02
SHRINK_FLOOR = 0.5  # one shrink never takes the window below half


@dataclass(frozen=True, slots=True)
class Answer:
    """One job's answer, as the window learns from it."""

    submitted_at: float  # epoch seconds
    seconds: float  # from submission to answer


@dataclass(frozen=True, slots=True)
class LlmWindow:
    limit: float = INITIAL_LIMIT
    fastest_seconds: float | None = None  # the fastest recent answer, submission to answer
    threshold: float | None = None  # where it last met congestion: above it, grow slowly
    shrunk_at: float = 0.0  # epoch seconds of the last shrink

    def __post_init__(self) -> None:
        if self.limit < MIN_LIMIT:
            raise ValueError(f"an LLM window holds at least {MIN_LIMIT:g} job, not {self.limit}")
        if self.fastest_seconds is not None and self.fastest_seconds < 0:
            raise ValueError("an answer cannot come back before its submission")

    def jobs_allowed(self, cap: int) -> int:
        """The jobs that may be in flight now: the learnt window, at most `cap`."""
        return max(int(MIN_LIMIT), min(cap, floor(self.limit)))

    @property
    def slow_seconds(self) -> float | None:
        """An answer slower than this shows a queue at the LLM."""
        if self.fastest_seconds is None:
            return None
        return self.fastest_seconds + max(
            self.fastest_seconds * SLOWER_BY_FACTOR, SLOWER_BY_SECONDS
        )


def observe(
    window: LlmWindow,
    answers: Sequence[Answer],
    timeouts: Sequence[float],
    cap: int,
    now: float,
) -> LlmWindow:
    """The window after one tick's answers and the executor's timeouts (each given by when its
    job was handed over, epoch seconds)."""
    if not answers and not timeouts:
        return window
    learnt = replace(window, fastest_seconds=_fastest(window, answers))
    limit, shrunk = learnt.limit, False
    news = [answer.seconds for answer in answers if answer.submitted_at > learnt.shrunk_at]
    slow = learnt.slow_seconds
    if any(submitted > learnt.shrunk_at for submitted in timeouts):
        limit, shrunk = limit / 2, True
    elif news and slow is not None and (typical := sorted(news)[len(news) // 2]) > slow:
        limit, shrunk = limit * max(SHRINK_FLOOR, slow / typical), True
    elif slow is not None:
        fast = sum(1 for answer in answers if answer.seconds <= slow)
        congested = learnt.threshold is not None and limit >= learnt.threshold
        limit += fast / limit if congested else fast
    limit = min(float(cap), max(MIN_LIMIT, limit))
    if shrunk:
        return replace(learnt, limit=limit, threshold=limit, shrunk_at=now)
    return replace(learnt, limit=limit)


def _fastest(window: LlmWindow, answers: Sequence[Answer]) -> float | None:
    """The fastest recent answer after this tick's: the fastest of the tick, unless the one
    remembered (slightly forgotten) is faster. At the smallest window nothing of ours queues
    before a job, so its time is the LLM's own: it replaces what was remembered."""
    if not answers:
        return window.fastest_seconds
    tick = min(answer.seconds for answer in answers)
    if window.fastest_seconds is None or window.limit <= MIN_LIMIT:
        return tick
    return min(tick, window.fastest_seconds * FASTEST_DRIFT)


def room(window: LlmWindow, in_flight: int, cap: int) -> int:
    """How many more jobs may be handed to the LLM now."""
    return max(0, window.jobs_allowed(cap) - in_flight)
