"""task.derivation.requested -> derive runs, one per story partition (`request_intake`
decides; this module fetches, acts and acks)."""

from datetime import UTC, datetime

import dagster as dg

from td_pipeline.application.request_intake import (
    AlreadyStarted,
    RefuseRequest,
    StartDerivation,
    take_request,
)
from td_pipeline.infrastructure.nats_mappers import decode_request
from td_pipeline.orchestration.attempts import InstanceAttemptHistory, Phase, attempt_tags
from td_pipeline.orchestration.jobs import derive_job
from td_pipeline.orchestration.nats_ticks import cursor_with, settle_then_fetch
from td_pipeline.orchestration.partitions import story_partition_key, story_partitions
from td_pipeline.orchestration.resources import DerivationSettings, NatsResource


def derive_request(start: StartDerivation, run_key: str) -> dg.RunRequest:
    request, derivation_id = start.request, start.derivation_id.value
    return dg.RunRequest(
        run_key=run_key,
        partition_key=story_partition_key(request.story_id),
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
            **attempt_tags(Phase.DERIVE, derivation_id, 1),
            "td/plan_id": request.plan_id.value,
            "td/requested_by": request.requested_by,
        },
    )


@dg.sensor(
    job=derive_job,
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Turns task.derivation.requested messages into derive runs per story.",
)
def derivation_request_sensor(
    context: dg.SensorEvaluationContext, nats: NatsResource, settings: DerivationSettings
) -> dg.SensorResult:
    missing = settings.missing_llm_settings()
    if missing is not None:
        # Nothing fetched, nothing lost: the requests wait in the stream (ticks show why).
        return dg.SensorResult(skip_reason=missing, cursor=context.cursor)
    puller, messages = settle_then_fetch(context, nats, settings, nats.request_consumer())
    history = InstanceAttemptHistory(context.instance)
    known_roles = settings.known_role_set()
    new_stories: list[str] = []
    run_requests: list[dg.RunRequest] = []
    pending: list[str] = []
    refused: list[str] = []
    for message in messages:
        decoded = decode_request(message.data, known_roles=known_roles)
        decision = take_request(decoded, message.run_key, history, datetime.now(UTC))
        if isinstance(decision, RefuseRequest):
            context.log.warning(
                f"refused request (stream seq {message.stream_sequence}): {decision.reason}"
            )
            if decision.answer is not None:
                nats.publish_outcome(decision.answer, correlation_id=decision.correlation_id)
            refused.append(message.reply)
        elif isinstance(decision, AlreadyStarted):
            puller.ack([message.reply])  # a redelivery whose run was already created
        else:
            story = story_partition_key(decision.request.story_id)
            if decision.new_story and story not in new_stories:
                new_stories.append(story)
            run_requests.append(derive_request(decision, message.run_key))
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
        cursor=cursor_with(pending),
    )
