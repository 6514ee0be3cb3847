"""The derive phase of a story partition, up to the executor: plan_context -> story_context ->
derivation_prompt -> executor_submission. (No `from __future__ import annotations`: Dagster
reads the config and resource types from real annotations.)

The submission's metadata records all that the persist phase needs (the attempt, the roles,
the criteria count): a persist run reads it from there, never from this run's stored outputs,
so it works wherever and whenever it runs."""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from pydantic import Field

from td_pipeline.application.attempt_history import SubmittedAttempt
from td_pipeline.application.ports import ExecutorSubmission, PortError
from td_pipeline.application.retries import EXECUTOR_FAILED_AT_ONCE
from td_pipeline.domain.derivation import DerivationAttempt
from td_pipeline.domain.plan import StoryPlan
from td_pipeline.domain.prompt import DerivationBrief, DerivationPrompt, RoleContext, build_prompt
from td_pipeline.domain.roles import derivation_roles, role_from_text
from td_pipeline.domain.values import DerivationId, PlanId, Role, StoryId
from td_pipeline.infrastructure.prompt_templates import load_prompt_template
from td_pipeline.orchestration.jobs import DERIVE
from td_pipeline.orchestration.llm_admission import LlmGate
from td_pipeline.orchestration.partitions import story_of_partition, story_partitions
from td_pipeline.orchestration.resources import (
    ContextResource,
    DerivationSettings,
    PlanningResource,
    RayExecutorResource,
)
from td_pipeline.orchestration.step_failures import (
    Step,
    StepContext,
    final_failure,
    peer_failure,
    retryable_failure,
    riding_out_outages,
)
from td_pipeline.orchestration.submission_records import submission_metadata


class DerivationRunConfig(dg.Config):
    """What a derive run is asked to do (the sensor fills it from the request)."""

    plan_id: str
    roles: list[str] = Field(default_factory=list)  # empty: the plan's roles, else DEVELOPER
    derivation_id: str
    attempt: int = 1
    correlation_id: str | None = None


@dataclass(frozen=True, slots=True)
class PlannedDerivation:
    attempt: DerivationAttempt
    plan: StoryPlan


def plan_context_step(
    context: StepContext,
    story_id: StoryId,
    config: DerivationRunConfig,
    planning: PlanningResource,
    settings: DerivationSettings,
) -> Step[PlannedDerivation]:
    try:
        plan_id = PlanId(config.plan_id)
        requested = tuple(role_from_text(role) for role in config.roles)
        plan = riding_out_outages(context, settings, lambda: planning.client().get_plan(plan_id))
        attempt = DerivationAttempt(
            plan_id=plan_id,
            story_id=story_id,
            roles=derivation_roles(requested, plan.roles),
            derivation_id=DerivationId(config.derivation_id),
            attempt=config.attempt,
            correlation_id=config.correlation_id,
        )
    except ValueError as error:
        raise final_failure(f"invalid run config: {error}") from error
    except PortError as error:
        raise peer_failure(error) from error
    if plan.story_id != story_id:
        raise final_failure(
            f"plan {plan.plan_id.value} is for story {plan.story_id.value}, not {story_id.value}"
        )
    metadata = {
        "plan_id": plan.plan_id.value,
        "derivation_id": attempt.derivation_id.value,
        "attempt": attempt.attempt,
        "roles": ", ".join(role.value for role in attempt.roles),
        "roles_from": "request" if requested else ("plan" if plan.roles else "default"),
        "acceptance_criteria": len(plan.acceptance_criteria),
        "title": plan.title,
    }
    return Step(PlannedDerivation(attempt=attempt, plan=plan), metadata)


def story_context_step(
    context: StepContext,
    planned: PlannedDerivation,
    context_service: ContextResource,
    settings: DerivationSettings,
) -> Step[list[RoleContext]]:
    client = context_service.client()
    story = planned.attempt.story_id
    contexts: list[RoleContext] = []
    missing: dict[str, str] = {}

    def role_context(role: Role) -> RoleContext:
        return riding_out_outages(
            context, settings, lambda: client.get_context(story, role, "PLAN")
        )

    for role in planned.attempt.roles:
        try:
            contexts.append(role_context(role))
        except PortError as error:
            if settings.context_required:
                raise peer_failure(error) from error
            context.log.warning(
                f"{story.value}: no context for {role.value}, prompt built without it: {error}"
            )
            missing[role.value] = str(error)
    metadata: dict[str, Any] = {
        **{f"{c.role.value} words": len(c.text.split()) for c in contexts},
        "missing_context": "\n".join(f"{r}: {why}" for r, why in missing.items()) or "none",
    }
    return Step(contexts, metadata)


