"""Pulling from JetStream for the sensors: durable consumers with an explicit config, bounded
fetches, and settling (ack / term) by reply subject, so that a later sensor tick can ack a
message once its run exists.

Sensor ticks run on varying threads; the connection belongs to one event-loop thread here."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig

from td_pipeline.infrastructure.connection_errors import nats_failure
from td_pipeline.infrastructure.event_loop_thread import EventLoopThread
from td_pipeline.infrastructure.nats_auth import NO_AUTH, NatsAuth

ACK, TERM = b"+ACK", b"+TERM"


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    stream: str
    durable: str
    filter_subjects: tuple[str, ...]
    ack_wait_seconds: float = 60.0
    max_deliver: int = 10
    backoff_seconds: tuple[float, ...] = ()  # replaces ack_wait when set (first = ack wait)

    def __post_init__(self) -> None:
        if not self.filter_subjects:
            raise ValueError("a consumer needs at least one subject")
        if self.ack_wait_seconds <= 0 or self.max_deliver < 1:
            raise ValueError("ack_wait_seconds and max_deliver must be positive")
        if len(self.backoff_seconds) > self.max_deliver:
            raise ValueError("backoff may not have more steps than max_deliver")

    def config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            # One subject goes in filter_subject: servers before 2.10 know only that field.
            filter_subject=self.filter_subjects[0] if len(self.filter_subjects) == 1 else None,
            filter_subjects=list(self.filter_subjects) if len(self.filter_subjects) > 1 else None,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_seconds,
            max_deliver=self.max_deliver,
            backoff=list(self.backoff_seconds) or None,
        )


@dataclass(frozen=True, slots=True)
class PulledMessage:
    subject: str
    data: bytes
    reply: str  # the ack subject: settle from any connection by publishing to it
    stream: str
    stream_sequence: int
    timestamp_ns: int
    num_delivered: int

    @property
    def run_key(self) -> str:
        return stream_run_key(self.stream, self.stream_sequence, self.timestamp_ns)


def stream_run_key(stream: str, sequence: int, timestamp_ns: int) -> str:
    """A stream message's run key (the request's derivation id is made from it)."""
    # Sequence numbers restart when a stream is recreated; the timestamp keeps it unique.
    return f"{stream}:{sequence}:{timestamp_ns}"


def pulled_message(message: Msg) -> PulledMessage:
    """A JetStream message with the facts read from its metadata."""
    return PulledMessage(
        subject=message.subject,
        data=message.data,
        reply=message.reply,
        stream=message.metadata.stream,
        stream_sequence=message.metadata.sequence.stream,
        timestamp_ns=int(message.metadata.timestamp.timestamp() * 1_000_000_000),
        num_delivered=message.metadata.num_delivered,
    )


class JetStreamPuller:
    def __init__(
        self, url: str, auth: NatsAuth = NO_AUTH, connect_timeout_seconds: float = 3.0
    ) -> None:
        self._loop = EventLoopThread("jetstream-puller")
        self._subscriptions: dict[str, Any] = {}
        seen: list[Exception] = []
        try:
            self._connection: Client = self._loop.run(
                self._connect(url, auth, connect_timeout_seconds, seen),
                connect_timeout_seconds + 1,
            )
        except (OSError, NatsError, TimeoutError) as error:
            # ssl.SSLError is an OSError: a wrong CA or a plaintext server ends here too, and
            # refused credentials as nats-py's Error: one line saying which and what to check.
            self._loop.stop()
            raise ConnectionError(f"cannot reach {nats_failure(url, error, auth, seen)}") from None
        except BaseException:
            self._loop.stop()
            raise

    @staticmethod
    async def _connect(url: str, auth: NatsAuth, timeout: float, seen: list[Exception]) -> Client:
        async def quiet(error: Exception) -> None:
            """Failures surface as exceptions from our calls; no traceback logging."""
            seen.append(error)

        # A dead server must fail a sensor tick fast, not block it for minutes.
        return await asyncio.wait_for(
            nats.connect(
                url,
                **auth.connect_options(),
                connect_timeout=timeout,
                max_reconnect_attempts=5,
                reconnect_time_wait=0.5,
                error_cb=quiet,
            ),
            timeout,
        )

    @property
    def is_closed(self) -> bool:
        """True once the connection gave up reconnecting (the server was away too long)."""
        return bool(self._connection.is_closed)

    def ensure_consumer(self, spec: ConsumerSpec) -> None:
        """Create the durable consumer, or update it to `spec` (pull_subscribe alone would
        silently keep an existing consumer's old config)."""
        self._loop.run(self._connection.jetstream().add_consumer(spec.stream, spec.config()), 10)

    def fetch(self, spec: ConsumerSpec, batch: int, timeout_seconds: float) -> list[PulledMessage]:
        """Up to `batch` messages, waiting at most `timeout_seconds` for the first."""
        # The margin only guards against a hang; a loaded machine can stall the loop for seconds.
        return self._loop.run(self._fetch(spec, batch, timeout_seconds), timeout_seconds + 15)

    async def _fetch(
        self, spec: ConsumerSpec, batch: int, timeout_seconds: float
    ) -> list[PulledMessage]:
        subscription = self._subscriptions.get(spec.durable)
        if subscription is None:
            subscription = await self._connection.jetstream().pull_subscribe_bind(
                spec.durable, spec.stream
            )
            self._subscriptions[spec.durable] = subscription
        try:
            messages = await subscription.fetch(batch, timeout=timeout_seconds)
        except NatsTimeoutError:
            return []  # nothing arrived: the normal answer of an idle stream
        return [pulled_message(message) for message in messages]

    def ack(self, replies: Sequence[str]) -> None:
        self._settle(replies, ACK)

    def terminate(self, replies: Sequence[str]) -> None:
        """No redelivery: for messages no retry can fix."""
        self._settle(replies, TERM)

    def redeliver_later(self, replies: Sequence[str], delay_seconds: float) -> None:
        """Back in `delay_seconds` (a NAK with a delay): for messages that arrived early."""
        delay = json.dumps({"delay": int(delay_seconds * 1_000_000_000)})
        self._settle(replies, b"-NAK " + delay.encode())

    def _settle(self, replies: Sequence[str], verdict: bytes) -> None:
        async def settle() -> None:
            for reply in replies:
                await self._connection.publish(reply, verdict)
            await self._connection.flush()

        if replies:
            self._loop.run(settle(), 10)

    def close(self) -> None:
        try:
            self._loop.run(self._connection.close(), 5)
        finally:
            self._loop.stop()
