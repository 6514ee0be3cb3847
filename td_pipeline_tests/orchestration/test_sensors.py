"""The request sensor against a real NATS server (a real daemon runs it in the e2e tests)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import nats
import nats.errors
import pytest

from td_pipeline.application.llm_window import LlmWindow, room
from td_pipeline.application.request_intake import derivation_id_for
from td_pipeline.devtools.tick_workload import store_result
from td_pipeline.infrastructure.jetstream_consumer import pulled_message
from td_pipeline.orchestration import nats_ticks, request_sensor
from td_pipeline.orchestration.attempt_queries import batch_in_flight
from td_pipeline.orchestration.attempts import (
    BATCH_TAG,
    Phase,
    derivation_tag,
    message_tag,
    story_tag,
)
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
from td_pipeline.orchestration.run_requests import StoryWork, batch_run_request
from td_pipeline.sandbox.fleet import LocalFleet
from td_pipeline.sandbox.nats_server import NatsServer
from td_pipeline_tests.fixtures import fleet_message
from td_pipeline_tests.instance_records import record_submission
from td_pipeline_tests.support import stored_bodies, stored_messages, wait_until

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
    return await stored_bodies(url, "task.derivation.failed")


async def _request_consumer(url: str) -> Any:
    connection = await nats.connect(url)
    try:
        return await connection.jetstream().consumer_info(
            REQUEST_CONSUMER.stream, REQUEST_CONSUMER.durable
        )
    finally:
        await connection.close()


async def _unacked(url: str) -> int:
    info = await _request_consumer(url)
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


def test_the_requests_of_a_tick_whose_result_was_lost_come_back_at_once(
    server: NatsServer,
) -> None:
    bodies = [{"plan_id": "P-1", "story_id": f"S-{n}"} for n in range(2)]
    asyncio.run(_publish(server.url, [json.dumps(body).encode() for body in bodies]))
    with dg.instance_for_test() as instance:
        lost = [
            r.run_key for r in tick(instance, server.url, None, batch_size=1).run_requests or []
        ]
        # The daemon died before storing that result: the next ticks get the cursor before it,
        # and the same requests again within seconds (not after the two-minute ack wait).
        again = wait_until(
            lambda: [
                r.run_key for r in tick(instance, server.url, None, batch_size=1).run_requests or []
            ],
            10,
            "the lost tick's requests delivered again",
        )

    assert len(lost) == 2 and again == lost
    assert asyncio.run(_request_deliveries(server.url)) == 4


def test_every_message_a_tick_fetches_is_settled_in_that_tick(server: NatsServer) -> None:
    # More refused requests than the tick's fetches can take: the tick stops fetching, and
    # leaves nothing delivered and unsettled (it would come back only after the ack wait).
    per_fetch = room(LlmWindow(), in_flight=0, cap=DerivationSettings().llm_max_in_flight)
    published = (request_sensor.MAX_FETCHES_PER_TICK + 2) * per_fetch
    comma = [
        json.dumps({"plan_id": "P-1", "story_id": f"S-{n},S-0"}).encode() for n in range(published)
    ]
    asyncio.run(_publish(server.url, comma))

    with dg.instance_for_test() as instance:
        result = tick(instance, server.url, None)

    info = asyncio.run(_request_consumer(server.url))
    answered = asyncio.run(_failed_events(server.url))
    assert result.run_requests == []
    assert int(info.num_ack_pending) == 0
    assert 0 < int(info.num_pending) < published  # the tick stopped short of the stream's end
    assert len(answered) == published - int(info.num_pending)


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
        record_submission(
            instance,
            "STORY-REFUNDS",
            "d-0123456789abcdef",
            datetime(2026, 11, 26, 10, tzinfo=UTC),
            plan="PLAN-PAY-1",
            acceptance_criteria=4,
            correlation_id="corr-1",
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
    # The LLM was too busy: the story is asked again as soon as the window has room.
    assert request.tags["td/resubmit"] == "1"


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


# Batched runs (TD_BATCH_SIZE, default 50): a queue of requests or answers in one tick.


async def _request_keys(url: str) -> list[str]:
    """The run key of every request the stream holds, as the sensor reads it."""
    messages = await stored_messages(url, "task.derivation.requested")
    return [pulled_message(message).run_key for message in messages]


async def _request_deliveries(url: str) -> int:
    """How many times the request consumer delivered a message (redeliveries count)."""
    info = await _request_consumer(url)
    return int(info.delivered.consumer_seq)


def test_requests_for_several_stories_become_one_batched_run(
    server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nats_ticks, "WAIT_FIRST_SECONDS", 0.2)  # the same, sooner
    requests = [
        {"plan_id": "PLAN-A", "story_id": "STORY-A"},
        {"plan_id": "PLAN-B", "story_id": "STORY-B"},
    ]
    again = {"plan_id": "PLAN-A", "story_id": "STORY-A"}  # while STORY-A's batch is in flight
    asyncio.run(_publish(server.url, [json.dumps(r).encode() for r in requests]))
    key_a, key_b = asyncio.run(_request_keys(server.url))

    with dg.instance_for_test() as instance:
        first = tick(instance, server.url, None)  # the default batch size
        unacked_after_first = asyncio.run(_unacked(server.url))
        store_result(instance, first.dynamic_partitions_requests or [], first.run_requests or [])
        asyncio.run(_publish(server.url, [json.dumps(again).encode()]))

        later: list[dg.SensorResult] = []
        cursor = first.cursor

        def seen_again() -> bool:
            nonlocal cursor
            later.append(tick(instance, server.url, cursor))
            cursor = later[-1].cursor
            # Its first delivery and at least one more.
            return asyncio.run(_request_deliveries(server.url)) > len(requests) + 1

        wait_until(seen_again, 10, "STORY-A's second request coming back")
        unacked_after = asyncio.run(_unacked(server.url))
        in_flight = batch_in_flight(instance, "STORY-A")

    (run,) = first.run_requests or []
    assert run.job_name == "derive_tasks_batch" and run.partition_key is None
    stories = run.run_config["ops"]["derive_stories"]["config"]["stories"]
    assert [(s["story"], s["plan_id"], s["derivation_id"]) for s in stories] == [
        ("STORY-A", "PLAN-A", derivation_id_for(key_a).value),
        ("STORY-B", "PLAN-B", derivation_id_for(key_b).value),
    ]
    assert run.tags[BATCH_TAG] == "2"
    for story, key in (("STORY-A", key_a), ("STORY-B", key_b)):
        derivation = derivation_id_for(key).value
        assert run.tags[story_tag(story)] == story
        assert run.tags[derivation_tag(derivation)] == derivation
        assert run.tags[message_tag(key)] == "1"
    (added,) = first.dynamic_partitions_requests or []
    assert list(added.partition_keys) == ["STORY-A", "STORY-B"]
    assert len(json.loads(first.cursor or "{}")["pending_acks"]) == 2
    assert unacked_after_first == 2  # the two in the run wait for their ack on the next tick
    # STORY-A's second request is neither acked nor refused: it comes back, and since the
    # story's batch is still in flight, it still asks for no run.
    assert in_flight
    assert all(result.run_requests == [] for result in later)
    assert asyncio.run(_failed_events(server.url)) == []
    assert unacked_after == 1


def test_a_request_waiting_for_its_storys_batch_is_run_on_its_last_delivery(
    server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JetStream stops delivering a message after max_deliver: rather than lose a request that
    waited that long, it gets its own run."""
    monkeypatch.setattr(nats_ticks, "WAIT_FIRST_SECONDS", 0.1)
    monkeypatch.setattr(nats_ticks, "CONSUMER_MAX_DELIVER", 3)  # the third delivery is last
    busy = {"plan_id": "PLAN-A", "story_id": "STORY-A"}
    with dg.instance_for_test() as instance:
        batch = batch_run_request(
            [
                StoryWork("STORY-A", Phase.DERIVE, {"derivation_id": "d-a"}, "m-a"),
                StoryWork("STORY-B", Phase.DERIVE, {"derivation_id": "d-b"}, "m-b"),
            ],
            "batch:in-flight",
        )
        instance.add_dynamic_partitions("stories", ["STORY-A", "STORY-B"])
        store_result(instance, [], [batch])  # stored, not started: in flight
        asyncio.run(_publish(server.url, [json.dumps(busy).encode()]))

        results: list[dg.SensorResult] = []

        def run_asked() -> bool:
            cursor = results[-1].cursor if results else None
            results.append(tick(instance, server.url, cursor))
            return bool(results[-1].run_requests)

        wait_until(run_asked, 20, "the waiting request's last delivery")
        deliveries = asyncio.run(_request_deliveries(server.url))

    *waited, last = results
    assert all(result.run_requests == [] for result in waited)
    (run,) = last.run_requests or []
    assert (run.job_name, run.partition_key) == ("derive_tasks", "STORY-A")
    assert deliveries == 3


