"""`td-pipeline watch`: print `task.derivation.completed` / `failed` events as they arrive."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import DeliverPolicy

from td_pipeline.commands.fleet_access import EXIT_OK, address, connect_nats, fleet_command
from td_pipeline.infrastructure.subjects import DERIVATION_COMPLETED, DERIVATION_FAILED


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    watch = fleet_command(subcommands, "watch", watch_events)
    watch.add_argument("--nats-url")
    watch.add_argument("--count", type=int, help="stop after this many events")
    watch.add_argument("--timeout", type=float, help="stop after this many seconds")
    watch.add_argument("--json", action="store_true", help="print each event as JSON")


def describe_event(subject: str, body: dict[str, Any]) -> str:
    outcome = subject.rsplit(".", 1)[-1]
    story, plan = body.get("story_id"), body.get("plan_id")
    if outcome == "completed":
        return f"completed  {story}  plan={plan}  tasks={body.get('task_count')}"
    review = "manual review" if body.get("requires_manual_review") else "will retry"
    return f"failed     {story}  plan={plan}  ({review}) {body.get('reason')}"


def watch_events(args: argparse.Namespace) -> int:
    url = address(args, args.nats_url, "NATS_URL")

    async def watch() -> None:
        connection = await connect_nats(url)
        try:
            jetstream = connection.jetstream()
            subscription = await jetstream.subscribe(
                "task.derivation.*", ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
            )
            print("# watching task.derivation.completed and failed", file=sys.stderr, flush=True)
            seen = 0
            deadline = time.monotonic() + args.timeout if args.timeout else None
            while args.count is None or seen < args.count:
                remaining = deadline - time.monotonic() if deadline else 3600.0
                if remaining <= 0:
                    return
                try:
                    message = await subscription.next_msg(timeout=remaining)
                except NatsTimeoutError:
                    continue
                if message.subject not in (DERIVATION_COMPLETED, DERIVATION_FAILED):
                    continue
                body = json.loads(message.data)
                print(json.dumps(body) if args.json else describe_event(message.subject, body))
                sys.stdout.flush()
                seen += 1
        finally:
            await connection.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(watch())
    return EXIT_OK
