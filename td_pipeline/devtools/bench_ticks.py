"""`td-pipeline bench ticks`: what one request-sensor tick and one result-sensor tick cost with
few and with many existing story partitions.

The two sizes are set up and seeded by `tick_workload` (an instance and a NATS server each).
Here: turn by turn for the two sizes, the same small set of requests (new stories and
re-derivations) and of answers (for the submitted stories) is published, and the real sensors
are evaluated the way the code server evaluates them (`evaluate_tick`, which also checks every
run request's partition); what they asked for is then stored as the daemon would (partitions,
runs). The figure per size is the median tick, by the wall clock and by this process's CPU time
(the machines are noisy: other processes stretch the first far more than the second); the ratio
between the sizes is taken in one run. Beside the times, what no noise blurs: how often a tick
read every partition key of `stories`. Also here: the report and the command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from td_pipeline.devtools.tick_workload import (
    PLAN,
    Clock,
    SizedSetup,
    Workload,
    answer,
    publish,
    sized_setup,
    store_result,
)
from td_pipeline.infrastructure.subjects import AGENT_RESPONSE_COMPLETED, DERIVATION_REQUESTED
from td_pipeline.orchestration.attempts import BATCH_TAG
from td_pipeline.orchestration.definitions import defs
from td_pipeline.orchestration.request_sensor import derivation_request_sensor
from td_pipeline.orchestration.resources import DerivationSettings, NatsResource
from td_pipeline.orchestration.result_sensor import derivation_result_sensor
from td_pipeline.sandbox.nats_server import missing_nats_server

RATIO_GOAL = 1.5
SENSORS = (derivation_request_sensor, derivation_result_sensor)


@dataclass(frozen=True, slots=True)
class SensorTimes:
    """One sensor's median tick at each size by one clock, in milliseconds, and how many
    times its ticks (at both sizes) read every partition key."""

    sensor: str
    clock: Clock
    small_ms: float
    large_ms: float
    full_reads: int = 0

    @property
    def ratio(self) -> float:
        return self.large_ms / self.small_ms if self.small_ms > 0 else float("inf")


def tick_table(rows: Sequence[SensorTimes], small: int, large: int) -> str:
    """The report: a line a sensor and clock, its median tick at both sizes, their ratio,
    and how often the sensor's ticks read every partition key."""
    headers = (
        "sensor",
        "clock",
        f"{small:,} partitions (ms)",
        f"{large:,} partitions (ms)",
        "ratio",
        "all-keys reads",
    )
    cells = [
        (
            row.sensor,
            row.clock.value,
            f"{row.small_ms:.1f}",
            f"{row.large_ms:.1f}",
            f"x{row.ratio:.2f}",
            str(row.full_reads),
        )
        for row in rows
    ]
    widths = [max(len(line[n]) for line in (headers, *cells)) for n in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        left = [value.ljust(width) for value, width in zip(values[:2], widths, strict=False)]
        right = [value.rjust(width) for value, width in zip(values[2:], widths[2:], strict=True)]
        return "  ".join(left + right)

    return "\n".join([line(headers), *(line(cells_) for cells_ in cells)])


def within_goal(rows: Sequence[SensorTimes], goal: float = RATIO_GOAL) -> bool:
    return all(row.ratio <= goal and row.full_reads == 0 for row in rows)


def verdict(rows: Sequence[SensorTimes], goal: float = RATIO_GOAL) -> str:
    """One line: each clock's ratios against the goal, and the reads of every key."""
    clocks = [
        f"{clock.value} {'within' if all(r.ratio <= goal for r in ours) else 'OVER'}"
        for clock in Clock
        if (ours := [row for row in rows if row.clock is clock])
    ]
    reads = sum({row.sensor: row.full_reads for row in rows}.values())
    every_key = f"{reads} reads of every partition key" if reads else "no read of every key"
    return f"larger / smaller against x{goal}: {', '.join(clocks)}; {every_key}"


def timed_tick(setup: SizedSetup, sensor: dg.SensorDefinition) -> tuple[dict[Clock, float], int]:
    """One tick of `sensor`, evaluated and resolved as the code server does: milliseconds by
    each clock, and how many stories its runs serve (a batched run serves several)."""
    reads_before = setup.all_keys_reads()
    started, started_cpu = time.perf_counter(), time.process_time()
    with dg.build_sensor_context(
        instance=setup.instance,
        # As in the code server: with a ref, run requests' partitions are checked.
        instance_ref=setup.instance.get_ref(),
        cursor=setup.cursors.get(sensor.name),
        definitions=defs,
        resources={
            "nats": NatsResource(url=setup.url),
            "settings": DerivationSettings(vllm_url="bench://none", vllm_model="bench"),
        },
    ) as context:
        result = sensor.evaluate_tick(context)
    elapsed = {
        Clock.WALL: (time.perf_counter() - started) * 1000,
        Clock.CPU: (time.process_time() - started_cpu) * 1000,
    }
    reads = setup.all_keys_reads() - reads_before
    setup.full_reads[sensor.name] = setup.full_reads.get(sensor.name, 0) + reads
    setup.cursors[sensor.name] = result.cursor
    runs = result.run_requests or []
    store_result(setup.instance, result.dynamic_partitions_requests or [], runs)
    return elapsed, sum(int(run.tags.get(BATCH_TAG, "1")) for run in runs)


def publish_turn(setup: SizedSetup, workload: Workload, turn: int) -> dict[str, int]:
    """Publish a turn's requests and answers; how many stories each sensor's runs should
    serve."""
    requests = [
        (DERIVATION_REQUESTED, {"plan_id": PLAN, "story_id": key})
        for key in workload.request_stories(turn)
    ]
    answers = [(AGENT_RESPONSE_COMPLETED, answer(i)) for i in workload.answered_stories(turn)]
    asyncio.run(publish(setup.url, requests + answers))
    return {
        derivation_request_sensor.name: len(requests),
        derivation_result_sensor.name: len(answers),
    }


def run_turn(setups: Sequence[SizedSetup], workload: Workload, turn: int) -> None:
    """A turn: its messages published at every size, then each sensor ticks at each size in
    turn (the closer the ticks compared, the more alike the machine's load on them)."""
    expected = [publish_turn(setup, workload, turn) for setup in setups]
    for sensor in SENSORS:
        for setup, runs_expected in zip(setups, expected, strict=True):
            elapsed, runs = timed_tick(setup, sensor)
            if runs != runs_expected[sensor.name]:  # the figures would be of another path
                raise RuntimeError(
                    f"{sensor.name}'s runs serve {runs} stories, not {runs_expected[sensor.name]}"
                )
            if turn > 0:  # turn 0 warms up (connections, consumers, imports)
                for clock, milliseconds in elapsed.items():
                    setup.times_ms.setdefault((sensor.name, clock), []).append(milliseconds)


def measure(small: int, large: int, workload: Workload, root: Path) -> list[SensorTimes]:
    """Both sizes set up side by side and their ticks interleaved, which goes first
    alternating from turn to turn (an even number of timed turns gives each size the lead
    equally often), so that the machine's load weighs on both alike."""
    with (
        sized_setup(root / "small", small, workload) as low,
        sized_setup(root / "large", large, workload) as high,
    ):
        for turn in range(workload.turns + 1):
            run_turn((low, high) if turn % 2 else (high, low), workload, turn)
        return [
            SensorTimes(
                sensor.name,
                clock,
                statistics.median(low.times_ms[sensor.name, clock]),
                statistics.median(high.times_ms[sensor.name, clock]),
                low.full_reads[sensor.name] + high.full_reads[sensor.name],
            )
            for sensor in SENSORS
            for clock in Clock
        ]


def register(kinds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ticks = kinds.add_parser(
        "ticks", help="a request- and a result-sensor tick with few and with many partitions"
    )
    ticks.add_argument("--small", type=int, default=100, help="partitions (default 100)")
    ticks.add_argument("--large", type=int, default=50_000, help="partitions (default 50,000)")
    ticks.add_argument("--requests", type=int, default=20, help="requests a tick (default 20)")
    ticks.add_argument("--answers", type=int, default=8, help="answers a tick (default 8)")
    ticks.add_argument(
        "--turns", type=int, default=10, help="timed ticks per sensor and size (default 10)"
    )
    ticks.set_defaults(handler=run_ticks)


def usage_error(args: argparse.Namespace) -> str | None:
    workload = Workload(args.requests, args.answers, args.turns)
    if min(args.requests, args.answers, args.turns) < 1:
        return "--requests, --answers and --turns must be at least 1"
    if not 0 < args.small < args.large:
        return "--small must be at least 1 and below --large"
    if workload.submitted_stories > args.small:
        return (
            f"--small must hold the {workload.submitted_stories} stories with a history "
            "(--answers x (--turns + 1))"
        )
    return None


def run_ticks(args: argparse.Namespace) -> int:
    if (problem := usage_error(args)) is not None:
        print(f"td-pipeline bench ticks: {problem}", file=sys.stderr)
        return 2
    if (missing := missing_nats_server()) is not None:
        print(f"td-pipeline bench ticks: {missing}", file=sys.stderr)
        return 2
    workload = Workload(args.requests, args.answers, args.turns)
    print(
        f"{args.requests} requests and {args.answers} answers a tick, median of "
        f"{args.turns} ticks, with {args.small:,} and {args.large:,} story partitions"
    )
    logging.disable(logging.INFO)  # the sensors' line per tick; warnings still show
    try:
        with tempfile.TemporaryDirectory(prefix="td-bench-ticks-") as scratch:
            rows = measure(args.small, args.large, workload, Path(scratch))
    finally:
        logging.disable(logging.NOTSET)
    print()
    print(tick_table(rows, args.small, args.large))
    print()
    print(verdict(rows))
    return 0
