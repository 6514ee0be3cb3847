"""The one Definitions object of td-pipeline. Its resources read the settings
(`td_pipeline.settings`) when a run or a sensor tick starts, not when this module loads."""

from __future__ import annotations

import dagster as dg

from td_pipeline.orchestration.batch_fallback_sensor import batch_fallback_sensor
from td_pipeline.orchestration.batch_jobs import derive_batch_job, persist_batch_job
from td_pipeline.orchestration.derive_assets import (
    derivation_prompt,
    executor_submission,
    plan_context,
    story_context,
)
from td_pipeline.orchestration.failure_sensor import derivation_failure_sensor
from td_pipeline.orchestration.jobs import derive_job, persist_job, retry_job
from td_pipeline.orchestration.persist_assets import llm_proposal, planning_tasks, task_graph
from td_pipeline.orchestration.request_sensor import derivation_request_sensor
from td_pipeline.orchestration.result_sensor import derivation_result_sensor
from td_pipeline.orchestration.retry_schedule import failed_derivation_retries
from td_pipeline.orchestration.settings_wiring import resources_from_environment
from td_pipeline.orchestration.watchdog_sensor import llm_watchdog_sensor

defs = dg.Definitions(
    assets=[
        plan_context,
        story_context,
        derivation_prompt,
        executor_submission,
        llm_proposal,
        task_graph,
        planning_tasks,
    ],
    jobs=[derive_job, persist_job, retry_job, derive_batch_job, persist_batch_job],
    sensors=[
        derivation_request_sensor,
        derivation_result_sensor,
        llm_watchdog_sensor,
        derivation_failure_sensor,
        batch_fallback_sensor,
    ],
    schedules=[failed_derivation_retries],
    resources=resources_from_environment(),
)
