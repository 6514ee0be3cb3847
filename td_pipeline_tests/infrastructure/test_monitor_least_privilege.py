"""The metrics server and `watch` as td-pipeline's least-privilege NATS user, against the secure
local fleet's real nats-server (TLS, client certificates, `nats_config.pipeline_permissions`):
they read the derivation stream, the durables' lag and a ping, and the same user still may not
pull from a consumer that is not its own, nor create one."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from td_pipeline.application.derivation_metrics import Completed, Failed, Requested
from td_pipeline.application.request_intake import derivation_id_for
from td_pipeline.infrastructure.jetstream_consumer import ConsumerSpec, JetStreamPuller
from td_pipeline.infrastructure.jetstream_monitor import DerivationStreamReader, JetStreamMonitor
from td_pipeline.infrastructure.nats_auth import NatsAuth
from td_pipeline.infrastructure.subjects import (
    AGENT_RESPONSES_STREAM,
    DERIVATION_STREAM,
    REQUEST_DURABLE,
    RESULT_DURABLE,
)
from td_pipeline.sandbox.nats_server import NatsServer
from td_pipeline.sandbox.secure_fleet import FleetSecurity, make_fleet_security

STREAM = DERIVATION_STREAM.name
OTHERS = "planning-audit"  # a consumer of the fleet's on the same stream
REQUESTS = 12
EVENT = {"plan_id": "P", "story_id": "S", "occurred_at": "2026-11-01T10:00:00Z"}
COMPLETED = {**EVENT, "task_count": 3, "status": "success", "derivation_request_id": "d-1"}
FAILED = {
    **EVENT,
    "status": "failed",
    "reason": "failed while reading the LLM's answer: no tasks; will retry (attempt 2 of 3)",
    "requires_manual_review": False,
    "derivation_request_id": "d-1",
}


@pytest.fixture(scope="module")
def security(tmp_path_factory: pytest.TempPathFactory) -> FleetSecurity:
    return make_fleet_security(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def server(security: FleetSecurity, tmp_path: Path) -> Iterator[NatsServer]:
    """The secure fleet's NATS alone (no gRPC stand-ins): td-pipeline's user and the fleet's."""
    nats_server = NatsServer(tmp_path / "nats", security.nats_security(), security.fleet_auth())
    with nats_server:
        yield nats_server


def as_fleet(server: NatsServer, *messages: tuple[str, dict[str, object]]) -> None:
    """Publish as Planning would (td-pipeline's user may not publish requests); delete
    sequence 5; give the fleet a consumer of its own on the stream."""

    async def run() -> None:
        connection = await nats.connect(server.url, **server.admin.connect_options())
        jetstream = connection.jetstream()
        for subject, body in messages:
            await jetstream.publish(subject, json.dumps(body).encode())
        await jetstream.delete_msg(STREAM, 5)
        config = ConsumerConfig(durable_name=OTHERS, ack_policy=AckPolicy.EXPLICIT)
        await jetstream.add_consumer(STREAM, config)
        await connection.close()

    asyncio.run(run())


def others_delivered(server: NatsServer) -> int:
    async def run() -> int:
        connection = await nats.connect(server.url, **server.admin.connect_options())
        info = await connection.jetstream().consumer_info(STREAM, OTHERS)
        await connection.close()
        return int(info.delivered.stream_seq)

    return asyncio.run(run())


