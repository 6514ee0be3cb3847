"""The LLM window's state and the jobs it counts, from the Dagster instance.

The window (`application.llm_window`) is kept in the instance's key-value store, which the
daemon, the code servers and the metrics server share and which outlives them all (SQLite or
PostgreSQL, as the instance is). Only the result sensor writes it. The jobs in flight are
never kept: they are counted each time from the runs and submissions, so that no lost job,
superseded attempt, cancelled or failed run can hold a slot (a kept count could leak)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg

from td_pipeline.application.llm_window import PREPARED_WINDOWS, LlmWindow, slots_free
from td_pipeline.application.ports import ExecutorPort, PortError, Unavailable
from td_pipeline.orchestration.attempt_queries import (
    IN_FLIGHT,
    answered_attempts,
    latest_submissions,
    paged_records,
    unanswered,
)
from td_pipeline.orchestration.attempts import PHASE_TAG, Phase, run_attempts
from td_pipeline.orchestration.resources import DerivationSettings
from td_pipeline.orchestration.step_failures import retryable_failure

WINDOW_KEY = "td_pipeline.llm_window"


def read_window(instance: dg.DagsterInstance) -> LlmWindow:
    """The learnt window; the initial one before any answer (or if the stored one is not
    readable: it is relearnt within a few answers)."""
    stored = instance.run_storage.get_cursor_values({WINDOW_KEY}).get(WINDOW_KEY)
    if not stored:
        return LlmWindow()
    try:
        fields = json.loads(stored)
        return LlmWindow(
            limit=float(fields["limit"]),
            fastest_seconds=fields.get("fastest_seconds"),
            threshold=fields.get("threshold"),
            shrunk_at=float(fields.get("shrunk_at", 0.0)),
            round_at=float(fields.get("round_at", 0.0)),
            round_limit=float(fields.get("round_limit", fields["limit"])),
            served=int(fields.get("served", 0)),
        )
    except (ValueError, KeyError, TypeError):
        return LlmWindow()


def write_window(instance: dg.DagsterInstance, window: LlmWindow) -> None:
    value = {
        "limit": window.limit,
        "fastest_seconds": window.fastest_seconds,
        "threshold": window.threshold,
        "shrunk_at": window.shrunk_at,
        "round_at": window.round_at,
        "round_limit": window.round_limit,
        "served": window.served,
    }
    instance.run_storage.set_cursor_values({WINDOW_KEY: json.dumps(value)})


def in_flight_since(now: datetime, llm_timeout_seconds: int) -> datetime:
    """How far back an unanswered submission still holds a slot: past twice the LLM timeout
    the watchdog has given it up (a daemon away for longer frees it here, not there)."""
    return now - timedelta(seconds=2 * llm_timeout_seconds)


@dataclass(frozen=True, slots=True)
class Preparing:
    """A story in a derive run that is queued or running, not handed to the executor yet."""

    story: str
    run_id: str
    started_at: float | None  # epoch seconds; None while the run waits to start


@dataclass(frozen=True, slots=True)
class LlmLoad:
    """What the window is compared with, counted from the instance (never kept)."""

    at_executor: frozenset[str]  # stories whose latest submission is not answered yet
    preparing: tuple[Preparing, ...]
    deliberations: tuple[str, ...] = ()  # the executor's ids of the jobs of `at_executor`

    @property
    def in_flight(self) -> int:
        """Stories between their request and their answer (what the request sensor admits)."""
        return len(self.at_executor | self._preparing_stories)

    @property
    def being_prepared(self) -> int:
        """Stories in derive runs, not handed to the executor yet."""
        return len(self._preparing_stories)

    @property
    def _preparing_stories(self) -> frozenset[str]:
        return frozenset(p.story for p in self.preparing)

    def ahead_of(self, run_id: str) -> int:
        """Stories of other runs that started before `run_id`: they are handed over first. A
        run not among them (launched by hand, without our tags) waits behind all of them."""
        mine = next((p.started_at for p in self.preparing if p.run_id == run_id), None)
        return sum(
            1
            for p in self.preparing
            if p.run_id != run_id
            and p.started_at is not None
            and (mine is None or (p.started_at, p.run_id) < (mine, run_id))
        )


def llm_load(instance: dg.DagsterInstance, now: datetime, llm_timeout_seconds: int) -> LlmLoad:
    """Three paged queries over recent runs and submissions, whatever the number of stories
    ever derived."""
    # The derive runs first: a story handed over (and its run ended) between the reads is then
    # counted twice, never not at all.
    derive_runs = dg.RunsFilter(tags={PHASE_TAG: Phase.DERIVE.value}, statuses=IN_FLIGHT)
    records = list(paged_records(instance, derive_runs))
    since = in_flight_since(now, llm_timeout_seconds)
    latest = latest_submissions(instance, since).by_story
    answered = answered_attempts(instance, since)
    waiting = [s for s in unanswered(latest, answered) if s.submitted_at >= since]
    at_executor = frozenset(submission.story for submission in waiting)
    preparing: list[Preparing] = []
    for record in records:
        for attempt in run_attempts(record.dagster_run):
            handed = latest.get(attempt.story)
            if handed is None or (handed.derivation_id, handed.attempt) != (
                attempt.derivation_id,
                attempt.attempt,
            ):
                run_id = record.dagster_run.run_id
                preparing.append(Preparing(attempt.story, run_id, record.start_time))
    deliberations = tuple(submission.deliberation_id for submission in waiting)
    return LlmLoad(at_executor, tuple(preparing), deliberations)


def llm_jobs_in_flight(
    instance: dg.DagsterInstance, now: datetime, llm_timeout_seconds: int
) -> int:
    """Stories whose LLM job is in flight: in a derive run (its own or a batch) that has not
    handed them over yet, or handed over and not answered, failed or given up yet."""
    return llm_load(instance, now, llm_timeout_seconds).in_flight


GATE_POLL_SECONDS = 0.25  # the executor is asked whether its jobs are done
GATE_READ_SECONDS = 2.0  # the instance is read again (the runs ahead, new jobs)
GATE_REPORT_SECONDS = 30.0
# What the executor says of a job that no longer holds a slot; anything else (running, a
# state it may add, no answer at all) holds it.
DONE_AT_EXECUTOR = frozenset({"completed", "failed", "not_found"})


class LlmGate:
    """The hand-over to the executor, for one derive run (a story's own, or a batch): a story
    goes when the window has a slot free, after the stories of runs that started earlier.

    No lock: every run counts the same facts from the instance, and a story still being
    handed over counts as ahead of every later run until its submission is on record, so two
    runs never take one slot. A slot is free as soon as the executor says its job is done
    (`GetDeliberationStatus`), not only once the result sensor has seen the answer: the sensor
    ticks every 2 s, half a job of a 4 s LLM. The slots free are spent story by story, and read
    again only when spent (a batch does not read the instance for each story while the window
    is wide open)."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        run_id: str,
        executor: ExecutorPort,
        settings: DerivationSettings,
        log: Callable[[str], None],
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._instance, self._run_id, self._executor = instance, run_id, executor
        self._settings, self._log, self._sleep, self._clock = settings, log, sleep, clock
        self._free = 0

    def _busy(self, deliberations: tuple[str, ...], enough: int) -> int:
        """The jobs the executor has not finished, counted up to `enough` (past it the answer
        is the same: no slot)."""
        busy = 0
        for deliberation_id in deliberations:
            if busy >= enough:
                break
            try:
                status = self._executor.deliberation_status(deliberation_id).status
            except PortError:
                status = "unknown"
            busy += status not in DONE_AT_EXECUTOR
        return busy

    def wait_for_slot(self, story: str) -> None:
        """Returns when `story` may be handed over; fails it after the LLM timeout once for each
        window prepared ahead and once more (by then the watchdog has freed every slot of a lost
        job, and a story prepared last has had its turn), as an outage: a batch does not make
        its other stories wait as long, one after the other."""
        cap, timeout = self._settings.llm_max_in_flight, self._settings.llm_timeout_seconds
        started = self._clock()
        reported = started - GATE_REPORT_SECONDS
        read_at = started - GATE_READ_SECONDS
        load, window, ahead = LlmLoad(frozenset(), ()), LlmWindow(), 0
        while self._free < 1:
            if self._clock() - read_at >= GATE_READ_SECONDS:
                load = llm_load(self._instance, datetime.now(UTC), timeout)
                window, ahead = read_window(self._instance), load.ahead_of(self._run_id)
                read_at = self._clock()
            allowed = window.jobs_allowed(cap)
            busy = self._busy(load.deliberations, enough=allowed - ahead)
            self._free = slots_free(window, busy, ahead, cap)
            if self._free >= 1:
                break
            why = (
                f"{busy} LLM job(s) at the executor of a window of {allowed}, "
                f"{ahead} story(ies) ahead"
            )
            waited = self._clock() - started
            # By then the watchdog has freed every slot of a lost job; a story prepared
            # PREPARED_WINDOWS windows ahead waits that many round trips in the normal course.
            if waited >= (1 + PREPARED_WINDOWS) * timeout:
                raise retryable_failure(
                    f"no free LLM slot for {story} within {waited:.0f} s ({why})"
                ) from Unavailable("the LLM window stayed full")
            if self._clock() - reported >= GATE_REPORT_SECONDS:
                self._log(f"{story} waits for a free LLM slot: {why}")
                reported = self._clock()
            self._sleep(GATE_POLL_SECONDS)
        self._free -= 1
