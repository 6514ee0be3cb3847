"""agent.response.completed / failed -> persist runs for the story's current attempt
(`answer_routing` decides; this module fetches, acts and acks)."""

import time
from collections import Counter

import dagster as dg

from td_pipeline.application.answer_routing import Route, route_answer
from td_pipeline.application.batching import plan_runs
from td_pipeline.application.llm_window import Answer, observe
from td_pipeline.domain.derivation import LlmFailureReport, NotOurs, Refused
from td_pipeline.infrastructure.nats_mappers import decode_agent_failure, decode_agent_response
from td_pipeline.infrastructure.subjects import AGENT_RESPONSE_FAILED
from td_pipeline.orchestration.batch_jobs import persist_batch_job
from td_pipeline.orchestration.instance_history import InstanceAttemptHistory
from td_pipeline.orchestration.jobs import persist_job
from td_pipeline.orchestration.llm_admission import read_window, write_window
from td_pipeline.orchestration.nats_ticks import (
    SENSOR_INTERVAL_SECONDS,
    announce_llm_failure,
    persist_work,
    settle_then_fetch,
)
from td_pipeline.orchestration.resources import DerivationSettings, NatsResource
from td_pipeline.orchestration.run_requests import (
    StoryWork,
    run_requests,
    stories_in_flight,
    story_of,
    story_run_request,
)

EARLY_ANSWER_DELAY_SECONDS = 3.0


@dg.sensor(
    jobs=[persist_job, persist_batch_job],
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Turns the executor's answers and failures (agent.response.completed / "
    "failed) into persist runs for the story's current attempt, batched (TD_BATCH_SIZE) when "
    "answers queue up.",
)
def derivation_result_sensor(
    context: dg.SensorEvaluationContext, nats: NatsResource, settings: DerivationSettings
) -> dg.SensorResult:
    fetch = settle_then_fetch(context, nats, settings, nats.result_consumer())
    puller, messages = fetch.puller, fetch.messages
    history = InstanceAttemptHistory(context.instance)
    failures: list[StoryWork] = []  # the executor's failures: always a story's own run
    answers: list[StoryWork] = []  # batched when several come in one tick
    replies: dict[str, str] = {}  # message key -> ack subject, for what becomes a run
    settled: list[str] = []  # nothing to run: acked now
    refused: list[str] = []
    early: list[str] = []  # answers whose submission is not recorded yet
    routes: Counter[str] = Counter()
    answered: list[Answer] = []  # what the LLM window learns from
    timeouts: list[float] = []  # when each job that timed out was handed over
    for message in messages:
        decoded = (
            decode_agent_failure(message.data)
            if message.subject == AGENT_RESPONSE_FAILED
            else decode_agent_response(message.data)
        )
        if isinstance(decoded, NotOurs):
            routes["not ours"] += 1
            settled.append(message.reply)
            continue
        if isinstance(decoded, Refused):
            context.log.warning(f"refused agent response: {decoded.reason}")
            routes["refused"] += 1
            refused.append(message.reply)
            continue
        route = route_answer(decoded, message.run_key, history)
        routes[route.route.value] += 1
        if route.route is Route.EARLY:
            early.append(message.reply)  # look again shortly
        elif route.route is not Route.PERSIST or route.attempt is None:
            context.log.info(f"answer for {route.story or '?'} acked, not persisted: {route.why}")
            settled.append(message.reply)
        else:
            current = route.attempt
            submitted_at = current.submitted_at.timestamp()
            if isinstance(decoded, LlmFailureReport):
                if decoded.timed_out:
                    timeouts.append(submitted_at)
                announce_llm_failure(
                    context.instance, nats, current, decoded.reason, settings.max_attempts
                )
                failures.append(
                    persist_work(
                        message.run_key,
                        current,
                        {"executor_error": decoded.reason},
                        resubmit=decoded.timed_out,
                    )
                )
            else:
                seconds = max(0.0, message.timestamp_ns / 1e9 - submitted_at)
                answered.append(Answer(submitted_at, seconds))
                answers.append(persist_work(message.run_key, current, {"text": decoded.text}))
            replies[message.run_key] = message.reply
    # A story with a run in flight gets its own run: behind its own run the story concurrency
    # limit queues it; beside a persist batch it runs at once. The derive batch that submitted
    # it is done with it (here is its answer): such answers are batched as any.
    in_batch, own = stories_in_flight(context.instance, answers)
    plan = plan_runs(
        answers, story_of, settings.batch_size, in_batch=in_batch, own_run_in_flight=own
    )
    later = [replies.pop(work.message_key) for work in plan.waiting]
    runs = [story_run_request(work) for work in failures] + run_requests(plan)
    if answered or timeouts:
        window = read_window(context.instance)
        cap, now = settings.llm_max_in_flight, time.time()
        learnt = observe(window, answered, timeouts, cap, now)
        write_window(context.instance, learnt)
        if learnt.jobs_allowed(cap) != window.jobs_allowed(cap):
            context.log.info(f"LLM window: {window.describe(cap)} -> {learnt.describe(cap)}")
    puller.ack(settled)
    puller.terminate(refused)
    puller.redeliver_later([*early, *later], EARLY_ANSWER_DELAY_SECONDS)
    if messages:
        context.log.info(f"{len(messages)} answer(s): {dict(routes)}; {len(runs)} run(s)")
    return dg.SensorResult(run_requests=runs, cursor=fetch.cursor(list(replies.values())))
