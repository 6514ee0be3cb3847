"""The steps of the asset graph by name, each phase's in the order the graph runs them. Each
asset is named after its function (`derive_assets`, `persist_assets`); every other module (the
batched ops, what a run's failure means, the retry schedule, the fallback, the queries) names
an asset from here, and a test fails when the definitions and this list differ."""

from __future__ import annotations

from enum import StrEnum

import dagster as dg


class AssetStep(StrEnum):
    PLAN_CONTEXT = "plan_context"
    STORY_CONTEXT = "story_context"
    DERIVATION_PROMPT = "derivation_prompt"
    EXECUTOR_SUBMISSION = "executor_submission"
    LLM_PROPOSAL = "llm_proposal"
    TASK_GRAPH = "task_graph"
    PLANNING_TASKS = "planning_tasks"

    @property
    def key(self) -> dg.AssetKey:
        return dg.AssetKey(self.value)


DERIVE_STEPS = (
    AssetStep.PLAN_CONTEXT,
    AssetStep.STORY_CONTEXT,
    AssetStep.DERIVATION_PROMPT,
    AssetStep.EXECUTOR_SUBMISSION,
)
PERSIST_STEPS = (AssetStep.LLM_PROPOSAL, AssetStep.TASK_GRAPH, AssetStep.PLANNING_TASKS)
