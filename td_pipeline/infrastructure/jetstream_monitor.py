"""What the metrics server (and `td-pipeline watch`) asks NATS: is it there, how far behind
are the durable consumers, and what is new in the derivation stream since the last look.

The stream is read by sequence with JetStream's message get (nats-py's `get_msg`,
`$JS.API.STREAM.MSG.GET.<stream>`), not through a consumer. That API is read-only and names the
stream alone, so td-pipeline's least-privilege NATS user needs one subject for it and no right
to create consumers or to pull from one (`$JS.API.CONSUMER.CREATE.<stream>` plus
`MSG.NEXT.<stream>.*` would let it pull from Planning's consumers too; a consumer of a fixed
name would be state on the server that two metrics servers would share, and deleting it to
restart elsewhere would need one more right). Direct get would need the fleet's streams to
allow it (`allow_direct`), which is not ours to set. The gets are pipelined (~11k messages/s
with TLS here), at most `limit` sequences a look, from the sequence after the last one read; a
deleted sequence is skipped. The counts built from them survive a restart because they are
rebuilt from the stream's start. The connection belongs to one event-loop thread and reconnects
by itself."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import APIError, NotFoundError

from td_pipeline.application.derivation_metrics import StreamFact
from td_pipeline.infrastructure.connection_errors import nats_failure, redacted_url
from td_pipeline.infrastructure.event_loop_thread import EventLoopThread
from td_pipeline.infrastructure.jetstream_consumer import stream_run_key
from td_pipeline.infrastructure.nats_auth import NO_AUTH, NatsAuth
from td_pipeline.infrastructure.nats_mappers import decode_stream_fact

IN_FLIGHT = 250  # message gets awaited together
NO_MESSAGE = 10037  # JetStream's error code for a sequence that holds no message (deleted)


class NatsUnavailable(Exception):
    """NATS could not answer; the message says why in a few words."""


class StreamRestarted(Exception):
    """The stream was deleted and created again: counts start over."""


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
    read_to: int = 0  # every sequence up to this one was read (some may have been deleted)


@dataclass(frozen=True, slots=True)
class StoredMessage:
    subject: str
    data: bytes
    stream: str
    stream_sequence: int
    timestamp_ns: int  # whole microseconds: nats-py's message get reads no further

    @property
    def run_key(self) -> str:
        """The request sensor's run key for the same message."""
        return stream_run_key(self.stream, self.stream_sequence, self.timestamp_ns)


@dataclass(frozen=True, slots=True)
class StreamPage:
    messages: tuple[StoredMessage, ...]
    read_to: int  # every sequence up to this one was read or held no message
    created: datetime | None  # when the stream was created (a new value: it was recreated)


async def read_stream(
    connection: Client, stream: str, after: int, limit: int, timeout: float, budget: float
) -> StreamPage:
    """The messages of `stream` after sequence `after`, at most `limit` sequences of them, in
    order; no new batch of gets starts after `budget` seconds. Raises StreamRestarted when the
    stream's last sequence is below `after`."""
    deadline = asyncio.get_running_loop().time() + budget
    jetstream = connection.jetstream(timeout=timeout)
    info = await jetstream.stream_info(stream)
    state = info.state
    if state.last_seq < after:
        raise StreamRestarted(f"stream {stream} is at {state.last_seq}, was read to {after}")
    first = max(after + 1, state.first_seq)  # older messages may have been removed
    last = min(state.last_seq, first + limit - 1)
    messages: list[StoredMessage] = []
    read_to = max(after, last) if first > last else after
    for start in range(first, last + 1, IN_FLIGHT):
        if start > first and asyncio.get_running_loop().time() > deadline:
            break  # the rest on the next look
        sequences = range(start, min(start + IN_FLIGHT, last + 1))
        try:
            page = await asyncio.gather(
                *(_get_message(jetstream, stream, sequence) for sequence in sequences)
            )
        except (NatsError, TimeoutError):
            if not messages and read_to == after:
                raise
            break  # keep what was read: the next look goes on from there
        messages += [message for message in page if message is not None]
        read_to = sequences[-1]
    return StreamPage(tuple(messages), read_to, info.created)


