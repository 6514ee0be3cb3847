from __future__ import annotations

import dagster as dg
import pytest

from td_pipeline.domain.values import PlanId, StoryId
from td_pipeline.orchestration.partitions import story_of_partition, story_partition_key
from td_pipeline.orchestration.resources import DerivationSettings, PlanningResource
from td_pipeline.sandbox.planning import PlanningStore, load_sample_stories, serve_planning


def test_planning_resource_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    store = PlanningStore()
    store.seed(load_sample_stories())
    running = serve_planning(store)
    monkeypatch.setenv("PLANNING_SERVICE_ADDRESS", running.address)

    @dg.asset
    def story_of_the_plan(planning: PlanningResource) -> str:
        assert planning.client() is planning.client()  # one client (and channel) per process
        return planning.client().get_plan(PlanId("PLAN-PAY-1")).story_id.value

    try:
        result = dg.materialize(
            [story_of_the_plan],
            resources={
                "planning": PlanningResource(
                    address=dg.EnvVar("PLANNING_SERVICE_ADDRESS"), timeout_seconds=2
                )
            },
        )
    finally:
        running.stop()

    assert result.success
    assert result.output_for_node("story_of_the_plan") == "STORY-REFUNDS"


def test_channel_settings_carry_the_explicit_timeout() -> None:
    settings = PlanningResource(address="127.0.0.1:7000", timeout_seconds=1.5).channel_settings()
    assert (settings.address, settings.timeout_seconds) == ("127.0.0.1:7000", 1.5)


def test_derivation_settings_validate_the_task_range() -> None:
    assert DerivationSettings(min_tasks=2, max_tasks=9).task_count().maximum == 9
    with pytest.raises(ValueError, match="minimum"):
        DerivationSettings(min_tasks=5, max_tasks=2).task_count()


def test_partition_keys_are_story_ids() -> None:
    assert story_partition_key(StoryId(" S-1 ")) == "S-1"
    assert story_of_partition("S-1") == StoryId("S-1")
    with pytest.raises(dg.Failure, match="comma"):
        story_of_partition("S-1,S-2")
