"""What `td-pipeline bench ticks` measures on: the workload, and each size's instance.

Each size gets its own Dagster instance (a temporary DAGSTER_HOME with the repository's
`dagster.yaml`) and its own NATS server on loopback (`sized_setup`). Both are seeded first: N
story partitions (added straight to the instance, in chunks), and a history for a few of them
(an earlier derivation that completed, and a current one submitted to the LLM). Here too: the
turns' requests and answers (`Workload`, `answer`, `publish`), and `store_result`, which
stores what a tick asked for as the daemon would (partitions, runs), and `Clock`, by which a
size's tick times are kept. The measuring, the report and the command line are in
`bench_ticks`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from unittest import mock

import dagster as dg
import nats

from td_pipeline.application.attempt_history import SubmittedAttempt
from td_pipeline.application.llm_window import LlmWindow
from td_pipeline.devtools.dagster_processes import prepare_home
from td_pipeline.domain.values import DerivationId
from td_pipeline.infrastructure.executor_client import derivation_task_id
from td_pipeline.orchestration.asset_steps import AssetStep
from td_pipeline.orchestration.attempts import Phase, attempt_tags
from td_pipeline.orchestration.instance_history import RUN_KEY_TAG
from td_pipeline.orchestration.llm_admission import write_window
from td_pipeline.orchestration.partitions import STORIES
from td_pipeline.orchestration.resources import DerivationSettings
from td_pipeline.orchestration.submission_records import SUBMISSION_ASSET, submission_metadata
from td_pipeline.sandbox.nats_server import NatsServer

PARTITION_CHUNK = 1_000  # keys per add_dynamic_partitions call (SQLite bounds a statement)
PLAN = "PLAN-BENCH-1"


def story(index: int) -> str:
    return f"STORY-BENCH-{index:06d}"


def derivation(index: int, generation: str) -> str:
    return f"d-bench-{generation}-{index:06d}"


class Clock(StrEnum):
    WALL = "wall"  # what the tick takes, the machine's load included
    CPU = "CPU"  # this process's CPU time in the tick: hardly moved by other processes


@dataclass(frozen=True, slots=True)
class Workload:
    """What every turn publishes: `requests` requests (a fifth of them re-derive a story with
    a history, the rest are new stories) and `answers` answers, each for a story whose current
    submission is recorded and not yet answered. The same at every size."""

    requests: int
    answers: int
    turns: int  # timed turns; one more warms up

    @property
    def submitted_stories(self) -> int:
        return self.answers * (self.turns + 1)

    def answered_stories(self, turn: int) -> range:
        return range(turn * self.answers, (turn + 1) * self.answers)

    def request_stories(self, turn: int) -> list[str]:
        again = [story(n) for n in self.answered_stories(turn)][: self.requests // 5]
        fresh = [f"STORY-NEW-{turn:03d}-{n:03d}" for n in range(self.requests - len(again))]
        return fresh + again


@dataclass
class SizedSetup:
    """One size: its instance, its NATS server, the sensors' cursors and tick times, and how
    often the instance was asked for every partition key."""

    partitions: int
    instance: dg.DagsterInstance
    url: str
    cursors: dict[str, str | None] = field(default_factory=dict)
    times_ms: dict[tuple[str, Clock], list[float]] = field(default_factory=dict)
    watched_reads: Sequence[mock.MagicMock] = ()  # the instance's all-keys reads
    full_reads: dict[str, int] = field(default_factory=dict)  # per sensor, every tick

    def all_keys_reads(self) -> int:
        return sum(read.call_count for read in self.watched_reads)


def add_partitions(instance: dg.DagsterInstance, keys: Sequence[str]) -> None:
    for start in range(0, len(keys), PARTITION_CHUNK):
        instance.add_dynamic_partitions(STORIES, list(keys[start : start + PARTITION_CHUNK]))


def _derive_config(index: int, generation: str) -> dict[str, Any]:
    config = {"plan_id": PLAN, "derivation_id": derivation(index, generation), "attempt": 1}
    return {"ops": {AssetStep.PLAN_CONTEXT.value: {"config": config}}}


def _persist_config(index: int, generation: str) -> dict[str, Any]:
    config = {"derivation_id": derivation(index, generation), "attempt": 1, "text": "{}"}
    return {"ops": {AssetStep.LLM_PROPOSAL.value: {"config": config}}}


def _add_run(
    instance: dg.DagsterInstance,
    job: str,
    config: dict[str, Any],
    tags: dict[str, str],
    status: dg.DagsterRunStatus,
) -> None:
    instance.add_run(dg.DagsterRun(job_name=job, run_config=config, tags=tags, status=status))


def seed_history(instance: dg.DagsterInstance, stories: int) -> None:
    """For each of the first `stories` stories: an earlier derivation, derived and persisted,
    and the current one, derived and submitted to the LLM (its answer still to come)."""
    done = dg.DagsterRunStatus.SUCCESS
    for index in range(stories):
        partition = {"dagster/partition": story(index)}
        for generation in ("old", "now"):
            tags = {**partition, **attempt_tags(Phase.DERIVE, derivation(index, generation), 1)}
            _add_run(instance, "derive_tasks", _derive_config(index, generation), tags, done)
        old_persist = {**partition, **attempt_tags(Phase.PERSIST, derivation(index, "old"), 1)}
        _add_run(instance, "persist_tasks", _persist_config(index, "old"), old_persist, done)
        submitted = SubmittedAttempt(
            story=story(index),
            derivation_id=derivation(index, "now"),
            attempt=1,
            deliberation_id=f"deliberation-{index}",
            submitted_at=datetime.now(UTC),
            run_id="",
            plan_id=PLAN,
            roles=("DEVELOPER",),
            acceptance_criteria=2,
            correlation_id=None,
        )
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key=SUBMISSION_ASSET,
                partition=story(index),
                metadata=submission_metadata(submitted),
            )
        )


def answer(index: int) -> dict[str, Any]:
    """`agent.response.completed` for a story's current attempt, as the executor sends it."""
    task_id = derivation_task_id(DerivationId(derivation(index, "now")), 1)
    metadata = {
        "task_type": "TASK_DERIVATION",
        "story_id": story(index),
        "plan_id": PLAN,
        "derivation_id": derivation(index, "now"),
        "attempt": "1",
        "task_id": task_id,
    }
    tasks = [{"id": "T1", "title": "Bench task", "role": "DEVELOPER", "depends_on": []}]
    return {
        "task_id": task_id,
        "agent_id": "bench-agent",
        "role": "DEVELOPER",
        "status": "completed",
        "proposal": {"content": json.dumps({"tasks": tasks}), "model": "bench"},
        "success": True,
        "constraints": {"story_id": story(index), "plan_id": PLAN, "metadata": metadata},
    }


