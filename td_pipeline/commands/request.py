"""`td-pipeline request --plan P --story S`: publish a derivation request, bare or in the
fleet's envelope, on `task.derivation.requested`."""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from td_pipeline.commands.fleet_access import EXIT_OK, address, connect_nats, fleet_command
from td_pipeline.infrastructure.subjects import DERIVATION_REQUESTED


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    request = fleet_command(subcommands, "request", request_derivation)
    request.add_argument("--plan", required=True)
    request.add_argument("--story", required=True)
    request.add_argument("--roles", default="DEVELOPER", help="comma-separated roles")
    request.add_argument("--envelope", action="store_true", help="wrap in the fleet envelope")
    request.add_argument("--nats-url")


def request_payload(args: argparse.Namespace) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    payload = {
        "plan_id": args.plan,
        "story_id": args.story,
        "requested_by": "td-pipeline-cli",
        "roles": [role.strip().upper() for role in args.roles.split(",") if role.strip()],
        "requested_at": now,
    }
    if not args.envelope:
        return payload
    return {
        "event_type": DERIVATION_REQUESTED,
        "payload": payload,
        "idempotency_key": str(uuid.uuid4()),
        "correlation_id": f"cli-{uuid.uuid4()}",
        "timestamp": now,
        "producer": "td-pipeline-cli",
        "metadata": {},
    }


def request_derivation(args: argparse.Namespace) -> int:
    url = address(args, args.nats_url, "NATS_URL")
    body = request_payload(args)

    async def publish() -> int:
        connection = await connect_nats(url)
        try:
            ack = await connection.jetstream(timeout=5).publish(
                DERIVATION_REQUESTED, json.dumps(body).encode()
            )
            sequence: int = ack.seq
            return sequence
        finally:
            await connection.close()

    sequence = asyncio.run(publish())
    print(f"requested derivation of {args.story} (plan {args.plan}), stream sequence {sequence}")
    return EXIT_OK
