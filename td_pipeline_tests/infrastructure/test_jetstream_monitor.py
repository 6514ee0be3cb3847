"""What the metrics server reads from NATS and the peers, against a real NATS server and a
real gRPC server with the standard health service."""

from __future__ import annotations

import asyncio
import json
import socket

import nats
import pytest
from nats.js.api import RawStreamMsg

from td_pipeline.application.derivation_metrics import Completed, Failed, Requested
from td_pipeline.application.request_intake import derivation_id_for
from td_pipeline.infrastructure.grpc_channel import ChannelSettings
from td_pipeline.infrastructure.grpc_health import GrpcHealthProbe
from td_pipeline.infrastructure.jetstream_consumer import (
    ConsumerSpec,
    JetStreamPuller,
    stored_ns,
    stream_run_key,
)
from td_pipeline.infrastructure.jetstream_monitor import (
    DerivationStreamReader,
    JetStreamMonitor,
    NatsUnavailable,
    stored_message,
)
from td_pipeline.infrastructure.nats_mappers import decode_stream_fact
from td_pipeline.infrastructure.subjects import DERIVATION_STREAM, REQUEST_DURABLE
from td_pipeline.sandbox.grpc_server import start_grpc_server
from td_pipeline.sandbox.nats_server import NatsServer, ensure_streams

FAILED = {
    "plan_id": "P",
    "story_id": "S",
    "status": "failed",
    "reason": "failed while reading the LLM's answer: no tasks; will retry (attempt 2 of 3)",
    "requires_manual_review": False,
    "occurred_at": "2026-11-01T10:00:00Z",
    "derivation_request_id": "d-1",
}
COMPLETED = {
    "plan_id": "P",
    "story_id": "S",
    "task_count": 3,
    "status": "success",
    "occurred_at": "2026-11-01T10:00:00Z",
    "derivation_request_id": "d-1",
}


def publish(url: str, *messages: tuple[str, dict[str, object]]) -> None:
    async def run() -> None:
        connection = await nats.connect(url)
        for subject, body in messages:
            await connection.jetstream().publish(subject, json.dumps(body).encode())
        await connection.close()

    asyncio.run(run())


def test_stream_messages_become_facts_bare_or_in_an_envelope() -> None:
    request = decode_stream_fact("task.derivation.requested", b"not even json", "s:1:2", 5.0)
    assert request == Requested(derivation_id_for("s:1:2").value, 5.0)
    failed = decode_stream_fact("task.derivation.failed", json.dumps(FAILED).encode(), "k", 6.0)
    assert failed == Failed("d-1", FAILED["reason"], False, 6.0)  # type: ignore[arg-type]
    envelope = {"event_type": "task.derivation.completed", "payload": COMPLETED}
    completed = decode_stream_fact(
        "task.derivation.completed", json.dumps(envelope).encode(), "k", 7.0
    )
    assert completed == Completed("d-1", 7.0)
    assert decode_stream_fact("task.derivation.failed", b"{}", "k", 1.0) is None
    assert decode_stream_fact("task.derivation.other", b"{}", "k", 1.0) is None


def test_the_stream_is_read_incrementally_and_a_request_gets_the_sensors_derivation_id(
    server: NatsServer,
) -> None:
    publish(
        server.url,
        ("task.derivation.requested", {"plan_id": "P", "story_id": "S"}),
        ("task.derivation.failed", FAILED),
    )
    monitor = JetStreamMonitor(server.url)
    try:
        reader = DerivationStreamReader(monitor, DERIVATION_STREAM.name)
        first = reader.read(0, 100)
        publish(server.url, ("task.derivation.completed", COMPLETED))
        second = reader.read(2, 100)
        nothing_new = reader.read(3, 100)
        again_from_start = reader.read(0, 1)

        # The request sensor's derivation id for the same message (its run key).
        puller = JetStreamPuller(server.url)
        spec = ConsumerSpec(DERIVATION_STREAM.name, REQUEST_DURABLE, ("task.derivation.requested",))
        puller.ensure_consumer(spec)
        [pulled] = puller.fetch(spec, 1, 2).messages
        puller.close()
        lag = monitor.consumer_lag(DERIVATION_STREAM.name, REQUEST_DURABLE)
        missing = monitor.consumer_lag(DERIVATION_STREAM.name, "no-such-durable")
    finally:
        monitor.close()

    assert [sequence for sequence, _ in first.facts] == [1, 2] and not first.restarted
    requested = first.facts[0][1]
    assert isinstance(requested, Requested)
    assert requested.derivation_id == derivation_id_for(pulled.run_key).value
    assert requested.at == pytest.approx(pulled.timestamp_ns / 1e9, abs=1e-6)
    assert isinstance(first.facts[1][1], Failed)
    assert [(s, type(f)) for s, f in second.facts] == [(3, Completed)]
    assert nothing_new.facts == ()
    assert [s for s, _ in again_from_start.facts] == [1]
    assert lag is not None and (lag.pending, lag.ack_pending) == (0, 1)
    assert missing is None