def prompt_step(
    planned: PlannedDerivation, contexts: list[RoleContext], settings: DerivationSettings
) -> Step[DerivationPrompt]:
    try:
        template = load_prompt_template(settings.prompt_template_path)
        brief = DerivationBrief(
            plan=planned.plan,
            roles=planned.attempt.roles,
            role_contexts=tuple(contexts),
            task_count=settings.task_count(),
        )
    except ValueError as error:
        raise final_failure(str(error)) from error
    prompt = build_prompt(brief, template)
    metadata = {
        "template_version": prompt.template_version,
        "characters": len(prompt.text),
        "prompt": dg.MetadataValue.md(f"```\n{prompt.text}\n```"),
    }
    return Step(prompt, metadata)


def submission_step(
    context: StepContext,
    planned: PlannedDerivation,
    prompt: DerivationPrompt,
    executor: RayExecutorResource,
    settings: DerivationSettings,
    gate: LlmGate,
) -> Step[SubmittedAttempt]:
    attempt = planned.attempt
    gate.wait_for_slot(attempt.story_id.value)  # the LLM's window: a free slot, in turn
    submission = ExecutorSubmission(
        derivation_id=attempt.derivation_id,
        attempt=attempt.attempt,
        plan_id=attempt.plan_id,
        story_id=attempt.story_id,
        role=attempt.roles[0],
        prompt=prompt.text,
        timeout_seconds=settings.llm_timeout_seconds,
        model=settings.vllm_model,
        vllm_url=settings.vllm_url,
    )
    try:
        # A repeated submit can start a second job; its answer is recognised as a duplicate.
        receipt = riding_out_outages(
            context, settings, lambda: executor.client().submit(submission)
        )
    except PortError as error:
        raise peer_failure(error) from error
    if not receipt.accepted:
        raise retryable_failure(f"{EXECUTOR_FAILED_AT_ONCE}: {receipt.message}")
    submitted = SubmittedAttempt(
        story=attempt.story_id.value,
        derivation_id=attempt.derivation_id.value,
        attempt=attempt.attempt,
        deliberation_id=receipt.deliberation_id,
        submitted_at=datetime.now(UTC),
        run_id=context.run.run_id,
        plan_id=attempt.plan_id.value,
        roles=tuple(role.value for role in attempt.roles),
        acceptance_criteria=len(planned.plan.acceptance_criteria),
        correlation_id=attempt.correlation_id,
    )
    return Step(submitted, submission_metadata(submitted))


# The assets of one story partition: each runs its step and shows the step's metadata.


@dg.asset(partitions_def=story_partitions, group_name=DERIVE, kinds={"grpc"})
def plan_context(
    context: dg.AssetExecutionContext,
    config: DerivationRunConfig,
    planning: PlanningResource,
    settings: DerivationSettings,
) -> PlannedDerivation:
    """The plan and story Planning holds, and the attempt this run belongs to."""
    story_id = story_of_partition(context.partition_key)
    step = plan_context_step(context, story_id, config, planning, settings)
    context.add_output_metadata(step.metadata)
    return step.value


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
    step = story_context_step(context, plan_context, context_service, settings)
    context.add_output_metadata(step.metadata)
    return step.value


@dg.asset(partitions_def=story_partitions, group_name=DERIVE)
def derivation_prompt(
    context: dg.AssetExecutionContext,
    plan_context: PlannedDerivation,
    story_context: list[RoleContext],
    settings: DerivationSettings,
) -> DerivationPrompt:
    """One prompt with the plan, numbered criteria, notes, each role's context and limits."""
    step = prompt_step(plan_context, story_context, settings)
    context.add_output_metadata(step.metadata)
    return step.value


@dg.asset(partitions_def=story_partitions, group_name=DERIVE, kinds={"grpc"})
def executor_submission(
    context: dg.AssetExecutionContext,
    plan_context: PlannedDerivation,
    derivation_prompt: DerivationPrompt,
    executor: RayExecutorResource,
    settings: DerivationSettings,
) -> SubmittedAttempt:
    """Hands the prompt to the Ray Executor once the LLM window has a slot free; its answer
    arrives later on NATS."""
    gate = LlmGate(
        context.instance, context.run.run_id, executor.client(), settings, context.log.info
    )
    step = submission_step(context, plan_context, derivation_prompt, executor, settings, gate)
    context.add_output_metadata(step.metadata)
    return step.value
