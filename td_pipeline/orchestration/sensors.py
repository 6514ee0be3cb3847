"""From NATS to runs, at least once.

Dagster stores a tick's runs only after the sensor returns, so acking inside the tick could
lose a request. A tick therefore hands the ack subjects of the messages it turned into runs
to its cursor, and the next tick (whose start proves the previous result was stored) acks
them. A tick whose result is thrown away leaves its messages unacked: they come back, with
the same run key, and Dagster's run-key dedup keeps them from running twice."""

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from td_pipeline.application.ports import DeliberationStatus, PortError
from td_pipeline.application.retries import Retry, after_failure, failure_reason
from td_pipeline.domain.derivation import LlmAnswer, LlmFailureReport
from td_pipeline.domain.events import DerivationFailed, RequestRefused
from td_pipeline.domain.values import DerivationId, PlanId, StoryId
from td_pipeline.infrastructure.jetstream_consumer import (
    ConsumerSpec,
    JetStreamPuller,
    PulledMessage,
)
from td_pipeline.infrastructure.nats_mappers import (
    NotOurs,
    Refused,
    decode_agent_failure,
    decode_agent_response,
    decode_request,
)
from td_pipeline.infrastructure.subjects import (
    AGENT_RESPONSE_FAILED,
)
from td_pipeline.orchestration.attempts import (
    Phase,
    attempt_runs,
    attempt_tags,
    derivation_runs,
    derive_config_of,
    failure_of,
    latest_run,
    latest_submission,
    run_attempt,
    story_of_derivation,
    waiting_attempts,
)
from td_pipeline.orchestration.jobs import derive_job, persist_job, retry_job
from td_pipeline.orchestration.outcomes import publish_outcome_once
from td_pipeline.orchestration.partitions import STORIES, story_partition_key, story_partitions
from td_pipeline.orchestration.resources import (
    DerivationSettings,
    NatsResource,
    RayExecutorResource,
)

RUN_KEY_TAG = "dagster/run_key"
PRIORITY_TAG = "dagster/priority"
WATCHDOG_INTERVAL_SECONDS = 10  # how soon a failed or lost job is noticed
EARLY_ANSWER_DELAY_SECONDS = 3.0


def derivation_id_for(message: PulledMessage) -> str:
    # Deterministic: a redelivered request names the same derivation.
    return "d-" + hashlib.sha256(message.run_key.encode()).hexdigest()[:16]


def _pending(cursor: str | None) -> list[str]:
    if not cursor:
        return []
    replies: list[str] = json.loads(cursor).get("pending_acks", [])
    return replies