def test_a_stream_behind_what_was_read_was_recreated(server: NatsServer) -> None:
    publish(server.url, ("task.derivation.requested", {}))
    monitor = JetStreamMonitor(server.url)
    try:
        batch = DerivationStreamReader(monitor, DERIVATION_STREAM.name).read(50, 10)
    finally:
        monitor.close()
    assert batch.restarted and [s for s, _ in batch.facts] == [1]


def test_a_stream_created_again_is_read_from_its_start_even_past_the_old_sequence(
    server: NatsServer,
) -> None:
    publish(server.url, *[("task.derivation.requested", {})] * 2)
    monitor = JetStreamMonitor(server.url)
    try:
        reader = DerivationStreamReader(monitor, DERIVATION_STREAM.name)
        before = reader.read(0, 10)

        async def recreate() -> None:
            connection = await nats.connect(server.url)
            await connection.jetstream().delete_stream(DERIVATION_STREAM.name)
            await connection.close()
            await ensure_streams(server.url, [DERIVATION_STREAM])

        asyncio.run(recreate())
        publish(server.url, *[("task.derivation.completed", COMPLETED)] * 3)
        after = reader.read(before.read_to, 10)
    finally:
        monitor.close()
    assert before.read_to == 2 and not before.restarted
    assert after.restarted and [(s, type(f)) for s, f in after.facts] == [
        (1, Completed),
        (2, Completed),
        (3, Completed),
    ]


def test_a_message_stored_at_a_microsecond_s_last_nanosecond_has_one_run_key() -> None:
    # The request sensor reads the time from the ack subject, the monitor from nats-py's
    # message get (which keeps six digits of the server's nine): one key, no float between.
    nanoseconds = 1795708689_999999999
    v1 = f"$JS.ACK.td_derivation.reqs.1.42.7.{nanoseconds}.0"
    v2 = f"$JS.ACK.hub.ACCHASH.td_derivation.reqs.1.42.7.{nanoseconds}.0.a1b2"
    assert stored_ns(v1) == stored_ns(v2) == nanoseconds
    got = RawStreamMsg.from_response(
        {
            "subject": "task.derivation.requested",
            "seq": 42,
            "time": "2026-11-26T15:58:09.999999999Z",
        }
    )
    monitored = stored_message("td_derivation", 42, got)
    assert monitored.run_key == stream_run_key("td_derivation", 42, nanoseconds)
    assert monitored.run_key == "td_derivation:42:1795708689999999"


def test_a_stopped_server_is_unavailable_in_one_line(server: NatsServer) -> None:
    monitor = JetStreamMonitor(server.url, timeout_seconds=0.5)
    try:
        monitor.ping()
        server.stop()
        with pytest.raises(NatsUnavailable) as raised:
            monitor.ping()
    finally:
        monitor.close()
    assert "\n" not in str(raised.value)


def test_an_unreachable_server_is_named_without_the_urls_credentials() -> None:
    """The message reaches /ready: one line, the reason nats-py saw, no user info."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    monitor = JetStreamMonitor(f"nats://td:s3cret@127.0.0.1:{port}", timeout_seconds=0.5)
    try:
        with pytest.raises(NatsUnavailable) as raised:
            monitor.ping()
    finally:
        monitor.close()
    assert str(raised.value) == f"NATS at nats://127.0.0.1:{port}: connection refused"


def test_the_grpc_health_probe_sees_a_serving_server_and_a_missing_one() -> None:
    running = start_grpc_server([], [])
    try:
        probe = GrpcHealthProbe("planning", ChannelSettings(running.address, timeout_seconds=1))
        assert probe.problem() is None
        probe.close()
    finally:
        running.stop(0)
    gone = GrpcHealthProbe("planning", ChannelSettings(running.address, timeout_seconds=0.5))
    assert gone.problem() in (
        f"{running.address}: UNAVAILABLE",
        f"{running.address}: DEADLINE_EXCEEDED",
    )
    gone.close()
