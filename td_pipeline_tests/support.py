"""What tests share to synchronise: wait for a condition, never for a fixed time; read what a
stream holds up to its end, never until a silence."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import nats
from nats.aio.msg import Msg

T = TypeVar("T")
STORED_READ_SECONDS = 10.0  # per message the stream already holds: only a broken server waits


def wait_until(
    condition: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05
) -> T:
    """The condition's first truthy value, checked every `interval` seconds; AssertionError
    naming `what` when `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        time.sleep(interval)


async def stored_messages(url: str, subject: str) -> list[Msg]:
    """Every message the stream holds on `subject` (wildcards allowed) when called: as many as
    the stream counts for it, read in order; no wait for silence."""
    connection = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
    try:
        jetstream = connection.jetstream()
        stream = await jetstream.find_stream_name_by_subject(subject)
        info = await jetstream.stream_info(stream, subjects_filter=subject)
        count = sum((info.state.subjects or {}).values())
        subscription = await jetstream.subscribe(subject, ordered_consumer=True)
        return [await subscription.next_msg(timeout=STORED_READ_SECONDS) for _ in range(count)]
    finally:
        await connection.close()


async def stored_bodies(url: str, subject: str) -> list[dict[str, Any]]:
    """The JSON bodies of `stored_messages`."""
    return [json.loads(message.data) for message in await stored_messages(url, subject)]
