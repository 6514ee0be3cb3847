"""The offline planner: a valid plan for every sample story, whatever the task count range."""

from __future__ import annotations

import pytest

from td_pipeline.domain.roles import role_from_text
from td_pipeline.domain.task_graph import TaskCountRange
from td_pipeline.domain.validation import DerivationRules, ValidProposal, validate_proposal
from td_pipeline.sandbox.llm import LlmRequest
from td_pipeline.sandbox.offline_planner import OfflinePlanner
from td_pipeline_tests.sandbox.test_executor import STORIES, prompt_for


@pytest.mark.parametrize("story_id", sorted(STORIES))
def test_offline_planner_answers_every_sample_story_validly(story_id: str) -> None:
    story = STORIES[story_id]
    for limits in (TaskCountRange(2, 12), TaskCountRange(3, 4)):
        content = (
            OfflinePlanner()
            .answer(LlmRequest(prompt_for(story, limits), story.roles[0], story_id))
            .content
        )
        rules = DerivationRules(
            tuple(role_from_text(r) for r in story.roles), len(story.acceptance_criteria), limits
        )
        verdict = validate_proposal(content, rules)
        assert isinstance(verdict, ValidProposal), (limits, verdict)
        assert verdict.graph.uncovered_criteria(len(story.acceptance_criteria)) == ()
