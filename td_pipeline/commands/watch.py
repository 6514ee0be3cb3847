"""`td-pipeline watch`: print `task.derivation.completed` / `failed` events as they arrive.

Polls the derivation stream by sequence as the metrics server reads it
(`jetstream_monitor.read_stream`): no consumer, so td-pipeline's least-privilege NATS user
may run it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any

from nats.errors import Error as NatsError

from td_pipeline.commands.fleet_access import (
    EXIT_OK,
    Unreachable,
    address,
    connect_nats,
    fleet_command,
    settings,
)
from td_pipeline.infrastructure.connection_errors import redacted_url
from td_pipeline.infrastructure.jetstream_monitor import (
    NatsUnavailable,
    StreamRestarted,
    read_stream,
)
from td_pipeline.infrastructure.subjects import DERIVATION_COMPLETED, DERIVATION_FAILED

POLL_SECONDS = 0.25
READ_LIMIT = 500
TIMEOUT_SECONDS = 5.0


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
    stream = settings().request_stream

    async def watch() -> None:
        connection = await connect_nats(url)
        try:
            info = await connection.jetstream(timeout=TIMEOUT_SECONDS).stream_info(stream)
            after = info.state.last_seq  # new events only
            print("# watching task.derivation.completed and failed", file=sys.stderr, flush=True)
            seen = 0
            deadline = time.monotonic() + args.timeout if args.timeout else None
            while args.count is None or seen < args.count:
                if deadline is not None and time.monotonic() >= deadline:
                    return
                try:
                    page = await read_stream(
                        connection, stream, after, READ_LIMIT, TIMEOUT_SECONDS, TIMEOUT_SECONDS
                    )
                except StreamRestarted:
                    after = 0  # the stream was created again: all of it is new
                    continue
                after = page.read_to
                events = [
                    m
                    for m in page.messages
                    if m.subject in (DERIVATION_COMPLETED, DERIVATION_FAILED)
                ]
                for message in events[: None if args.count is None else args.count - seen]:
                    body = json.loads(message.data)
                    print(json.dumps(body) if args.json else describe_event(message.subject, body))
                    sys.stdout.flush()
                    seen += 1
                if not page.messages:
                    await asyncio.sleep(POLL_SECONDS)
        except (NatsError, TimeoutError, NatsUnavailable) as error:
            problem = str(error) or "no answer"
            raise Unreachable(
                f"cannot read stream {stream} on NATS at {redacted_url(url)}: {problem}"
            ) from None
        finally:
            await connection.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(watch())
    return EXIT_OK
