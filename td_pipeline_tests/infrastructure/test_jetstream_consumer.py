"""The pull consumer against a real NATS server."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import time
from collections.abc import Iterator

import nats
import pytest
from nats.js.api import ConsumerInfo

from td_pipeline.infrastructure.jetstream_consumer import (
    STALL_GRACE_SECONDS,
    ConsumerSpec,
    Fetched,
    JetStreamPuller,
    PulledMessage,
    PullRefused,
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
        first = puller.fetch(spec(), batch=2, timeout_seconds=1).messages
        rest = puller.fetch(spec(), batch=10, timeout_seconds=1).messages
        puller.ack([m.reply for m in rest])
        again: list[PulledMessage] = []

        def redelivered() -> bool:  # past ack_wait, the two unacked ones come back
            again.extend(puller.fetch(spec(), batch=10, timeout_seconds=0.5).messages)
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
    ok, poison = first.fetch(spec(), batch=2, timeout_seconds=1).messages
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
        assert later.fetch(spec(), batch=10, timeout_seconds=0.5).messages == []
    finally:
        later.close()


def test_an_idle_stream_answers_empty_quickly(server: NatsServer) -> None:
    puller = JetStreamPuller(server.url)
    try:
        puller.ensure_consumer(spec())
        started = time.monotonic()
        assert puller.fetch(spec(), batch=5, timeout_seconds=0.3).messages == []
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
        pulled = puller.fetch(two, batch=10, timeout_seconds=1).messages
    finally:
        puller.close()

    assert [m.subject for m in pulled] == ["pull.requested", "pull.failed"]


# The failed sensor ticks (issue 19): nats-py 2.16's `PullSubscription.fetch` decides by its own
# clock what a status reply means; a status that arrives once its deadline is spent (the 100 µs
# between the server's expiry and the client's, or any moment on a loaded machine) made it
# raise a bare `TimeoutError`, not nats' own, which our old fetch let through: the tick failed
# with a TimeoutError that looked like its 15 s guard. A lingering request that fills the
# consumer's waiting list makes the server answer at once, so both are provoked without luck.


async def _orphaned_pull_request(connection: nats.NATS, durable: str) -> None:
    """A lingering pull request that nobody reads, as a timed-out fetch leaves behind."""
    inbox = connection.new_inbox()
    await connection.subscribe(inbox)
    request = json.dumps({"batch": 50, "expires": 30_000_000_000}).encode()
    await connection.publish(f"$JS.API.CONSUMER.MSG.NEXT.{STREAM.name}.{durable}", request, inbox)
    await connection.flush()


def test_the_stall_reproduced_nats_py_fetch_raises_a_bare_timeout(
    server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nats.js.client

    class SpentClock:  # nats-py's clock as it reads once the status reply is in
        calls = 0

        @classmethod
        def monotonic(cls) -> float:
            cls.calls += 1
            return time.monotonic() + (0 if cls.calls == 1 else 100)

    async def run() -> BaseException | None:
        connection = await nats.connect(server.url)
        try:
            await _add_one_waiting_consumer(connection)
            await _orphaned_pull_request(connection, one_waiting().durable)
            subscription = await connection.jetstream().pull_subscribe_bind(
                one_waiting().durable, STREAM.name
            )
            monkeypatch.setattr(nats.js.client, "time", SpentClock)
            try:
                await subscription.fetch(50, timeout=1)
            except BaseException as error:
                return error
            finally:
                monkeypatch.undo()
            return None
        finally:
            await connection.close()

    error = asyncio.run(run())
    assert isinstance(error, TimeoutError)
    assert not isinstance(error, nats.errors.TimeoutError)  # what `except NatsTimeoutError` missed


def one_waiting() -> ConsumerSpec:
    return spec(durable="pull-one-waiting")


async def _add_one_waiting_consumer(connection: nats.NATS) -> None:
    """A consumer that holds one waiting pull request: a second is answered at once (409)."""
    config = dataclasses.replace(one_waiting().config(), max_waiting=1)
    await connection.jetstream().add_consumer(STREAM.name, config)


def test_our_fetch_returns_empty_where_nats_py_raised(server: NatsServer) -> None:
    async def orphan() -> nats.NATS:
        connection = await nats.connect(server.url)
        await _add_one_waiting_consumer(connection)
        await _orphaned_pull_request(connection, one_waiting().durable)
        return connection  # open: the orphan's inbox stays live while we fetch

    loop = asyncio.new_event_loop()
    connection = loop.run_until_complete(orphan())
    puller = JetStreamPuller(server.url)
    try:
        started = time.monotonic()
        fetched = puller.fetch(one_waiting(), batch=50, timeout_seconds=1)
        took = time.monotonic() - started
    finally:
        puller.close()
        loop.run_until_complete(connection.close())
        loop.close()

    assert fetched == Fetched([], stalled=False)
    assert took < 1 + STALL_GRACE_SECONDS


def test_a_fetch_leaves_no_pull_request_on_the_server(server: NatsServer) -> None:
    publish(server.url, b"1", b"2", b"3")
    puller = JetStreamPuller(server.url)
    try:
        puller.ensure_consumer(spec())
        started = time.monotonic()
        some = puller.fetch(spec(), batch=50, timeout_seconds=5)
        took = time.monotonic() - started
        none = puller.fetch(spec(), batch=50, timeout_seconds=0.3)
        waiting = consumer_info(server.url).num_waiting
    finally:
        puller.close()

    assert [m.data for m in some.messages] == [b"1", b"2", b"3"] and not some.stalled
    assert took < 5  # what is there comes at once, without waiting to fill the batch
    assert none == Fetched([], stalled=False)
    assert waiting == 0  # each request ended on the server before fetch returned


def test_a_server_that_does_not_answer_is_a_stall_not_a_hang(server: NatsServer) -> None:
    puller = JetStreamPuller(server.url)
    try:
        puller.ensure_consumer(spec())
        assert server.pid is not None
        os.kill(server.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            stalled = puller.fetch(spec(), batch=10, timeout_seconds=0.5)
            took = time.monotonic() - started
        finally:
            os.kill(server.pid, signal.SIGCONT)
        publish(server.url, b"after")
        after = puller.fetch(spec(), batch=10, timeout_seconds=5)
    finally:
        puller.close()

    assert stalled == Fetched([], stalled=True)
    assert 0.5 + STALL_GRACE_SECONDS <= took < 0.5 + STALL_GRACE_SECONDS + 1
    assert [m.data for m in after.messages] == [b"after"] and not after.stalled


def test_a_missing_consumer_is_refused_in_one_line(server: NatsServer) -> None:
    puller = JetStreamPuller(server.url)
    try:
        with pytest.raises(PullRefused, match="pull_test/nobody"):
            puller.fetch(spec(durable="nobody"), batch=1, timeout_seconds=0.5)
    finally:
        puller.close()
