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

from td_pipeline.orchestration.definitions import defs
from td_pipeline.orchestration.request_sensor import derivation_request_sensor
from td_pipeline.orchestration.resources import (
    ContextResource,
    DerivationSettings,
    NatsResource,
    PlanningResource,
    RayExecutorResource,
)
from td_pipeline.orchestration.result_sensor import derivation_result_sensor
from td_pipeline.sandbox.fleet import LocalFleet
from td_pipeline.sandbox.nats_server import NatsServer
from td_pipeline_tests.fixtures import fleet_message

REQUEST_CONSUMER = NatsResource(url="unused").request_consumer()
RESULT_CONSUMER = NatsResource(url="unused").result_consumer()
LLM_SETTINGS = {"vllm_url": "sandbox://offline-planner", "vllm_model": "offline"}


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


def tick(
    instance: dg.DagsterInstance,
    url: str,
    cursor: str | None,
    sensor: dg.SensorDefinition = derivation_request_sensor,
    **settings: Any,
) -> dg.SensorResult:
    with dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "nats": NatsResource(url=url),
            "settings": DerivationSettings(
                sensor_fetch_seconds=1.0, **{**LLM_SETTINGS, **settings}
            ),
        },
    ) as context:
        result = sensor(context)
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
    comma = {"plan_id": "P-10", "story_id": "S-1,S-2", "roles": ["DEV"]}
    asyncio.run(
        _publish(
            server.url,
            [
                json.dumps(valid).encode(),
                json.dumps(enveloped).encode(),
                json.dumps(bad_role).encode(),
                json.dumps(comma).encode(),
                b"{broken",
            ],
        )
    )

    with dg.instance_for_test() as instance:
        first = tick(instance, server.url, None, batch_size=1)
        second = tick(instance, server.url, first.cursor, batch_size=1)

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
    # Every request whose ids can be read is answered, with the ids exactly as sent.
    assert [(e["story_id"], e["requires_manual_review"]) for e in failed] == [
        ("S-9", True),
        ("S-1,S-2", True),
    ]
    assert "not a role name" in failed[0]["reason"] and "comma" in failed[1]["reason"]
    assert [e["derivation_request_id"] for e in failed] == [None, None]

    assert second.run_requests == []
    assert json.loads(second.cursor or "{}")["pending_acks"] == []
    assert asyncio.run(_unacked(server.url)) == 0  # acked or terminated, nothing left


async def _publish_responses(url: str, bodies: list[dict[str, Any]]) -> None:
    connection = await nats.connect(url)
    for body in bodies:
        await connection.jetstream().publish("agent.response.completed", json.dumps(body).encode())
    await connection.close()


def response(
    story: str, plan: str, derivation: str, task_type: str = "TASK_DERIVATION"
) -> dict[str, Any]:
    """The executor's real answer shape (the fixture), for another story and attempt."""
    answer = fleet_message("agent_response_completed")
    task_id = f"td:{derivation}:1"
    answer.update(task_id=task_id, proposal={**answer["proposal"], "content": f"for {derivation}"})
    metadata = {
        **answer["constraints"]["metadata"],
        "task_type": task_type,
        "derivation_id": derivation,
        "story_id": story,
        "plan_id": plan,
        "task_id": task_id,
    }
    answer["constraints"] = {**answer["constraints"], "story_id": story, "plan_id": plan}
    answer["constraints"]["metadata"] = metadata
    return answer


def test_answers_of_the_latest_attempt_become_persist_runs(tmp_path: Any) -> None:
    with LocalFleet(tmp_path / "fleet") as fleet, dg.instance_for_test() as instance:
        env = fleet.environment()
        instance.add_dynamic_partitions("stories", ["STORY-REFUNDS"])
        derived = defs.resolve_job_def("derive_tasks").execute_in_process(
            run_config={
                "ops": {
                    "plan_context": {
                        "config": {"plan_id": "PLAN-PAY-1", "derivation_id": "d-latest"}
                    }
                }
            },
            instance=instance,
            partition_key="STORY-REFUNDS",
            resources={
                "planning": PlanningResource(address=env["PLANNING_SERVICE_ADDRESS"]),
                "context_service": ContextResource(address=env["CONTEXT_SERVICE_ADDRESS"]),
                "executor": RayExecutorResource(address=env["RAY_EXECUTOR_ADDRESS"]),
                "settings": DerivationSettings(
                    vllm_url=env["VLLM_URL"], vllm_model=env["VLLM_MODEL"]
                ),
                "nats": NatsResource(url=env["NATS_URL"]),
            },
        )
        assert derived.success
        asyncio.run(
            _publish_responses(
                env["NATS_URL"],
                [
                    response("STORY-REFUNDS", "PLAN-PAY-1", "d-old"),  # superseded
                    response("STORY-REFUNDS", "PLAN-PAY-1", "d-latest", task_type="CODE_REVIEW"),
                    response("STORY-UNKNOWN", "PLAN-X", "d-x"),  # no attempt of ours
                ],
            )
        )

        first = tick(instance, env["NATS_URL"], None, derivation_result_sensor)
        second = tick(instance, env["NATS_URL"], first.cursor, derivation_result_sensor)
        unacked = asyncio.run(_unacked_results(env["NATS_URL"]))

    # The executor's own (real) answer for d-latest is the only one that runs.
    (request,) = first.run_requests or []
    config = request.run_config["ops"]["llm_proposal"]["config"]
    assert (request.partition_key, config["derivation_id"]) == ("STORY-REFUNDS", "d-latest")
    assert json.loads(config["text"])["tasks"]
    assert second.run_requests == []
    assert unacked == 0


