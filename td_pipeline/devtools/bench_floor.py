"""The engine floor of `td-pipeline bench e2e`: the pipeline's shape with nothing inside.

A request on NATS -> a sensor -> a trivial run that publishes an "answer" -> a sensor -> a
trivial run that publishes "done". Same daemon, same instance config, same sensor plumbing
and two runs per item, like a derivation: the pipeline's time above this is our own work.
(No `from __future__ import annotations`: Dagster reads config types from real annotations.)"""

import json

import dagster as dg

from td_pipeline.infrastructure.jetstream_consumer import ConsumerSpec
from td_pipeline.infrastructure.subjects import StreamSpec
from td_pipeline.orchestration.nats_ticks import settle_then_fetch
from td_pipeline.orchestration.resources import DerivationSettings, NatsResource
from td_pipeline.orchestration.run_requests import PRIORITY_TAG

FLOOR_STREAM = StreamSpec("BENCH_FLOOR", ("bench.floor.>",))
REQUESTED = "bench.floor.requested"
ANSWERED = "bench.floor.answered"
DONE = "bench.floor.done"


class FloorItem(dg.Config):
    item: str


def _consumer(subject: str) -> ConsumerSpec:
    return ConsumerSpec(
        stream=FLOOR_STREAM.name, durable=subject.replace(".", "-"), filter_subjects=(subject,)
    )


@dg.op
def floor_answer(config: FloorItem, nats: NatsResource) -> None:
    nats.publish(ANSWERED, json.dumps({"item": config.item}).encode(), f"answered:{config.item}")


@dg.op
def floor_done(config: FloorItem, nats: NatsResource) -> None:
    nats.publish(DONE, json.dumps({"item": config.item}).encode(), f"done:{config.item}")


@dg.job(executor_def=dg.in_process_executor)
def floor_first() -> None:
    floor_answer()


@dg.job(executor_def=dg.in_process_executor)
def floor_second() -> None:
    floor_done()


def _floor_sensor(subject: str, job: dg.JobDefinition, op: str) -> dg.SensorDefinition:
    consumer = _consumer(subject)

    @dg.sensor(
        name=f"{job.name}_sensor",
        job=job,
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def floor_sensor(
        context: dg.SensorEvaluationContext, nats: NatsResource, settings: DerivationSettings
    ) -> dg.SensorResult:
        fetch = settle_then_fetch(context, nats, settings, consumer)
        requests = [
            dg.RunRequest(
                run_key=message.run_key,
                run_config={"ops": {op: {"config": {"item": json.loads(message.data)["item"]}}}},
                tags={PRIORITY_TAG: "1"} if job is floor_second else {},  # as persist runs
            )
            for message in fetch.messages
        ]
        return dg.SensorResult(
            run_requests=requests,
            cursor=fetch.cursor([message.reply for message in fetch.messages]),
        )

    return floor_sensor


defs = dg.Definitions(
    jobs=[floor_first, floor_second],
    sensors=[
        _floor_sensor(REQUESTED, floor_first, "floor_answer"),
        _floor_sensor(ANSWERED, floor_second, "floor_done"),
    ],
    resources={"nats": NatsResource(url=dg.EnvVar("NATS_URL")), "settings": DerivationSettings()},
)
