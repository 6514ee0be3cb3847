"""How many LLM jobs may be in flight: a window learned from how fast answers come back.

The fleet's executor takes every job at once and vLLM queues what it cannot serve; a job past
the executor's 60 s (queue included) fails. Queueing shows as latency before it shows as
failures, so the window follows latency, as TCP Vegas and Netflix's gradient limiter do
(docs/architecture.md, "The LLM window"):

- while answers come back about as fast as the fastest recent one, every answer widens the
  window by half a job (slow start: x1.5 per round trip, so a fast LLM is not throttled), and,
  once the window has met congestion, by one per window's worth of answers;
- when they come back slower, the window shrinks in proportion to how much slower, and a
  timeout halves it, once per round trip: answers to jobs handed over before the last shrink
  tell of the queue that shrink already drains, and are not counted against it again;
- `TD_LLM_MAX_IN_FLIGHT` bounds it.

Slow start ends as soon as answers begin to queue (as CUBIC's HyStart does on the first growth
of the round-trip time), before the queue is long. And the window never grows past one and a
half times the most jobs the LLM was seen to serve together without queueing (`served`): the
answers of a round's first jobs come back before those of its queued jobs can show the queue,
and growing on them alone took the window to more than twice the LLM's slots (9 for 4 in slow
start; 3 for 1 past it, on the fast answers of a window held half empty). One more job than
were served is always allowed, so that one job served alone lets two be tried; and an LLM that
answers within a second is not bound so (see `LlmWindow.growth_bound`). Growing only while
the window is used is also what RFC 7661 asks of TCP.

The window bounds the jobs at the executor: a derive run hands a story over only when a slot
is free (`slots_free`); the request sensor starts up to `PREPARED_WINDOWS` windows more,
prepared ahead (`room`). Pure: the result sensor feeds it each tick's answers, the request
sensor and the hand-over read it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from math import floor

INITIAL_LIMIT = 2.0  # one slow GPU slot with one job queued: within twice any LLM's slots
MIN_LIMIT = 1.0
# "About as fast as the fastest": at most half as slow again (a job queued behind half a
# service time), or a second more (a fast LLM's answers vary by more than their length).
SLOWER_BY_FACTOR = 0.5
SLOWER_BY_SECONDS = 1.0
# Slow start: each fast answer widens the window by this (half a job: x1.5 per round trip).
# By one, the answers of a round's first jobs (served at once) doubled the window before the
# answers of its queued jobs could show the queue: up to three times the LLM's slots.
SLOW_START_STEP = 0.5
SLOW_START_ROUND = 1.5  # and by at most this factor per round trip
# The window grows to at most this many times the most jobs seen served together (or one more
# job: one served alone must let two be tried), once answers take a second or more.
SERVED_HEADROOM = 1.5
SERVED_SECONDS = 1.0
# Slow start ends (the window grows by one a round trip from there) once answers are a quarter
# slower than the fastest, or half a second more (a fast LLM's answers vary by more).
SLOW_START_EXIT_FACTOR = 0.25
SLOW_START_EXIT_SECONDS = 0.5
# The fastest answer is forgotten slowly (per tick with answers: a tenth in about 100 s at a
# 2 s tick). Faster, the answers of a window held full (all queued alike) became the "fastest"
# within a minute, and the window grew on queueing it no longer saw. A model that became
# slower is learnt once its slow answers have shrunk the window to one job (see `_fastest`).
FASTEST_DRIFT = 1.002
SHRINK_FLOOR = 0.5  # one shrink never takes the window below half
# Stories prepared ahead of the LLM, in windows. The next run is started once the stories
# prepared are down to one window fewer (`room`), and it needs a request tick, its queue and
# start and its first steps before it hands a story over: 10-16 s here, on two busy cores.
# Five windows cover that at a fixed window of four 4 s slots; with four the executor ran dry
# for 3-7 s once or twice a run.
PREPARED_WINDOWS = 5


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
    # Slow start's round: when it began and the window then (x1.5 at most per round).
    round_at: float = 0.0
    round_limit: float = INITIAL_LIMIT
    # The most jobs seen in flight together and all answered without queueing.
    served: int = 0

    def __post_init__(self) -> None:
        if self.limit < MIN_LIMIT:
            raise ValueError(f"an LLM window holds at least {MIN_LIMIT:g} job, not {self.limit}")
        if self.fastest_seconds is not None and self.fastest_seconds < 0:
            raise ValueError("an answer cannot come back before its submission")

    def jobs_allowed(self, cap: int) -> int:
        """The jobs that may be in flight now: the learnt window, at most `cap`."""
        return max(int(MIN_LIMIT), min(cap, floor(self.limit)))

    def describe(self, cap: int) -> str:
        """For the log: the jobs allowed, and what the window has learnt."""
        phase = "slow start" if self.threshold is None else f"past {self.threshold:.1f}"
        fastest = "-" if self.fastest_seconds is None else f"{self.fastest_seconds:.1f} s"
        return (
            f"{self.jobs_allowed(cap)} job(s) ({self.limit:.2f}, {phase}, fastest answer "
            f"{fastest}, {self.served} served together)"
        )

    @property
    def growth_bound(self) -> float:
        """How far answers may widen the window: half again the jobs seen served together,
        or one more (answers of jobs the LLM served at once come back before those of jobs
        queued behind them could show the queue). Not for an LLM that answers within
        `SERVED_SECONDS`: jobs handed over one after another finish before the next, so none
        is seen served together, and the window of such an LLM, which nothing queues at, also
        sets how many stories are prepared ahead of it (`room`)."""
        if self.fastest_seconds is None or self.fastest_seconds < SERVED_SECONDS:
            return float("inf")
        return max(self.served * SERVED_HEADROOM, self.served + 1)

    @property
    def delayed_seconds(self) -> float | None:
        """An answer slower than this in slow start shows the LLM beginning to queue (as CUBIC's
        HyStart leaves slow start on the first growth of the round-trip time)."""
        if self.fastest_seconds is None:
            return None
        return self.fastest_seconds * (1 + SLOW_START_EXIT_FACTOR) + SLOW_START_EXIT_SECONDS

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
    delayed = learnt.delayed_seconds
    if delayed is not None:
        together = most_together([answer for answer in answers if answer.seconds <= delayed])
        learnt = replace(learnt, served=max(learnt.served, together))
    limit, shrunk = learnt.limit, False
    news = [answer.seconds for answer in answers if answer.submitted_at > learnt.shrunk_at]
    slow = learnt.slow_seconds
    if any(submitted > learnt.shrunk_at for submitted in timeouts):
        limit, shrunk = limit / 2, True
    elif news and slow is not None and (typical := sorted(news)[len(news) // 2]) > slow:
        limit, shrunk = limit * max(SHRINK_FLOOR, slow / typical), True
    elif slow is not None:
        congested = learnt.threshold is not None and limit >= learnt.threshold
        if (
            not congested
            and news
            and delayed is not None
            and sorted(news)[len(news) // 2] > delayed
        ):
            # Answers begin to queue: slow start ends here, before the queue is long.
            return replace(learnt, threshold=limit)
        fast = sum(1 for answer in answers if answer.seconds <= slow)
        if congested:
            grown = limit + fast / limit
        else:
            # At most x1.5 per round trip (twice the fastest answer).
            assert learnt.fastest_seconds is not None  # `slow` is known
            if now - learnt.round_at >= 2 * learnt.fastest_seconds:
                learnt = replace(learnt, round_at=now, round_limit=limit)
            grown = min(limit + fast * SLOW_START_STEP, learnt.round_limit * SLOW_START_ROUND)
        limit = max(limit, min(grown, learnt.growth_bound))
    limit = min(float(cap), max(MIN_LIMIT, limit))
    if shrunk:
        return replace(learnt, limit=limit, threshold=limit, shrunk_at=now)
    return replace(learnt, limit=limit)


def most_together(answers: Sequence[Answer]) -> int:
    """The most of these jobs in flight at one time (from hand-over to answer). A job handed
    over as another's answer came back did not run beside it."""
    ends = [(answer.submitted_at + answer.seconds, -1) for answer in answers]
    events = sorted(ends + [(answer.submitted_at, 1) for answer in answers])
    most = together = 0
    for _, change in events:
        together += change
        most = max(most, together)
    return most


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


def room(
    window: LlmWindow, in_flight: int, cap: int, preparing: int = 0, batch_size: int = 1
) -> int:
    """How many more stories the request sensor may start: the window's jobs at the executor
    and `PREPARED_WINDOWS` windows more being prepared (plan, context, prompt, a run
    starting), so that a slot freed by an answer is filled at once rather than after a run's
    start, less those in flight (`preparing` of them not handed over yet).

    While a window's worth is being prepared the executor is fed for a while: the next run
    waits until it can carry a whole batch (a window, or `batch_size` if smaller). Runs of a
    story or two, started as each answer frees a slot, cost a run's start each, and their
    starts, not the LLM, then set the pace."""
    jobs = window.jobs_allowed(cap)
    free = max(0, (1 + PREPARED_WINDOWS) * jobs - in_flight)
    if preparing >= jobs and free < min(jobs, batch_size):
        return 0
    return free


def slots_free(window: LlmWindow, at_executor: int, ahead: int, cap: int) -> int:
    """How many stories a derive run may hand to the executor now: the window, less the jobs
    the executor holds and the stories of runs that started before this one (they go first;
    counting them is what keeps two runs from taking the same slot)."""
    return max(0, window.jobs_allowed(cap) - at_executor - ahead)
