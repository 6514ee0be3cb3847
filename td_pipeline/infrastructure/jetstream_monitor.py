"""What the metrics server asks NATS: is it there, how far behind are the durable consumers, and
what is new in the derivation stream since the last look.

The stream is read through an ephemeral consumer of our own (no acks, in memory, gone when we
are), from the sequence after the last one read: each look reads a bounded number of
messages, and the counts built from them survive a restart because they are rebuilt from the
stream's start. The connection belongs to one event-loop thread and reconnects by itself."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from td_pipeline.application.derivation_metrics import StreamFact
from td_pipeline.infrastructure.event_loop_thread import EventLoopThread
from td_pipeline.infrastructure.jetstream_consumer import PulledMessage, pulled_message
from td_pipeline.infrastructure.nats_auth import NO_AUTH, NatsAuth
from td_pipeline.infrastructure.nats_mappers import decode_stream_fact

CONSUMER_IDLE_SECONDS = 300.0  # the server deletes our reader this long after we stopped
PAGE = 500


class NatsUnavailable(Exception):
    """NATS could not answer; the message says why in a few words."""


@dataclass(frozen=True, slots=True)
class ConsumerLag:
    stream: str
    durable: str
    pending: int  # messages not yet delivered to the consumer (its lag)
    ack_pending: int  # delivered, not yet acknowledged


@dataclass(frozen=True, slots=True)
class StreamBatch:
    facts: tuple[tuple[int, StreamFact | None], ...]  # (stream sequence, fact), in order
    restarted: bool  # the stream is behind what was read before: it was recreated


@dataclass
class _Reader:
    subscription: Any  # nats-py's JetStreamContext.PullSubscription
    next_sequence: int


class JetStreamMonitor:
    def __init__(self, url: str, auth: NatsAuth = NO_AUTH, timeout_seconds: float = 2.0) -> None:
        self._url = url
        self._auth = auth
        self._timeout = timeout_seconds
        self._loop = EventLoopThread("jetstream-monitor")
        self._connection: Client | None = None
        self._readers: dict[str, _Reader] = {}

    def _run(self, coroutine: Any, timeout: float) -> Any:
        try:
            return self._loop.run(coroutine, timeout)
        except TimeoutError as error:
            raise NatsUnavailable(f"no answer from NATS at {self._url} in {timeout:g}s") from error
        except (OSError, NatsError) as error:
            raise NatsUnavailable(f"NATS at {self._url}: {error!r}") from error

    async def _connected(self) -> Client:
        if self._connection is not None and self._connection.is_closed:
            self._connection, self._readers = None, {}
        if self._connection is None:

            async def quiet(error: Exception) -> None:
                """Failures surface as exceptions from our calls."""

            self._connection = await asyncio.wait_for(
                nats.connect(
                    self._url,
                    **self._auth.connect_options(),
                    connect_timeout=self._timeout,
                    max_reconnect_attempts=-1,  # this process lives long: always come back
                    reconnect_time_wait=0.5,
                    error_cb=quiet,
                ),
                self._timeout + 1,
            )
        if not self._connection.is_connected:
            raise NatsUnavailable(f"not connected to NATS at {self._url} (reconnecting)")
        return self._connection

    def ping(self) -> None:
        """Returns when NATS answers a round trip; NatsUnavailable otherwise."""

        async def round_trip() -> None:
            await (await self._connected()).flush(timeout=max(1, round(self._timeout)))

        self._run(round_trip(), self._timeout * 2 + 1)

    def consumer_lag(self, stream: str, durable: str) -> ConsumerLag | None:
        """The durable consumer's backlog; None while it does not exist yet."""

        async def info() -> ConsumerLag | None:
            jetstream = (await self._connected()).jetstream(timeout=self._timeout)
            try:
                consumer = await jetstream.consumer_info(stream, durable)
            except NotFoundError:
                return None
            return ConsumerLag(
                stream, durable, int(consumer.num_pending or 0), int(consumer.num_ack_pending or 0)
            )

        result: ConsumerLag | None = self._run(info(), self._timeout * 2 + 1)
        return result

    def read_after(self, stream: str, after_sequence: int, limit: int) -> list[PulledMessage]:
        """Up to `limit` messages of `stream` after `after_sequence`, in order; [] when the
        stream holds nothing newer. Raises StreamRestarted when the stream's last sequence
        is below `after_sequence`."""
        return list(self._run(self._read(stream, after_sequence, limit), self._timeout * 4 + 5))

    async def _read(self, stream: str, after: int, limit: int) -> list[PulledMessage]:
        jetstream = (await self._connected()).jetstream(timeout=self._timeout)
        state = (await jetstream.stream_info(stream)).state
        if state.last_seq < after:
            raise StreamRestarted(f"stream {stream} is at {state.last_seq}, was read to {after}")
        if state.last_seq == after:
            return []
        reader = self._readers.get(stream)
        if reader is None or reader.next_sequence != after + 1:
            reader = await self._new_reader(stream, after + 1)
        messages: list[PulledMessage] = []
        while len(messages) < limit and reader.next_sequence <= state.last_seq:
            wanted = min(PAGE, limit - len(messages), state.last_seq - reader.next_sequence + 1)
            try:
                page = await reader.subscription.fetch(wanted, timeout=self._timeout)
            except NatsError:
                self._readers.pop(stream, None)  # gone (a server restart): made anew next time
                break
            for message in map(pulled_message, page):
                messages.append(message)
                reader.next_sequence = message.stream_sequence + 1
        return messages

    async def _new_reader(self, stream: str, start: int) -> _Reader:
        old = self._readers.pop(stream, None)
        if old is not None:
            with contextlib.suppress(NatsError):  # it may have gone with the server
                await old.subscription.unsubscribe()
        jetstream = (await self._connected()).jetstream(timeout=self._timeout)
        subscription = await jetstream.pull_subscribe(
            "",
            durable=None,
            stream=stream,
            config=ConsumerConfig(
                ack_policy=AckPolicy.NONE,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=start,
                inactive_threshold=CONSUMER_IDLE_SECONDS,
                mem_storage=True,
            ),
        )
        reader = self._readers[stream] = _Reader(subscription, start)
        return reader

    def close(self) -> None:
        async def close() -> None:
            if self._connection is not None:
                await self._connection.close()

        try:
            self._loop.run(close(), 5)
        except Exception:  # closing at exit: the server may be gone
            pass
        finally:
            self._loop.stop()


class StreamRestarted(Exception):
    """The stream was deleted and created again: counts start over."""


class DerivationStreamReader:
    """The derivation stream (requests and outcome events) as facts for the metrics."""

    def __init__(self, monitor: JetStreamMonitor, stream: str) -> None:
        self._monitor = monitor
        self._stream = stream

    def read(self, after_sequence: int, limit: int) -> StreamBatch:
        try:
            messages = self._monitor.read_after(self._stream, after_sequence, limit)
            restarted = False
        except StreamRestarted:
            messages = self._monitor.read_after(self._stream, 0, limit)
            restarted = True
        return StreamBatch(
            tuple(
                (
                    message.stream_sequence,
                    decode_stream_fact(
                        message.subject,
                        message.data,
                        message.run_key,
                        message.timestamp_ns / 1_000_000_000,
                    ),
                )
                for message in messages
            ),
            restarted,
        )
