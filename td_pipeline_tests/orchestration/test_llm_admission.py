"""The LLM window at work: the request sensor fetches only what the window has room for, the
result sensor learns the window from the answers, and the jobs in flight are counted from the
instance (nothing kept that could leak)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from td_pipeline.application.llm_window import LlmWindow
from td_pipeline.infrastructure.subjects import AGENT_RESPONSES_STREAM, DERIVATION_STREAM
from td_pipeline.orchestration.attempts import Phase
from td_pipeline.orchestration.llm_admission import llm_jobs_in_flight, read_window, write_window
from td_pipeline.orchestration.result_sensor import derivation_result_sensor
from td_pipeline.sandbox.nats_server import NatsServer, ensure_streams
from td_pipeline_tests.fixtures import fleet_message
from td_pipeline_tests.orchestration.test_attempts import add_run, add_submission
from td_pipeline_tests.orchestration.test_sensors import (
    _publish,
    _publish_failure,
    _publish_responses,
    _request_consumer,
    response,
    tick,
)

NOW = datetime.now(UTC)


@pytest.fixture
def server() -> Iterator[NatsServer]:
    with NatsServer() as server:
        asyncio.run(ensure_streams(server.url, [DERIVATION_STREAM, AGENT_RESPONSES_STREAM]))
        yield server


def derive_run(
    instance: dg.DagsterInstance, story: str, status: dg.DagsterRunStatus, derivation: str
) -> None:
    add_run(instance, story, Phase.DERIVE, derivation, status=status)


def submission(instance: dg.DagsterInstance, story: str, derivation: str, at: datetime) -> None:
    instance.add_dynamic_partitions("stories", [story])
    add_submission(instance, story, derivation, at)


def persist_run(instance: dg.DagsterInstance, story: str, derivation: str) -> None:
    add_run(instance, story, Phase.PERSIST, derivation, status=dg.DagsterRunStatus.STARTED)


def test_jobs_in_flight_are_counted_from_runs_and_submissions_once_each(
    instance: dg.DagsterInstance,
) -> None:
    recent = NOW - timedelta(seconds=30)
    derive_run(instance, "A", dg.DagsterRunStatus.STARTED, "d-a")  # submitted, run not done
    submission(instance, "A", "d-a", recent)
    derive_run(instance, "B", dg.DagsterRunStatus.NOT_STARTED, "d-b")  # about to submit
    submission(instance, "C", "d-c", recent)  # waiting for its answer
    submission(instance, "D", "d-d", recent)
    persist_run(instance, "D", "d-d")  # answered: its slot is free
    derive_run(instance, "E", dg.DagsterRunStatus.FAILURE, "d-e")  # failed before submitting
    derive_run(instance, "F", dg.DagsterRunStatus.CANCELED, "d-f")  # cancelled
    submission(instance, "G", "d-g", NOW - timedelta(hours=2))  # given up long ago

    assert llm_jobs_in_flight(instance, NOW, llm_timeout_seconds=600) == 3  # A, B, C


def test_requests_beyond_the_window_wait_in_the_stream_undelivered(server: NatsServer) -> None:
    requests = [{"plan_id": f"P-{n}", "story_id": f"S-{n}"} for n in range(5)]
    asyncio.run(_publish(server.url, [json.dumps(r).encode() for r in requests]))
    with dg.instance_for_test() as instance:
        write_window(instance, LlmWindow(limit=2))
        first = tick(instance, server.url, None)
    consumer = asyncio.run(_request_consumer(server.url))

    stories = [
        item["story"]
        for run in first.run_requests or []
        for item in run.run_config["ops"]["derive_stories"]["config"]["stories"]
    ]
    assert stories == ["S-0", "S-1"]  # the window's two, in order
    assert consumer.num_pending == 3 and consumer.delivered.consumer_seq == 2


def test_a_full_window_fetches_nothing_and_the_tick_says_why(server: NatsServer) -> None:
    requests = [{"plan_id": f"P-{n}", "story_id": f"S-{n}"} for n in range(2)]
    asyncio.run(_publish(server.url, [json.dumps(r).encode() for r in requests]))
    with dg.instance_for_test() as instance:
        write_window(instance, LlmWindow(limit=1))
        derive_run(instance, "BUSY", dg.DagsterRunStatus.STARTED, "d-busy")
        result = tick(instance, server.url, None)
    consumer = asyncio.run(_request_consumer(server.url))

    assert result.run_requests == []
    assert result.skip_reason is not None and result.skip_reason.skip_message == (
        "2 request(s) wait in the stream: 1 LLM job(s) in flight of a window of 1"
    )
    assert consumer.delivered.consumer_seq == 0  # not even delivered: no delivery spent


def test_refused_requests_hold_no_slot(server: NatsServer) -> None:
    bad = [b"{broken"] * 3
    good = [json.dumps({"plan_id": "P-1", "story_id": "S-1"}).encode()]
    asyncio.run(_publish(server.url, [*bad, *good]))
    with dg.instance_for_test() as instance:
        write_window(instance, LlmWindow(limit=1))
        result = tick(instance, server.url, None)

    assert [r.partition_key for r in result.run_requests or []] == ["S-1"]


def test_the_result_sensor_learns_the_window_from_answers_and_timeouts(
    server: NatsServer,
) -> None:
    with dg.instance_for_test() as instance:
        submission(instance, "STORY-A", "d-a", datetime.now(UTC) - timedelta(seconds=4))
        derive_run(instance, "STORY-A", dg.DagsterRunStatus.SUCCESS, "d-a")
        asyncio.run(_publish_responses(server.url, [response("STORY-A", "PLAN-STORY-A", "d-a")]))
        first = tick(instance, server.url, None, derivation_result_sensor)
        widened = read_window(instance)

        failed = "d-0123456789abcdef"  # the fleet failure fixture's task id names it
        submission(instance, "STORY-B", failed, datetime.now(UTC) - timedelta(seconds=60))
        derive_run(instance, "STORY-B", dg.DagsterRunStatus.SUCCESS, failed)
        asyncio.run(_publish_failure(server.url, fleet_message("agent_response_failed")))
        tick(instance, server.url, first.cursor, derivation_result_sensor)
        narrowed = read_window(instance)

    assert widened.limit == 5 and widened.fastest_seconds == pytest.approx(4, abs=1)
    assert narrowed.limit == 2.5  # the executor's TimeoutError halves it


def test_an_unreadable_stored_window_is_relearnt(instance: dg.DagsterInstance) -> None:
    instance.run_storage.set_cursor_values({"td_pipeline.llm_window": "{not json"})
    assert read_window(instance) == LlmWindow()
