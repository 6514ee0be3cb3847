"""What the Dagster instance tells the metrics server: runs queued and under way, the daemon's
heartbeats, each sensor's last successful tick and the attempts waiting on the LLM.

Each reading is a bounded query (counts, one tick per sensor, the watchdog's window of recent
submissions), never a walk over every story partition."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg
from dagster._core.scheduler.instigation import (
    InstigatorType,
    SensorInstigatorData,
    TickStatus,
)

from td_pipeline.orchestration.attempt_queries import waiting_attempts
from td_pipeline.orchestration.batch_jobs import derive_batch_job, persist_batch_job
from td_pipeline.orchestration.jobs import derive_job, persist_job, retry_job
from td_pipeline.orchestration.llm_admission import llm_jobs_in_flight, read_window
from td_pipeline.orchestration.nats_ticks import stalled_fetches
from td_pipeline.orchestration.request_sensor import derivation_request_sensor
from td_pipeline.orchestration.result_sensor import derivation_result_sensor
from td_pipeline.orchestration.watchdog_sensor import waiting_since

JOB_NAMES = tuple(
    job.name for job in (derive_job, persist_job, retry_job, derive_batch_job, persist_batch_job)
)
QUEUED = (dg.DagsterRunStatus.QUEUED,)
IN_PROGRESS = (
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
)
NATS_SENSORS = (derivation_request_sensor.name, derivation_result_sensor.name)
SUCCESSFUL_TICKS = [TickStatus.SUCCESS, TickStatus.SKIPPED]  # skipped: nothing to do, no error


@dataclass(frozen=True, slots=True)
class RunCounts:
    queued: Mapping[str, int]  # per job
    in_progress: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class LlmWaiting:
    attempts: int
    oldest_seconds: float  # 0 when none waits
    unreadable: int  # stories whose latest submission record cannot be read


@dataclass(frozen=True, slots=True)
class LlmAdmission:
    window: int  # LLM jobs the window allows now
    in_flight: int


@dataclass(frozen=True, slots=True)
class DaemonHeartbeats:
    required: tuple[str, ...]  # the daemons this instance needs
    ages: Mapping[str, float]  # seconds since each daemon's last heartbeat


class InstanceReadings:
    """Readings of one Dagster instance, each a few bounded queries."""

    def __init__(
        self, instance: dg.DagsterInstance, llm_timeout_seconds: int, llm_max_in_flight: int
    ) -> None:
        self._instance = instance
        self._llm_timeout_seconds = llm_timeout_seconds
        self._llm_max_in_flight = llm_max_in_flight

    def run_counts(self) -> RunCounts:
        def count(job: str, statuses: tuple[dg.DagsterRunStatus, ...]) -> int:
            filters = dg.RunsFilter(job_name=job, statuses=list(statuses))
            return self._instance.get_runs_count(filters=filters)

        return RunCounts(
            queued={job: count(job, QUEUED) for job in JOB_NAMES},
            in_progress={job: count(job, IN_PROGRESS) for job in JOB_NAMES},
        )

    def daemon_heartbeats(self, now: datetime) -> DaemonHeartbeats:
        beats = self._instance.get_daemon_heartbeats()
        return DaemonHeartbeats(
            required=tuple(self._instance.get_required_daemon_types()),
            ages={daemon: now.timestamp() - beat.timestamp for daemon, beat in beats.items()},
        )

    def sensor_success_ages(self, now: datetime) -> dict[str, float]:
        """Seconds since each sensor's last successful (or skipped) tick; a sensor that never
        had one is left out."""
        ages: dict[str, float] = {}
        for state in self._instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
            ticks = self._instance.get_ticks(
                state.instigator_origin_id, state.selector_id, limit=1, statuses=SUCCESSFUL_TICKS
            )
            if ticks:
                ages[state.instigator_name] = now.timestamp() - ticks[0].timestamp
        return ages

    def llm_admission(self, now: datetime) -> LlmAdmission:
        """The LLM window and the jobs it counts, as the request sensor reads them."""
        return LlmAdmission(
            window=read_window(self._instance).jobs_allowed(self._llm_max_in_flight),
            in_flight=llm_jobs_in_flight(self._instance, now, self._llm_timeout_seconds),
        )

    def fetch_stalls(self) -> dict[str, int]:
        """Each NATS-driven sensor's stalled fetches so far, from its cursor."""
        return {
            state.instigator_name: stalled_fetches(state.instigator_data.cursor)
            for state in self._instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
            if state.instigator_name in NATS_SENSORS
            and isinstance(state.instigator_data, SensorInstigatorData)
        }

    def llm_waiting(self, now: datetime) -> LlmWaiting:
        """Submissions to the LLM that no answer or failure closed yet, in the watchdog's window."""
        waiting = waiting_attempts(self._instance, waiting_since(now, self._llm_timeout_seconds))
        ages = [
            (now - attempt.submitted_at.astimezone(UTC)).total_seconds()
            for attempt in waiting.attempts
        ]
        return LlmWaiting(len(ages), max(ages, default=0.0), len(waiting.unreadable))
