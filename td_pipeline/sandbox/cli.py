"""`td-pipeline sandbox up | request | watch | tasks`: run and talk to the local fleet.

Addresses come from flags, else the environment (NATS_URL, PLANNING_SERVICE_ADDRESS, ...),
else `<state-dir>/sandbox.env` written by `sandbox up`. A server that cannot be reached gives
one line on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import nats
from nats.aio.client import Client
from nats.errors import NoServersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import DeliverPolicy

from td_pipeline.gen.fleet.task_derivation.v1 import task_derivation_pb2 as planning_pb2
from td_pipeline.gen.fleet.task_derivation.v1 import task_derivation_pb2_grpc as planning_grpc
from td_pipeline.infrastructure.subjects import (
    DERIVATION_COMPLETED,
    DERIVATION_FAILED,
    DERIVATION_REQUESTED,
)
from td_pipeline.sandbox.fleet import STORE_FILE_NAME, LocalFleet, read_env_file
from td_pipeline.sandbox.llm import LlmBackend, OfflinePlanner, OpenAICompatibleLlm, ReplayLlm
from td_pipeline.sandbox.planning import PlanningFaults, PlanningStore

DEFAULT_STATE_DIR = Path(".sandbox")
CONNECT_TIMEOUT_SECONDS = 3.0
EXIT_OK, EXIT_UNREACHABLE = 0, 1


class Unreachable(Exception):
    """A server could not be reached; the message is the one line the user sees."""


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sandbox = subcommands.add_parser("sandbox", help="the local fleet (NATS, Planning, ...)")
    sandbox_commands = sandbox.add_subparsers(dest="sandbox_command", required=True)
    up = sandbox_commands.add_parser("up", help="start the local fleet until interrupted")
    _state_dir_option(up)
    up.add_argument("--llm", choices=("offline", "openai", "replay"), default="offline")
    up.add_argument("--llm-url", help="OpenAI-compatible base URL (with --llm openai)")
    up.add_argument("--llm-model", default="", help="model name (with --llm openai)")
    up.add_argument("--replay-dir", type=Path, help="canned answers per story (--llm replay)")
    faults = up.add_argument_group("Planning fault knobs (for trying failure handling)")
    faults.add_argument("--planning-latency", type=float, default=0.0, metavar="SECONDS")
    faults.add_argument(
        "--planning-fail-after",
        type=int,
        metavar="N",
        help="CreateTasks fails with UNAVAILABLE after N more tasks (once)",
    )
    faults.add_argument(
        "--planning-unavailable-for",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="every Planning RPC is UNAVAILABLE for this long after start",
    )
    up.set_defaults(handler=_guarded(sandbox_up))

    request = subcommands.add_parser("request", help="publish a derivation request")
    _state_dir_option(request)
    request.add_argument("--plan", required=True)
    request.add_argument("--story", required=True)
    request.add_argument("--roles", default="DEVELOPER", help="comma-separated roles")
    request.add_argument("--envelope", action="store_true", help="wrap in the fleet envelope")
    request.add_argument("--nats-url")
    request.set_defaults(handler=_guarded(request_derivation))

    watch = subcommands.add_parser("watch", help="print derivation events as they arrive")
    _state_dir_option(watch)
    watch.add_argument("--nats-url")
    watch.add_argument("--count", type=int, help="stop after this many events")
    watch.add_argument("--timeout", type=float, help="stop after this many seconds")
    watch.add_argument("--json", action="store_true", help="print each event as JSON")
    watch.set_defaults(handler=_guarded(watch_events))

    tasks = subcommands.add_parser("tasks", help="the tasks Planning holds for a story")
    _state_dir_option(tasks)
    tasks.add_argument("--story", required=True)
    tasks.add_argument("--planning-address")
    tasks.set_defaults(handler=_guarded(show_tasks))


def _state_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)


def _guarded(handler: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            exit_code: int = handler(args)
            return exit_code
        except Unreachable as error:
            print(f"td-pipeline: {error}", file=sys.stderr)
            return EXIT_UNREACHABLE

    return run


def _address(args: argparse.Namespace, flag: str | None, variable: str) -> str:
    value = flag or os.environ.get(variable) or read_env_file(args.state_dir).get(variable)
    if not value:
        raise Unreachable(
            f"no {variable}: pass it, export it, or start `td-pipeline sandbox up` first"
        )
    return value


# --- sandbox up -------------------------------------------------------------------------------


def _backend(args: argparse.Namespace) -> LlmBackend:
    if args.llm == "openai":
        if not args.llm_url:
            raise Unreachable("--llm openai needs --llm-url")
        return OpenAICompatibleLlm(args.llm_url, args.llm_model)
    if args.llm == "replay":
        if args.replay_dir is None:
            raise Unreachable("--llm replay needs --replay-dir")
        return ReplayLlm(args.replay_dir)
    return OfflinePlanner()


def sandbox_up(args: argparse.Namespace) -> int:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    faults = PlanningFaults(
        fail_after_creates=args.planning_fail_after, latency_seconds=args.planning_latency
    )
    if args.planning_unavailable_for:
        faults.unavailable_for(args.planning_unavailable_for)
    with LocalFleet(args.state_dir, backend=_backend(args), faults=faults) as fleet:
        for line in fleet.env_lines():
            print(line)
        print(f"# written to {args.state_dir / 'sandbox.env'}; Ctrl-C stops", flush=True)
        stop.wait()
    print("# sandbox stopped", flush=True)
    return EXIT_OK


# --- NATS commands ----------------------------------------------------------------------------


async def _quiet(error: Exception) -> None:
    """nats-py logs connection errors with a traceback; we report them in one line instead."""


async def _connect(url: str) -> Client:
    try:
        return await asyncio.wait_for(
            nats.connect(
                url,
                connect_timeout=2,
                max_reconnect_attempts=0,
                allow_reconnect=False,
                error_cb=_quiet,
            ),
            CONNECT_TIMEOUT_SECONDS,
        )
    except (TimeoutError, NatsTimeoutError) as error:
        raise Unreachable(
            f"cannot reach NATS at {url}: no answer within {CONNECT_TIMEOUT_SECONDS:.0f}s"
        ) from error
    except (OSError, NoServersError) as error:
        raise Unreachable(f"cannot reach NATS at {url}: {error}") from error


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
    url = _address(args, args.nats_url, "NATS_URL")
    body = request_payload(args)

    async def publish() -> int:
        connection = await _connect(url)
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


def describe_event(subject: str, body: dict[str, Any]) -> str:
    outcome = subject.rsplit(".", 1)[-1]
    story, plan = body.get("story_id"), body.get("plan_id")
    if outcome == "completed":
        return f"completed  {story}  plan={plan}  tasks={body.get('task_count')}"
    review = "manual review" if body.get("requires_manual_review") else "will retry"
    return f"failed     {story}  plan={plan}  ({review}) {body.get('reason')}"


def watch_events(args: argparse.Namespace) -> int:
    url = _address(args, args.nats_url, "NATS_URL")

    async def watch() -> None:
        connection = await _connect(url)
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


# --- Planning ---------------------------------------------------------------------------------


def show_tasks(args: argparse.Namespace) -> int:
    address = _address(args, args.planning_address, "PLANNING_SERVICE_ADDRESS")
    with grpc.insecure_channel(address) as channel:
        planning = planning_grpc.TaskDerivationPlanningServiceStub(channel)
        try:
            answer = planning.ListStoryTasks(
                planning_pb2.ListStoryTasksRequest(story_id=args.story), timeout=5
            )
        except grpc.RpcError as error:
            raise Unreachable(f"Planning at {address}: {error.code().name}") from error
    if not answer.tasks:
        print(f"Planning holds no task for {args.story}")
        return EXIT_OK
    print(f"{len(answer.tasks)} task(s) for {args.story}:")
    for task in answer.tasks:
        print(f"  {task.task_id}  [{task.assigned_role}] p{task.priority}  {task.title}")
    # ListStoryTasks has no dependencies; the sandbox reads them from its own store.
    store_file = args.state_dir / STORE_FILE_NAME
    if store_file.is_file():
        titles = {task.task_id: task.title for task in answer.tasks}
        dependencies = PlanningStore(store_file).dependencies(args.story)
        print(f"{len(dependencies)} dependenc{'y' if len(dependencies) == 1 else 'ies'}:")
        for edge in dependencies:
            print(
                f"  {titles.get(edge.from_task_id, edge.from_task_id)}"
                f"  needs  {titles.get(edge.to_task_id, edge.to_task_id)}"
            )
    return EXIT_OK
