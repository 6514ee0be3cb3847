"""The request sensor against a real NATS server (a real daemon runs it in the e2e tests)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import dagster as dg
import nats
import nats.errors
import pytest

from td_pipeline.orchestration.resources import DerivationSettings, NatsResource
from td_pipeline.orchestration.sensors import REQUEST_CONSUMER, derivation_request_sensor
from td_pipeline.sandbox.nats_server import NatsServer


@pytest.fixture
def server() -> Iterator[NatsServer]:
    with NatsServer() as server:
        yield server


async def _publish(url: str, bodies: list[bytes]) -> None:
    connection = await nats.connect(url)
    for body in bodies:
        await connection.jetstream().publish("task.derivation.requested", body)
    await connection.close()


async def _failed_events(url: str) -> list[dict[str, Any]]:
    connection = await nats.connect(url)
    try:
        subscription = await connection.jetstream().subscribe(
            "task.derivation.failed", ordered_consumer=True
        )
        events = []
        while True:
            try:
                events.append(json.loads((await subscription.next_msg(timeout=0.5)).data))
            except nats.errors.TimeoutError:
                return events
    finally:
        await connection.close()


async def _unacked(url: str) -> int:
    connection = await nats.connect(url)
    info = await connection.jetstream().consumer_info(
        REQUEST_CONSUMER.stream, REQUEST_CONSUMER.durable
    )
    await connection.close()
    return int(info.num_ack_pending) + int(info.num_pending)


def tick(instance: dg.DagsterInstance, url: str, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "nats": NatsResource(url=url),
            "settings": DerivationSettings(sensor_fetch_seconds=0.5),
        },
    )
    result = derivation_request_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def test_requests_become_runs_and_are_acked_on_the_next_tick(server: NatsServer) -> None:
    valid = {"plan_id": "PLAN-PAY-1", "story_id": "STORY-REFUNDS", "roles": ["developer", "qa"]}
    enveloped = {
        "event_type": "task.derivation.requested",
        "payload": {"plan_id": "PLAN-UX-1", "story_id": "STORY-DARK-MODE"},
        "correlation_id": "corr-1",
    }
    bad_role = {"plan_id": "P-9", "story_id": "S-9", "roles": ["QA!"]}
    asyncio.run(
        _publish(
            server.url,
            [
                json.dumps(valid).encode(),
                json.dumps(enveloped).encode(),
                json.dumps(bad_role).encode(),
                b"{broken",
            ],
        )
    )

    with dg.instance_for_test() as instance:
        first = tick(instance, server.url, None)
        second = tick(instance, server.url, first.cursor)

    requests = first.run_requests or []
    assert [(r.partition_key, r.tags["td/plan_id"]) for r in requests] == [
        ("STORY-REFUNDS", "PLAN-PAY-1"),
        ("STORY-DARK-MODE", "PLAN-UX-1"),
    ]
    config = requests[0].run_config["ops"]["plan_context"]["config"]
    assert config["roles"] == ["DEVELOPER", "QA"] and config["derivation_id"].startswith("d-")
    assert requests[1].run_config["ops"]["plan_context"]["config"]["correlation_id"] == "corr-1"
    assert len({r.run_key for r in requests}) == 2
    (added,) = first.dynamic_partitions_requests or []
    assert list(added.partition_keys) == ["STORY-REFUNDS", "STORY-DARK-MODE"]
    assert len(json.loads(first.cursor or "{}")["pending_acks"]) == 2

    failed = asyncio.run(_failed_events(server.url))
    assert [(e["story_id"], e["requires_manual_review"]) for e in failed] == [("S-9", True)]
    assert "not a role name" in failed[0]["reason"]
    assert failed[0]["derivation_request_id"] is None

    assert second.run_requests == []
    assert json.loads(second.cursor or "{}")["pending_acks"] == []
    assert asyncio.run(_unacked(server.url)) == 0  # acked or terminated, nothing left
