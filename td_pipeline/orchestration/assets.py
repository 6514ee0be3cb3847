"""The derivation as Dagster assets, per story partition. (No `from __future__ import
annotations` here: Dagster reads the config and resource types from real annotations.)

derive:  plan_context -> story_context -> derivation_prompt -> executor_submission
persist: llm_proposal -> task_graph -> planning_tasks

Every value is stored, so any step can be re-run from the UI without calling the LLM again."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import dagster as dg
from pydantic import Field

from td_pipeline.application.persistence import (
    PersistedGraph,
    missing_from_planning,
    persist_task_graph,
)
from td_pipeline.application.ports import ExecutorSubmission, NotFound, PortError, Rejected
from td_pipeline.application.retries import retry_transient
from td_pipeline.domain.assessment import DerivationRules, InvalidProposal, assess_proposal
from td_pipeline.domain.derivation import DerivationAttempt
from td_pipeline.domain.events import DerivationCompleted
from td_pipeline.domain.plan import StoryPlan
from td_pipeline.domain.planning_limits import fit_for_planning
from td_pipeline.domain.prompt import DerivationBrief, DerivationPrompt, RoleContext, build_prompt
from td_pipeline.domain.roles import derivation_roles, role_from_text
from td_pipeline.domain.task_graph import TaskGraph
from td_pipeline.domain.values import DerivationId, PlanId, Role
from td_pipeline.infrastructure.prompt_templates import load_prompt_template
from td_pipeline.orchestration.attempts import RETRYABLE, latest_submission
from td_pipeline.orchestration.outcomes import publish_outcome_once
from td_pipeline.orchestration.partitions import story_of_partition, story_partitions
from td_pipeline.orchestration.resources import (
    ContextResource,
    DerivationSettings,
    NatsResource,
    PlanningResource,
    RayExecutorResource,
)
from td_pipeline.orchestration.task_graph_views import (
    graph_picture_markdown,
    task_table_markdown,
)

DERIVE = "derive"
PERSIST = "persist"
T = TypeVar("T")


class DerivationRunConfig(dg.Config):
    """What a derive run is asked to do (the sensor fills it from the request)."""

    plan_id: str
    roles: list[str] = Field(default_factory=list)  # empty: the plan's roles, else DEVELOPER
    derivation_id: str
    attempt: int = 1
    correlation_id: str | None = None


class ProposalConfig(dg.Config):
    """The LLM's answer for one attempt, or why there is none (the executor failed, or the
    watchdog gave up waiting). The result sensor and the watchdog fill it in."""

    text: str = ""
    executor_error: str | None = None
    derivation_id: str
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class PlannedDerivation:
    attempt: DerivationAttempt
    plan: StoryPlan


@dataclass(frozen=True, slots=True)
class SubmissionRecord:
    derivation_id: DerivationId
    deliberation_id: str
    attempt: int
    submitted_at: datetime


@dataclass(frozen=True, slots=True)
class ReceivedProposal:
    text: str
    derivation_id: DerivationId
    attempt: int


def _final(description: str) -> dg.Failure:
    """A failure no retry can fix: the failed event asks for manual review at once."""
    return dg.Failure(description=description, metadata={RETRYABLE: False})


def _failure(error: PortError) -> dg.Failure:
    # NotFound / Rejected cannot be fixed by a retry; Unavailable outlived the step's retries.
    if isinstance(error, NotFound | Rejected):
        return _final(str(error))
    return dg.Failure(description=str(error), metadata={RETRYABLE: True})


def _riding_out_outages(
    context: dg.AssetExecutionContext, settings: DerivationSettings, call: Callable[[], T]
) -> T:
    """UNAVAILABLE / DEADLINE_EXCEEDED are retried with backoff inside the step."""
    return retry_transient(
        call,
        settings.transient_retry_seconds,
        on_retry=lambda error, delay: context.log.warning(f"{error}; retrying in {delay:.1f}s"),
    )


@dg.asset(partitions_def=story_partitions, group_name=DERIVE, kinds={"grpc"})
def plan_context(
    context: dg.AssetExecutionContext,
    config: DerivationRunConfig,
    planning: PlanningResource,
    settings: DerivationSettings,
) -> PlannedDerivation:
    """The plan and story Planning holds, and the attempt this run belongs to."""
    story_id = story_of_partition(context.partition_key)
    try:
        plan_id = PlanId(config.plan_id)
        requested = tuple(role_from_text(role) for role in config.roles)
        plan = _riding_out_outages(context, settings, lambda: planning.client().get_plan(plan_id))
        attempt = DerivationAttempt(
            plan_id=plan_id,
            story_id=story_id,
            roles=derivation_roles(requested, plan.roles),
            derivation_id=DerivationId(config.derivation_id),
            attempt=config.attempt,
            correlation_id=config.correlation_id,
        )
    except ValueError as error:
        raise _final(f"invalid run config: {error}") from error
    except PortError as error:
        raise _failure(error) from error
    if plan.story_id != story_id:
        raise _final(
            f"plan {plan.plan_id.value} is for story {plan.story_id.value}, not {story_id.value}"
        )
    context.add_output_metadata(
        {
            "plan_id": plan.plan_id.value,
            "derivation_id": attempt.derivation_id.value,
            "attempt": attempt.attempt,
            "roles": ", ".join(role.value for role in attempt.roles),
            "roles_from": "request" if requested else ("plan" if plan.roles else "default"),
            "acceptance_criteria": len(plan.acceptance_criteria),
            "title": plan.title,
        }
    )
    return PlannedDerivation(attempt=attempt, plan=plan)


@dg.asset(partitions_def=story_partitions, group_name=DERIVE, kinds={"grpc"})
def story_context(
    context: dg.AssetExecutionContext,
    plan_context: PlannedDerivation,
    context_service: ContextResource,
    settings: DerivationSettings,
) -> list[RoleContext]:
    """What the Context service tells each requested role about the story (phase PLAN).

    Best effort, like the fleet's service: a role whose context cannot be had (after the
    step's retries of transient errors) is left out of the prompt, and the metadata says so.
    `TD_CONTEXT_REQUIRED=true` fails the attempt instead."""
    client = context_service.client()
    story = plan_context.attempt.story_id
    contexts: list[RoleContext] = []
    missing: dict[str, str] = {}

    def role_context(role: Role) -> RoleContext:
        return _riding_out_outages(
            context, settings, lambda: client.get_context(story, role, "PLAN")
        )

    for role in plan_context.attempt.roles:
        try:
            contexts.append(role_context(role))
        except PortError as error:
            if settings.context_required:
                raise _failure(error) from error
            context.log.warning(f"no context for {role.value}, prompt built without it: {error}")
            missing[role.value] = str(error)
    context.add_output_metadata(
        {
            **{f"{c.role.value} words": len(c.text.split()) for c in contexts},
            "missing_context": "\n".join(f"{r}: {why}" for r, why in missing.items()) or "none",
        }
    )
    return contexts


@dg.asset(partitions_def=story_partitions, group_name=DERIVE)
def derivation_prompt(
    context: dg.AssetExecutionContext,
    plan_context: PlannedDerivation,
    story_context: list[RoleContext],
    settings: DerivationSettings,
) -> DerivationPrompt:
    """One prompt with the plan, numbered criteria, notes, each role's context and limits."""
    plan = plan_context.plan
    try:
        template = load_prompt_template(settings.prompt_template_path)
        brief = DerivationBrief(
            plan=plan,
            roles=plan_context.attempt.roles,
            role_contexts=tuple(story_context),
            task_count=settings.task_count(),
        )
    except ValueError as error:
        raise _final(str(error)) from error
    prompt = build_prompt(brief, template)
    context.add_output_metadata(
        {
            "template_version": prompt.template_version,
            "characters": len(prompt.text),
            "prompt": dg.MetadataValue.md(f"```\n{prompt.text}\n```"),
        }
    )
    return prompt


