"""Bad input never stops the pipeline: the whole bad-message corpus published through a real
daemon, then a valid request, which still completes."""

from __future__ import annotations

import asyncio
import json

import nats
import pytest

from td_pipeline.devtools.dagster_processes import DagsterProcesses
from td_pipeline.sandbox.fleet import LocalFleet
from td_pipeline_tests.corpus.bad_messages import REQUESTED, load_bad_messages
from td_pipeline_tests.e2e.test_daemon import consumer_backlog, request_and_collect

pytestmark = [pytest.mark.e2e, pytest.mark.runs_for(40)]

NATS_MAX_PAYLOAD = 1024 * 1024  # the server's default: bigger messages never reach us


def test_every_bad_message_gets_its_outcome_and_a_valid_request_still_completes(
    fleet: LocalFleet, dagster: DagsterProcesses
) -> None:
    url = fleet.environment()["NATS_URL"]
    corpus = [m for m in load_bad_messages() if len(m.data) <= NATS_MAX_PAYLOAD]
    requests = [m for m in corpus if m.subject == REQUESTED]
    # Refused with readable ids: answered at once. Accepted: their plan (P-1) is unknown to
    # Planning, so their runs fail with NOT_FOUND and are answered then. Both need a person.
    answered = [m for m in requests if m.ids_readable and m.expect in ("refused", "accepted")]

    async def publish_corpus() -> None:
        connection = await nats.connect(url)
        try:
            for message in corpus:
                await connection.jetstream().publish(message.subject, message.data)
        finally:
            await connection.close()

    asyncio.run(publish_corpus())
    valid = {"plan_id": "PLAN-PAY-1", "story_id": "STORY-REFUNDS"}
    events = asyncio.run(request_and_collect(url, [valid], want=len(answered) + 1, timeout=300))

    completed = [e for s, e in events if s == "task.derivation.completed"]
    failed = [e for s, e in events if s == "task.derivation.failed"]
    assert [e["story_id"] for e in completed] == ["STORY-REFUNDS"]
    assert len(failed) == len(answered), json.dumps(failed, indent=1)
    assert all(e["requires_manual_review"] is True for e in failed)
    assert all(e["reason"].strip() for e in failed)
    assert dagster.daemon is not None and dagster.daemon.poll() is None
    # Everything was settled: nothing is stuck waiting for redelivery.
    for stream, durable in (
        ("task_derivation", "task-derivation-request-consumer"),
        ("AGENT_RESPONSES", "task-derivation-result-consumer"),
    ):
        assert asyncio.run(consumer_backlog(url, stream, durable)) == (0, 0)
