"""`td-pipeline bench e2e`: seconds from request to completed event through the real daemon,
against the engine floor (the same shape of runs with nothing inside) in the same run. Each
phase is timed, and the two compared, in `bench_phases`.

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
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import dagster as dg

from td_pipeline.devtools import bench_floor, bench_llm, bench_ticks
from td_pipeline.devtools.bench_phases import Phase, Progress, progress_line, report, timed_phase
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
FLOOR_STORIES_CAP = 100  # the engine floor's items when --floor-stories is not given
TIMEOUT_SECONDS = 1800.0  # per phase: 1,000 stories at the 100/min target take 600 s


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
    progress = progress_line(memory) if memory is not None else None
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
