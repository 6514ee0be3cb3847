"""Batched runs: one run carries a phase (derive or persist) for many stories.

Why not a ranged run over the story partitions: a range is the slice between two keys in the
order the partitions were added, so a queue of re-derived stories is no range. A batched run
is a plain job whose one op is given the stories in its config and runs, for each in turn, the
same step functions as the story's assets. Each story's steps report `AssetMaterialization`s
(and asset check evaluations) on the story's own partition, with the same metadata: in the UI
a story served by a batch looks like a story served by its own run.

A story whose step fails does not stop the others. The op fails at the end, naming the failed
stories in its failure's metadata, and `batch_fallback_sensor` runs each of them again alone
(same derivation, same attempt): from there the failure rules of a story's own run apply (its
failed event, the retry schedule), unchanged. A batched run that died (its worker killed)
leaves stories that were never reached: they are run again, batched again. Dagster's run
retries are off for batched runs (`dagster/max_retries: 0`): they would redo the stories the
run had finished. (No `from __future__ import annotations`: Dagster reads the config and
resource types from real annotations.)"""

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

import dagster as dg

from td_pipeline.application.ports import Unavailable
from td_pipeline.orchestration.asset_steps import AssetStep
from td_pipeline.orchestration.attempts import BATCH_STEP, Phase
from td_pipeline.orchestration.derive_assets import (
    DerivationRunConfig,
    plan_context_step,
    prompt_step,
    story_context_step,
    submission_step,
)
from td_pipeline.orchestration.llm_admission import LlmGate
from td_pipeline.orchestration.partitions import story_of_partition
from td_pipeline.orchestration.persist_assets import (
    ProposalConfig,
    planning_tasks_step,
    proposal_step,
    task_graph_step,
)
from td_pipeline.orchestration.resources import (
    ContextResource,
    DerivationSettings,
    NatsResource,
    PlanningResource,
    RayExecutorResource,
)
from td_pipeline.orchestration.run_requests import BATCH_JOB_OF_PHASE

FAILED_STORIES = "failed_stories"  # the batch op's failure metadata: one story per line
NO_RUN_RETRIES = {"dagster/max_retries": "0"}


class _StoryItem(Protocol):
    @property
    def story(self) -> str: ...


ItemT = TypeVar("ItemT", bound=_StoryItem)


class DeriveItem(DerivationRunConfig):
    story: str


class DeriveBatchConfig(dg.Config):
    stories: list[DeriveItem]


class PersistItem(ProposalConfig):
    story: str


class PersistBatchConfig(dg.Config):
    stories: list[PersistItem]


BatchEvent = dg.AssetMaterialization | dg.AssetCheckEvaluation


def _materialized(
    asset: AssetStep, story: str, metadata: dict[str, Any]
) -> dg.AssetMaterialization:
    return dg.AssetMaterialization(asset_key=asset.key, partition=story, metadata=metadata)


def _checked(asset: AssetStep, story: str, check: dg.AssetCheckResult) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(
        asset_key=asset.key,
        check_name=str(check.check_name),
        passed=check.passed,
        metadata=check.metadata,
        severity=check.severity,
        partition=story,
    )


def _why_failed(error: Exception) -> str:
    if isinstance(error, dg.Failure):
        return error.description or "the step failed"
    return f"{type(error).__name__}: {error}"


def _peer_was_out(error: Exception) -> bool:
    """The step failed because a peer stayed unavailable past the step's retries."""
    return isinstance(error.__cause__, Unavailable)


def _each_story(
    context: dg.OpExecutionContext,
    stories: Sequence[ItemT],
    steps: Callable[[ItemT], Iterator[BatchEvent]],
) -> Iterator[BatchEvent]:
    """Each story's steps in turn; their events are yielded (so written to the event log) as
    they happen, so that a story's submission is on record before the next story starts.

    A story that failed because a peer stayed out past its retries (TD_TRANSIENT_RETRY_SECONDS)
    stops the batch: the stories after it would wait as long, one after the other. They are
    named failed too, so that each is run alone, in parallel, as before batching."""
    failed: dict[str, str] = {}
    for index, item in enumerate(stories):
        try:
            yield from steps(item)
        except Exception as error:  # one story's failure must not take the others with it
            failed[item.story] = _why_failed(error)
            context.log.warning(f"{item.story}: {failed[item.story]}")
            if _peer_was_out(error):
                for rest in stories[index + 1 :]:
                    failed[rest.story] = f"not tried: a peer was out for {item.story}"
                    context.log.warning(f"{rest.story}: {failed[rest.story]}")
                break
    if failed:
        raise dg.Failure(
            description=f"{len(failed)} of {len(stories)} stories failed; each is run again "
            "alone by batch_fallback_sensor, where the failure rules of a story's own run apply",
            metadata={FAILED_STORIES: "\n".join(failed)},
        )
    context.log.info(f"{len(stories)} stories done")


