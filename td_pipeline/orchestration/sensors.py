"""From NATS to runs, at least once.

Dagster stores a tick's runs only after the sensor returns, so acking inside the tick could
lose a request. A tick therefore hands the ack subjects of the messages it turned into runs
to its cursor, and the next tick (whose start proves the previous result was stored) acks
them. A tick whose result is thrown away leaves its messages unacked: they come back, with
the same run key, and Dagster's run-key dedup keeps them from running twice."""

import hashlib
import json
from datetime import UTC, datetime

import dagster as dg

from td_pipeline.domain.events import DerivationFailed
from td_pipeline.infrastructure.jetstream_consumer import (
    ConsumerSpec,
    JetStreamPuller,
    PulledMessage,
)
from td_pipeline.infrastructure.nats_mappers import (
    NotOurs,
    Refused,
    decode_agent_response,
    decode_request,
)
from td_pipeline.infrastructure.subjects import (
    AGENT_RESPONSE_COMPLETED,
    AGENT_RESPONSES_STREAM,
    DERIVATION_REQUESTED,
    DERIVATION_STREAM,
)
from td_pipeline.orchestration.jobs import derive_job, persist_job
from td_pipeline.orchestration.partitions import STORIES, story_partition_key, story_partitions
from td_pipeline.orchestration.resources import DerivationSettings, NatsResource

REQUEST_CONSUMER = ConsumerSpec(
    stream=DERIVATION_STREAM.name,
    durable="task-derivation-request-consumer",
    filter_subject=DERIVATION_REQUESTED,
    ack_wait_seconds=120.0,
    max_deliver=10,
)
RUN_KEY_TAG = "dagster/run_key"


def derivation_id_for(message: PulledMessage) -> str:
    # Deterministic: a redelivered request names the same derivation.
    return "d-" + hashlib.sha256(message.run_key.encode()).hexdigest()[:16]


def _pending(cursor: str | None) -> list[str]:
    if not cursor:
        return []
    replies: list[str] = json.loads(cursor).get("pending_acks", [])
    return replies


def _settle_then_fetch(
    context: dg.SensorEvaluationContext,
    nats: NatsResource,
    settings: DerivationSettings,
    consumer: ConsumerSpec,
) -> tuple[JetStreamPuller, list[PulledMessage]]:
    """Ack what the last tick turned into runs (this tick running proves they were stored),
    then fetch a bounded batch."""
    puller = nats.puller()
    puller.ack(_pending(context.cursor))
    puller.ensure_consumer(consumer)
    return puller, puller.fetch(consumer, settings.sensor_batch, settings.sensor_fetch_seconds)


def _run_exists(instance: dg.DagsterInstance, run_key: str) -> bool:
    return bool(instance.get_run_ids(filters=dg.RunsFilter(tags={RUN_KEY_TAG: run_key}), limit=1))


@dg.sensor(
    job=derive_job,
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Turns task.derivation.requested messages into derive runs per story.",
)
def derivation_request_sensor(
    context: dg.SensorEvaluationContext, nats: NatsResource, settings: DerivationSettings
) -> dg.SensorResult:
    puller, messages = _settle_then_fetch(context, nats, settings, REQUEST_CONSUMER)

    known_stories = set(context.instance.get_dynamic_partitions(STORIES))
    new_stories: list[str] = []
    run_requests: list[dg.RunRequest] = []
    pending: list[str] = []
    refused: list[str] = []
    for message in messages:
        request = decode_request(message.data)
        if isinstance(request, Refused):
            context.log.warning(
                f"refused request (stream seq {message.stream_sequence}): {request.reason}"
            )
            if request.plan_id and request.story_id:
                nats.publish_outcome(
                    DerivationFailed(
                        plan_id=request.plan_id,
                        story_id=request.story_id,
                        reason=f"invalid derivation request: {request.reason}",
                        requires_manual_review=True,
                        occurred_at=datetime.now(UTC),
                        derivation_request_id=None,
                    ),
                    correlation_id=None,
                )
            refused.append(message.reply)
            continue
        if _run_exists(context.instance, message.run_key):
            puller.ack([message.reply])  # a redelivery whose run was already created
            continue
        story = story_partition_key(request.story_id)
        if story not in known_stories:
            known_stories.add(story)
            new_stories.append(story)
        derivation_id = derivation_id_for(message)
        run_requests.append(
            dg.RunRequest(
                run_key=message.run_key,
                partition_key=story,
                run_config={
                    "ops": {
                        "plan_context": {
                            "config": {
                                "plan_id": request.plan_id.value,
                                "roles": [role.value for role in request.roles],
                                "derivation_id": derivation_id,
                                "attempt": 1,
                                "correlation_id": request.correlation_id,
                            }
                        }
                    }
                },
                tags={
                    "td/plan_id": request.plan_id.value,
                    "td/derivation_id": derivation_id,
                    "td/attempt": "1",
                    "td/requested_by": request.requested_by,
                },
            )
        )
        pending.append(message.reply)
    puller.terminate(refused)  # no retry can fix them: no redelivery
    if messages:
        context.log.info(
            f"{len(messages)} message(s): {len(run_requests)} run(s), {len(refused)} refused"
        )
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=(
            [story_partitions.build_add_request(new_stories)] if new_stories else []
        ),
        cursor=json.dumps({"pending_acks": pending}),
    )


