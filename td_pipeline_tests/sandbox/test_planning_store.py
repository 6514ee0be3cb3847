"""The Planning stand-in's seed: the sample stories, and copies of them for load."""

from __future__ import annotations

import pytest

from td_pipeline.sandbox.planning_store import load_sample_stories, story_copies

STORIES = load_sample_stories()
PLANNING_ROLES = {"DEV", "ARCHITECT", "QA", "PO", "SYSTEM"}  # Planning's RoleType values


def test_seed_has_varied_realistic_stories() -> None:
    assert len(STORIES) >= 10
    assert len({s.plan_id for s in STORIES}) == len(STORIES)
    for story in STORIES:
        assert 2 <= len(story.acceptance_criteria) <= 6
        assert 1 <= len(story.roles) <= 3
        assert story.technical_notes and story.context["decisions"]
        # Planning stores its own role names: a sample story carries no other.
        assert set(story.roles) <= PLANNING_ROLES, story.roles
    assert {s.story_id: s.roles for s in STORIES}["STORY-REFUNDS"] == ("DEV", "QA")


def test_story_copies_get_their_own_ids() -> None:
    samples = load_sample_stories()
    copies = story_copies(samples, len(samples) + 3)

    assert len({c.story_id for c in copies}) == len({c.plan_id for c in copies}) == len(copies)
    assert copies[len(samples)].title == samples[0].title
    assert copies[0].story_id == f"{samples[0].story_id}-C1"
    with pytest.raises(ValueError, match="positive count"):
        story_copies(samples, 0)
