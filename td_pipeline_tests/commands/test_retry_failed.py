"""`td-pipeline retry-failed` and the daemon's retry schedule read the attempt cap from the same
setting (TD_MAX_ATTEMPTS), so the CLI never relaunches a story the daemon gave up on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from td_pipeline.orchestration.backfill import failed_derivation_backfill
from td_pipeline.orchestration.resources import resources_from_environment
from td_pipeline.sandbox.dagster_processes import prepare_home

STORY = "STORY-REFUNDS"
DERIVE_CONFIG = {"plan_id": "PLAN-PAY-1", "derivation_id": "d-1"}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An instance whose only story failed its first attempt (its run died)."""
    home = prepare_home(tmp_path / "dagster_home")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_run(
            dg.DagsterRun(
                job_name="derive_tasks",
                status=dg.DagsterRunStatus.FAILURE,
                run_config={
                    "ops": {
                        "plan_context": {
                            "config": {"plan_id": "PLAN-PAY-1", "derivation_id": "d-1"}
                        }
                    }
                },
                tags={"dagster/partition": STORY, "td/derivation_id": "d-1"},
            )
        )
    return home


def retry_failed(home: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("td-pipeline")), "retry-failed", "--dry-run"],
        env={**os.environ, "DAGSTER_HOME": str(home), **variables},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def schedule_decides(home: Path, monkeypatch: pytest.MonkeyPatch, cap: str) -> bool:
    """True when the daemon's schedule, with its resources built from the environment,
    would launch a retry."""
    monkeypatch.setenv("TD_MAX_ATTEMPTS", cap)
    with (
        dg.DagsterInstance.from_config(str(home)) as instance,
        dg.build_schedule_context(
            instance=instance, resources={"settings": resources_from_environment()["settings"]}
        ) as context,
    ):
        result = failed_derivation_backfill(context)
    return isinstance(result, list) and len(result) == 1


@pytest.mark.parametrize(("cap", "retried"), [("1", False), ("3", True)])
def test_the_cli_and_the_schedule_agree_on_the_cap(
    home: Path, monkeypatch: pytest.MonkeyPatch, cap: str, retried: bool
) -> None:
    listed = retry_failed(home, TD_MAX_ATTEMPTS=cap)

    assert listed.returncode == 0, listed.stderr
    line = next(row for row in listed.stdout.splitlines() if row.startswith(STORY))
    assert ("as attempt 2" in line) is retried, line
    assert ("left for manual review: 1 of 1 attempts failed" in line) is not retried, line
    assert schedule_decides(home, monkeypatch, cap) is retried


def test_a_bad_cap_is_one_line_naming_the_variable(home: Path) -> None:
    listed = retry_failed(home, TD_MAX_ATTEMPTS="three")

    assert listed.returncode == 2 and listed.stdout == ""
    (line,) = listed.stderr.splitlines()
    assert line.startswith("td-pipeline retry-failed: bad setting: TD_MAX_ATTEMPTS:")
