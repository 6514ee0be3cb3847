"""Publishing to JetStream from plain threads (gRPC handlers, worker pools).

The connection lives on its own `EventLoopThread` (a nats-py connection belongs to the loop
that made it)."""

from __future__ import annotations

import logging

import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError

from td_pipeline.infrastructure.connection_errors import nats_failure
from td_pipeline.infrastructure.event_loop_thread import EventLoopThread
from td_pipeline.infrastructure.nats_auth import NO_AUTH, NatsAuth

CONNECT_TIMEOUT_SECONDS = 5.0
PUBLISH_TIMEOUT_SECONDS = 10.0


log = logging.getLogger(__name__)


class JetStreamPublisher:
    def __init__(self, url: str, auth: NatsAuth = NO_AUTH) -> None:
        self._loop = EventLoopThread("jetstream-publisher")
        self._seen: list[Exception] = []
        try:
            self._connection: Client = self._loop.run(
                self._connect(url, auth), CONNECT_TIMEOUT_SECONDS
            )
        except (OSError, NatsError, TimeoutError) as error:
            self._loop.stop()  # one line: a wrong CA, refused credentials, no server
            reason = nats_failure(url, error, auth, self._seen)
            raise ConnectionError(f"cannot reach {reason}") from None
        except BaseException:
            self._loop.stop()
            raise

    async def _connect(self, url: str, auth: NatsAuth) -> Client:
        # Keep reconnecting for a while: a restarted NATS server must not lose our publishes.
        return await nats.connect(
            url,
            **auth.connect_options(),
            connect_timeout=2,
            max_reconnect_attempts=120,
            reconnect_time_wait=0.5,
            error_cb=self._log_error,
        )

    async def _log_error(self, error: Exception) -> None:
        # nats-py's default logs a full traceback for every failed reconnect attempt.
        self._seen[-10:] = [*self._seen[-9:], error]
        log.warning("NATS connection: %s", error or type(error).__name__)

    @property
    def is_closed(self) -> bool:
        """True once the connection gave up reconnecting (the server was away too long)."""
        return bool(self._connection.is_closed)

    def publish(self, subject: str, payload: bytes, message_id: str) -> None:
        """Publish and wait for JetStream's ack; the message id makes a retry land once."""
        self._loop.run(self._publish(subject, payload, message_id), PUBLISH_TIMEOUT_SECONDS)

    async def _publish(self, subject: str, payload: bytes, message_id: str) -> None:
        await self._connection.jetstream().publish(
            subject, payload, headers={"Nats-Msg-Id": message_id}
        )

    def close(self) -> None:
        try:
            self._loop.run(self._connection.close(), CONNECT_TIMEOUT_SECONDS)
        finally:
            self._loop.stop()