@dg.op(name=BATCH_STEP[Phase.DERIVE], out={})  # events only: no output to store
def derive_stories(
    context: dg.OpExecutionContext,
    config: DeriveBatchConfig,
    planning: PlanningResource,
    context_service: ContextResource,
    executor: RayExecutorResource,
    settings: DerivationSettings,
) -> Iterator[BatchEvent]:
    """The derive phase (plan_context -> story_context -> derivation_prompt ->
    executor_submission) for each story of the batch, one story after the other."""
    gate = LlmGate(
        context.instance, context.run.run_id, executor.client(), settings, context.log.info
    )

    def steps(item: DeriveItem) -> Iterator[BatchEvent]:
        story = item.story
        planned = plan_context_step(context, story_of_partition(story), item, planning, settings)
        yield _materialized(AssetStep.PLAN_CONTEXT, story, planned.metadata)
        contexts = story_context_step(context, planned.value, context_service, settings)
        yield _materialized(AssetStep.STORY_CONTEXT, story, contexts.metadata)
        prompt = prompt_step(planned.value, contexts.value, settings)
        yield _materialized(AssetStep.DERIVATION_PROMPT, story, prompt.metadata)
        submitted = submission_step(context, planned.value, prompt.value, executor, settings, gate)
        yield _materialized(AssetStep.EXECUTOR_SUBMISSION, story, submitted.metadata)

    yield from _each_story(context, config.stories, steps)


@dg.op(name=BATCH_STEP[Phase.PERSIST], out={})  # events only: no output to store
def persist_stories(
    context: dg.OpExecutionContext,
    config: PersistBatchConfig,
    planning: PlanningResource,
    nats: NatsResource,
    settings: DerivationSettings,
) -> Iterator[BatchEvent]:
    """The persist phase (llm_proposal -> task_graph -> planning_tasks, with their checks)
    for each story of the batch, one story after the other."""

    def steps(item: PersistItem) -> Iterator[BatchEvent]:
        story = item.story
        proposal = proposal_step(story_of_partition(story), item)
        yield _materialized(AssetStep.LLM_PROPOSAL, story, proposal.metadata)
        graph = task_graph_step(proposal.value, settings)
        assert graph.step is not None  # the step raises rather than fail its check
        yield _materialized(AssetStep.TASK_GRAPH, story, graph.step.metadata)
        yield _checked(AssetStep.TASK_GRAPH, story, graph.check)
        persisted = planning_tasks_step(
            context, story, proposal.value, graph.step.value, planning, nats, settings
        )
        yield _checked(AssetStep.PLANNING_TASKS, story, persisted.check)
        if persisted.failure is not None:
            raise persisted.failure
        assert persisted.step is not None
        yield _materialized(AssetStep.PLANNING_TASKS, story, persisted.step.metadata)

    yield from _each_story(context, config.stories, steps)


@dg.job(
    name=BATCH_JOB_OF_PHASE[Phase.DERIVE],
    executor_def=dg.in_process_executor,
    tags=NO_RUN_RETRIES,
    description="The derive phase for many stories in one run (a queue of requests); each "
    "story's materializations land on its own partition.",
)
def derive_batch_job() -> None:
    derive_stories()


@dg.job(
    name=BATCH_JOB_OF_PHASE[Phase.PERSIST],
    executor_def=dg.in_process_executor,
    tags=NO_RUN_RETRIES,
    description="The persist phase for many stories in one run (a queue of answers); each "
    "story's materializations and checks land on its own partition.",
)
def persist_batch_job() -> None:
    persist_stories()
