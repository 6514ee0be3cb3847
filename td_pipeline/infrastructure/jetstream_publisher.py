"""Publishing to JetStream from plain threads (gRPC handlers, worker pools).

A nats-py connection belongs to the event loop that made it, so one loop thread owns it and
everything else hands it coroutines with `run_coroutine_threadsafe`."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import nats
from nats.aio.client import Client

T = TypeVar("T")

CONNECT_TIMEOUT_SECONDS = 5.0
PUBLISH_TIMEOUT_SECONDS = 10.0


log = logging.getLogger(__name__)


async def _log_error(error: Exception) -> None:
    # nats-py's default logs a full traceback for every failed reconnect attempt.
    log.warning("NATS connection: %s", error or type(error).__name__)


class JetStreamPublisher:
    def __init__(self, url: str, token: str | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="jetstream-publisher", daemon=True
        )
        self._thread.start()
        try:
            self._connection: Client = self._run(self._connect(url, token), CONNECT_TIMEOUT_SECONDS)
        except BaseException:
            self._stop_loop()
            raise

    async def _connect(self, url: str, token: str | None) -> Client:
        # Keep reconnecting for a while: a restarted NATS server must not lose our publishes.
        return await nats.connect(
            url,
            token=token,
            connect_timeout=2,
            max_reconnect_attempts=120,
            reconnect_time_wait=0.5,
            error_cb=_log_error,
        )

    def _run(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def publish(self, subject: str, payload: bytes, message_id: str) -> None:
        """Publish and wait for JetStream's ack; the message id makes a retry land once."""
        self._run(self._publish(subject, payload, message_id), PUBLISH_TIMEOUT_SECONDS)

    async def _publish(self, subject: str, payload: bytes, message_id: str) -> None:
        await self._connection.jetstream().publish(
            subject, payload, headers={"Nats-Msg-Id": message_id}
        )

    def close(self) -> None:
        try:
            self._run(self._connection.close(), CONNECT_TIMEOUT_SECONDS)
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
