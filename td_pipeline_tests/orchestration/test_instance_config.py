"""The repository's dagster.yaml is a valid instance config with the limits we rely on."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
from dagster._core.run_coordinator import QueuedRunCoordinator

DAGSTER_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"


def test_dagster_loads_the_instance_config(tmp_path: Path) -> None:
    shutil.copy(DAGSTER_YAML, tmp_path / "dagster.yaml")

    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        coordinator = instance.run_coordinator
        assert isinstance(coordinator, QueuedRunCoordinator)
        assert coordinator.get_run_queue_config().tag_concurrency_limits == [
            {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
            # Derive runs wait inside for LLM slots: they never hold every run slot.
            {"key": "td/phase", "value": "derive", "limit": 3},
        ]
        assert instance.get_settings("telemetry")["enabled"] is False
        assert instance.get_settings("sensors")["use_threads"] is True
        # A run whose worker never started is relaunched by Dagster within about a minute; a
        # run that failed in a step is not (the failed event and the retry schedule decide).
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_start_timeout_seconds == 60
        assert instance.run_monitoring_settings["poll_interval_seconds"] == 10
        assert instance.run_retries_enabled and instance.run_retries_max_retries >= 1
        assert instance.run_retries_retry_on_asset_or_op_failure is False