def submitted(instance: dg.DagsterInstance, story: str, derivation: str, plan: str) -> None:
    """A story's current attempt: its partition, derive run and submission record."""
    instance.add_dynamic_partitions("stories", [story])
    instance.add_run(
        dg.DagsterRun(
            job_name="derive_tasks",
            status=dg.DagsterRunStatus.SUCCESS,
            run_config={
                "ops": {"plan_context": {"config": {"plan_id": plan, "derivation_id": derivation}}}
            },
            tags={"dagster/partition": story, "td/derivation_id": derivation},
        )
    )
    record_submission(
        instance, story, derivation, datetime(2026, 11, 26, 10, tzinfo=UTC), plan=plan
    )


def test_answers_for_several_stories_become_one_batched_persist_run(server: NatsServer) -> None:
    failed_derivation = "d-0123456789abcdef"  # the failure fixture's task id names it
    with dg.instance_for_test() as instance:
        submitted(instance, "STORY-A", "d-a", "PLAN-A")
        submitted(instance, "STORY-B", "d-b", "PLAN-B")
        submitted(instance, "STORY-C", failed_derivation, "PLAN-C")
        asyncio.run(
            _publish_responses(
                server.url,
                [response("STORY-A", "PLAN-A", "d-a"), response("STORY-B", "PLAN-B", "d-b")],
            )
        )
        asyncio.run(_publish_failure(server.url, fleet_message("agent_response_failed")))

        result = tick(instance, server.url, None, derivation_result_sensor)

    runs = result.run_requests or []
    assert sorted(str(r.job_name) for r in runs) == ["persist_tasks", "persist_tasks_batch"]
    (own,) = [r for r in runs if r.job_name == "persist_tasks"]
    (batch,) = [r for r in runs if r.job_name == "persist_tasks_batch"]
    # The executor's failure: always the story's own run, where a story's failure rules apply.
    assert own.partition_key == "STORY-C"
    failure = own.run_config["ops"]["llm_proposal"]["config"]
    assert (
        failure["derivation_id"] == failed_derivation and "timed out" in failure["executor_error"]
    )
    # The two answers: one run, each story with its own attempt's config.
    assert batch.partition_key is None and batch.tags[BATCH_TAG] == "2"
    stories = batch.run_config["ops"]["persist_stories"]["config"]["stories"]
    assert [(s["story"], s["derivation_id"], s["attempt"], s["text"]) for s in stories] == [
        ("STORY-A", "d-a", 1, "for d-a"),
        ("STORY-B", "d-b", 1, "for d-b"),
    ]
    assert stories[0]["plan_id"] == "PLAN-A" and stories[0]["roles"] == ["DEVELOPER", "QA"]
    assert batch.tags["dagster/priority"] == "1"  # ahead of queued derive runs, as before
    assert len(json.loads(result.cursor or "{}")["pending_acks"]) == 3


