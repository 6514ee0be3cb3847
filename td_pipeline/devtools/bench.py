"""`td-pipeline bench e2e`: seconds from request to completed event through the real daemon,
against the engine floor (the same shape of runs with nothing inside) in the same run.

The machines are noisy, so the figures that matter are the ratios taken in one run."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nats
from nats.js.api import DeliverPolicy

from td_pipeline.devtools import bench_floor, bench_ticks
from td_pipeline.devtools.dagster_processes import (
    INSTANCE_CONFIG,
    REPO,
    DagsterProcesses,
    prepare_home,
)
from td_pipeline.infrastructure.subjects import DERIVATION_COMPLETED, DERIVATION_REQUESTED
from td_pipeline.sandbox.fleet import LocalFleet
from td_pipeline.sandbox.nats_server import ensure_streams, missing_nats_server
from td_pipeline.sandbox.planning_store import load_sample_stories, story_copies

WORKSPACE = """load_from:
  - python_module:
      module_name: td_pipeline.orchestration.definitions
      working_directory: {repo}
  - python_module:
      module_name: td_pipeline.devtools.bench_floor
      working_directory: {repo}
"""


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    latencies: tuple[float, ...]  # seconds from request to final event, per item
    wall_seconds: float  # first request to last event
    expected: int

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    @property
    def per_minute(self) -> float:
        return 60 * len(self.latencies) / self.wall_seconds if self.wall_seconds else 0.0


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = subcommands.add_parser("bench")
    kinds = bench.add_subparsers(dest="bench", required=True, metavar="KIND")
    e2e = kinds.add_parser(
        "e2e", help="request -> completed event through the daemon, against the engine floor"
    )
    e2e.add_argument("--stories", type=int, default=50)
    e2e.add_argument("--timeout", type=float, default=900.0, help="seconds per phase")
    e2e.add_argument(
        "--instance-config",
        type=Path,
        default=INSTANCE_CONFIG,
        metavar="PATH",
        help="the Dagster instance config (default: the repository's dagster.yaml; "
        "deploy/dagster-postgres.yaml with DAGSTER_PG_* set for PostgreSQL)",
    )
    e2e.set_defaults(handler=run_e2e)
    bench_ticks.register(kinds)


def run_e2e(args: argparse.Namespace) -> int:
    if args.stories < 1:
        print("td-pipeline bench e2e: --stories must be at least 1")
        return 2
    if not args.instance_config.is_file():
        print(f"td-pipeline bench e2e: no instance config at {args.instance_config}")
        return 2
    if (missing := missing_nats_server()) is not None:
        print(f"td-pipeline bench e2e: {missing}", file=sys.stderr)
        return 2
    stories = story_copies(load_sample_stories(), args.stories)
    with tempfile.TemporaryDirectory(prefix="td-bench-") as scratch:
        root = Path(scratch)
        workspace = root / "workspace.yaml"
        workspace.write_text(WORKSPACE.format(repo=REPO))
        with LocalFleet(root / "fleet", stories=stories) as fleet:
            url = fleet.environment()["NATS_URL"]
            asyncio.run(ensure_streams(url, [bench_floor.FLOOR_STREAM]))
            home = prepare_home(root / "home", instance_config=args.instance_config)
            processes = DagsterProcesses(
                home, fleet.environment(), root / "logs", workspace=workspace
            )
            with processes:
                print(f"{len(stories)} stories, offline planner, {args.instance_config}")
                # Warm up: code servers loaded, sensors ticking, before anything is timed.
                asyncio.run(floor_phase(url, ["warm-up"], args.timeout))
                pipeline = asyncio.run(
                    timed_phase(
                        "pipeline",
                        url,
                        [(s.story_id, s.plan_id) for s in stories],
                        lambda item: (
                            DERIVATION_REQUESTED,
                            json.dumps({"plan_id": item[1], "story_id": item[0]}),
                        ),
                        DERIVATION_COMPLETED,
                        "story_id",
                        args.timeout,
                    )
                )
                floor = asyncio.run(
                    floor_phase(url, [f"item-{n}" for n in range(len(stories))], args.timeout)
                )
    print_report(pipeline, floor)
    complete = (
        len(pipeline.latencies) == pipeline.expected and len(floor.latencies) == floor.expected
    )
    return 0 if complete else 1


async def floor_phase(url: str, items: list[str], timeout: float) -> Phase:
    return await timed_phase(
        "engine floor",
        url,
        [(item, "") for item in items],
        lambda item: (bench_floor.REQUESTED, json.dumps({"item": item[0]})),
        bench_floor.DONE,
        "item",
        timeout,
    )


async def timed_phase(
    name: str,
    url: str,
    items: list[tuple[str, str]],
    request: Callable[[tuple[str, str]], tuple[str, str]],
    final_subject: str,
    key: str,
    timeout: float,
) -> Phase:
    """Publish a request per item at once, then time each item's final event."""
    connection = await nats.connect(url)
    try:
        jetstream = connection.jetstream()
        finals = await jetstream.subscribe(
            final_subject, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
        )
        requested: dict[str, float] = {}
        started = time.monotonic()
        for item in items:
            subject, body = request(item)
            await jetstream.publish(subject, body.encode())
            requested[item[0]] = time.monotonic()
        latencies: dict[str, float] = {}
        last = started
        while len(latencies) < len(items) and time.monotonic() - started < timeout:
            try:
                message = await finals.next_msg(timeout=1)
            except nats.errors.TimeoutError:
                continue
            item_key = json.loads(message.data).get(key)
            if item_key in requested and item_key not in latencies:
                last = time.monotonic()
                latencies[item_key] = last - requested[item_key]
                if len(latencies) % 10 == 0:
                    print(f"  {name}: {len(latencies)}/{len(items)}", flush=True)
        return Phase(name, tuple(latencies.values()), last - started, len(items))
    finally:
        await connection.close()


def print_report(pipeline: Phase, floor: Phase) -> None:
    print()
    print(f"{'':14}{'done':>8}{'p50 s':>9}{'p95 s':>9}{'per min':>9}")
    for phase in (pipeline, floor):
        print(
            f"{phase.name:14}{len(phase.latencies):>4}/{phase.expected:<3}"
            f"{phase.quantile(0.5):>9.1f}{phase.quantile(0.95):>9.1f}{phase.per_minute:>9.1f}"
        )
    if floor.latencies and pipeline.latencies:
        print(
            f"\npipeline / engine floor: p50 x{pipeline.quantile(0.5) / floor.quantile(0.5):.2f}, "
            f"p95 x{pipeline.quantile(0.95) / floor.quantile(0.95):.2f}, "
            f"throughput x{pipeline.per_minute / floor.per_minute:.2f} "
            f"(median of all: {statistics.median(pipeline.latencies):.1f}s vs "
            f"{statistics.median(floor.latencies):.1f}s)"
        )