async def _get_message(
    jetstream: JetStreamContext, stream: str, sequence: int
) -> StoredMessage | None:
    try:
        message = await jetstream.get_msg(stream, sequence)
    except NotFoundError as error:
        if error.err_code == NO_MESSAGE:
            return None  # deleted, or removed by the stream's limits since we looked
        raise NatsUnavailable(f"stream {stream}: {error.description or error}") from error
    except APIError as error:
        raise NatsUnavailable(f"stream {stream}: {error.description or error}") from error
    return stored_message(stream, sequence, message)


def stored_message(stream: str, sequence: int, message: RawStreamMsg) -> StoredMessage:
    if message.time is None:
        raise NatsUnavailable(f"stream {stream}: message {sequence} came without its time")
    return StoredMessage(
        subject=message.subject or "",
        data=message.data or b"",
        stream=stream,
        stream_sequence=sequence,
        timestamp_ns=(message.time - _EPOCH) // timedelta(microseconds=1) * 1_000,
    )


_EPOCH = datetime.fromtimestamp(0, UTC)


class JetStreamMonitor:
    def __init__(self, url: str, auth: NatsAuth = NO_AUTH, timeout_seconds: float = 2.0) -> None:
        self._url = url
        self._auth = auth
        self._timeout = timeout_seconds
        self._loop = EventLoopThread("jetstream-monitor")
        self._connection: Client | None = None
        self._created: dict[str, datetime] = {}  # each stream's creation time, as last read

    def _run(self, coroutine: Any, timeout: float) -> Any:
        # Each message names the server without the URL's user info: they reach /ready.
        where = redacted_url(self._url)
        try:
            return self._loop.run(coroutine, timeout)
        except TimeoutError as error:
            raise NatsUnavailable(f"no answer from NATS at {where} in {timeout:g}s") from error
        except (OSError, NatsError) as error:
            raise NatsUnavailable(f"NATS at {where}: {error!r}") from error

    async def _connected(self) -> Client:
        if self._connection is not None and self._connection.is_closed:
            self._connection = None
        if self._connection is None:
            seen: list[Exception] = []

            async def quiet(error: Exception) -> None:
                """Failures surface as exceptions from our calls."""
                seen[-10:] = [*seen[-9:], error]

            try:
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
            except (OSError, NatsError, TimeoutError) as error:
                # One line, as the sensors say it: a wrong CA, a refused login, no server.
                raise NatsUnavailable(nats_failure(self._url, error, self._auth, seen)) from None
        if not self._connection.is_connected:
            raise NatsUnavailable(
                f"not connected to NATS at {redacted_url(self._url)} (reconnecting)"
            )
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

    def read_after(self, stream: str, after_sequence: int, limit: int) -> StreamPage:
        """The messages of `stream` after `after_sequence` (at most `limit` sequences), in
        order; none when the stream holds nothing newer. Raises StreamRestarted when the stream
        was recreated: its last sequence is below `after_sequence`, or its creation time
        changed since the last read."""

        async def read() -> StreamPage:
            connection = await self._connected()
            return await read_stream(
                connection, stream, after_sequence, limit, self._timeout, self._timeout * 2
            )

        page: StreamPage = self._run(read(), self._timeout * 4 + 5)
        known = self._created.get(stream)
        if page.created is not None:
            self._created[stream] = page.created
        if known is not None and page.created is not None and page.created != known:
            raise StreamRestarted(f"stream {stream} was created again at {page.created}")
        return page

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


class DerivationStreamReader:
    """The derivation stream (requests and outcome events) as facts for the metrics."""

    def __init__(self, monitor: JetStreamMonitor, stream: str) -> None:
        self._monitor = monitor
        self._stream = stream

    def read(self, after_sequence: int, limit: int) -> StreamBatch:
        try:
            page = self._monitor.read_after(self._stream, after_sequence, limit)
            restarted = False
        except StreamRestarted:
            page = self._monitor.read_after(self._stream, 0, limit)
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
                for message in page.messages
            ),
            restarted,
            page.read_to,
        )
