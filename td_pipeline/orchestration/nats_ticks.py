"""What every NATS-driven sensor tick does: at least once, never twice.

Dagster stores a tick's runs only after the sensor returns, so acking inside the tick could
lose a request. A tick therefore hands the ack subjects of the messages it turned into runs
to its cursor, and the next tick (whose start proves the previous result was stored) acks
them. A tick whose result is thrown away leaves its messages unacked: they come back, with
the same run key, and Dagster's run-key dedup keeps them from running twice.

They come back at once, not after the consumer's ack wait (two minutes): a tick notes in the
instance which messages it holds (fetched, then those its cursor hands on) before Dagster
stores its result, and the next tick lets go of those its cursor does not name (the daemon
stopped, or the tick failed, between the fetch and the stored result); a message lost again
comes back later each time (`lost_tick_delay`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import dagster as dg

from td_pipeline.application.attempt_history import SubmittedAttempt
from td_pipeline.application.retries import AttemptFailure, Stage
from td_pipeline.infrastructure.jetstream_consumer import (
    STALL_GRACE_SECONDS,
    ConsumerSpec,
    JetStreamPuller,
    PulledMessage,
)
from td_pipeline.orchestration.attempts import RESUBMIT, RESUBMIT_TAG, Phase
from td_pipeline.orchestration.outcomes import AskedAttempt, announce_failed_attempt
from td_pipeline.orchestration.resources import (
    CONSUMER_MAX_DELIVER,
    DerivationSettings,
    NatsResource,
)
from td_pipeline.orchestration.run_requests import StoryWork

# The request and result sensors tick this often: the LLM window frees a slot when a tick sees
# the answer and fills it at the next tick, so their interval is dead time of every LLM slot.
SENSOR_INTERVAL_SECONDS = 2
WAIT_FIRST_SECONDS = 5.0  # a message waiting for its story comes back after this, then doubling
WAIT_LONGEST_SECONDS = 300.0


def wait_delay(num_delivered: int) -> float:
    """How long a message that waits for its story stays away before its next delivery:
    doubling, so that its deliveries (JetStream drops a message after `max_deliver`) cover a
    batch's whole life (twenty minutes before the last one)."""
    return float(min(WAIT_FIRST_SECONDS * 2 ** max(num_delivered - 1, 0), WAIT_LONGEST_SECONDS))


def last_delivery(num_delivered: int) -> bool:
    """Waiting again would lose the message: the consumer delivers it at most
    CONSUMER_MAX_DELIVER times."""
    return num_delivered >= CONSUMER_MAX_DELIVER


def redeliver_after_waiting(puller: JetStreamPuller, waiting: list[PulledMessage]) -> None:
    for message in waiting:
        puller.redeliver_later([message.reply], wait_delay(message.num_delivered))


def pending_acks(cursor: str | None) -> list[str]:
    if not cursor:
        return []
    replies: list[str] = json.loads(cursor).get("pending_acks", [])
    return replies


def stalled_fetches(cursor: str | None) -> int:
    """How many of the sensor's fetches stalled so far (kept in its cursor, which outlives the
    process, so that the metrics server can read it)."""
    return int(json.loads(cursor).get("stalled_fetches", 0)) if cursor else 0


def held_key(consumer: ConsumerSpec) -> str:
    return f"td_pipeline.held.{consumer.stream}.{consumer.durable}"


def note_held(
    instance: dg.DagsterInstance, consumer: ConsumerSpec, held: list[PulledMessage]
) -> None:
    """The ack subjects (and deliveries) of the messages a tick holds, kept where the next tick
    finds them even when this tick's result (its cursor) is lost."""
    value = json.dumps([[message.reply, message.num_delivered] for message in held])
    instance.run_storage.set_cursor_values({held_key(consumer): value})


def lost_tick_delay(num_delivered: int) -> float:
    """When a message a lost tick held comes back: at once the first time (a daemon that
    died); after that as a waiting message does, doubling, so that a tick that fails again and
    again does not spend the message's deliveries in seconds."""
    return 0.0 if num_delivered <= 1 else wait_delay(num_delivered - 1)


def release_held_by_a_lost_tick(
    context: dg.SensorEvaluationContext, puller: JetStreamPuller, consumer: ConsumerSpec
) -> None:
    """Lets go of the messages the last tick held that its stored cursor does not hand on:
    its result was lost, and they would otherwise come back only after the ack wait."""
    key = held_key(consumer)
    stored = context.instance.run_storage.get_cursor_values({key}).get(key)
    handed_on = set(pending_acks(context.cursor))
    lost = [(reply, n) for reply, n in json.loads(stored or "[]") if reply not in handed_on]
    if not lost:
        return
    context.log.warning(
        f"{len(lost)} message(s) of {consumer.stream}/{consumer.durable} held by a tick whose "
        "result was lost (the daemon stopped or the tick failed): delivered again"
    )
    for reply, num_delivered in lost:
        puller.redeliver_later([reply], lost_tick_delay(num_delivered))


