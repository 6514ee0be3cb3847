"""Runs on several hosts share their steps' outputs through S3 (`TD_IO_S3_*`): a story's plan
and context materialized by one process with its own DAGSTER_HOME, then its prompt step re-run
alone by another process with another DAGSTER_HOME, which loads both inputs from the store.
The store is moto's S3-compatible server on loopback; the fleet is the local one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import dagster as dg
import pytest
from moto.server import ThreadedMotoServer

from td_pipeline.devtools.dagster_processes import prepare_home
from td_pipeline.sandbox.fleet import LocalFleet
from td_pipeline.sandbox.planning_store import load_sample_stories

pytestmark = [pytest.mark.e2e, pytest.mark.runs_for(40)]

STORY, PLAN = "STORY-MFA", "PLAN-AUTH-1"
BUCKET, PREFIX = "td-runs", "td-pipeline"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture
def s3_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)  # any free port
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=url, **_boto(CREDENTIALS)).create_bucket(Bucket=BUCKET)
    yield url
    server.stop()


def _boto(credentials: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": credentials["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": credentials["AWS_SECRET_ACCESS_KEY"],
        "region_name": credentials["AWS_DEFAULT_REGION"],
    }


def materialize(
    home: Path, environment: dict[str, str], select: str, *config: str
) -> subprocess.CompletedProcess[str]:
    """`dagster asset materialize` of the story's partition, in a process and DAGSTER_HOME of
    its own (the story's partition added there first, as the request sensor would)."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("stories", [STORY])
    dagster = str(Path(sys.executable).with_name("dagster"))
    command = [dagster, "asset", "materialize", "-m", "td_pipeline.orchestration.definitions"]
    return subprocess.run(
        [*command, "--select", select, "--partition", STORY, *config],
        env={**os.environ, **environment, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_a_step_re_run_on_another_host_loads_its_inputs_from_s3(
    fleet: LocalFleet, s3_url: str, tmp_path: Path
) -> None:
    shared = {
        **fleet.environment(),
        **CREDENTIALS,
        "TD_IO_S3_BUCKET": BUCKET,
        "TD_IO_S3_ENDPOINT_URL": s3_url,
    }
    config = {"ops": {"plan_context": {"config": {"plan_id": PLAN, "derivation_id": "d-s3"}}}}
    first = materialize(
        prepare_home(tmp_path / "first-host"),
        shared,
        "plan_context,story_context",
        "--config-json",
        json.dumps(config),
    )
    assert first.returncode == 0, first.stderr[-4000:]

    # Without the shared store the other host has nothing to load: the re-run fails.
    local_only = {name: value for name, value in shared.items() if not name.startswith("TD_IO")}
    alone = materialize(prepare_home(tmp_path / "alone"), local_only, "derivation_prompt")
    assert alone.returncode != 0 and "plan_context" in alone.stderr

    second_home = prepare_home(tmp_path / "second-host")
    rerun = materialize(second_home, shared, "derivation_prompt")
    assert rerun.returncode == 0, rerun.stderr[-4000:]

    with dg.DagsterInstance.from_config(str(second_home)) as instance:
        prompts = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey("derivation_prompt"), asset_partitions=[STORY]
            ),
            limit=1,
        ).records
        inputs_made_here = instance.fetch_materializations(
            dg.AssetKey("plan_context"), limit=1
        ).records
    assert prompts and not inputs_made_here
    materialization = prompts[0].asset_materialization
    assert materialization is not None
    prompt = str(materialization.metadata["prompt"].value)
    (story,) = [story for story in load_sample_stories() if story.story_id == STORY]
    assert story.title in prompt  # built from the plan and context the first host stored
    stored = boto3.client("s3", endpoint_url=s3_url, **_boto(CREDENTIALS)).list_objects_v2(
        Bucket=BUCKET, Prefix=PREFIX
    )
    keys = {item["Key"] for item in stored.get("Contents", [])}
    assert keys == {
        f"{PREFIX}/{asset}/{STORY}"
        for asset in ("plan_context", "story_context", "derivation_prompt")
    }
