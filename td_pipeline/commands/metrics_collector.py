"""The Prometheus collector of `td-pipeline serve-metrics`: every value is read when Prometheus
scrapes, from sources that outlive this process (the derivation stream, JetStream's consumer
info, the Dagster instance, the peers' health checks). Only the stream tally is kept between
scrapes, and it is rebuilt from the stream's start after a restart.

The sources are Protocols (`metrics_sources`) so that the collector is tested with fakes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from td_pipeline.application.derivation_metrics import DerivationTally, FailureClass
from td_pipeline.application.readiness import Check, Readiness, daemon_check
from td_pipeline.commands.metrics_sources import (
    Durable,
    InstanceSource,
    NatsSource,
    PeerProbe,
    StreamSource,
)
from td_pipeline.orchestration.instance_metrics import DaemonHeartbeats

MESSAGES_PER_SCRAPE = 5_000  # a long stream is caught up over several scrapes


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


class PipelineCollector(Collector):
    def __init__(
        self,
        stream: StreamSource,
        nats: NatsSource,
        instance: InstanceSource,
        peers: Sequence[PeerProbe],
        durables: Sequence[Durable],
        heartbeat_tolerance_seconds: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._stream = stream
        self._nats = nats
        self._instance = instance
        self._peers = tuple(peers)
        self._durables = tuple(durables)
        self._tolerance = heartbeat_tolerance_seconds
        self._clock = clock
        self._tally = DerivationTally()
        self._lock = threading.Lock()  # scrapes and /ready may come in on several threads

    # -- readiness ------------------------------------------------------------------------

    def readiness(self) -> Readiness:
        with self._lock:
            return self._readiness(self._clock())

    def _readiness(self, now: datetime, beats: DaemonHeartbeats | None = None) -> Readiness:
        checks = [self._nats_check(), self._daemon_check(now, beats)]
        for peer in self._peers:
            problem = self._guarded(peer.problem)
            checks.append(Check(peer.name, problem is None, problem or ""))
        return Readiness(tuple(checks))

    def _nats_check(self) -> Check:
        try:
            self._nats.ping()
        except Exception as error:
            return Check("nats", False, _first_line(error))
        return Check("nats", True)

    def _daemon_check(self, now: datetime, beats: DaemonHeartbeats | None) -> Check:
        """From `beats` when this scrape read them already, else read here."""
        if beats is None:
            try:
                beats = self._instance.daemon_heartbeats(now)
            except Exception as error:
                detail = f"cannot read the Dagster instance: {_first_line(error)}"
                return Check("daemon", False, detail)
        return daemon_check(beats.required, beats.ages, self._tolerance)

    @staticmethod
    def _guarded(probe: Callable[[], str | None]) -> str | None:
        try:
            return probe()
        except Exception as error:
            return _first_line(error)

    # -- metrics --------------------------------------------------------------------------

    def describe(self) -> Iterator[Metric]:
        return iter(())  # values are read on scrape only

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = self._clock()
            metrics: list[Metric] = []
            up = GaugeMetricFamily(
                "td_metrics_source_up",
                "1 when the source could be read during this scrape, 0 when its metrics are "
                "missing or stale",
                labels=["source"],
            )
            up.add_metric(["stream"], float(self._catch_up()))
            metrics.extend(self._stream_metrics())
            lag_metrics, nats_up = self._consumer_metrics()
            metrics.extend(lag_metrics)
            up.add_metric(["nats"], float(nats_up))
            instance_metrics, beats = self._instance_metrics(now)
            metrics.extend(instance_metrics)
            up.add_metric(["dagster"], float(beats is not None))
            metrics.extend(self._readiness_metrics(now, beats))
            metrics.append(up)
        return iter(metrics)

    def _catch_up(self) -> bool:
        try:
            batch = self._stream.read(self._tally.last_sequence, MESSAGES_PER_SCRAPE)
        except Exception:
            return False
        if batch.restarted:
            self._tally = DerivationTally()  # a counter reset, which Prometheus understands
        for sequence, fact in batch.facts:
            self._tally.observe(fact, sequence)
        self._tally.observe(None, batch.read_to)  # past sequences deleted from the stream
        return True

    def _stream_metrics(self) -> list[Metric]:
        snapshot = self._tally.snapshot()
        requested = CounterMetricFamily(
            "td_derivations_requested",
            "task.derivation.requested messages in the derivation stream (valid or not)",
        )
        requested.add_metric([], snapshot.requested)
        completed = CounterMetricFamily(
            "td_derivations_completed", "task.derivation.completed events published"
        )
        completed.add_metric([], snapshot.completed)
        failed = CounterMetricFamily(
            "td_derivations_failed",
            "task.derivation.failed events published, by reason class",
            labels=["reason"],
        )
        for reason in FailureClass:
            failed.add_metric([reason.value], snapshot.failed[reason])
        latency = snapshot.latency
        histogram = HistogramMetricFamily(
            "td_derivation_request_to_completed_seconds",
            "Seconds from a derivation request to its task.derivation.completed event "
            "(retries included), as the stream stored them",
        )
        histogram.add_metric(
            [],
            [
                *(
                    (str(float(bound)), count)  # "20.0", as prometheus_client writes `le`
                    for bound, count in zip(latency.bounds, latency.cumulative, strict=False)
                ),
            ],
            latency.total_seconds,
        )
        read = GaugeMetricFamily(
            "td_derivation_stream_read_sequence",
            "The derivation stream's sequence the counts above are read up to",
        )
        read.add_metric([], snapshot.last_sequence)
        return [requested, completed, failed, histogram, read]

    def _consumer_metrics(self) -> tuple[list[Metric], bool]:
        pending = GaugeMetricFamily(
            "td_consumer_pending_messages",
            "Messages in the stream not yet delivered to the durable consumer (its lag)",
            labels=["stream", "durable"],
        )
        ack_pending = GaugeMetricFamily(
            "td_consumer_ack_pending_messages",
            "Messages delivered to the durable consumer and not acknowledged yet",
            labels=["stream", "durable"],
        )
        try:
            for durable in self._durables:
                lag = self._nats.consumer_lag(durable.stream, durable.durable)
                if lag is not None:  # not created yet: the sensor creates it on its first tick
                    labels = [lag.stream, lag.durable]
                    pending.add_metric(labels, lag.pending)
                    ack_pending.add_metric(labels, lag.ack_pending)
        except Exception:
            return [pending, ack_pending], False
        return [pending, ack_pending], True

    def _instance_metrics(self, now: datetime) -> tuple[list[Metric], DaemonHeartbeats | None]:
        """The instance's metrics, and the heartbeats read for them (None: not readable)."""
        try:
            runs = self._instance.run_counts()
            sensors = self._instance.sensor_success_ages(now)
            waiting = self._instance.llm_waiting(now)
            stalls = self._instance.fetch_stalls()
            admission = self._instance.llm_admission(now)
            beats = self._instance.daemon_heartbeats(now)
        except Exception:
            return [], None
        queued = GaugeMetricFamily("td_runs_queued", "Dagster runs queued, per job", labels=["job"])
        in_progress = GaugeMetricFamily(
            "td_runs_in_progress",
            "Dagster runs starting, started or canceling, per job",
            labels=["job"],
        )
        for job, count in runs.queued.items():
            queued.add_metric([job], count)
        for job, count in runs.in_progress.items():
            in_progress.add_metric([job], count)
        sensor_age = GaugeMetricFamily(
            "td_sensor_last_success_age_seconds",
            "Seconds since each sensor's last successful (or skipped) tick",
            labels=["sensor"],
        )
        for sensor, age in sorted(sensors.items()):
            sensor_age.add_metric([sensor], age)
        waiting_count = _gauge(
            "td_llm_waiting_attempts",
            "Attempts handed to the LLM that no answer or failure closed yet",
            waiting.attempts,
        )
        oldest = _gauge(
            "td_llm_oldest_waiting_attempt_age_seconds",
            "Seconds the oldest attempt has waited on the LLM (0 when none waits)",
            waiting.oldest_seconds,
        )
        unreadable = _gauge(
            "td_unreadable_submissions",
            "Stories whose latest submission record this version cannot read, in the "
            "watchdog's window (the code server's log names each)",
            waiting.unreadable,
        )
        window = _gauge(
            "td_llm_window",
            "LLM jobs the window allows in flight now (learnt, at most TD_LLM_MAX_IN_FLIGHT)",
            admission.window,
        )
        jobs = _gauge(
            "td_llm_jobs_in_flight",
            "LLM jobs in flight: submitted, or in a derive run about to submit, not yet "
            "answered, failed or given up",
            admission.in_flight,
        )
        stalled = CounterMetricFamily(
            "td_nats_fetch_stalls",
            "Fetches of a NATS-driven sensor that NATS did not end within their timeout",
            labels=["sensor"],
        )
        for sensor, count in sorted(stalls.items()):
            stalled.add_metric([sensor], count)
        heartbeat = GaugeMetricFamily(
            "td_daemon_heartbeat_age_seconds",
            "Seconds since each Dagster daemon's last heartbeat",
            labels=["daemon"],
        )
        for daemon, age in sorted(beats.ages.items()):
            heartbeat.add_metric([daemon], age)
        gauges = [waiting_count, oldest, unreadable, window, jobs]
        return [queued, in_progress, sensor_age, *gauges, stalled, heartbeat], beats

    def _readiness_metrics(self, now: datetime, beats: DaemonHeartbeats | None) -> list[Metric]:
        readiness = self._readiness(now, beats)
        up = GaugeMetricFamily(
            "td_dependency_up",
            "1 when a dependency passes its readiness check (NATS, the Dagster daemon, the "
            "gRPC peers' health checks)",
            labels=["dependency"],
        )
        for check in readiness.checks:
            up.add_metric([check.name], float(check.ok))
        ready = GaugeMetricFamily("td_ready", "1 when /ready answers 200")
        ready.add_metric([], float(readiness.ready))
        return [up, ready]


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    """A gauge of one value, without labels."""
    gauge = GaugeMetricFamily(name, documentation)
    gauge.add_metric([], value)
    return gauge
