"""What `td-pipeline request | watch | tasks` share: where the fleet's servers are, and one
line instead of a traceback when one cannot be reached.

Addresses come from flags, else the settings (`td_pipeline.settings`: NATS_URL,
PLANNING_SERVICE_ADDRESS, ..., and NATS credentials and TLS as the pipeline uses them), else
`<state-dir>/sandbox.env` written by `td-pipeline sandbox up`. The sandbox's module is
imported only for that last look-up: a real fleet needs none of it."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError

from td_pipeline.infrastructure.connection_errors import nats_failure, redacted_url
from td_pipeline.infrastructure.nats_auth import nats_auth
from td_pipeline.settings import Settings, SettingsError, read_settings

DEFAULT_STATE_DIR = Path(".sandbox")  # where `td-pipeline sandbox up` writes sandbox.env
CONNECT_TIMEOUT_SECONDS = 3.0
EXIT_OK, EXIT_UNREACHABLE = 0, 1

Handler = Callable[[argparse.Namespace], int]


class Unreachable(Exception):
    """A server could not be reached; the message is the one line the user sees."""


def fleet_command(
    subcommands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, handler: Handler
) -> argparse.ArgumentParser:
    """The subcommand's parser, with `--state-dir`; `handler`'s Unreachable is one line."""
    parser = subcommands.add_parser(name)
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.set_defaults(handler=_guarded(handler))
    return parser


def _guarded(handler: Handler) -> Handler:
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except Unreachable as error:
            print(f"td-pipeline: {error}", file=sys.stderr)
            return EXIT_UNREACHABLE

    return run


_ADDRESSES: dict[str, Callable[[Settings], str]] = {
    "NATS_URL": lambda settings: settings.nats_url,
    "PLANNING_SERVICE_ADDRESS": lambda settings: settings.planning_address,
    "CONTEXT_SERVICE_ADDRESS": lambda settings: settings.context_address,
    "RAY_EXECUTOR_ADDRESS": lambda settings: settings.executor_address,
}


def settings() -> Settings:
    try:
        return read_settings()
    except SettingsError as error:
        raise Unreachable(str(error)) from None


def address(args: argparse.Namespace, flag: str | None, variable: str) -> str:
    value: str | None = flag or _ADDRESSES[variable](settings())
    if not value:
        from td_pipeline.sandbox.state_dir import read_env_file

        value = read_env_file(args.state_dir).get(variable)
    if not value:
        raise Unreachable(
            f"no {variable}: pass it, export it, or start `td-pipeline sandbox up` first"
        )
    return value


async def _quiet(error: Exception) -> None:
    """nats-py logs connection errors with a traceback; we report them in one line instead."""


async def connect_nats(url: str) -> Client:
    try:
        auth = nats_auth(settings())
    except SettingsError as error:
        raise Unreachable(str(error)) from None
    try:
        return await asyncio.wait_for(
            nats.connect(
                url,
                **auth.connect_options(),
                connect_timeout=2,
                max_reconnect_attempts=0,
                allow_reconnect=False,
                error_cb=_quiet,
            ),
            CONNECT_TIMEOUT_SECONDS,
        )
    except (TimeoutError, NatsTimeoutError) as error:
        raise Unreachable(
            f"cannot reach NATS at {redacted_url(url)}: no answer within "
            f"{CONNECT_TIMEOUT_SECONDS:.0f}s"
        ) from error
    except (OSError, NatsError) as error:
        raise Unreachable(f"cannot reach {nats_failure(url, error, auth)}") from None
