"""Pulling from JetStream for the sensors: durable consumers with an explicit config, bounded
fetches, and settling (ack / term) by reply subject, so that a later sensor tick can ack a
message once its run exists.

Sensor ticks run on varying threads; the connection belongs to one event-loop thread here."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass

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
# A pull request's statuses: 404 (nothing left), 408 (expired) and 409 (the server ended it:
# consumer deleted, limits) end it; 100 is an idle heartbeat.
REQUEST_ENDED = frozenset({"404", "408", "409"})
HEARTBEAT = "100"
# How long past its timeout a fetch waits for the server to end its request; then it gives up
# and says it stalled (the request then dies on the server: its inbox has no subscriber).
STALL_GRACE_SECONDS = 2.0


class PullRefused(Exception):
    """JetStream answered a pull request with an error status (no such consumer, say)."""


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


@dataclass(frozen=True, slots=True)
class Fetched:
    messages: list[PulledMessage]
    stalled: bool  # the server did not end the request in time: what came is kept


def pull_status(message: Msg) -> str | None:
    """The status code of a message JetStream sends about a pull request; None for a stream
    message."""
    if not message.headers:
        return None
    return message.headers.get("Status")


def stream_run_key(stream: str, sequence: int, timestamp_ns: int) -> str:
    """A stream message's run key (the request's derivation id is made from it): its stream,
    its sequence (sequences restart when a stream is recreated) and when the stream stored it,
    in whole microseconds: the precision that both ways of reading a message give exactly, a
    consumer's ack subject (nanoseconds) and a message get (nats-py's `RawStreamMsg.time`)."""
    return f"{stream}:{sequence}:{timestamp_ns // 1_000}"


# Where an ack subject holds the stored time: `$JS.ACK.<stream>.<consumer>.<delivered>.<stream
# seq>.<consumer seq>.<time>.<pending>`, or the same after a domain and an account hash.
_V1_ACK_TOKENS = 9
_V1_TIME, _V2_TIME = 7, Msg.Ack.Timestamp


def stored_ns(reply: str) -> int:
    """When the stream stored a consumer's message, in nanoseconds, as the server wrote it in
    the ack subject. nats-py's `metadata.timestamp` has been through a float division."""
    tokens = reply.split(".")
    return int(tokens[_V1_TIME if len(tokens) == _V1_ACK_TOKENS else _V2_TIME])


def pulled_message(message: Msg) -> PulledMessage:
    """A JetStream message with the facts read from its metadata."""
    return PulledMessage(
        subject=message.subject,
        data=message.data,
        reply=message.reply,
        stream=message.metadata.stream,
        stream_sequence=message.metadata.sequence.stream,
        timestamp_ns=stored_ns(message.reply),
        num_delivered=message.metadata.num_delivered,
    )


class JetStreamPuller:
    def __init__(
        self, url: str, auth: NatsAuth = NO_AUTH, connect_timeout_seconds: float = 3.0
    ) -> None:
        self._loop = EventLoopThread("jetstream-puller")
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

    def pending(self, spec: ConsumerSpec) -> int:
        """Messages the consumer has not delivered yet: what waits in the stream."""
        info = self._loop.run(
            self._connection.jetstream().consumer_info(spec.stream, spec.durable), 10
        )
        return int(info.num_pending or 0)

    def fetch(self, spec: ConsumerSpec, batch: int, timeout_seconds: float) -> Fetched:
        """Up to `batch` messages, waiting at most `timeout_seconds` for the first; back within
        `timeout_seconds + STALL_GRACE_SECONDS` whatever the server does."""
        deadline = timeout_seconds + STALL_GRACE_SECONDS
        # The loop guard only matters if the loop itself is wedged: `_pull` keeps its deadline.
        return self._loop.run(self._pull(spec, batch, timeout_seconds, deadline), deadline + 5)

    async def _pull(
        self, spec: ConsumerSpec, batch: int, timeout_seconds: float, deadline_seconds: float
    ) -> Fetched:
        """One pull request of our own, on an inbox of its own (not nats-py's `fetch`, whose
        shared inbox and deadline arithmetic raised a bare TimeoutError and could leave
        lingering requests behind: see docs/reliability.md). `no_wait` with `expires` makes
        the server wait up to `expires` for a first message, deliver what is there, then end
        the request with a status; that status is what we wait for, so the request is over on
        the server when we return and no later message lands on an inbox nobody reads."""
        if batch < 1 or timeout_seconds <= 0:
            raise ValueError("a fetch needs a batch of at least 1 and a positive timeout")
        inbox = self._connection.new_inbox()
        subscription = await self._connection.subscribe(inbox)
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + deadline_seconds
        messages: list[PulledMessage] = []
        try:
            request = {"batch": batch, "expires": int(timeout_seconds * 1e9), "no_wait": True}
            await self._connection.publish(
                f"$JS.API.CONSUMER.MSG.NEXT.{spec.stream}.{spec.durable}",
                json.dumps(request).encode(),
                reply=inbox,
            )
            while len(messages) < batch:
                try:
                    message = await subscription.next_msg(timeout=give_up_at - loop.time())
                except NatsTimeoutError:
                    return Fetched(messages, stalled=True)
                status = pull_status(message)
                if status is None:
                    messages.append(pulled_message(message))
                elif status in REQUEST_ENDED:
                    break
                elif status != HEARTBEAT:
                    description = (message.headers or {}).get("Description", "")
                    raise PullRefused(f"{spec.stream}/{spec.durable}: {status} {description}")
            return Fetched(messages, stalled=False)
        finally:
            await subscription.unsubscribe()

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