def refusals_as_pipeline(server: NatsServer, auth: NatsAuth) -> list[str]:
    """Pull from the fleet's consumer, and create an unnamed and a named consumer of our own:
    each is a request the server answers with a permissions violation only."""

    async def run() -> list[str]:
        errors: list[str] = []

        async def collect(error: Exception) -> None:
            errors.append(str(error))

        connection = await nats.connect(
            server.url, **auth.connect_options(), error_cb=collect, max_reconnect_attempts=0
        )
        attempts = [
            (f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{OTHERS}", {"batch": 1, "expires": 500_000_000}),
            (f"$JS.API.CONSUMER.CREATE.{STREAM}", {"stream_name": STREAM, "config": {}}),
            (f"$JS.API.CONSUMER.CREATE.{STREAM}.mine", {"stream_name": STREAM, "config": {}}),
        ]
        for subject, body in attempts:
            with pytest.raises(nats.errors.TimeoutError):
                await connection.request(subject, json.dumps(body).encode(), timeout=1)
        await connection.close()
        return errors

    return asyncio.run(run())


def test_the_monitor_reads_stream_lag_and_ping_as_the_pipeline_user_and_no_other_consumer(
    server: NatsServer, security: FleetSecurity
) -> None:
    requests = [
        ("task.derivation.requested", {"plan_id": "P", "story_id": f"S-{n}"})
        for n in range(REQUESTS)
    ]
    as_fleet(
        server,
        *requests,
        ("task.derivation.failed", FAILED),
        ("task.derivation.completed", COMPLETED),
    )
    auth = security.pipeline_auth()
    monitor = JetStreamMonitor(server.url, auth)
    puller = JetStreamPuller(server.url, auth)
    try:
        monitor.ping()
        reader = DerivationStreamReader(monitor, STREAM)
        first = reader.read(0, 8)  # the per-look bound: sequences 1-8, 5 deleted
        rest = reader.read(first.read_to, 1000)
        nothing_new = reader.read(rest.read_to, 1000)
        # td-pipeline's own durables work: created, pulled from (its lag follows).
        request_spec = ConsumerSpec(STREAM, REQUEST_DURABLE, ("task.derivation.requested",))
        puller.ensure_consumer(request_spec)
        pulled = puller.fetch(request_spec, REQUESTS, 2).messages
        result_spec = ConsumerSpec(AGENT_RESPONSES_STREAM.name, RESULT_DURABLE, ("agent.>",))
        puller.ensure_consumer(result_spec)
        assert puller.fetch(result_spec, 1, 0.5).messages == []
        lag = monitor.consumer_lag(STREAM, REQUEST_DURABLE)
        result_lag = monitor.consumer_lag(AGENT_RESPONSES_STREAM.name, RESULT_DURABLE)
    finally:
        puller.close()
        monitor.close()

    assert [s for s, _ in first.facts] == [1, 2, 3, 4, 6, 7, 8] and first.read_to == 8
    assert [s for s, _ in rest.facts] == list(range(9, REQUESTS + 3)) and not rest.restarted
    assert nothing_new.facts == () and nothing_new.read_to == REQUESTS + 2
    facts = [fact for _, fact in first.facts + rest.facts]
    assert [type(f) for f in facts[-2:]] == [Failed, Completed]
    # Each request has the derivation id the request sensor gives it (from the run key).
    assert [f.derivation_id for f in facts if isinstance(f, Requested)] == [
        derivation_id_for(message.run_key).value for message in pulled
    ]
    assert len(pulled) == REQUESTS - 1
    assert lag is not None and (lag.pending, lag.ack_pending) == (0, REQUESTS - 1)
    assert result_lag is not None and result_lag.pending == 0

    errors = refusals_as_pipeline(server, auth)
    assert others_delivered(server) == 0  # nothing was pulled from the fleet's consumer
    assert sorted(errors) == sorted(
        f'nats: permissions violation for publish to "{subject.lower()}"'
        for subject in (
            f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{OTHERS}",
            f"$JS.API.CONSUMER.CREATE.{STREAM}",
            f"$JS.API.CONSUMER.CREATE.{STREAM}.mine",
        )
    )


def test_watch_prints_new_events_as_the_pipeline_user(
    server: NatsServer, security: FleetSecurity
) -> None:
    as_fleet(server, *[("task.derivation.requested", {})] * 6)  # history watch does not show
    environment = {**os.environ, **security.pipeline_environment(), "NATS_URL": server.url}
    cli = str(Path(sys.executable).with_name("td-pipeline"))
    watcher = subprocess.Popen(
        [cli, "watch", "--count", "2", "--timeout", "30", "--state-dir", str(server.store_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    try:
        assert watcher.stderr is not None
        assert watcher.stderr.readline().startswith("# watching"), "the watcher did not start"

        async def publish() -> None:
            connection = await nats.connect(server.url, **server.admin.connect_options())
            for subject, body in (
                ("task.derivation.requested", {}),
                ("task.derivation.completed", COMPLETED),
                ("task.derivation.failed", FAILED),
            ):
                await connection.jetstream().publish(subject, json.dumps(body).encode())
            await connection.close()

        asyncio.run(publish())
        watched, errors = watcher.communicate(timeout=40)
    finally:
        watcher.kill()
        watcher.wait()

    assert watcher.returncode == 0, errors
    assert watched.splitlines() == [
        "completed  S  plan=P  tasks=3",
        f"failed     S  plan=P  (will retry) {FAILED['reason']}",
    ]