@dataclass(frozen=True, slots=True)
class TickFetch:
    """What a tick fetched, on the connection to settle it with."""

    puller: JetStreamPuller
    messages: list[PulledMessage]
    stalled_fetches: int  # the sensor's count, this tick's fetch included
    instance: dg.DagsterInstance
    consumer: ConsumerSpec

    def cursor(self, pending: list[str]) -> str:
        """The next cursor: the ack subjects the next tick acks, and the stall count (noted in
        the instance too, for a next tick that does not get this cursor)."""
        handed_on = set(pending)
        note_held(self.instance, self.consumer, [m for m in self.messages if m.reply in handed_on])
        return json.dumps({"pending_acks": pending, "stalled_fetches": self.stalled_fetches})


def settle_then_fetch(
    context: dg.SensorEvaluationContext,
    nats: NatsResource,
    settings: DerivationSettings,
    consumer: ConsumerSpec,
    batch: int | None = None,
) -> TickFetch:
    """Ack what the last tick turned into runs (this tick running proves they were stored),
    then fetch a bounded batch (`settings.sensor_batch`, or `batch`: 0 fetches nothing)."""
    puller = nats.puller()
    puller.ack(pending_acks(context.cursor))
    release_held_by_a_lost_tick(context, puller, consumer)
    puller.ensure_consumer(consumer)
    stalls = stalled_fetches(context.cursor)
    size = settings.sensor_batch if batch is None else batch
    tick = TickFetch(puller, [], stalls, context.instance, consumer)
    return fetch_more(context, tick, settings, size)


def fetch_more(
    context: dg.SensorEvaluationContext,
    tick: TickFetch,
    settings: DerivationSettings,
    batch: int,
) -> TickFetch:
    """The tick's messages and up to `batch` more (none for 0), counting a stalled fetch."""
    if batch < 1:
        return tick
    consumer = tick.consumer
    fetched = tick.puller.fetch(consumer, batch, settings.sensor_fetch_seconds)
    stalls = tick.stalled_fetches
    if fetched.stalled:
        stalls += 1
        context.log.warning(
            f"fetch from {consumer.stream}/{consumer.durable} stalled: NATS did not end the "
            f"pull request within {settings.sensor_fetch_seconds + STALL_GRACE_SECONDS:g} s; "
            f"{len(fetched.messages)} message(s) kept ({stalls} stalled fetches so far)"
        )
    messages = [*tick.messages, *fetched.messages]
    if fetched.messages:
        note_held(tick.instance, consumer, messages)
    return TickFetch(tick.puller, messages, stalls, tick.instance, consumer)


def announce_llm_failure(
    instance: dg.DagsterInstance,
    nats: NatsResource,
    submission: SubmittedAttempt,
    reason: str,
    max_attempts: int,
) -> None:
    """The failed event of an attempt whose LLM job failed, at once, rather than after the
    failing persist run (which still records the failure for the UI and the retry schedule;
    its event is then found published)."""
    announce_failed_attempt(
        instance,
        nats,
        submission.story,
        AskedAttempt(submission.plan_id, submission.derivation_id, submission.correlation_id),
        AttemptFailure(Stage.ANSWER, submission.attempt, retryable=True, description=reason),
        max_attempts,
    )


def persist_work(
    message_key: str,
    submission: SubmittedAttempt,
    proposal: dict[str, Any],
    resubmit: bool = False,
) -> StoryWork:
    """The persist phase of one attempt: its answer (`text`) or why there is none
    (`executor_error`), with what the attempt asked for (from its submission's record, so
    that the run loads nothing of the derive run). `resubmit`: the LLM job timed out or was
    lost, and the failed run's story is asked again as soon as the window has room."""
    config = {
        "derivation_id": submission.derivation_id,
        "attempt": submission.attempt,
        "plan_id": submission.plan_id,
        "roles": list(submission.roles),
        "acceptance_criteria": submission.acceptance_criteria,
        "correlation_id": submission.correlation_id,
        **proposal,
    }
    tags = {RESUBMIT_TAG: RESUBMIT} if resubmit else {}
    return StoryWork(submission.story, Phase.PERSIST, config, message_key, tags)
