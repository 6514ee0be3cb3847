"""`td-pipeline retry-failed [--dry-run]`: what the retry schedule would do, now.

Reads the Dagster instance in $DAGSTER_HOME, lists the stories whose latest attempt failed
with the decision the retry schedule takes (the same function), and launches the retries through
`dagster job launch -m td_pipeline.orchestration.definitions` (the installed package; no
workspace file needed), so that they queue like any other run. The daemon finds the run's code
location by name: `--workspace` launches through a workspace file instead, for a deployment
whose code location has another name."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from td_pipeline.application.retries import Retry
from td_pipeline.orchestration.attempts import PARTITION_TAG
from td_pipeline.orchestration.jobs import retry_job
from td_pipeline.orchestration.retry_schedule import FailedStory, failed_stories, retry_launch
from td_pipeline.settings import SettingsError, read_settings

EXIT_OK, EXIT_LAUNCH_FAILED, EXIT_USAGE = 0, 1, 2
DEFINITIONS_MODULE = "td_pipeline.orchestration.definitions"


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "retry-failed",
        description="Lists the stories whose latest derivation attempt failed and what the "
        "retry schedule decides for each; launches the retries unless --dry-run. Reads the Dagster "
        "instance in $DAGSTER_HOME.",
    )
    parser.add_argument("--dry-run", action="store_true", help="list, launch nothing")
    parser.add_argument(
        "--max-attempts",
        type=int,
        default=None,
        help="per derivation (default: TD_MAX_ATTEMPTS, as the daemon's schedule reads it)",
    )
    parser.add_argument(
        "--workspace",
        type=Path,
        metavar="FILE",
        help=f"launch through this workspace file (default: the module {DEFINITIONS_MODULE})",
    )
    parser.set_defaults(handler=run)


def describe(failed: FailedStory) -> str:
    head = (
        f"{failed.story}: attempt {failed.latest.attempt} of {failed.latest.derivation_id} "
        f"failed while {failed.failure.stage.doing}"
    )
    if failed.in_flight:
        return f"{head} -> skipped: a run is in flight"
    if isinstance(failed.decision, Retry):
        return (
            f"{head} -> {failed.decision.restart.value} as attempt {failed.decision.next_attempt}"
        )
    return f"{head} -> left for manual review: {failed.decision.why}"


def code_location(workspace: Path | None) -> tuple[str, str]:
    """How `dagster job launch` finds the job: the given workspace, else the package's module."""
    return ("-w", str(workspace)) if workspace else ("-m", DEFINITIONS_MODULE)


def run(args: argparse.Namespace) -> int:
    if not os.environ.get("DAGSTER_HOME"):
        print(
            "td-pipeline retry-failed: set DAGSTER_HOME to the daemon's instance "
            "(the demo's is .dagster_home)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        max_attempts = args.max_attempts or read_settings().max_attempts
    except SettingsError as error:
        print(f"td-pipeline retry-failed: {error}", file=sys.stderr)
        return EXIT_USAGE
    instance = dg.DagsterInstance.get()
    failed = failed_stories(instance, max_attempts)
    if not failed:
        print("no story's latest attempt failed")
        return EXIT_OK
    status = EXIT_OK
    for story in failed:
        print(describe(story))
        launch = retry_launch(instance, story)
        if launch is None or args.dry_run:
            continue
        command = [
            *(sys.executable, "-m", "dagster", "job", "launch"),
            *code_location(args.workspace),
            *("-j", retry_job.name),
            *("--op-selection", ",".join(launch.assets)),
            *("--config-json", json.dumps(launch.run_config)),
            *("--tags", json.dumps({**launch.tags, PARTITION_TAG: launch.story})),
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            print(f"  launch failed: {result.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            status = EXIT_LAUNCH_FAILED
        else:
            print("  launched")
    return status