def settle_then_fetch(
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
    missing = settings.missing_llm_settings()
    if missing is not None:
        # Nothing fetched, nothing lost: the requests wait in the stream (ticks show why).
        return dg.SensorResult(skip_reason=missing, cursor=context.cursor)
    puller, messages = settle_then_fetch(context, nats, settings, nats.request_consumer())

    known_roles = settings.known_role_set()
    new_stories: list[str] = []
    run_requests: list[dg.RunRequest] = []
    pending: list[str] = []
    refused: list[str] = []
    for message in messages:
        request = decode_request(message.data, known_roles=known_roles)
        if isinstance(request, Refused):
            context.log.warning(
                f"refused request (stream seq {message.stream_sequence}): {request.reason}"
            )
            if request.plan_id and request.story_id:
                nats.publish_outcome(
                    RequestRefused(
                        plan_id=request.plan_id,
                        story_id=request.story_id,
                        reason=request.reason,
                        occurred_at=datetime.now(UTC),
                        request_key=message.run_key,
                    ),
                    correlation_id=request.correlation_id,
                )
            refused.append(message.reply)
            continue
        if _run_exists(context.instance, message.run_key):
            puller.ack([message.reply])  # a redelivery whose run was already created
            continue
        story = story_partition_key(request.story_id)
        if story not in new_stories and not context.instance.has_dynamic_partition(STORIES, story):
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
                    **attempt_tags(Phase.DERIVE, derivation_id, 1),
                    "td/plan_id": request.plan_id.value,
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


def persist_request(
    run_key: str, story: str, derivation_id: str, attempt: int, proposal: dict[str, Any]
) -> dg.RunRequest:
    """A persist run for one attempt: its answer (`text`) or why there is none
    (`executor_error`)."""
    return dg.RunRequest(
        run_key=run_key,
        partition_key=story,
        run_config={
            "ops": {
                "llm_proposal": {
                    "config": {"derivation_id": derivation_id, "attempt": attempt, **proposal}
                }
            }
        },
        # Ahead of queued derive runs: finish the stories already started first.
        tags={**attempt_tags(Phase.PERSIST, derivation_id, attempt), PRIORITY_TAG: "1"},
    )


def _still_submitting(
    instance: dg.DagsterInstance, story: str, derivation_id: str, attempt: int | None
) -> bool:
    """True while a derive run of this attempt has not finished (so its submission may not
    be recorded yet)."""
    return any(
        not run.run.is_finished
        for run in derivation_runs(instance, story, derivation_id)
        if run.phase is Phase.DERIVE and (attempt is None or run.attempt == attempt)
    )


def _answered_already(
    instance: dg.DagsterInstance, story: str, derivation_id: str, attempt: int
) -> bool:
    # A persist run that did not fail means this attempt's answer is (being) handled.
    runs = attempt_runs(instance, story, derivation_id, attempt, Phase.PERSIST)
    return any(run.run.status != dg.DagsterRunStatus.FAILURE for run in runs)


def _story_answered(
    instance: dg.DagsterInstance, response: LlmAnswer | LlmFailureReport
) -> str | None:
    """The story partition an answer is for: named in it, else found by its derivation (the
    executor's failures name only our task id)."""
    if response.story_id is not None:
        return story_partition_key(response.story_id)
    if response.derivation_id is None:
        return None
    return story_of_derivation(instance, response.derivation_id.value)


@dg.sensor(
    job=persist_job,
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Turns the executor's answers and failures (agent.response.completed / "
    "failed) into persist runs for the story's current attempt.",
)
def derivation_result_sensor(
    context: dg.SensorEvaluationContext, nats: NatsResource, settings: DerivationSettings
) -> dg.SensorResult:
    puller, messages = settle_then_fetch(context, nats, settings, nats.result_consumer())

    run_requests: list[dg.RunRequest] = []
    pending: list[str] = []
    settled: list[str] = []  # nothing to run: acked now
    refused: list[str] = []
    early: list[str] = []  # answers whose submission is not recorded yet
    for message in messages:
        response: LlmAnswer | LlmFailureReport | NotOurs | Refused = (
            decode_agent_failure(message.data)
            if message.subject == AGENT_RESPONSE_FAILED
            else decode_agent_response(message.data)
        )
        if isinstance(response, NotOurs):
            settled.append(message.reply)
            continue
        if isinstance(response, Refused):
            context.log.warning(f"refused agent response: {response.reason}")
            refused.append(message.reply)
            continue
        story = _story_answered(context.instance, response)
        if story is None:
            context.log.info(f"{response} names no derivation of ours: acked, nothing to run")
            settled.append(message.reply)
            continue
        current = (
            latest_submission(context.instance, story)
            if context.instance.has_dynamic_partition(STORIES, story)
            else None
        )
        answered = (
            response.derivation_id.value if response.derivation_id else "unknown",
            response.attempt,
        )
        if (
            current is None
            or answered[0] != current.derivation_id
            or (answered[1] is not None and answered[1] != current.attempt)
        ):
            if _still_submitting(context.instance, story, answered[0], answered[1]):
                # A fast answer can overtake the record of its own submission: look again soon.
                early.append(message.reply)
                continue
            # A late answer for a superseded attempt, or for no attempt of ours: recorded only.
            now_current = f"{current.derivation_id}#{current.attempt}" if current else "none"
            context.log.info(
                f"answer for {story} ignored: attempt {answered[0]}#{answered[1]} is not the "
                f"current one ({now_current})"
            )
            settled.append(message.reply)
            continue
        if _run_exists(context.instance, message.run_key) or _answered_already(
            context.instance, story, current.derivation_id, current.attempt
        ):
            context.log.info(f"answer for {story} already handled: acked, nothing new to run")
            settled.append(message.reply)
            continue
        proposal = (
            {"executor_error": response.reason}
            if isinstance(response, LlmFailureReport)
            else {"text": response.text}
        )
        run_requests.append(
            persist_request(
                message.run_key, story, current.derivation_id, current.attempt, proposal
            )
        )
        pending.append(message.reply)
    puller.ack(settled)
    puller.terminate(refused)
    puller.redeliver_later(early, EARLY_ANSWER_DELAY_SECONDS)
    if messages:
        context.log.info(
            f"{len(messages)} answer(s): {len(run_requests)} run(s), "
            f"{len(settled)} not ours, superseded or duplicate, {len(refused)} refused, "
            f"{len(early)} ahead of their submission's record"
        )
    return dg.SensorResult(run_requests=run_requests, cursor=json.dumps({"pending_acks": pending}))


LOST_STATUSES = frozenset({"not_found", "failed"})


def why_lost(
    job: DeliberationStatus, waited: float, timeout: int, deliberation_id: str
) -> str | None:
    """Why an unanswered attempt counts as failed, or None while it may still be answered.

    A job the executor does not know (or failed without telling us) is lost at once; so is
    one it reports `completed` with an empty proposal (the fleet's executor reports a failed
    LLM call that way). One still running fails after the timeout; one completed has its
    answer on NATS, so the result sensor gets twice the timeout to pick it up."""
    status = job.status
    # A failure the executor published is the result sensor's to handle: give it a look first.
    if job.failed_silently and waited >= 2 * WATCHDOG_INTERVAL_SECONDS:
        detail = f": {job.error}" if job.error else ""
        return f"LLM job {deliberation_id} completed without an answer (the LLM failed){detail}"
    if status in LOST_STATUSES and waited >= WATCHDOG_INTERVAL_SECONDS:
        return f"the executor lost LLM job {deliberation_id} ({status}) after {waited:.0f}s"
    if status == "completed":
        if waited < 2 * timeout:
            return None
        return f"the answer of LLM job {deliberation_id} never arrived ({waited:.0f}s)"
    if waited >= timeout:
        return f"LLM timeout after {timeout}s (job {deliberation_id}: {status})"
    return None


@dg.sensor(
    job=persist_job,
    minimum_interval_seconds=WATCHDOG_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Fails attempts whose LLM job was lost or did not answer within "
    "llm_timeout_seconds, so that the backfill can try again.",
)
def llm_watchdog_sensor(
    context: dg.SensorEvaluationContext,
    executor: RayExecutorResource,
    settings: DerivationSettings,
) -> dg.SensorResult:
    now = datetime.now(UTC)
    run_requests: list[dg.RunRequest] = []
    # Only attempts still in flight: submitted within the time an answer may take (a
    # completed job's answer gets twice the timeout), not every story ever derived.
    since = now - timedelta(seconds=3 * settings.llm_timeout_seconds)
    for submission in waiting_attempts(context.instance, since):
        story = submission.story
        latest = latest_run(context.instance, story)
        if latest is None or latest.run.run_id != submission.run_id:
            continue  # a later run of the story (a retry in the queue) supersedes it
        waited = (now - submission.submitted_at).total_seconds()
        if waited < min(WATCHDOG_INTERVAL_SECONDS, settings.llm_timeout_seconds):
            continue  # too early to tell: do not ask the executor
        try:
            job = executor.client().deliberation_status(submission.deliberation_id)
        except PortError as error:
            context.log.warning(f"cannot ask the executor about {story}: {error}")
            job = DeliberationStatus("unknown")
        reason = why_lost(job, waited, settings.llm_timeout_seconds, submission.deliberation_id)
        if reason is None:
            continue
        context.log.warning(f"{story}: {reason}")
        run_requests.append(
            persist_request(
                f"watchdog:{submission.derivation_id}:{submission.attempt}",
                story,
                submission.derivation_id,
                submission.attempt,
                {"executor_error": reason},
            )
        )
    return dg.SensorResult(run_requests=run_requests)


@dg.run_failure_sensor(
    monitored_jobs=[derive_job, persist_job, retry_job],
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Publishes one task.derivation.failed per failed attempt, saying whether "
    "td-pipeline retries by itself or a person has to look.",
)
def derivation_failure_sensor(
    context: dg.RunFailureSensorContext, nats: NatsResource, settings: DerivationSettings
) -> None:
    attempt = run_attempt(context.dagster_run)
    story = context.dagster_run.tags.get("dagster/partition")
    if attempt is None or story is None:
        context.log.info(f"run {context.dagster_run.run_id} is not a derivation attempt")
        return
    failure = failure_of(context.instance, attempt)
    decision = after_failure(failure, settings.max_attempts)
    asked = derive_config_of(context.instance, story, attempt.derivation_id)
    if asked is None:
        context.log.warning(f"no derive run known for {story}; failed event not published")
        return
    event = DerivationFailed(
        plan_id=PlanId(asked["plan_id"]),
        story_id=StoryId(story),
        reason=failure_reason(failure, decision, settings.max_attempts),
        requires_manual_review=not isinstance(decision, Retry),
        occurred_at=datetime.now(UTC),
        derivation_request_id=DerivationId(attempt.derivation_id),
        attempt=attempt.attempt,
    )
    published = publish_outcome_once(
        context.instance, nats, story, event, asked.get("correlation_id")
    )
    context.log.info(
        f"{story}: {event.reason} ({'published' if published else 'published before'})"
    )
