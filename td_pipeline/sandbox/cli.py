"""`td-pipeline sandbox up`: start the local fleet on loopback until interrupted.

Prints the fleet's addresses and writes them to `<state-dir>/sandbox.env`, where
`td-pipeline request | watch | tasks` find them. With `--llm-seconds` (the executor's LLM under
load), also a `# llm: …` line each second the executor's jobs changed. A bad option, or the
`sandbox` extra not installed, gives one line on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from td_pipeline.sandbox.executor import RunningExecutor
from td_pipeline.sandbox.fleet import LocalFleet
from td_pipeline.sandbox.llm import LlmBackend
from td_pipeline.sandbox.llm_capacity import LlmCapacity, LlmLoad
from td_pipeline.sandbox.llm_flags import add_llm_capacity_arguments, llm_capacity_from
from td_pipeline.sandbox.nats_server import NatsServerMissing, nats_server_binary
from td_pipeline.sandbox.offline_planner import OfflinePlanner
from td_pipeline.sandbox.openai_llm import OpenAICompatibleLlm
from td_pipeline.sandbox.planning import PlanningFaults
from td_pipeline.sandbox.replay_llm import ReplayLlm
from td_pipeline.sandbox.secure_fleet import Login
from td_pipeline.sandbox.state_dir import DEFAULT_STATE_DIR, ENV_FILE_NAME, FLEET_ENV_FILE_NAME

EXIT_OK, EXIT_CANNOT_START = 0, 1
LOAD_LINE_SECONDS = 1.0  # with --llm-seconds: the executor's jobs, at most this often


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sandbox = subcommands.add_parser("sandbox")
    sandbox_commands = sandbox.add_subparsers(dest="sandbox_command", required=True)
    up = sandbox_commands.add_parser("up", help="start the local fleet until interrupted")
    up.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    up.add_argument("--llm", choices=("offline", "openai", "replay"), default="offline")
    up.add_argument("--llm-url", help="OpenAI-compatible base URL (with --llm openai)")
    up.add_argument("--llm-model", default="", help="model name (with --llm openai)")
    up.add_argument("--replay-dir", type=Path, help="canned answers per story (--llm replay)")
    up.add_argument(
        "--secure",
        action="store_true",
        help="TLS and a login on NATS (a user allowed only td-pipeline's subjects), mutual TLS "
        "on gRPC, with a throw-away CA in <state-dir>/tls",
    )
    up.add_argument(
        "--nats-login",
        choices=[login.value for login in Login],
        default=Login.PASSWORD.value,
        help="with --secure: td-pipeline's NATS user and password, or one token",
    )
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
    add_llm_capacity_arguments(up)
    up.set_defaults(handler=sandbox_up)


def _backend(args: argparse.Namespace) -> LlmBackend:
    if args.llm == "openai":
        if not args.llm_url:
            raise ValueError("--llm openai needs --llm-url")
        return OpenAICompatibleLlm(args.llm_url, args.llm_model)
    if args.llm == "replay":
        if args.replay_dir is None:
            raise ValueError("--llm replay needs --replay-dir")
        return ReplayLlm(args.replay_dir)
    return OfflinePlanner()


def _llm_capacity(args: argparse.Namespace) -> LlmCapacity | None:
    capacity = llm_capacity_from(args)
    if capacity is not None and args.llm == "openai":
        # A real endpoint has a capacity of its own; playing one on top would measure neither.
        raise ValueError("--llm-seconds plays the LLM's service time: not with --llm openai")
    return capacity


def sandbox_up(args: argparse.Namespace) -> int:
    try:
        nats_server_binary()  # before anything starts
        backend = _backend(args)
        capacity = _llm_capacity(args)
    except (NatsServerMissing, ValueError) as error:
        print(f"td-pipeline: {error}", file=sys.stderr)
        return EXIT_CANNOT_START
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    faults = PlanningFaults(
        fail_after_creates=args.planning_fail_after, latency_seconds=args.planning_latency
    )
    if args.planning_unavailable_for:
        faults.unavailable_for(args.planning_unavailable_for)
    fleet = LocalFleet(
        args.state_dir,
        backend=backend,
        faults=faults,
        secure=args.secure,
        login=Login(args.nats_login),
        llm_capacity=capacity,
    )
    with fleet:
        for line in fleet.env_lines(hide_secrets=True):
            print(line)
        print(f"# written to {args.state_dir / ENV_FILE_NAME}; Ctrl-C stops", flush=True)
        if args.secure:
            print(
                f"# requests as the fleet (td-pipeline's user may not publish them): "
                f"{args.state_dir / FLEET_ENV_FILE_NAME}",
                flush=True,
            )
        if capacity is None or fleet.executor is None:
            stop.wait()
        else:
            print(f"# the executor's LLM: {capacity.describe()}", flush=True)
            _print_load_until(stop, fleet.executor)
    print("# sandbox stopped", flush=True)
    return EXIT_OK


def _print_load_until(stop: threading.Event, executor: RunningExecutor) -> None:
    """A line each LOAD_LINE_SECONDS the jobs changed, and the last state when stopped."""
    shown: LlmLoad | None = None
    stopped = False
    while not stopped:
        stopped = stop.wait(LOAD_LINE_SECONDS)
        load = executor.servicer.load()
        if load is not None and load != shown:
            print(f"# llm: {load.describe()}", flush=True)
            shown = load
