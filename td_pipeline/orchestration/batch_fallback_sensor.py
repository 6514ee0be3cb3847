"""What a failed batched run leaves undone is run again: a story whose step failed alone (its
own run, where the failure rules of a story apply), the stories it never reached batched again
(`batch_jobs` says why). A cancelled batch is left as it is, like a cancelled story run: its
stories are derived again when asked again."""

import dagster as dg

from td_pipeline.application.batching import plan_runs
from td_pipeline.orchestration.asset_steps import AssetStep
from td_pipeline.orchestration.attempt_queries import (
    latest_materialization,
    latest_run,
)
from td_pipeline.orchestration.attempts import PHASE_STEPS, run_attempts
from td_pipeline.orchestration.batch_jobs import FAILED_STORIES, derive_batch_job, persist_batch_job
from td_pipeline.orchestration.instance_history import InstanceAttemptHistory
from td_pipeline.orchestration.jobs import derive_job, persist_job
from td_pipeline.orchestration.resources import DerivationSettings
from td_pipeline.orchestration.run_requests import (
    StoryWork,
    run_requests,
    stories_in_flight,
    story_of,
    story_run_request,
)

LAST_ASSET = {phase: steps[-1] for phase, steps in PHASE_STEPS.items()}


def stories_done(
    instance: dg.DagsterInstance, run_id: str, asset: AssetStep, stories: list[str]
) -> set[str]:
    """The stories whose phase the run finished: the latest materialization of its last asset
    for the story is the run's. Read from the asset index, as answer routing reads the
    submissions: a worker killed between writing a story's event to the run's log and indexing
    it leaves the story undone for both (the run's own log would call it done, and its answer
    would then be dropped as the answer of no known submission)."""
    return {
        story
        for story in stories
        if (latest := latest_materialization(instance, asset.key, story)) is not None
        and latest.run_id == run_id
    }


def stories_failed(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    """The stories whose step failed, as the batch op's failure names them."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        data = entry.dagster_event.step_failure_data if entry.dagster_event else None
        user = data.user_failure_data if data else None
        if user is not None and FAILED_STORIES in user.metadata:
            return set(str(user.metadata[FAILED_STORIES].value).splitlines())
    return set()


@dg.run_failure_sensor(
    name="batch_fallback_sensor",
    monitored_jobs=[derive_batch_job, persist_batch_job],
    request_jobs=[derive_job, persist_job, derive_batch_job, persist_batch_job],
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Runs again what a failed batched run left undone: a story whose step failed "
    "in its own run, the stories it never reached in a new batch.",
)
def batch_fallback_sensor(
    context: dg.RunFailureSensorContext, settings: DerivationSettings
) -> list[dg.RunRequest]:
    run = context.dagster_run
    attempts = run_attempts(run)
    if not attempts:
        return []
    phase = attempts[0].phase
    history = InstanceAttemptHistory(context.instance)
    stories = [attempt.story for attempt in attempts]
    done = stories_done(context.instance, run.run_id, LAST_ASSET[phase], stories)
    failed = stories_failed(context.instance, run.run_id)
    undone: list[StoryWork] = []
    for attempt in attempts:
        key = f"fallback:{run.run_id}:{attempt.story}"
        if attempt.story in done or history.message_handled(key):
            continue  # finished, or run again by an earlier look at this batch
        latest = latest_run(context.instance, attempt.story)
        if latest is not None and latest.run.run_id != run.run_id:
            context.log.info(f"{attempt.story}: a later run took over, not run again")
            continue
        undone.append(StoryWork(attempt.story, phase, attempt.step_config, key))
    if not failed and undone:
        # The batch died without naming its failures, maybe of the story it was working on:
        # that one, its first undone, runs alone, so that a story that kills its worker cannot
        # take batch after batch down with it.
        failed = {undone[0].story}
    alone = [work for work in undone if work.story in failed]
    unreached = [work for work in undone if work.story not in failed]
    in_batch, own = stories_in_flight(context.instance, unreached)
    plan = plan_runs(
        unreached, story_of, settings.batch_size, in_batch=in_batch, own_run_in_flight=own
    )
    requests = [story_run_request(work) for work in alone] + run_requests(plan)
    context.log.info(
        f"batch {run.run_id}: {len(done)} done, {len(alone)} run alone, {len(unreached)} run again"
    )
    return requests
