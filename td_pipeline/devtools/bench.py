"""`td-pipeline bench e2e`: seconds from request to completed event through the real daemon,
against the engine floor (the same shape of runs with nothing inside) in the same run.

With `--llm-slots N --llm-seconds S`, the executor stand-in plays a GPU cluster under load and
the pipeline is measured against the LLM's floor instead of the engine floor (`bench_llm`).

With `--burst`, also the peak resident memory of the whole stack in each phase (the fleet,
NATS, the daemon, code servers, run workers: `process_memory`, Linux only), a progress line
while a phase runs, and how many items did not complete.

The engine floor runs at most FLOOR_STORIES_CAP items unless `--floor-stories` says otherwise
(its rate is about 25 per minute here: 1,000 items would take 40 minutes). Its stories per
minute and peak memory are still compared with the pipeline's; its p50 and p95 are not when
the sizes differ, since in a burst they are mostly the wait behind the items ahead and grow
with the burst's size.

The machines are noisy, so the figures that matter are the ratios taken in one run."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import dagster as dg
import nats
from nats.js.api import DeliverPolicy

from td_pipeline.devtools import bench_floor, bench_llm, bench_ticks
from td_pipeline.devtools.dagster_processes import (
    INSTANCE_CONFIG,
    DagsterProcesses,
    prepare_home,
)
from td_pipeline.devtools.process_memory import PeakMemory, memory_supported, sampling
from td_pipeline.infrastructure.subjects import DERIVATION_COMPLETED, DERIVATION_REQUESTED
from td_pipeline.orchestration.llm_admission import read_window
from td_pipeline.sandbox.fleet import LocalFleet
from td_pipeline.sandbox.llm_capacity import LlmCapacity
from td_pipeline.sandbox.llm_flags import add_llm_capacity_arguments, llm_capacity_from
from td_pipeline.sandbox.nats_server import ensure_streams, missing_nats_server
from td_pipeline.sandbox.planning_store import SampleStory, load_sample_stories, story_copies
from td_pipeline.settings import read_settings

CODE_LOCATIONS = ("td_pipeline.orchestration.definitions", "td_pipeline.devtools.bench_floor")
PROGRESS_SECONDS = 10.0  # --burst: a progress line this often
FLOOR_STORIES_CAP = 100  # the engine floor's items when --floor-stories is not given
TIMEOUT_SECONDS = 1800.0  # per phase: 1,000 stories at the 100/min target take 600 s
MIB = 2**20

Progress = Callable[[str, int, int, float], None]  # phase, done, expected, seconds elapsed


def quantile(values: Sequence[float], q: float) -> float:
    """The value at rank q of the sorted values (the nearest rank, no interpolation)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    latencies: tuple[float, ...]  # seconds from request to final event, per item
    wall_seconds: float  # first request to last event
    expected: int
    peak_rss_bytes: int | None = None  # --burst: the stack's highest summed RSS in the phase

    def quantile(self, q: float) -> float:
        return quantile(self.latencies, q)

    @property
    def missing(self) -> int:
        return self.expected - len(self.latencies)

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
    e2e.add_argument(
        "--floor-stories",
        type=int,
        default=None,
        metavar="N",
        help="items in the engine floor phase, at most --stories (default: as many as "
        f"--stories, at most {FLOOR_STORIES_CAP}); its stories/min and peak memory are compared "
        "with the pipeline's, its p50 and p95 (which grow with a burst's size) only when both "
        "phases ran as many",
    )
    e2e.add_argument(
        "--timeout",
        type=float,
        default=TIMEOUT_SECONDS,
        help=f"seconds per phase (default: {TIMEOUT_SECONDS:.0f}, three times what 1,000 "
        "stories take at the 100 stories/min target; at today's ~20/min, 1,000 stories need "
        "about 3,000)",
    )
    e2e.add_argument(
        "--instance-config",
        type=Path,
        default=INSTANCE_CONFIG,
        metavar="PATH",
        help="the Dagster instance config (default: the repository's dagster.yaml; "
        "deploy/dagster-postgres.yaml with DAGSTER_PG_* set for PostgreSQL)",
    )
    e2e.add_argument(
        "--burst",
        action="store_true",
        help="also report each phase's peak resident memory of the whole stack (read from "
        "/proc: Linux only), a progress line while it runs, and the items not completed",
    )
    add_llm_capacity_arguments(e2e)
    e2e.add_argument(
        "--picture",
        type=Path,
        metavar="PATH",
        help=f"with --llm-seconds: where the PNG of jobs in flight goes (default: "
        f"{bench_llm.DEFAULT_PICTURE})",
    )
    e2e.set_defaults(handler=run_e2e)
    bench_ticks.register(kinds)