@dg.asset(partitions_def=story_partitions, group_name=DERIVE, kinds={"grpc"})
def executor_submission(
    context: dg.AssetExecutionContext,
    plan_context: PlannedDerivation,
    derivation_prompt: DerivationPrompt,
    executor: RayExecutorResource,
    settings: DerivationSettings,
) -> SubmissionRecord:
    """Hands the prompt to the Ray Executor; its answer arrives later on NATS."""
    attempt = plan_context.attempt
    submission = ExecutorSubmission(
        derivation_id=attempt.derivation_id,
        attempt=attempt.attempt,
        plan_id=attempt.plan_id,
        story_id=attempt.story_id,
        role=attempt.roles[0],
        prompt=derivation_prompt.text,
        timeout_seconds=settings.llm_timeout_seconds,
        model=settings.vllm_model,
        vllm_url=settings.vllm_url,
    )
    try:
        # A repeated submit can start a second job; its answer is recognised as a duplicate.
        receipt = _riding_out_outages(
            context, settings, lambda: executor.client().submit(submission)
        )
    except PortError as error:
        raise _failure(error) from error
    if not receipt.accepted:
        raise dg.Failure(
            description=f"the executor failed the job at once: {receipt.message}",
            metadata={RETRYABLE: True},
        )
    record = SubmissionRecord(
        derivation_id=attempt.derivation_id,
        deliberation_id=receipt.deliberation_id,
        attempt=attempt.attempt,
        submitted_at=datetime.now(UTC),
    )
    context.add_output_metadata(
        {
            "derivation_id": record.derivation_id.value,
            "deliberation_id": record.deliberation_id,
            "attempt": record.attempt,
            "submitted_at": record.submitted_at.isoformat(),
        }
    )
    return record


