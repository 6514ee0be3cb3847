"""What a run of ours is: its tags, its phase, the story (or stories) and attempt its config
names, read from the run alone. The queries that find runs on the instance are in
`attempt_queries`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import dagster as dg

from td_pipeline.application.retries import Stage
from td_pipeline.orchestration.asset_steps import DERIVE_STEPS, PERSIST_STEPS, AssetStep

PARTITION_TAG = "dagster/partition"
DERIVATION_TAG = "td/derivation_id"
ATTEMPT_TAG = "td/attempt"
PHASE_TAG = "td/phase"
RETRYABLE = "retryable"  # dg.Failure metadata: False when no retry can fix it
# On the persist run that records an LLM job that timed out or was lost: its story is asked
# again as soon as the LLM window has room (orchestration/resubmissions.py).
RESUBMIT_TAG = "td/resubmit"
RESUBMIT = "1"


class Phase(StrEnum):
    DERIVE = "derive"  # up to the executor; configured on plan_context
    PERSIST = "persist"  # from the answer on; configured on llm_proposal


PHASE_STEPS = {Phase.DERIVE: DERIVE_STEPS, Phase.PERSIST: PERSIST_STEPS}
CONFIGURED_STEP = {phase: steps[0] for phase, steps in PHASE_STEPS.items()}
STEP_STAGES = {
    AssetStep.PLAN_CONTEXT: Stage.SUBMISSION,
    AssetStep.STORY_CONTEXT: Stage.SUBMISSION,
    AssetStep.DERIVATION_PROMPT: Stage.SUBMISSION,
    AssetStep.EXECUTOR_SUBMISSION: Stage.SUBMISSION,
    AssetStep.LLM_PROPOSAL: Stage.ANSWER,
    AssetStep.TASK_GRAPH: Stage.VALIDATION,
    AssetStep.PLANNING_TASKS: Stage.PERSISTENCE,
}


def attempt_tags(phase: Phase, derivation_id: str, attempt: int) -> dict[str, str]:
    """Tags that let the UI (and people) filter runs by derivation and attempt."""
    return {PHASE_TAG: phase.value, DERIVATION_TAG: derivation_id, ATTEMPT_TAG: str(attempt)}


# A batched run serves many stories (orchestration/batch_jobs.py). It has no partition tag;
# these tags, one per story and per derivation, let the same indexed lookups find it.
BATCH_TAG = "td/batch"  # the number of stories a batched run serves
HANDLED = "1"
BATCH_STEP = {Phase.DERIVE: "derive_stories", Phase.PERSIST: "persist_stories"}


def _digest(text: str) -> str:
    # Story ids and message keys may hold characters a tag key should not: a digest never does.
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def story_tag(story: str) -> str:
    return f"td/story-{_digest(story)}"


def derivation_tag(derivation_id: str) -> str:
    return f"td/derivation-{_digest(derivation_id)}"


def message_tag(message_key: str) -> str:
    return f"td/message-{_digest(message_key)}"


@dataclass(frozen=True, slots=True)
class BatchedStory:
    """What a batched run records of each story it serves."""

    story: str
    derivation_id: str
    message_key: str  # the NATS message the story's item came from


def batch_tags(phase: Phase, stories: list[BatchedStory]) -> dict[str, str]:
    tags = {PHASE_TAG: phase.value, BATCH_TAG: str(len(stories))}
    for item in stories:
        tags[story_tag(item.story)] = item.story
        tags[derivation_tag(item.derivation_id)] = item.derivation_id
        tags[message_tag(item.message_key)] = HANDLED
    return tags


@dataclass(frozen=True, slots=True)
class RunAttempt:
    """A run of ours as far as one story goes: which phase of which attempt it carried out,
    with the story's config. A batched run is one RunAttempt per story it serves."""

    run: dg.DagsterRun
    phase: Phase
    story: str
    derivation_id: str
    attempt: int
    step_config: dict[str, Any]  # what the story's first step of the phase was given

    @property
    def batched(self) -> bool:
        return BATCH_TAG in self.run.tags


WILL_RETRY_TAG = "dagster/will_retry"


def relaunched_by_dagster(run: dg.DagsterRun) -> bool:
    """Dagster's run retries (dagster.yaml `run_retries`) launch this failed run again: it died
    before any step failed (a worker that never started, a killed daemon). Not a failed
    derivation attempt: no failed event, no retry of ours."""
    return run.tags.get(WILL_RETRY_TAG, "").lower() == "true"


def _ops(run: dg.DagsterRun) -> dict[str, Any]:
    ops = run.run_config.get("ops", {}) if isinstance(run.run_config, dict) else {}
    return ops if isinstance(ops, dict) else {}


def _step_config(ops: dict[str, Any], step: str) -> Any:
    op = ops.get(step)
    return op.get("config") if isinstance(op, dict) else None


def run_attempt(run: dg.DagsterRun) -> RunAttempt | None:
    """A story partition's run, read from the run config, so that runs launched by hand from
    the CLI count too."""
    ops = _ops(run)
    for phase, step in CONFIGURED_STEP.items():
        config = _step_config(ops, step)
        if isinstance(config, dict) and config.get("derivation_id"):
            return RunAttempt(
                run,
                phase,
                run.tags.get(PARTITION_TAG, ""),
                str(config["derivation_id"]),
                int(config.get("attempt", 1)),
                config,
            )
    return None


def run_attempts(run: dg.DagsterRun) -> list[RunAttempt]:
    """Every story's attempt in a run: one for a story's run, one per story for a batch."""
    if BATCH_TAG not in run.tags:
        single = run_attempt(run)
        return [single] if single is not None else []
    ops = _ops(run)
    for phase, step in BATCH_STEP.items():
        config = _step_config(ops, step)
        items = config.get("stories") if isinstance(config, dict) else None
        if isinstance(items, list):
            return [
                RunAttempt(
                    run,
                    phase,
                    str(item["story"]),
                    str(item["derivation_id"]),
                    int(item.get("attempt", 1)),
                    {key: value for key, value in item.items() if key != "story"},
                )
                for item in items
                if isinstance(item, dict)
            ]
    return []
