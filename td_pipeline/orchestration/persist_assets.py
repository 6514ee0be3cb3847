"""The persist phase of a story partition, from the LLM's answer on: llm_proposal -> task_graph
-> planning_tasks, with their checks. (No `from __future__ import annotations`: Dagster reads
the config and resource types from real annotations.)

Everything this phase needs of the derivation (plan, roles, criteria count, correlation id)
arrives in the run config, filled from the submission's record by the sensor that starts the
run: no output of the derive run is loaded, so the two runs may happen on different hosts or
code versions. Within the phase, outputs go through the configured IO manager (step re-runs
from the UI load them; use a shared one, e.g. S3, when runs do not share a disk)."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

import dagster as dg
from pydantic import Field

from td_pipeline.application.persistence import (
    PersistedGraph,
    missing_from_planning,
    persist_task_graph,
)
from td_pipeline.application.ports import PortError
from td_pipeline.domain.derivation import DerivationAttempt
from td_pipeline.domain.events import DerivationCompleted
from td_pipeline.domain.planning_limits import fit_for_planning
from td_pipeline.domain.roles import derivation_roles, role_from_text
from td_pipeline.domain.task_graph import TaskGraph
from td_pipeline.domain.validation import DerivationRules, InvalidProposal, validate_proposal
from td_pipeline.domain.values import DerivationId, PlanId, StoryId
from td_pipeline.orchestration.asset_steps import AssetStep
from td_pipeline.orchestration.attempt_queries import latest_submission
from td_pipeline.orchestration.attempts import RETRYABLE
from td_pipeline.orchestration.jobs import PERSIST
from td_pipeline.orchestration.outcomes import publish_outcome_once
from td_pipeline.orchestration.partitions import story_of_partition, story_partitions
from td_pipeline.orchestration.resources import (
    DerivationSettings,
    NatsResource,
    PlanningResource,
)
from td_pipeline.orchestration.step_failures import (
    Step,
    StepContext,
    final_failure,
    peer_failure,
    retryable_failure,
    riding_out_outages,
)
from td_pipeline.orchestration.task_graph_views import (
    graph_picture_markdown,
    task_table_markdown,
)

T = TypeVar("T")


class ProposalConfig(dg.Config):
    """The LLM's answer for one attempt, or why there is none (the executor failed, or the
    watchdog gave up waiting), and the attempt it answers. The result sensor and the watchdog
    fill it from the submission's record."""

    text: str = ""
    executor_error: str | None = None
    derivation_id: str
    attempt: int = 1
    plan_id: str
    roles: list[str] = Field(default_factory=list)
    acceptance_criteria: int = 0
    correlation_id: str | None = None


@dataclass(frozen=True, slots=True)
class ReceivedProposal:
    text: str
    attempt: DerivationAttempt
    criteria_count: int


def proposal_step(story_id: StoryId, config: ProposalConfig) -> Step[ReceivedProposal]:
    if config.executor_error is not None:
        raise dg.Failure(
            description=config.executor_error,
            metadata={RETRYABLE: True, "derivation_id": config.derivation_id},
        )
    try:
        proposal = ReceivedProposal(
            text=config.text,
            attempt=DerivationAttempt(
                plan_id=PlanId(config.plan_id),
                story_id=story_id,
                roles=derivation_roles(tuple(role_from_text(r) for r in config.roles), ()),
                derivation_id=DerivationId(config.derivation_id),
                attempt=config.attempt,
                correlation_id=config.correlation_id,
            ),
            criteria_count=config.acceptance_criteria,
        )
    except ValueError as error:
        raise final_failure(f"invalid run config: {error}") from error
    metadata = {
        "derivation_id": proposal.attempt.derivation_id.value,
        "attempt": proposal.attempt.attempt,
        "characters": len(proposal.text),
        "answer": dg.MetadataValue.md(f"```\n{proposal.text[:20_000]}\n```"),
    }
    return Step(proposal, metadata)


COVERAGE_CHECK = "acceptance_criteria_covered"
IN_PLANNING_CHECK = "tasks_in_planning"


@dataclass(frozen=True, slots=True)
class CheckedStep(Generic[T]):
    """A step with an asset check: the check's verdict goes out even when the step fails."""

    step: Step[T] | None
    check: dg.AssetCheckResult
    failure: dg.Failure | None = None


def task_graph_step(
    proposal: ReceivedProposal, settings: DerivationSettings
) -> CheckedStep[TaskGraph]:
    criteria = proposal.criteria_count
    rules = DerivationRules(
        allowed_roles=proposal.attempt.roles,
        criteria_count=criteria,
        task_count=settings.task_count(),
    )
    verdict = validate_proposal(proposal.text, rules)
    if isinstance(verdict, InvalidProposal):
        problems = "; ".join(f"[{i.code.value}] {i.message}" for i in verdict.issues)
        # Retryable: the next attempt asks the LLM again.
        raise dg.Failure(
            description=f"the LLM's answer is unusable: {problems}",
            metadata={RETRYABLE: True, "error_codes": ", ".join(verdict.codes)},
        )
    graph = verdict.graph
    fitted = fit_for_planning(graph.nodes)  # what persistence will send, shortened
    critical = graph.critical_path()
    metadata = {
        "tasks": len(graph.nodes),
        "dependencies": len(graph.edges),
        "critical_path_hours": critical.hours,
        "critical_path": " -> ".join(k.value for k in critical.keys),
        "waves": " | ".join(
            f"{n}: {', '.join(k.value for k in wave)}"
            for n, wave in enumerate(graph.waves(), start=1)
        ),
        "warnings": "\n".join((*verdict.warnings, *fitted.warnings)) or "none",
        # One entry, so that one click in the UI shows the table and the picture together.
        "tasks_and_graph": dg.MetadataValue.md(
            f"{task_table_markdown(graph, verdict.task_warnings())}\n\n"
            f"{graph_picture_markdown(graph)}"
        ),
    }
    uncovered = graph.uncovered_criteria(criteria)
    check = dg.AssetCheckResult(
        check_name=COVERAGE_CHECK,
        passed=not uncovered,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"uncovered": ", ".join(map(str, uncovered)) or "none"},
    )
    return CheckedStep(Step(graph, metadata), check)