def run_e2e(args: argparse.Namespace) -> int:
    if args.stories < 1:
        print("td-pipeline bench e2e: --stories must be at least 1")
        return 2
    try:
        capacity = _llm_capacity(args)
    except ValueError as error:
        print(f"td-pipeline bench e2e: {error}")
        return 2
    if args.floor_stories is not None and args.floor_stories < 1:
        print("td-pipeline bench e2e: --floor-stories must be at least 1")
        return 2
    if not args.instance_config.is_file():
        print(f"td-pipeline bench e2e: no instance config at {args.instance_config}")
        return 2
    if (missing := missing_nats_server()) is not None:
        print(f"td-pipeline bench e2e: {missing}", file=sys.stderr)
        return 2
    if args.burst and (unsupported := memory_supported()) is not None:
        print(f"td-pipeline bench e2e: {unsupported}", file=sys.stderr)
        return 2
    stories = story_copies(load_sample_stories(), args.stories)
    floor_items = floor_count(args.stories, args.floor_stories)
    outcome: tuple[Phase, Phase] | bench_llm.LlmRun
    with (
        tempfile.TemporaryDirectory(prefix="td-bench-") as scratch,
        # Sampled from before the fleet starts until the last process is gone.
        sampling() if args.burst else contextlib.nullcontext() as memory,
    ):
        root = Path(scratch)
        with LocalFleet(root / "fleet", stories=stories, llm_capacity=capacity) as fleet:
            url = fleet.environment()["NATS_URL"]
            asyncio.run(ensure_streams(url, [bench_floor.FLOOR_STREAM]))
            home = prepare_home(root / "home", instance_config=args.instance_config)
            # Code servers of their own, as deployed: not the daemon's, replaced every 60 s.
            processes = DagsterProcesses(
                home, fleet.environment(), root / "logs", code_servers=CODE_LOCATIONS
            )
            with processes:
                if capacity is None:
                    print(
                        f"{len(stories)} stories (engine floor: {floor_items} items), "
                        f"offline planner, {args.instance_config}"
                        + (", burst: peak memory of the whole stack (/proc)" if args.burst else "")
                    )
                else:
                    print(
                        f"{len(stories)} stories against the LLM's floor, offline planner served "
                        f"as an LLM of {capacity.describe()}, {args.instance_config}"
                    )
                # Warm up: code servers loaded, sensors ticking, before anything is timed.
                asyncio.run(floor_phase(url, ["warm-up"], args.timeout))
                if capacity is None:
                    outcome = _pipeline_then_floor(url, stories, floor_items, args, memory)
                else:
                    assert fleet.executor is not None  # the fleet is running
                    outcome = asyncio.run(
                        bench_llm.llm_phase(
                            url,
                            [(s.story_id, s.plan_id) for s in stories],
                            capacity,
                            fleet.executor.servicer.plans,
                            fleet.executor.servicer.load,
                            args.timeout,
                            window=InstanceWindow(home, read_settings().llm_max_in_flight),
                        )
                    )
    print()
    if isinstance(outcome, bench_llm.LlmRun):
        return bench_llm.conclude(outcome, args.picture or bench_llm.DEFAULT_PICTURE)
    pipeline, floor = outcome
    print(report(pipeline, floor, burst=args.burst))
    return 0 if pipeline.missing == 0 and floor.missing == 0 else 1


class InstanceWindow:
    """The pipeline's LLM window as the request sensor reads it (`bench_llm.WindowProbe`)."""

    def __init__(self, home: Path, cap: int) -> None:
        self._instance = dg.DagsterInstance.from_config(str(home))
        self._cap = cap

    def read(self) -> float | None:
        return float(read_window(self._instance).jobs_allowed(self._cap))


def _llm_capacity(args: argparse.Namespace) -> LlmCapacity | None:
    """The LLM flags' capacity; ValueError for flags that do not go with them (the LLM run
    has no engine floor phase and no memory sampling)."""
    capacity = llm_capacity_from(args)
    if capacity is None and args.picture is not None:
        raise ValueError("--picture needs --llm-seconds")
    if capacity is not None and args.burst:
        raise ValueError("--burst is not for a run against the LLM's floor")
    if capacity is not None and args.floor_stories is not None:
        raise ValueError("--floor-stories is not for a run against the LLM's floor")
    return capacity


def _pipeline_then_floor(
    url: str,
    stories: Sequence[SampleStory],
    floor_items: int,
    args: argparse.Namespace,
    memory: PeakMemory | None,
) -> tuple[Phase, Phase]:
    """The pipeline's phase, then the engine floor's, each with its peak memory if sampled."""
    progress = _progress_line(memory) if memory is not None else None
    if memory is not None:
        memory.take_peak()  # the phases' windows start here
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
            progress,
        )
    )
    if memory is not None:
        pipeline = replace(pipeline, peak_rss_bytes=memory.take_peak())
    floor = asyncio.run(
        floor_phase(url, [f"item-{n}" for n in range(floor_items)], args.timeout, progress)
    )
    if memory is not None:
        floor = replace(floor, peak_rss_bytes=memory.take_peak())
    return pipeline, floor


