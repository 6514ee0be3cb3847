"""The metrics server's collector and HTTP app, with fake sources."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from td_pipeline.application.derivation_metrics import Completed, Failed, Requested, StreamFact
from td_pipeline.commands.metrics_collector import PipelineCollector
from td_pipeline.commands.metrics_sources import Durable
from td_pipeline.commands.serve_metrics import metrics_app
from td_pipeline.infrastructure.jetstream_monitor import ConsumerLag, NatsUnavailable, StreamBatch
from td_pipeline.orchestration.instance_metrics import (
    DaemonHeartbeats,
    LlmAdmission,
    LlmWaiting,
    RunCounts,
)

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
LLM_RETRY = "failed while waiting for the LLM: timeout; will retry (attempt 2 of 3)"


class FakeStream:
    def __init__(self) -> None:
        self.messages: list[StreamFact | None] = []
        self.reads: list[tuple[int, int]] = []
        self.restarted = False

    def read(self, after_sequence: int, limit: int) -> StreamBatch:
        self.reads.append((after_sequence, limit))
        start = 0 if self.restarted else after_sequence
        facts = tuple(
            (sequence, fact)
            for sequence, fact in enumerate(self.messages, start=1)
            if sequence > start
        )[:limit]
        batch = StreamBatch(facts, self.restarted)
        self.restarted = False
        return batch


class FakeNats:
    def __init__(self) -> None:
        self.up = True
        self.lags = {"requests": ConsumerLag("task_derivation", "requests", 7, 2)}

    def ping(self) -> None:
        if not self.up:
            raise NatsUnavailable("not connected to NATS at nats://x (reconnecting)")

    def consumer_lag(self, stream: str, durable: str) -> ConsumerLag | None:
        self.ping()
        return self.lags.get(durable)


class FakeInstance:
    def __init__(self) -> None:
        self.heartbeat_age = 5.0
        self.heartbeat_reads = 0

    def run_counts(self) -> RunCounts:
        return RunCounts({"derive_tasks": 3}, {"derive_tasks": 1})

    def daemon_heartbeats(self, now: datetime) -> DaemonHeartbeats:
        self.heartbeat_reads += 1
        return DaemonHeartbeats(("SENSOR",), {"SENSOR": self.heartbeat_age})

    def sensor_success_ages(self, now: datetime) -> dict[str, float]:
        return {"derivation_request_sensor": 4.0}

    def llm_waiting(self, now: datetime) -> LlmWaiting:
        return LlmWaiting(2, 42.5, unreadable=1)

    def fetch_stalls(self) -> dict[str, int]:
        return {"derivation_request_sensor": 0, "derivation_result_sensor": 3}

    def llm_admission(self, now: datetime) -> LlmAdmission:
        return LlmAdmission(window=8, in_flight=6)


class FakePeer:
    def __init__(self, name: str, problem: str | None = None) -> None:
        self.name = name
        self.answer = problem

    def problem(self) -> str | None:
        return self.answer


def collector(
    stream: FakeStream, nats: FakeNats, instance: FakeInstance, peers: list[FakePeer]
) -> PipelineCollector:
    return PipelineCollector(
        stream,
        nats,
        instance,
        peers,
        [Durable("task_derivation", "requests"), Durable("AGENT_RESPONSES", "results")],
        heartbeat_tolerance_seconds=60,
        clock=lambda: NOW,
    )


def samples(pipeline: PipelineCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    app = metrics_app(pipeline)
    status, body = call(app, "/metrics")
    assert status.startswith("200")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def call(app: Callable[..., Any], path: str) -> tuple[str, str]:
    seen: list[str] = []
    environ = {
        "PATH_INFO": path,
        "REQUEST_METHOD": "GET",
        "QUERY_STRING": "",
        "wsgi.input": io.BytesIO(),
    }
    body = b"".join(app(environ, lambda status, headers: seen.append(status)))
    return seen[0], body.decode()


def test_a_scrape_reads_the_stream_on_from_where_it_stopped_and_every_source() -> None:
    stream, nats, instance = FakeStream(), FakeNats(), FakeInstance()
    pipeline = collector(stream, nats, instance, [FakePeer("planning")])
    stream.messages = [Requested("d-1", 10.0), Failed("d-1", LLM_RETRY, False, 12.0)]

    first = samples(pipeline)
    stream.messages += [Completed("d-1", 40.0), Requested("d-2", 41.0)]
    second = samples(pipeline)

    assert stream.reads[0][0] == 0 and stream.reads[1][0] == 2  # incremental
    assert first[("td_derivations_requested_total", ())] == 1
    assert first[("td_derivations_failed_total", (("reason", "llm"),))] == 1
    assert first[("td_derivations_completed_total", ())] == 0
    assert second[("td_derivations_requested_total", ())] == 2
    assert second[("td_derivations_completed_total", ())] == 1
    assert second[("td_derivation_request_to_completed_seconds_count", ())] == 1
    assert second[("td_derivation_request_to_completed_seconds_sum", ())] == 30.0
    assert second[("td_derivation_request_to_completed_seconds_bucket", (("le", "20.0"),))] == 0
    assert second[("td_derivation_request_to_completed_seconds_bucket", (("le", "30.0"),))] == 1
    labels = (("durable", "requests"), ("stream", "task_derivation"))
    assert second[("td_consumer_pending_messages", labels)] == 7
    assert second[("td_consumer_ack_pending_messages", labels)] == 2
    assert not any(
        name == "td_consumer_pending_messages" and ("durable", "results") in key
        for name, key in second
    )  # a durable not created yet has no sample
    assert second[("td_runs_queued", (("job", "derive_tasks"),))] == 3
    assert second[("td_runs_in_progress", (("job", "derive_tasks"),))] == 1
    assert second[("td_llm_waiting_attempts", ())] == 2
    assert second[("td_llm_oldest_waiting_attempt_age_seconds", ())] == 42.5
    assert second[("td_unreadable_submissions", ())] == 1
    stalls = ("td_nats_fetch_stalls_total", (("sensor", "derivation_result_sensor"),))
    assert second[stalls] == 3
    assert (second[("td_llm_window", ())], second[("td_llm_jobs_in_flight", ())]) == (8, 6)
    sensor = (("sensor", "derivation_request_sensor"),)
    assert second[("td_sensor_last_success_age_seconds", sensor)] == 4.0
    assert second[("td_daemon_heartbeat_age_seconds", (("daemon", "SENSOR"),))] == 5.0
    assert second[("td_ready", ())] == 1


def test_a_recreated_stream_starts_the_counts_over() -> None:
    stream = FakeStream()
    pipeline = collector(stream, FakeNats(), FakeInstance(), [])
    stream.messages = [Requested("d-1", 1.0), Requested("d-2", 2.0)]
    assert samples(pipeline)[("td_derivations_requested_total", ())] == 2
    stream.messages, stream.restarted = [Requested("d-9", 3.0)], True
    assert samples(pipeline)[("td_derivations_requested_total", ())] == 1


def test_nats_down_keeps_the_counts_says_so_and_makes_ready_fail() -> None:
    stream, nats, instance = FakeStream(), FakeNats(), FakeInstance()
    stream.messages = [Requested("d-1", 1.0)]
    pipeline = collector(stream, nats, instance, [FakePeer("planning")])
    samples(pipeline)
    nats.up = False

    def broken(after_sequence: int, limit: int) -> StreamBatch:
        raise NatsUnavailable("gone")

    stream.read = broken  # type: ignore[method-assign]
    scraped = samples(pipeline)

    assert scraped[("td_derivations_requested_total", ())] == 1
    assert scraped[("td_metrics_source_up", (("source", "stream"),))] == 0
    assert scraped[("td_metrics_source_up", (("source", "nats"),))] == 0
    assert scraped[("td_metrics_source_up", (("source", "dagster"),))] == 1
    assert scraped[("td_dependency_up", (("dependency", "nats"),))] == 0
    assert scraped[("td_ready", ())] == 0
    status, body = call(metrics_app(pipeline), "/ready")
    assert status.startswith("503")
    assert "NOT READY nats: not connected to NATS at nats://x (reconnecting)" in body
    assert "ok planning" in body and "ok daemon" in body


def test_ready_names_a_stale_daemon_and_a_peer_that_does_not_serve() -> None:
    instance = FakeInstance()
    instance.heartbeat_age = 300
    app = metrics_app(
        collector(FakeStream(), FakeNats(), instance, [FakePeer("executor", "x:1: UNAVAILABLE")])
    )
    status, body = call(app, "/ready")
    assert status.startswith("503")
    assert "NOT READY daemon: stale heartbeats: SENSOR (300s ago)" in body
    assert "NOT READY executor: x:1: UNAVAILABLE" in body
    assert call(app, "/health") == ("200 OK", "ok\n")
    assert call(app, "/nope")[0].startswith("404")


def test_ready_when_everything_answers() -> None:
    app = metrics_app(collector(FakeStream(), FakeNats(), FakeInstance(), [FakePeer("planning")]))
    assert call(app, "/ready") == ("200 OK", "ok nats\nok daemon\nok planning\n")


def test_a_scrape_reads_the_daemon_heartbeats_once_for_the_gauges_and_readiness() -> None:
    instance = FakeInstance()
    values = samples(collector(FakeStream(), FakeNats(), instance, []))
    assert values[("td_dependency_up", (("dependency", "daemon"),))] == 1.0
    assert values[("td_daemon_heartbeat_age_seconds", (("daemon", "SENSOR"),))] == 5.0
    assert instance.heartbeat_reads == 1
