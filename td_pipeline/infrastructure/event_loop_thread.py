"""An asyncio event loop on its own daemon thread.

A nats-py connection belongs to the loop that made it; keeping that loop on one thread lets
plain threads (gRPC handlers, Dagster sensor ticks, worker pools) use the connection by
handing the loop coroutines."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class EventLoopThread:
    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run `coroutine` on the loop and wait at most `timeout` seconds for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def call_at(self, when: float, callback: Callable[[], object]) -> None:
        """Call `callback` on the loop at `when` on `time.monotonic`'s clock (at once if that
        has passed). It must be quick: the loop does nothing else meanwhile."""

        def schedule() -> None:
            self._loop.call_later(max(0.0, when - time.monotonic()), callback)

        self._loop.call_soon_threadsafe(schedule)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