async def publish(url: str, messages: Sequence[tuple[str, dict[str, Any]]]) -> None:
    connection = await nats.connect(url)
    try:
        jetstream = connection.jetstream()
        for subject, body in messages:
            await jetstream.publish(subject, json.dumps(body).encode())
    finally:
        await connection.close()


def store_result(
    instance: dg.DagsterInstance,
    partitions: Sequence[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest],
    runs: Sequence[dg.RunRequest],
) -> None:
    """What the daemon does with a tick's result: add its partitions, create its runs (not
    started: a queued run would need a code location's origin)."""
    for added in partitions:
        if isinstance(added, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(added.partitions_def_name, list(added.partition_keys))
    for request in runs:
        tags = {**request.tags, RUN_KEY_TAG: request.run_key or ""}
        job = request.job_name or ""
        _add_run(instance, job, dict(request.run_config), tags, dg.DagsterRunStatus.NOT_STARTED)


@contextmanager
def sized_setup(root: Path, partitions: int, workload: Workload) -> Iterator[SizedSetup]:
    with ExitStack() as stack:
        server = stack.enter_context(NatsServer(store_dir=root / "nats"))
        home = prepare_home(root / "home")
        instance = stack.enter_context(dg.DagsterInstance.from_config(str(home)))
        watched = [  # still answered as usual; only counted
            stack.enter_context(mock.patch.object(instance, name, wraps=read))
            for name, read in (
                ("get_dynamic_partitions", instance.get_dynamic_partitions),
                ("get_paginated_dynamic_partitions", instance.get_paginated_dynamic_partitions),
            )
        ]
        started = time.monotonic()
        add_partitions(instance, [story(n) for n in range(partitions)])
        seed_history(instance, workload.submitted_stories)
        # The LLM window wide open: the figures are of a tick's cost, not of admission.
        write_window(instance, LlmWindow(limit=float(DerivationSettings().llm_max_in_flight)))
        print(
            f"  {partitions:,} partitions, {workload.submitted_stories} stories with a history: "
            f"{time.monotonic() - started:.1f}s",
            flush=True,
        )
        yield SizedSetup(partitions, instance, server.url, watched_reads=watched)
