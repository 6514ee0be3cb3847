"""task.derivation.requested -> derive runs (`request_intake` decides what becomes of each
request, `batching` how they become runs; this module fetches, acts and acks)."""

from datetime import UTC, datetime

import dagster as dg

from td_pipeline.application.batching import plan_runs
from td_pipeline.application.llm_window import room
from td_pipeline.application.request_intake import (
    AlreadyStarted,
    RefuseRequest,
    StartDerivation,
    take_request,
)
from td_pipeline.infrastructure.jetstream_consumer import PulledMessage
from td_pipeline.infrastructure.nats_mappers import decode_request
from td_pipeline.orchestration.attempts import Phase
from td_pipeline.orchestration.batch_jobs import derive_batch_job
from td_pipeline.orchestration.instance_history import InstanceAttemptHistory
from td_pipeline.orchestration.jobs import derive_job, retry_job
from td_pipeline.orchestration.llm_admission import llm_load, read_window
from td_pipeline.orchestration.nats_ticks import (
    SENSOR_INTERVAL_SECONDS,
    fetch_more,
    last_delivery,
    redeliver_after_waiting,
    settle_then_fetch,
)
from td_pipeline.orchestration.partitions import story_partition_key, story_partitions
from td_pipeline.orchestration.resources import DerivationSettings, NatsResource
from td_pipeline.orchestration.resubmissions import prompt_resubmissions
from td_pipeline.orchestration.retry_schedule import retry_run_request
from td_pipeline.orchestration.run_requests import (
    StoryWork,
    run_requests,
    stories_in_flight,
    story_of,
)


def derive_work(start: StartDerivation, message_key: str) -> StoryWork:
    request = start.request
    return StoryWork(
        story=story_partition_key(request.story_id),
        phase=Phase.DERIVE,
        config={
            "plan_id": request.plan_id.value,
            "roles": [role.value for role in request.roles],
            "derivation_id": start.derivation_id.value,
            "attempt": 1,
            "correlation_id": request.correlation_id,
        },
        message_key=message_key,
        tags={"td/plan_id": request.plan_id.value, "td/requested_by": request.requested_by},
    )


MAX_FETCHES_PER_TICK = 20  # refused requests fetched past: at most this many fetches a tick


@dg.sensor(
    jobs=[derive_job, derive_batch_job, retry_job],
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Turns task.derivation.requested messages into derive runs: a story's own "
    "run when it comes alone, batched runs (TD_BATCH_SIZE) when requests queue up; as many "
    "as the LLM window has room for, attempts whose LLM job timed out or was lost first.",
)
def derivation_request_sensor(
    context: dg.SensorEvaluationContext, nats: NatsResource, settings: DerivationSettings
) -> dg.SensorResult:
    missing = settings.missing_llm_settings()
    if missing is not None:
        # Nothing fetched, nothing lost: the requests wait in the stream (ticks show why).
        return dg.SensorResult(skip_reason=missing, cursor=context.cursor)
    # Admission: only as many stories as the LLM window has room for are started; the rest
    # wait in the stream, undelivered, so that nothing is lost and no delivery is spent.
    # Attempts whose LLM job timed out or was lost go first.
    now = datetime.now(UTC)
    window, cap = read_window(context.instance), settings.llm_max_in_flight
    llm_now = llm_load(context.instance, now, settings.llm_timeout_seconds)
    in_flight = llm_now.in_flight
    allowed = window.jobs_allowed(cap)
    free = room(window, in_flight, cap, llm_now.being_prepared, settings.batch_size)
    resubmitted = [
        retry_run_request(launch)
        for launch in prompt_resubmissions(context.instance, settings.max_attempts, now, free)
    ]
    admitted = min(settings.sensor_batch, free - len(resubmitted))
    consumer = nats.request_consumer()
    fetch = settle_then_fetch(context, nats, settings, consumer, batch=admitted)
    load = (
        f"{in_flight} LLM job(s) in flight (at the executor or being prepared) for a window "
        f"of {allowed}"
    )
    if resubmitted:
        context.log.info(
            f"{len(resubmitted)} attempt(s) whose LLM job timed out or was lost asked again "
            f"({', '.join(str(run.partition_key) for run in resubmitted)}); {load}"
        )
    if admitted <= 0:
        return dg.SensorResult(
            run_requests=resubmitted,
            skip_reason=None
            if resubmitted
            else f"{fetch.puller.pending(consumer)} request(s) wait in the stream: {load}",
            cursor=fetch.cursor([]),
        )
    puller = fetch.puller
    history = InstanceAttemptHistory(context.instance)
    known_roles = settings.known_role_set()
    new_stories: list[str] = []
    works: list[StoryWork] = []
    pulled: dict[str, PulledMessage] = {}  # by message key: what became work
    refused: list[str] = []
    taken, asked = 0, admitted
    for round_ in range(MAX_FETCHES_PER_TICK):
        if round_:
            # Fetched only when it will be read: a message fetched and left would be
            # redelivered only after the consumer's ack wait.
            fetch = fetch_more(context, fetch, settings, asked)
        fetched = fetch.messages[taken:]
        for message in fetched:
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
                work = derive_work(decision, message.run_key)
                if decision.new_story and work.story not in new_stories:
                    new_stories.append(work.story)
                works.append(work)
                pulled[message.run_key] = message
        taken = len(fetch.messages)
        # A refused or repeated request holds no slot: while the stream has more (the last
        # fetch came full), fetch again for the room left, so that bad input drains fast.
        asked_before, asked = asked, admitted - len(works)
        if asked < 1 or len(fetched) < asked_before:
            break
    messages = fetch.messages
    in_batch, own = stories_in_flight(context.instance, works)
    plan = plan_runs(
        works,
        story_of,
        settings.batch_size,
        in_batch=in_batch,
        own_run_in_flight=own,
        # On its last delivery a request waits no more: JetStream would drop it.
        may_wait=lambda work: not last_delivery(pulled[work.message_key].num_delivered),
    )
    later = [pulled.pop(work.message_key) for work in plan.waiting]
    runs = run_requests(plan)
    puller.terminate(refused)  # no retry can fix them: no redelivery
    redeliver_after_waiting(puller, later)
    if messages:
        context.log.info(
            f"{len(messages)} message(s): {len(runs)} run(s) for {len(pulled)} "
            f"stories, {len(refused)} refused, {len(later)} waiting for their story; "
            f"{puller.pending(consumer)} wait in the stream; {load}"
        )
    return dg.SensorResult(
        run_requests=[*resubmitted, *runs],
        dynamic_partitions_requests=(
            [story_partitions.build_add_request(new_stories)] if new_stories else []
        ),
        cursor=fetch.cursor([message.reply for message in pulled.values()]),
    )
