"""`td-pipeline retry-failed` and the daemon's retry schedule read the attempt cap from the same
setting (TD_MAX_ATTEMPTS), so the CLI never relaunches a story the daemon gave up on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from td_pipeline.commands.retry_failed import DEFINITIONS_MODULE
from td_pipeline.devtools.dagster_processes import WORKSPACE, prepare_home
from td_pipeline.orchestration.retry_schedule import failed_derivation_retries
from td_pipeline.orchestration.settings_wiring import resources_from_environment

pytestmark = pytest.mark.pipeline  # Dagster runs: in `make e2e`, not the fast tier

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
        result = failed_derivation_retries(context)
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


def test_the_retry_is_queued_from_the_installed_module_without_a_workspace_file(
    home: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"  # no workspace.yaml here or above
    elsewhere.mkdir()
    launched = subprocess.run(
        [str(Path(sys.executable).with_name("td-pipeline")), "retry-failed"],
        cwd=elsewhere,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert launched.returncode == 0, launched.stdout + launched.stderr
    assert "launched" in launched.stdout
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs(dg.RunsFilter(job_name="retry_derivation"))
    assert run.status == dg.DagsterRunStatus.QUEUED  # for the daemon, like any other run
    assert run.tags["dagster/partition"] == STORY
    # The daemon finds the run's code location by name: the repository's workspace.yaml loads
    # the same module under its default name.
    assert run.remote_job_origin is not None
    assert run.remote_job_origin.location_name == DEFINITIONS_MODULE
    (location,) = yaml.safe_load(WORKSPACE.read_text())["load_from"]
    assert location == {
        "python_module": {"module_name": DEFINITIONS_MODULE, "working_directory": "."}
    }
