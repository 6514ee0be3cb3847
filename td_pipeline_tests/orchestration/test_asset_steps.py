"""Every module names an asset from `asset_steps`: these tests fail when it and the asset graph
the definitions build differ (an asset renamed in one place only), or when a phase's steps are
not in the order the graph runs them."""

from __future__ import annotations

from td_pipeline.orchestration.asset_steps import DERIVE_STEPS, PERSIST_STEPS, AssetStep
from td_pipeline.orchestration.definitions import defs
from td_pipeline.orchestration.jobs import DERIVE, PERSIST


def test_the_steps_are_the_asset_graph() -> None:
    graph = defs.resolve_asset_graph()
    assert set(graph.get_all_asset_keys()) == {step.key for step in AssetStep}
    assert set(DERIVE_STEPS) | set(PERSIST_STEPS) == set(AssetStep)


def test_each_phase_lists_its_group_in_the_order_the_graph_runs_it() -> None:
    graph = defs.resolve_asset_graph()
    for group, steps in ((DERIVE, DERIVE_STEPS), (PERSIST, PERSIST_STEPS)):
        assert {graph.get(step.key).group_name for step in steps} == {group}
        phase = {step.key for step in steps}
        for position, step in enumerate(steps):
            parents = graph.get(step.key).parent_keys & phase
            assert parents <= {earlier.key for earlier in steps[:position]}, step
