"""What the instance knows about attempts, read without hidden limits: paged to the end, or
bounded by what is needed (a tag, a time window), never by a fixed number of runs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pytest

from td_pipeline.orchestration import attempts
from td_pipeline.orchestration.attempts import (
    Phase,
    attempt_tags,
    derive_config_of,
    latest_run,
    waiting_attempts,
)

STORY = "STORY-REFUNDS"


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def add_run(
    instance: dg.DagsterInstance,
    story: str,
    phase: Phase,
    derivation: str,
    attempt: int = 1,
    status: dg.DagsterRunStatus = dg.DagsterRunStatus.SUCCESS,
    tagged: bool = True,
) -> None:
    step = "plan_context" if phase is Phase.DERIVE else "llm_proposal"
    config: dict[str, Any] = {"derivation_id": derivation, "attempt": attempt}
    if phase is Phase.DERIVE:
        config["plan_id"] = f"PLAN-{derivation}"
    instance.add_run(
        dg.DagsterRun(
            job_name=f"{phase.value}_tasks",
            status=status,
            run_config={"ops": {step: {"config": config}}},
            tags={
                "dagster/partition": story,
                **(attempt_tags(phase, derivation, attempt) if tagged else {}),
            },
        )
    )


def test_a_derivation_launched_by_hand_is_found_past_a_page_of_later_runs(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(attempts, "RUNS_PAGE", 10)  # the same paging, on fewer runs
    # A derive run from `dagster job launch` (no td/ tags), then 25 later runs of the story:
    # more than two pages, as 250 runs would be with the real page size.
    add_run(instance, STORY, Phase.DERIVE, "d-by-hand", tagged=False)
    for number in range(25):
        add_run(instance, STORY, Phase.PERSIST, f"d-{number}")

    assert derive_config_of(instance, STORY, "d-by-hand") == {
        "derivation_id": "d-by-hand",
        "attempt": 1,
        "plan_id": "PLAN-d-by-hand",
    }
    latest = latest_run(instance, STORY)
    assert latest is not None and latest.derivation_id == "d-24"


def test_more_than_fifty_runs_of_one_story_still_find_the_derivation(
    instance: dg.DagsterInstance,
) -> None:
    add_run(instance, STORY, Phase.DERIVE, "d-first")
    for number in range(55):
        add_run(instance, STORY, Phase.PERSIST, "d-first", attempt=number % 3 + 1)

    config = derive_config_of(instance, STORY, "d-first")
    assert config is not None and config["plan_id"] == "PLAN-d-first"


def add_submission(instance: dg.DagsterInstance, story: str, derivation: str) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key="executor_submission",
            partition=story,
            metadata={
                "derivation_id": derivation,
                "attempt": 1,
                "deliberation_id": f"deliberation-td:{derivation}:1-1",
                "submitted_at": datetime.now(UTC).isoformat(),
                "plan_id": "PLAN-1",
                "roles": "DEVELOPER, QA",
                "acceptance_criteria": 3,
                "correlation_id": "",
            },
        )
    )


def test_the_watchdog_reads_only_attempts_in_flight(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    finished = [f"STORY-DONE-{n}" for n in range(5_000)]
    instance.add_dynamic_partitions("stories", [*finished, "STORY-WAITING"])
    for story in finished[:20]:  # a few with their runs: submitted and answered
        add_submission(instance, story, f"d-{story}")
        add_run(instance, story, Phase.PERSIST, f"d-{story}")
    add_submission(instance, "STORY-WAITING", "d-waiting")

    reads: list[str] = []
    get_runs, fetch = instance.get_run_records, instance.fetch_materializations

    def counted_runs(*args: Any, **kwargs: Any) -> Any:
        reads.append("runs")
        return get_runs(*args, **kwargs)

    def counted_materializations(*args: Any, **kwargs: Any) -> Any:
        reads.append("materializations")
        return fetch(*args, **kwargs)

    monkeypatch.setattr(instance, "get_run_records", counted_runs)
    monkeypatch.setattr(instance, "fetch_materializations", counted_materializations)
    monkeypatch.setattr(
        instance, "get_dynamic_partitions", lambda *_: pytest.fail("read every story")
    )
    recent = datetime.now(UTC) - timedelta(hours=1)

    waiting = waiting_attempts(instance, since=recent)
    reads_now = list(reads)
    later = waiting_attempts(instance, since=datetime.now(UTC) + timedelta(hours=1))

    assert [(s.story, s.derivation_id) for s in waiting] == [("STORY-WAITING", "d-waiting")]
    # One page of persist runs, one of submissions: no per-story reads.
    assert reads_now == ["runs", "materializations"]
    assert later == []  # attempts from before the window are not visited again
