from __future__ import annotations

import asyncio
import os
from pathlib import Path

import nats
import pytest

from td_pipeline.infrastructure.subjects import (
    AGENT_RESPONSE_COMPLETED,
    DERIVATION_REQUESTED,
    DERIVATION_STREAM,
    StreamSpec,
)
from td_pipeline.sandbox.nats_server import NatsServer, ensure_streams


async def publish_twice(url: str, subject: str, message_id: str) -> list[tuple[str, bool]]:
    connection = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
    try:
        jetstream = connection.jetstream()
        acks = [
            await jetstream.publish(subject, b"{}", headers={"Nats-Msg-Id": message_id})
            for _ in range(2)
        ]
        return [(ack.stream, ack.duplicate or False) for ack in acks]
    finally:
        await connection.close()


async def duplicate_window(url: str, stream: str) -> float:
    connection = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
    try:
        info = await connection.jetstream().stream_info(stream)
        assert info.config.duplicate_window is not None
        return info.config.duplicate_window
    finally:
        await connection.close()


def test_server_serves_jetstream_on_loopback_with_the_fleet_streams(tmp_path: Path) -> None:
    with NatsServer(tmp_path / "nats") as server:
        assert server.url.startswith("nats://127.0.0.1:")
        requested = asyncio.run(publish_twice(server.url, DERIVATION_REQUESTED, "m-1"))
        answered = asyncio.run(publish_twice(server.url, AGENT_RESPONSE_COMPLETED, "m-2"))

    assert requested == [("task_derivation", False), ("task_derivation", True)]
    assert answered == [("AGENT_RESPONSES", False), ("AGENT_RESPONSES", True)]


def test_streams_are_created_idempotently_and_updated_when_changed(tmp_path: Path) -> None:
    with NatsServer(tmp_path / "nats") as server:
        asyncio.run(ensure_streams(server.url, [DERIVATION_STREAM]))
        changed = StreamSpec(DERIVATION_STREAM.name, DERIVATION_STREAM.subjects, 30.0)
        asyncio.run(ensure_streams(server.url, [changed]))

        assert asyncio.run(duplicate_window(server.url, DERIVATION_STREAM.name)) == 30.0


def test_stop_reaps_the_process_and_a_temporary_store_is_removed() -> None:
    server = NatsServer().start()
    pid, store = server.pid, server.store_dir
    assert pid is not None and store.exists()

    server.stop()

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not store.exists()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url
