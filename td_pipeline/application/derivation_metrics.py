"""What the derivation stream says about the pipeline, as numbers: requests, outcomes, failure
classes and request-to-completed latency. Pure: the metrics server feeds it the stream's
messages as facts (decoded at the edge) and reads a snapshot on every scrape.

The facts come from the stream that holds the requests and the outcome events, read from its
start, so the counts survive a restart of the metrics server."""

from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import StrEnum

from td_pipeline.application.retries import (
    EXECUTOR_FAILED_AT_ONCE,
    NO_RETRY_CAN_FIX,
    Stage,
    failed_stage,
)

# Request -> completed, in seconds: a derivation takes seconds offline, minutes with an LLM.
LATENCY_BUCKETS: tuple[float, ...] = (1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
# Requests waiting for their outcome that are remembered for the latency (oldest forgotten).
MAX_OPEN_REQUESTS = 100_000


class FailureClass(StrEnum):
    LLM = "llm"  # the executor failed, lost or never answered the job
    VALIDATION = "validation"  # the LLM's answer was unusable
    PEER_UNAVAILABLE = "peer_unavailable"  # Planning, Context or the executor could not be reached
    BAD_REQUEST = "bad_request"  # input no retry can fix (refused request, unknown plan, ...)
    MANUAL_REVIEW = "manual_review"  # the attempts ran out: a person has to look


# The stage each part of a failed event's reason names (`retries.failure_reason`).
_STAGE_CLASSES = {
    Stage.SUBMISSION: FailureClass.PEER_UNAVAILABLE,
    Stage.ANSWER: FailureClass.LLM,
    Stage.VALIDATION: FailureClass.VALIDATION,
    Stage.PERSISTENCE: FailureClass.PEER_UNAVAILABLE,
}


def failure_class(reason: str, requires_manual_review: bool) -> FailureClass:
    """The class of a `task.derivation.failed` event, from its reason and review flag.

    A failed attempt's reason says where it failed (`failed while <stage>: ...`, see
    `retries.failure_reason`) and, when td-pipeline gives up, why. A refused request's
    reason says neither: it is a bad request. Giving up because no retry can fix the input is
    a bad request too; giving up because the attempts ran out is `manual_review`."""
    stage = failed_stage(reason)
    if stage is None or NO_RETRY_CAN_FIX in reason:
        return FailureClass.BAD_REQUEST
    if requires_manual_review:
        return FailureClass.MANUAL_REVIEW
    if stage is Stage.SUBMISSION and EXECUTOR_FAILED_AT_ONCE in reason:
        return FailureClass.LLM
    return _STAGE_CLASSES[stage]


@dataclass(frozen=True, slots=True)
class Requested:
    """A `task.derivation.requested` message; `derivation_id` is the one a derivation of it
    gets (`request_intake.derivation_id_for` its message key)."""

    derivation_id: str
    at: float  # when the stream stored it, in seconds since the epoch


@dataclass(frozen=True, slots=True)
class Completed:
    derivation_id: str | None
    at: float


@dataclass(frozen=True, slots=True)
class Failed:
    derivation_id: str | None
    reason: str
    requires_manual_review: bool
    at: float


StreamFact = Requested | Completed | Failed


@dataclass(frozen=True, slots=True)
class LatencyHistogram:
    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]  # per bound, then +Inf (== count)
    total_seconds: float

    @property
    def count(self) -> int:
        return self.cumulative[-1]


@dataclass(frozen=True, slots=True)
class TallySnapshot:
    requested: int
    completed: int
    failed: dict[FailureClass, int]
    latency: LatencyHistogram
    last_sequence: int  # the stream sequence read up to


@dataclass
class DerivationTally:
    """Counts kept incrementally, message by message, in stream order."""

    requested: int = 0
    completed: int = 0
    failed: dict[FailureClass, int] = field(default_factory=lambda: dict.fromkeys(FailureClass, 0))
    last_sequence: int = 0
    _buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    _latency_sum: float = 0.0
    _open: OrderedDict[str, float] = field(default_factory=OrderedDict)

    def observe(self, fact: StreamFact | None, sequence: int) -> None:
        """One stream message (None: a message that is no fact of ours)."""
        self.last_sequence = max(self.last_sequence, sequence)
        if isinstance(fact, Requested):
            self.requested += 1
            self._open[fact.derivation_id] = fact.at
            if len(self._open) > MAX_OPEN_REQUESTS:
                self._open.popitem(last=False)
        elif isinstance(fact, Completed):
            self.completed += 1
            requested_at = self._open.pop(fact.derivation_id or "", None)
            if requested_at is not None:
                self._observe_latency(max(0.0, fact.at - requested_at))
        elif isinstance(fact, Failed):
            self.failed[failure_class(fact.reason, fact.requires_manual_review)] += 1
            if fact.requires_manual_review:  # the derivation is over without a completion
                self._open.pop(fact.derivation_id or "", None)

    def _observe_latency(self, seconds: float) -> None:
        self._buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._latency_sum += seconds

    def snapshot(self) -> TallySnapshot:
        cumulative: list[int] = []
        running = 0
        for count in self._buckets:
            running += count
            cumulative.append(running)
        return TallySnapshot(
            requested=self.requested,
            completed=self.completed,
            failed=dict(self.failed),
            latency=LatencyHistogram(LATENCY_BUCKETS, tuple(cumulative), self._latency_sum),
            last_sequence=self.last_sequence,
        )