async def _unacked_results(url: str) -> int:
    connection = await nats.connect(url)
    info = await connection.jetstream().consumer_info(
        RESULT_CONSUMER.stream, RESULT_CONSUMER.durable
    )
    await connection.close()
    return int(info.num_ack_pending) + int(info.num_pending)


def test_an_answer_that_overtakes_its_submission_record_comes_back_later(
    server: NatsServer,
) -> None:
    url = server.url
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("stories", ["STORY-FAST"])
        # The derive run is still finishing executor_submission: no materialization yet.
        instance.add_run(
            dg.DagsterRun(
                job_name="derive_tasks",
                status=dg.DagsterRunStatus.STARTED,
                run_config={
                    "ops": {"plan_context": {"config": {"plan_id": "P", "derivation_id": "d-fast"}}}
                },
                tags={"dagster/partition": "STORY-FAST"},
            )
        )
        asyncio.run(_publish_responses(url, [response("STORY-FAST", "P", "d-fast")]))

        result = tick(instance, url, None, derivation_result_sensor)
        waiting = asyncio.run(_unacked_results(url))

    assert result.run_requests == []
    assert waiting == 1  # not acked, not dropped: redelivered in a few seconds


def test_without_vllm_settings_requests_wait_in_the_stream(server: NatsServer) -> None:
    request = {"plan_id": "PLAN-PAY-1", "story_id": "STORY-REFUNDS"}
    asyncio.run(_publish(server.url, [json.dumps(request).encode()]))

    with dg.instance_for_test() as instance:
        waiting = tick(instance, server.url, None, vllm_url="", vllm_model="")
        served = tick(instance, server.url, waiting.cursor)

    assert waiting.run_requests == [] and waiting.skip_reason is not None
    assert "VLLM_URL and VLLM_MODEL not set" in str(waiting.skip_reason)
    # Nothing was taken from the stream: the next tick, configured, runs the request.
    assert [r.partition_key for r in served.run_requests or []] == ["STORY-REFUNDS"]


async def _publish_failure(url: str, body: dict[str, Any]) -> None:
    connection = await nats.connect(url)
    await connection.jetstream().publish("agent.response.failed", json.dumps(body).encode())
    await connection.close()


def test_a_real_failure_is_tied_to_its_attempt_by_the_task_id(server: NatsServer) -> None:
    """The executor's failure names no plan or story: the derivation's runs tell the story."""
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("stories", ["STORY-REFUNDS"])
        instance.add_run(
            dg.DagsterRun(
                job_name="derive_tasks",
                status=dg.DagsterRunStatus.SUCCESS,
                run_config={"ops": {"plan_context": {"config": {"plan_id": "PLAN-PAY-1"}}}},
                tags={
                    "dagster/partition": "STORY-REFUNDS",
                    "td/derivation_id": "d-0123456789abcdef",
                },
            )
        )
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key="executor_submission",
                partition="STORY-REFUNDS",
                metadata={
                    "derivation_id": "d-0123456789abcdef",
                    "attempt": 1,
                    "deliberation_id": "deliberation-td:d-0123456789abcdef:1-1",
                    "submitted_at": "2026-11-26T10:00:00+00:00",
                    "plan_id": "PLAN-PAY-1",
                    "roles": "DEVELOPER, QA",
                    "acceptance_criteria": 4,
                    "correlation_id": "corr-1",
                },
            )
        )
        asyncio.run(_publish_failure(server.url, fleet_message("agent_response_failed")))
        result = tick(instance, server.url, None, derivation_result_sensor)

    (request,) = result.run_requests or []
    config = request.run_config["ops"]["llm_proposal"]["config"]
    assert request.partition_key == "STORY-REFUNDS"
    assert (config["derivation_id"], config["attempt"]) == ("d-0123456789abcdef", 1)
    # What the attempt asked for travels in the config: nothing of the derive run is loaded.
    assert (config["plan_id"], config["roles"], config["acceptance_criteria"]) == (
        "PLAN-PAY-1",
        ["DEVELOPER", "QA"],
        4,
    )
    assert config["correlation_id"] == "corr-1"
    assert "TimeoutError" in config["executor_error"] and "timed out" in config["executor_error"]


def test_a_tick_looks_up_only_the_stories_it_was_asked_for(
    server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests = [
        {"plan_id": "PLAN-PAY-1", "story_id": "STORY-1234"},  # derived before
        {"plan_id": "PLAN-UX-1", "story_id": "STORY-NEW"},
    ]
    asyncio.run(_publish(server.url, [json.dumps(r).encode() for r in requests]))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("stories", [f"STORY-{n}" for n in range(5_000)])
        monkeypatch.setattr(
            instance, "get_dynamic_partitions", lambda *_: pytest.fail("read every story")
        )
        result = tick(instance, server.url, None, batch_size=1)

    assert [r.partition_key for r in result.run_requests or []] == ["STORY-1234", "STORY-NEW"]
    (added,) = result.dynamic_partitions_requests or []
    assert list(added.partition_keys) == ["STORY-NEW"]
