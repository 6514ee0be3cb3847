"""`td-pipeline demo`: the whole pipeline on this machine, the way an operator runs it.

Starts the local fleet, the Dagster daemon and webserver, asks for a derivation of every
sample story over NATS, shows the events as they come, then a summary; the UI stays up until
Ctrl-C (`--once` exits instead, 0 when every story reached its expected outcome)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import nats
from nats.js.api import DeliverPolicy

from td_pipeline.devtools.dagster_processes import DagsterProcesses, prepare_home
from td_pipeline.devtools.metrics_process import serving_metrics
from td_pipeline.infrastructure.subjects import (
    DERIVATION_COMPLETED,
    DERIVATION_FAILED,
    DERIVATION_REQUESTED,
)
from td_pipeline.orchestration.asset_steps import AssetStep
from td_pipeline.sandbox.fleet import LocalFleet
from td_pipeline.sandbox.nats_server import missing_nats_server
from td_pipeline.sandbox.planning_store import SampleStory, load_sample_stories
from td_pipeline.sandbox.state_dir import DEFAULT_STATE_DIR

EXIT_OK, EXIT_UNEXPECTED = 0, 1
PROGRESS_EVERY_SECONDS = 10.0


@dataclass
class StoryOutcome:
    story: SampleStory
    requested_at: float
    subject: str | None = None
    body: dict[str, Any] | None = None
    arrived_at: float | None = None

    @property
    def outcome(self) -> str:
        return self.subject.rsplit(".", 1)[-1] if self.subject else "no answer"


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser("demo")
    parser.add_argument("--once", action="store_true", help="exit after the summary")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--dagster-home", type=Path, default=Path(".dagster_home"))
    parser.add_argument("--port", type=int, default=3000, help="the Dagster UI's port")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=9108,
        help="serve-metrics' port (a free one when it is taken)",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for events")
    parser.set_defaults(handler=run_demo)


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def run_demo(args: argparse.Namespace) -> int:
    if not _port_is_free(args.port):
        print(f"td-pipeline demo: port {args.port} on 127.0.0.1 is taken; use --port")
        return 2
    if (missing := missing_nats_server()) is not None:
        print(f"td-pipeline demo: {missing}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stories = load_sample_stories()
    home = prepare_home(args.dagster_home.resolve())
    print("starting the local fleet (NATS, Planning, Context, Ray Executor stand-in) ...")
    with LocalFleet(args.state_dir.resolve()) as fleet:
        print("starting dagster-daemon and dagster-webserver ...", flush=True)
        processes = DagsterProcesses(
            home, fleet.environment(), args.state_dir.resolve() / "logs", webserver_port=args.port
        )
        metrics_port = args.metrics_port if _port_is_free(args.metrics_port) else 0
        metrics_log = processes.log_dir / "serve-metrics.log"
        with (
            processes,
            serving_metrics(fleet.environment(), home, metrics_log, metrics_port) as metrics,
        ):
            processes.wait_for_webserver()
            print(f"Dagster UI: {processes.webserver_url}  (logs in {processes.log_dir})")
            print(f"metrics: {metrics.url}/metrics  (health: {metrics.url}/ready)", flush=True)
            outcomes = asyncio.run(
                derive_all(fleet.environment()["NATS_URL"], stories, args.timeout)
            )
            print_summary(outcomes, fleet, home)
            succeeded = all(o.outcome == "completed" for o in outcomes)
            if not args.once:
                print(
                    f"\nthe UI stays up at {processes.webserver_url}/assets "
                    "(story partitions under planning_tasks), the metrics at "
                    f"{metrics.url}/metrics; Ctrl-C stops everything",
                    flush=True,
                )
                stop.wait()
        print("stopped every process the demo started")
    return EXIT_OK if succeeded else EXIT_UNEXPECTED


async def derive_all(
    url: str, stories: tuple[SampleStory, ...], timeout: float
) -> list[StoryOutcome]:
    """Request every story, then print each outcome event as it arrives."""
    connection = await nats.connect(url)
    try:
        jetstream = connection.jetstream()
        events = await jetstream.subscribe(
            "task.derivation.*", ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
        )
        started = time.monotonic()
        outcomes: dict[str, StoryOutcome] = {}
        for story in stories:
            request = {
                "plan_id": story.plan_id,
                "story_id": story.story_id,
                "roles": list(story.roles),
                "requested_by": "td-pipeline-demo",
                "requested_at": datetime.now(UTC).isoformat(),
            }
            await jetstream.publish(DERIVATION_REQUESTED, json.dumps(request).encode())
            outcomes[story.story_id] = StoryOutcome(story, time.monotonic())
        print(f"requested a derivation for each of the {len(stories)} sample stories")
        last_progress = time.monotonic()
        while any(o.subject is None for o in outcomes.values()):
            if time.monotonic() - started > timeout:
                break
            try:
                message = await events.next_msg(timeout=1)
            except nats.errors.TimeoutError:
                message = None
            if message is not None and message.subject in (DERIVATION_COMPLETED, DERIVATION_FAILED):
                body = json.loads(message.data)
                outcome = outcomes.get(body.get("story_id", ""))
                if outcome is not None and outcome.subject is None:
                    outcome.subject, outcome.body = message.subject, body
                    outcome.arrived_at = time.monotonic()
                    done = sum(o.subject is not None for o in outcomes.values())
                    print(f"[{done:>2}/{len(outcomes)}] {describe(outcome)}", flush=True)
            if time.monotonic() - last_progress >= PROGRESS_EVERY_SECONDS:
                waiting = [s for s, o in outcomes.items() if o.subject is None]
                print(
                    f"... {time.monotonic() - started:.0f}s: waiting for {len(waiting)}: "
                    + ", ".join(waiting[:6])
                    + (" ..." if len(waiting) > 6 else ""),
                    flush=True,
                )
                last_progress = time.monotonic()
        return list(outcomes.values())
    finally:
        await connection.close()


def describe(outcome: StoryOutcome) -> str:
    body = outcome.body or {}
    seconds = (outcome.arrived_at or outcome.requested_at) - outcome.requested_at
    if outcome.outcome == "completed":
        detail = f"{body.get('task_count')} tasks"
    else:
        detail = str(body.get("reason", ""))
    return f"{outcome.story.story_id} {outcome.outcome}: {detail} ({seconds:.1f}s)"


def critical_path_hours(instance: dg.DagsterInstance, story: str) -> str:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=AssetStep.TASK_GRAPH.key, asset_partitions=[story]),
        limit=1,
    ).records
    if not records or records[0].asset_materialization is None:
        return "-"
    value = records[0].asset_materialization.metadata.get("critical_path_hours")
    return str(value.value) if value is not None else "-"


def print_summary(outcomes: list[StoryOutcome], fleet: LocalFleet, home: Path) -> None:
    store = fleet.store
    instance = dg.DagsterInstance.from_config(str(home))
    rows = [("story", "outcome", "tasks", "dependencies", "critical path h", "seconds")]
    for o in outcomes:
        story = o.story.story_id
        rows.append(
            (
                story,
                o.outcome,
                str(len(store.tasks(story))) if store else "-",
                str(len(store.dependencies(story))) if store else "-",
                critical_path_hours(instance, story),
                f"{o.arrived_at - o.requested_at:.1f}" if o.arrived_at else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print()
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))
    completed = sum(o.outcome == "completed" for o in outcomes)
    print(f"\n{completed} of {len(outcomes)} stories derived")
