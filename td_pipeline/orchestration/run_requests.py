"""How a tick's work becomes run requests: a story's own partition run, or a batched run
serving many stories (`batch_jobs` says how a batch runs), with the tags that find them again."""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from td_pipeline.application.batching import RunPlan
from td_pipeline.orchestration.attempt_queries import batch_in_flight, own_run_in_flight
from td_pipeline.orchestration.attempts import (
    BATCH_STEP,
    CONFIGURED_STEP,
    BatchedStory,
    Phase,
    attempt_tags,
    batch_tags,
)
from td_pipeline.orchestration.jobs import derive_job, persist_job

PRIORITY_TAG = "dagster/priority"
JOB_OF_PHASE = {Phase.DERIVE: derive_job.name, Phase.PERSIST: persist_job.name}
BATCH_JOB_OF_PHASE = {Phase.DERIVE: "derive_tasks_batch", Phase.PERSIST: "persist_tasks_batch"}


@dataclass(frozen=True, slots=True)
class StoryWork:
    """One story's phase to run: the config of the phase's first step (a story's run) or of
    its item (a batch), and the message it came from."""

    story: str
    phase: Phase
    config: dict[str, Any]
    message_key: str
    tags: dict[str, str] = field(default_factory=dict)  # shown on a story's own run

    @property
    def derivation_id(self) -> str:
        return str(self.config["derivation_id"])

    @property
    def attempt(self) -> int:
        return int(self.config.get("attempt", 1))


def _phase_tags(phase: Phase) -> dict[str, str]:
    # Persist runs go ahead of queued derive runs: finish the stories already started first.
    return {PRIORITY_TAG: "1"} if phase is Phase.PERSIST else {}


def story_run_request(work: StoryWork) -> dg.RunRequest:
    """The phase for one story in its own partition run (as before batching), keyed by the
    message it came from."""
    return dg.RunRequest(
        job_name=JOB_OF_PHASE[work.phase],
        run_key=work.message_key,
        partition_key=work.story,
        run_config={"ops": {CONFIGURED_STEP[work.phase].value: {"config": work.config}}},
        tags={
            **attempt_tags(work.phase, work.derivation_id, work.attempt),
            **_phase_tags(work.phase),
            **work.tags,
        },
    )


def batch_run_request(works: Sequence[StoryWork], run_key: str) -> dg.RunRequest:
    phase = works[0].phase
    return dg.RunRequest(
        job_name=BATCH_JOB_OF_PHASE[phase],
        run_key=run_key,
        run_config={
            "ops": {
                BATCH_STEP[phase]: {
                    "config": {"stories": [{"story": w.story, **w.config} for w in works]}
                }
            }
        },
        tags={
            **batch_tags(
                phase, [BatchedStory(w.story, w.derivation_id, w.message_key) for w in works]
            ),
            **_phase_tags(phase),
        },
    )


def batch_run_key(works: Sequence[StoryWork]) -> str:
    """The same messages make the same key (a tick thrown away and done again)."""
    keys = "\n".join(sorted(work.message_key for work in works))
    return "batch:" + hashlib.sha256(keys.encode()).hexdigest()[:24]


def run_requests(plan: RunPlan[StoryWork]) -> list[dg.RunRequest]:
    """The runs `batching.plan_runs` decided on."""
    return [
        *(batch_run_request(batch, batch_run_key(batch)) for batch in plan.batches),
        *(story_run_request(work) for work in plan.alone),
    ]


def story_of(work: StoryWork) -> str:
    return work.story


def stories_in_flight(
    instance: dg.DagsterInstance, works: Sequence[StoryWork]
) -> tuple[set[str], set[str]]:
    """Of the works' stories, those a batch in flight serves, and those whose own run is in
    flight (an indexed lookup or two per story). An answer's story is not held up by the derive
    batch that handed it to the LLM (a batch waiting for LLM slots for its other stories is
    done with this one): only a persist batch counts for answers."""
    in_batch: set[str] = set()
    own: set[str] = set()
    for story, phase in {(work.story, work.phase) for work in works}:
        if batch_in_flight(instance, story, Phase.PERSIST if phase is Phase.PERSIST else None):
            in_batch.add(story)
        elif own_run_in_flight(instance, story):
            own.add(story)
    return in_batch, own
