"""NATS connections shared by everything in one process, one per server, identity and kind.

Dagster may build a new resource object for every run and sensor tick; a connection cached on
the object would be opened (and leaked) each time. A connection that gave up reconnecting is
replaced on next use; all are closed at exit, so that no reconnect loop outlives the process."""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from typing import TypeVar

from td_pipeline.infrastructure.jetstream_consumer import JetStreamPuller
from td_pipeline.infrastructure.jetstream_publisher import JetStreamPublisher
from td_pipeline.infrastructure.nats_auth import NatsAuth

Connection = TypeVar("Connection", JetStreamPublisher, JetStreamPuller)


def _alive(connection: Connection | None) -> Connection | None:
    """The connection, unless it gave up reconnecting during a long outage (then closed, so
    that its loop thread stops, and replaced by the caller)."""
    if connection is not None and connection.is_closed:
        with contextlib.suppress(Exception):
            connection.close()
        return None
    return connection


class _ProcessConnections:
    """NATS connections shared by everything in one process, one per server and kind.

    Dagster may build a new resource object for every run and sensor tick; caching on the
    object would open (and leak) a connection each time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._publishers: dict[tuple[str, NatsAuth], JetStreamPublisher] = {}
        self._pullers: dict[tuple[str, NatsAuth], JetStreamPuller] = {}

    def _forget_after_fork(self) -> None:
        if self._pid != os.getpid():  # connections do not survive fork(): start afresh
            self._publishers, self._pullers, self._pid = {}, {}, os.getpid()

    def publisher(self, url: str, auth: NatsAuth) -> JetStreamPublisher:
        with self._lock:
            self._forget_after_fork()
            current = _alive(self._publishers.get((url, auth)))
            if current is None:
                current = self._publishers[(url, auth)] = JetStreamPublisher(url, auth)
            return current

    def puller(self, url: str, auth: NatsAuth) -> JetStreamPuller:
        with self._lock:
            self._forget_after_fork()
            current = _alive(self._pullers.get((url, auth)))
            if current is None:
                current = self._pullers[(url, auth)] = JetStreamPuller(url, auth)
            return current

    def close_all(self) -> None:
        with self._lock:
            if self._pid != os.getpid():
                return
            connections: list[JetStreamPublisher | JetStreamPuller] = [
                *self._publishers.values(),
                *self._pullers.values(),
            ]
            self._publishers, self._pullers = {}, {}
        for connection in connections:
            with contextlib.suppress(Exception):  # closing at exit: the server may be gone
                connection.close()


shared_connections = _ProcessConnections()
# Stop reconnect loops before the interpreter goes (they would log into its last output).
atexit.register(shared_connections.close_all)


def close_shared_nats_connections() -> None:
    """Close this process's shared NATS connections (they reopen on next use)."""
    shared_connections.close_all()
