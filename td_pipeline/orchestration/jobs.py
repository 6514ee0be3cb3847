"""The two jobs of a derivation: up to the executor, and from the LLM's answer onwards."""

from __future__ import annotations

import dagster as dg

DERIVE = "derive"  # the asset groups: up to the executor, and from the answer on
PERSIST = "persist"

derive_job = dg.define_asset_job(
    name="derive_tasks",
    selection=dg.AssetSelection.groups(DERIVE),
    executor_def=dg.in_process_executor,  # a process per step costs seconds each
    description="Fetch the plan and context, build the prompt, submit it to the Ray Executor.",
)

persist_job = dg.define_asset_job(
    name="persist_tasks",
    selection=dg.AssetSelection.groups(PERSIST),
    executor_def=dg.in_process_executor,
    description="Parse and validate the LLM's answer, then create tasks and dependencies.",
)

retry_job = dg.define_asset_job(
    name="retry_derivation",
    selection=dg.AssetSelection.groups(DERIVE, PERSIST),
    executor_def=dg.in_process_executor,
    description="A failed attempt again, from the step that failed (launched by the "
    "retry schedule and `td-pipeline retry-failed` with a subset of the assets).",
)
