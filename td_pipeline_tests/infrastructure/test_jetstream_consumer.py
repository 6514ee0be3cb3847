"""The pull consumer against a real NATS server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import nats
import pytest
from nats.js.api import ConsumerInfo

from td_pipeline.infrastructure.jetstream_consumer import (
    ConsumerSpec,
    JetStreamPuller,
    PulledMessage,
)
from td_pipeline.infrastructure.subjects import StreamSpec
from td_pipeline.sandbox.nats_server import NatsServer, ensure_streams
from td_pipeline_tests.support import wait_until

STREAM = StreamSpec("pull_test", ("pull.>",))


@pytest.fixture
def server() -> Iterator[NatsServer]:
    with NatsServer() as server:
        asyncio.run(ensure_streams(server.url, [STREAM]))
        yield server


def publish(url: str, *bodies: bytes) -> None:
    async def run() -> None:
        connection = await nats.connect(url)
        for body in bodies:
            await connection.jetstream().publish("pull.requested", body)
        await connection.close()

    asyncio.run(run())


def spec(**changes: object) -> ConsumerSpec:
    fields: dict[str, object] = {
        "stream": STREAM.name,
        "durable": "pull-test",
        "filter_subjects": ("pull.requested",),
        "ack_wait_seconds": 1.0,
        "max_deliver": 3,
    }
    return ConsumerSpec(**{**fields, **changes})  # type: ignore[arg-type]


def consumer_info(url: str, durable: str = "pull-test") -> ConsumerInfo:
    async def run() -> ConsumerInfo:
        connection = await nats.connect(url)
        info: ConsumerInfo = await connection.jetstream().consumer_info(STREAM.name, durable)
        await connection.close()
        return info

    return asyncio.run(run())


def test_fetch_is_bounded_and_unacked_messages_come_back(server: NatsServer) -> None:
    publish(server.url, b"1", b"2", b"3")
    puller = JetStreamPuller(server.url)
    try:
        puller.ensure_consumer(spec())
        first = puller.fetch(spec(), batch=2, timeout_seconds=1)
        rest = puller.fetch(spec(), batch=10, timeout_seconds=1)
        puller.ack([m.reply for m in rest])
        again: list[PulledMessage] = []

        def redelivered() -> bool:  # past ack_wait, the two unacked ones come back
            again.extend(puller.fetch(spec(), batch=10, timeout_seconds=0.5))
            return len(again) >= 2

        wait_until(redelivered, timeout=15, what="the two unacked messages redelivered")
    finally:
        puller.close()

    assert [m.data for m in first] == [b"1", b"2"]
    assert [m.stream_sequence for m in first] == [1, 2]
    assert [m.data for m in rest] == [b"3"]
    assert sorted(m.data for m in again) == [b"1", b"2"]
    assert {m.num_delivered for m in again} == {2}
    assert {m.run_key for m in again} == {m.run_key for m in first}


def test_a_later_connection_can_ack_and_terminate(server: NatsServer) -> None:
    publish(server.url, b"ok", b"poison")
    first = JetStreamPuller(server.url)
    first.ensure_consumer(spec())
    ok, poison = first.fetch(spec(), batch=2, timeout_seconds=1)
    first.close()

    later = JetStreamPuller(server.url)  # as on the next sensor tick, on another thread
    try:
        later.ack([ok.reply])
        later.terminate([poison.reply])

        def both_settled() -> bool:  # the server took the ack and the term: nothing to redeliver
            info = consumer_info(server.url)
            floor = info.ack_floor.stream_seq if info.ack_floor else 0
            return info.num_ack_pending == 0 and floor == 2

        wait_until(both_settled, timeout=15, what="the ack and the term settled on the server")
        assert later.fetch(spec(), batch=10, timeout_seconds=0.5) == []
    finally:
        later.close()


def test_an_idle_stream_answers_empty_quickly(server: NatsServer) -> None:
    puller = JetStreamPuller(server.url)
    try:
        puller.ensure_consumer(spec())
        started = time.monotonic()
        assert puller.fetch(spec(), batch=5, timeout_seconds=0.3) == []
        assert time.monotonic() - started < 2
    finally:
        puller.close()


def test_the_consumer_config_is_updated_not_ignored(server: NatsServer) -> None:
    puller = JetStreamPuller(server.url)
    try:
        puller.ensure_consumer(spec())
        puller.ensure_consumer(spec(max_deliver=7))

        assert consumer_info(server.url).config.max_deliver == 7
    finally:
        puller.close()


def test_a_dead_server_fails_fast() -> None:
    started = time.monotonic()
    with pytest.raises(ConnectionError, match=r"cannot reach NATS at nats://127\.0\.0\.1:1"):
        JetStreamPuller("nats://127.0.0.1:1", connect_timeout_seconds=1)
    assert time.monotonic() - started < 5


def test_backoff_cannot_outnumber_deliveries() -> None:
    with pytest.raises(ValueError, match="backoff"):
        spec(max_deliver=1, backoff_seconds=(1.0, 2.0))


def test_a_consumer_can_filter_several_subjects(server: NatsServer) -> None:
    async def publish_mixed() -> None:
        connection = await nats.connect(server.url)
        for subject in ("pull.requested", "pull.other", "pull.failed"):
            await connection.jetstream().publish(subject, subject.encode())
        await connection.close()

    asyncio.run(publish_mixed())
    two = spec(durable="pull-two", filter_subjects=("pull.requested", "pull.failed"))
    puller = JetStreamPuller(server.url)
    try:
        puller.ensure_consumer(two)
        pulled = puller.fetch(two, batch=10, timeout_seconds=1)
    finally:
        puller.close()

    assert [m.subject for m in pulled] == ["pull.requested", "pull.failed"]