def test_a_story_whose_own_run_is_in_flight_is_not_batched(server: NatsServer) -> None:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("stories", ["STORY-A"])
        instance.add_run(
            dg.DagsterRun(
                job_name="derive_tasks",
                status=dg.DagsterRunStatus.STARTED,
                run_config={
                    "ops": {"plan_context": {"config": {"plan_id": "PLAN-A", "derivation_id": "d"}}}
                },
                tags={"dagster/partition": "STORY-A", "td/derivation_id": "d"},
            )
        )
        requests = [
            {"plan_id": "PLAN-A", "story_id": "STORY-A"},
            {"plan_id": "PLAN-B", "story_id": "STORY-B"},
        ]
        asyncio.run(_publish(server.url, [json.dumps(r).encode() for r in requests]))

        result = tick(instance, server.url, None)

    runs = result.run_requests or []
    batched = [
        item["story"]
        for run in runs
        if run.job_name == "derive_tasks_batch"
        for item in run.run_config["ops"]["derive_stories"]["config"]["stories"]
    ]
    # STORY-A may wait, or have a run of its own (queued behind its run by the partition
    # limit), but not share a batch that nothing holds back while its own run goes on.
    assert "STORY-A" not in batched
    assert "STORY-B" in [*batched, *(r.partition_key for r in runs)]
