"""Story partitions: one dynamic partition per story, keyed by the story id."""

from __future__ import annotations

import dagster as dg

from td_pipeline.domain.values import StoryId

STORIES = "stories"
story_partitions = dg.DynamicPartitionsDefinition(name=STORIES)


def story_partition_key(story_id: StoryId) -> str:
    """The partition key of a story. StoryId already refuses commas and control characters,
    which Dagster cannot hold in a partition key."""
    return story_id.value


def story_of_partition(key: str) -> StoryId:
    try:
        return StoryId(key)
    except ValueError as error:
        raise dg.Failure(f"partition key {key!r} is not a story id: {error}") from error