def planning_tasks_step(
    context: StepContext,
    story: str,
    proposal: ReceivedProposal,
    graph: TaskGraph,
    planning: PlanningResource,
    nats: NatsResource,
    settings: DerivationSettings,
) -> CheckedStep[PersistedGraph]:
    attempt = proposal.attempt
    client = planning.client()
    try:
        # Safe to repeat: it lists what Planning holds first and creates only what is missing.
        persisted = riding_out_outages(
            context,
            settings,
            lambda: persist_task_graph(client, attempt.plan_id, attempt.story_id, graph),
        )
        held = riding_out_outages(
            context, settings, lambda: client.list_story_tasks(attempt.story_id)
        )
    except PortError as error:
        raise peer_failure(error) from error
    missing = missing_from_planning(persisted, held)
    check = dg.AssetCheckResult(
        check_name=IN_PLANNING_CHECK,
        passed=not missing,
        metadata={"tasks": len(persisted.task_ids), "missing": ", ".join(missing) or "none"},
    )
    if missing:
        # Retryable: the next run lists again and creates what Planning lacks.
        failure = retryable_failure(
            f"Planning does not hold tasks it returned ids for: {', '.join(missing)}"
        )
        return CheckedStep(None, check, failure)
    completed = DerivationCompleted(
        plan_id=attempt.plan_id,
        story_id=attempt.story_id,
        task_count=len(graph.nodes),
        occurred_at=datetime.now(UTC),
        derivation_request_id=attempt.derivation_id,
    )
    published = publish_outcome_once(
        context.instance, nats, story, completed, attempt.correlation_id
    )
    submission = latest_submission(context.instance, story)
    metadata = {
        "derivation_id": attempt.derivation_id.value,
        "seconds_since_submission": round(
            (completed.occurred_at - submission.submitted_at).total_seconds(), 1
        )
        if submission
        else "unknown",
        "completed_event": completed.message_id()
        + ("" if published else " (published before, not repeated)"),
        "created": len(persisted.created),
        "already_in_planning": len(persisted.reused),
        "dependencies": len(persisted.edges),
    }
    return CheckedStep(Step(persisted, metadata), check)


# The assets of one story partition: each runs its step and shows the step's metadata.


@dg.asset(
    partitions_def=story_partitions,
    group_name=PERSIST,
    deps=[AssetStep.EXECUTOR_SUBMISSION.key],  # lineage only: nothing of the derive run is loaded
)
def llm_proposal(context: dg.AssetExecutionContext, config: ProposalConfig) -> ReceivedProposal:
    """The LLM's raw answer, kept so later steps can be re-run without calling it again."""
    step = proposal_step(story_of_partition(context.partition_key), config)
    context.add_output_metadata(step.metadata)
    return step.value


@dg.asset(
    partitions_def=story_partitions,
    group_name=PERSIST,
    # Acyclicity and the task count are not checks here: an answer failing either is
    # refused before there is a graph, so such checks could only pass.
    check_specs=[dg.AssetCheckSpec(COVERAGE_CHECK, asset=AssetStep.TASK_GRAPH.key)],
)
def task_graph(
    llm_proposal: ReceivedProposal, settings: DerivationSettings
) -> Iterator[dg.Output[TaskGraph] | dg.AssetCheckResult]:
    """The answer parsed, validated and analysed (pure), with its checks."""
    checked = task_graph_step(llm_proposal, settings)
    assert checked.step is not None  # the step raises rather than fail its check
    yield dg.Output(checked.step.value, metadata=checked.step.metadata)
    yield checked.check


@dg.asset(
    partitions_def=story_partitions,
    group_name=PERSIST,
    kinds={"grpc"},
    check_specs=[dg.AssetCheckSpec(IN_PLANNING_CHECK, asset=AssetStep.PLANNING_TASKS.key)],
)
def planning_tasks(
    context: dg.AssetExecutionContext,
    llm_proposal: ReceivedProposal,
    task_graph: TaskGraph,
    planning: PlanningResource,
    nats: NatsResource,
    settings: DerivationSettings,
) -> Iterator[dg.Output[PersistedGraph] | dg.AssetCheckResult]:
    """The tasks and dependencies in Planning, under Planning's ids, never twice; then, once
    Planning is seen to hold every task under the id recorded, the completed event, once per
    derivation however often this is re-run."""
    checked = planning_tasks_step(
        context, context.partition_key, llm_proposal, task_graph, planning, nats, settings
    )
    yield checked.check
    if checked.failure is not None:
        raise checked.failure
    assert checked.step is not None
    yield dg.Output(checked.step.value, metadata=checked.step.metadata)
