"""`--llm-slots`, `--llm-seconds` and `--llm-timeout-seconds`: how the executor stand-in's LLM
behaves under load. Declared and read here only, for `td-pipeline sandbox up` and
`td-pipeline bench e2e` alike."""

from __future__ import annotations

import argparse
import math

from td_pipeline.sandbox.llm_capacity import DEFAULT_TIMEOUT_SECONDS, LlmCapacity


def add_llm_capacity_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "LLM capacity (the executor stand-in plays a GPU cluster: it accepts every job at once, "
        "as the real executor does, and serves them in arrival order)"
    )
    group.add_argument(
        "--llm-slots",
        type=int,
        metavar="N",
        help="jobs served at a time, the rest queued (default: as many as are submitted); "
        "needs --llm-seconds",
    )
    group.add_argument(
        "--llm-seconds",
        type=float,
        metavar="S",
        help="seconds each job is served before its answer goes out (the LLM back-end's "
        "answer; default: no capacity model, answers at once)",
    )
    group.add_argument(
        "--llm-timeout-seconds",
        type=float,
        metavar="S",
        help="a job queued and served this long in all is published as agent.response.failed "
        f"with error_type TimeoutError (default: {DEFAULT_TIMEOUT_SECONDS:g}, as the fleet's "
        "agent job); needs --llm-seconds",
    )


def llm_capacity_from(args: argparse.Namespace) -> LlmCapacity | None:
    """The capacity the flags ask for, or None for none (answers at once, as before);
    ValueError naming the flag when they make no sense."""
    if args.llm_seconds is None:
        if args.llm_slots is not None:
            raise ValueError("--llm-slots needs --llm-seconds")
        if args.llm_timeout_seconds is not None:
            raise ValueError("--llm-timeout-seconds needs --llm-seconds")
        return None
    if args.llm_slots is not None and args.llm_slots < 1:
        raise ValueError(f"--llm-slots must be at least 1, not {args.llm_slots}")
    timeout = (
        DEFAULT_TIMEOUT_SECONDS if args.llm_timeout_seconds is None else args.llm_timeout_seconds
    )
    return LlmCapacity(
        args.llm_slots,
        _seconds(args.llm_seconds, "--llm-seconds"),
        _seconds(timeout, "--llm-timeout-seconds"),
    )


def _seconds(value: float, flag: str) -> float:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{flag} must be a number of seconds above 0, not {value:g}")
    return value