def floor_count(stories: int, floor_stories: int | None) -> int:
    """The engine floor's items: `--floor-stories` (else FLOOR_STORIES_CAP), at most `stories`."""
    return min(stories, FLOOR_STORIES_CAP if floor_stories is None else floor_stories)


def _progress_line(memory: PeakMemory) -> Progress:
    def line(name: str, done: int, expected: int, elapsed: float) -> None:
        print(
            f"  {name}: {done}/{expected} completed, {elapsed:.0f} s, "
            f"peak {memory.peak_so_far() / MIB:.0f} MiB",
            flush=True,
        )

    return line


async def floor_phase(
    url: str, items: list[str], timeout: float, progress: Progress | None = None
) -> Phase:
    return await timed_phase(
        "engine floor",
        url,
        [(item, "") for item in items],
        lambda item: (bench_floor.REQUESTED, json.dumps({"item": item[0]})),
        bench_floor.DONE,
        "item",
        timeout,
        progress,
    )


async def timed_phase(
    name: str,
    url: str,
    items: list[tuple[str, str]],
    request: Callable[[tuple[str, str]], tuple[str, str]],
    final_subject: str,
    key: str,
    timeout: float,
    progress: Progress | None = None,
) -> Phase:
    """Publish a request per item at once, then time each item's final event. With
    `progress`, a call every PROGRESS_SECONDS and at the end; else a line every 10 items."""
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
        last = reported = started
        while len(latencies) < len(items) and time.monotonic() - started < timeout:
            if progress is not None and time.monotonic() - reported >= PROGRESS_SECONDS:
                reported = time.monotonic()
                progress(name, len(latencies), len(items), reported - started)
            try:
                message = await finals.next_msg(timeout=1)
            except nats.errors.TimeoutError:
                continue
            item_key = json.loads(message.data).get(key)
            if item_key in requested and item_key not in latencies:
                last = time.monotonic()
                latencies[item_key] = last - requested[item_key]
                if progress is None and len(latencies) % 10 == 0:
                    print(f"  {name}: {len(latencies)}/{len(items)}", flush=True)
        if progress is not None:
            progress(name, len(latencies), len(items), time.monotonic() - started)
        return Phase(name, tuple(latencies.values()), last - started, len(items))
    finally:
        await connection.close()


def _peak_mib(phase: Phase) -> float:
    return (phase.peak_rss_bytes or 0) / MIB


def report(pipeline: Phase, floor: Phase, burst: bool = False) -> str:
    """The table of both phases and their ratios; with `burst`, each phase's peak memory and
    what did not complete. If the phases ran different numbers of items, the ratio line names
    both and leaves out p50 and p95 (in a burst, they grow with its size)."""
    phases = (pipeline, floor)
    memory = burst and all(phase.peak_rss_bytes is not None for phase in phases)
    width = max(3, *(len(str(phase.expected)) for phase in phases))  # of "done"'s halves
    lines = [
        f"{'':14}{'done':>{2 * width + 2}}{'p50 s':>9}{'p95 s':>9}{'per min':>9}"
        + (f"{'peak MiB':>10}" if memory else "")
    ]
    for phase in phases:
        lines.append(
            f"{phase.name:14}{len(phase.latencies):>{width + 1}}/{phase.expected:<{width}}"
            f"{phase.quantile(0.5):>9.1f}{phase.quantile(0.95):>9.1f}{phase.per_minute:>9.1f}"
            + (f"{_peak_mib(phase):>10.0f}" if memory else "")
        )
    if floor.latencies and pipeline.latencies:
        peaks = f", peak memory x{_peak_mib(pipeline) / _peak_mib(floor):.2f}" if memory else ""
        throughput = f"throughput x{pipeline.per_minute / floor.per_minute:.2f}{peaks}"
        if pipeline.expected == floor.expected:
            lines.append(
                f"\npipeline / engine floor: "
                f"p50 x{pipeline.quantile(0.5) / floor.quantile(0.5):.2f}, "
                f"p95 x{pipeline.quantile(0.95) / floor.quantile(0.95):.2f}, {throughput} "
                f"(median of all: {statistics.median(pipeline.latencies):.1f}s vs "
                f"{statistics.median(floor.latencies):.1f}s)"
            )
        else:
            lines.append(
                f"\npipeline {pipeline.expected} stories / engine floor {floor.expected} items: "
                f"{throughput} (p50 and p95 grow with a burst's size: compared at equal sizes)"
            )
    if burst:
        missing = [f"{p.name} {p.missing} of {p.expected}" for p in phases if p.missing]
        lines.append("\nNOT completed: " + ", ".join(missing) if missing else "\nall completed")
    return "\n".join(lines)