@dg.asset(partitions_def=story_partitions, group_name=PERSIST)
def llm_proposal(context: dg.AssetExecutionContext, config: ProposalConfig) -> ReceivedProposal:
    """The LLM's raw answer, kept so later steps can be re-run without calling it again."""
    if config.executor_error is not None:
        raise dg.Failure(
            description=config.executor_error,
            metadata={RETRYABLE: True, "derivation_id": config.derivation_id},
        )
    try:
        proposal = ReceivedProposal(
            text=config.text,
            derivation_id=DerivationId(config.derivation_id),
            attempt=config.attempt,
        )
    except ValueError as error:
        raise _final(f"invalid run config: {error}") from error
    context.add_output_metadata(
        {
            "derivation_id": proposal.derivation_id.value,
            "attempt": proposal.attempt,
            "characters": len(proposal.text),
            "answer": dg.MetadataValue.md(f"```\n{proposal.text[:20_000]}\n```"),
        }
    )
    return proposal


COVERAGE_CHECK = "acceptance_criteria_covered"
IN_PLANNING_CHECK = "tasks_in_planning"


@dg.asset(
    partitions_def=story_partitions,
    group_name=PERSIST,
    # Acyclicity and the task count are not checks here: an answer failing either is
    # refused before there is a graph, so such checks could only pass.
    check_specs=[dg.AssetCheckSpec(COVERAGE_CHECK, asset="task_graph")],
)
def task_graph(
    llm_proposal: ReceivedProposal,
    plan_context: PlannedDerivation,
    settings: DerivationSettings,
) -> Iterator[dg.Output[TaskGraph] | dg.AssetCheckResult]:
    """The answer parsed, validated and analysed (pure), with its checks."""
    criteria = len(plan_context.plan.acceptance_criteria)
    task_count = settings.task_count()
    rules = DerivationRules(
        allowed_roles=plan_context.attempt.roles, criteria_count=criteria, task_count=task_count
    )
    verdict = assess_proposal(llm_proposal.text, rules)
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
    yield dg.Output(
        graph,
        metadata={
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
        },
    )
    uncovered = graph.uncovered_criteria(criteria)
    yield dg.AssetCheckResult(
        check_name=COVERAGE_CHECK,
        passed=not uncovered,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"uncovered": ", ".join(map(str, uncovered)) or "none"},
    )


@dg.asset(
    partitions_def=story_partitions,
    group_name=PERSIST,
    kinds={"grpc"},
    check_specs=[dg.AssetCheckSpec(IN_PLANNING_CHECK, asset="planning_tasks")],
)
def planning_tasks(
    context: dg.AssetExecutionContext,
    task_graph: TaskGraph,
    plan_context: PlannedDerivation,
    planning: PlanningResource,
    nats: NatsResource,
    settings: DerivationSettings,
) -> Iterator[dg.Output[PersistedGraph] | dg.AssetCheckResult]:
    """The tasks and dependencies in Planning, under Planning's ids, never twice; then, once
    Planning is seen to hold every task under the id recorded, the completed event, once per
    derivation however often this is re-run."""
    attempt = plan_context.attempt
    client = planning.client()
    try:
        # Safe to repeat: it lists what Planning holds first and creates only what is missing.
        persisted = _riding_out_outages(
            context,
            settings,
            lambda: persist_task_graph(client, attempt.plan_id, attempt.story_id, task_graph),
        )
        held = _riding_out_outages(
            context, settings, lambda: client.list_story_tasks(attempt.story_id)
        )
    except PortError as error:
        raise _failure(error) from error
    missing = missing_from_planning(persisted, held)
    yield dg.AssetCheckResult(
        check_name=IN_PLANNING_CHECK,
        passed=not missing,
        metadata={"tasks": len(persisted.task_ids), "missing": ", ".join(missing) or "none"},
    )
    if missing:
        # Retryable: the next run lists again and creates what Planning lacks.
        raise dg.Failure(
            description=f"Planning does not hold tasks it returned ids for: {', '.join(missing)}",
            metadata={RETRYABLE: True},
        )
    completed = DerivationCompleted(
        plan_id=attempt.plan_id,
        story_id=attempt.story_id,
        task_count=len(task_graph.nodes),
        occurred_at=datetime.now(UTC),
        derivation_request_id=attempt.derivation_id,
    )
    published = publish_outcome_once(
        context.instance, nats, context.partition_key, completed, attempt.correlation_id
    )
    submission = latest_submission(context.instance, context.partition_key)
    yield dg.Output(
        persisted,
        metadata={
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
        },
    )