RESULT_CONSUMER = ConsumerSpec(
    stream=AGENT_RESPONSES_STREAM.name,
    durable="task-derivation-result-consumer",
    filter_subject=AGENT_RESPONSE_COMPLETED,
    ack_wait_seconds=120.0,
    max_deliver=10,
)


def latest_derivation_id(instance: dg.DagsterInstance, story: str) -> str | None:
    """The derivation id of the story's latest submission: the only attempt whose answer
    is persisted."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("executor_submission"), asset_partitions=[story]
        ),
        limit=1,
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    value = records[0].asset_materialization.metadata.get("derivation_id")
    return str(value.value) if value is not None else None


@dg.sensor(
    job=persist_job,
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Turns the executor's answers (agent.response.completed) into persist runs.",
)
def derivation_result_sensor(
    context: dg.SensorEvaluationContext, nats: NatsResource, settings: DerivationSettings
) -> dg.SensorResult:
    puller, messages = _settle_then_fetch(context, nats, settings, RESULT_CONSUMER)

    known_stories = set(context.instance.get_dynamic_partitions(STORIES))
    run_requests: list[dg.RunRequest] = []
    pending: list[str] = []
    settled: list[str] = []  # nothing to run: acked now
    refused: list[str] = []
    for message in messages:
        answer = decode_agent_response(message.data)
        if isinstance(answer, NotOurs):
            settled.append(message.reply)
            continue
        if isinstance(answer, Refused):
            context.log.warning(f"refused agent response: {answer.reason}")
            refused.append(message.reply)
            continue
        story = story_partition_key(answer.story_id)
        latest = latest_derivation_id(context.instance, story) if story in known_stories else None
        if latest is None or (answer.derivation_id and answer.derivation_id.value != latest):
            # A late answer for a superseded attempt, or for no attempt of ours: recorded only.
            context.log.info(
                f"answer for {story} ignored: attempt "
                f"{answer.derivation_id.value if answer.derivation_id else 'unknown'} "
                f"is not the latest ({latest or 'none'})"
            )
            settled.append(message.reply)
            continue
        if _run_exists(context.instance, message.run_key):
            settled.append(message.reply)
            continue
        run_requests.append(
            dg.RunRequest(
                run_key=message.run_key,
                partition_key=story,
                run_config={
                    "ops": {
                        "llm_proposal": {
                            "config": {
                                "text": answer.text,
                                "derivation_id": latest,
                                "attempt": answer.attempt or 1,
                            }
                        }
                    }
                },
                tags={"td/derivation_id": latest, "td/attempt": str(answer.attempt or 1)},
            )
        )
        pending.append(message.reply)
    puller.ack(settled)
    puller.terminate(refused)
    if messages:
        context.log.info(
            f"{len(messages)} answer(s): {len(run_requests)} run(s), "
            f"{len(settled)} not ours or superseded, {len(refused)} refused"
        )
    return dg.SensorResult(run_requests=run_requests, cursor=json.dumps({"pending_acks": pending}))
