"""`td-pipeline request | watch | tasks` as a user runs them, against the local fleet found
through its state dir: real processes, real sockets."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from td_pipeline.sandbox.fleet import LocalFleet
from td_pipeline.sandbox.planning_store import StoredDependency, StoredTask

CLI = [str(Path(sys.executable).with_name("td-pipeline"))]


def run(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    with LocalFleet(tmp_path_factory.mktemp("sandbox")) as fleet:
        yield fleet


def test_tasks_request_and_watch_against_the_running_sandbox(fleet: LocalFleet) -> None:
    state = ["--state-dir", str(fleet.state_dir)]

    tasks = run("tasks", "--story", "STORY-REFUNDS", *state)
    watcher = subprocess.Popen(
        [*CLI, "watch", "--count", "1", "--timeout", "20", *state],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert watcher.stderr is not None
    # The event must go out after the watcher subscribed: it says so on stderr.
    assert watcher.stderr.readline().startswith("# watching"), "the watcher did not start"
    request = run("request", "--plan", "P", "--story", "S", "--envelope", *state)
    # Nothing in the sandbox derives tasks (that is the pipeline's job): publish an outcome
    # the way td-pipeline would, so the watcher has something to print.
    publish = subprocess.run(
        [sys.executable, "-c", PUBLISH_COMPLETED, fleet.environment()["NATS_URL"]],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    watched, _ = watcher.communicate(timeout=30)

    assert tasks.returncode == 0 and "no task for STORY-REFUNDS" in tasks.stdout
    assert request.returncode == 0 and "requested derivation of S" in request.stdout
    assert publish.returncode == 0, publish.stderr
    assert watched.strip() == "completed  S  plan=P  tasks=3"


PUBLISH_COMPLETED = """
import asyncio, json, sys, nats
async def main():
    nc = await nats.connect(sys.argv[1])
    await nc.jetstream().publish("task.derivation.completed", json.dumps(
        {"plan_id": "P", "story_id": "S", "task_count": 3, "status": "success",
         "occurred_at": "2026-11-24T10:30:00Z", "derivation_request_id": "d"}).encode())
    await nc.close()
asyncio.run(main())
"""


def test_tasks_shows_the_dependencies_from_the_sandboxs_store(fleet: LocalFleet) -> None:
    assert fleet.store is not None
    story = next(s for s in fleet.stories if s.story_id != "STORY-REFUNDS")
    for task_id, title in (("T-1", "Design the API"), ("T-2", "Build the API")):
        fleet.store.add_task(
            StoredTask(task_id, story.plan_id, story.story_id, title, "", 2, 1, "DEV")
        )
    fleet.store.save_dependencies(
        story.plan_id, story.story_id, [StoredDependency("T-2", "T-1", "needs the design")]
    )
    address = fleet.environment()["PLANNING_SERVICE_ADDRESS"]

    from_state_dir = run("tasks", "--story", story.story_id, "--state-dir", str(fleet.state_dir))
    # Against a real fleet (no sandbox store), Planning's answer alone: it lists no dependency.
    from_address = run(
        "tasks",
        "--story",
        story.story_id,
        "--planning-address",
        address,
        "--state-dir",
        str(fleet.state_dir / "absent"),
    )

    assert from_state_dir.returncode == 0, from_state_dir.stderr
    assert from_state_dir.stdout.splitlines() == [
        f"2 task(s) for {story.story_id}:",
        "  T-1  [DEV] p1  Design the API",
        "  T-2  [DEV] p1  Build the API",
        "1 dependency:",
        "  Build the API  needs  Design the API",
    ]
    assert from_address.returncode == 0, from_address.stderr
    assert from_address.stdout.splitlines() == from_state_dir.stdout.splitlines()[:3]


@pytest.mark.parametrize(
    "arguments",
    [
        ["tasks", "--story", "S", "--planning-address", "127.0.0.1:1"],
        ["request", "--plan", "P", "--story", "S", "--nats-url", "nats://127.0.0.1:1"],
        ["watch", "--nats-url", "nats://127.0.0.1:1", "--timeout", "1"],
    ],
)
def test_unreachable_servers_give_one_line(arguments: list[str], tmp_path: Path) -> None:
    result = run(*arguments, "--state-dir", str(tmp_path))

    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("td-pipeline: ")
    assert "Traceback" not in result.stderr


def test_missing_addresses_are_explained(tmp_path: Path) -> None:
    environment = {name: "" for name in ("NATS_URL", "PLANNING_SERVICE_ADDRESS")}
    result = run("tasks", "--story", "S", "--state-dir", str(tmp_path), env=environment)
    assert result.returncode == 1
    assert "sandbox up" in result.stderr


def test_fleet_commands_read_the_pipelines_settings(tmp_path: Path) -> None:
    """The same settings as the pipeline: an address from PLANNING_SERVICE_ADDRESS, and a bad
    setting refused in one line naming it."""
    from_settings = run(
        "tasks",
        "--story",
        "S",
        "--state-dir",
        str(tmp_path),
        env={"PLANNING_SERVICE_ADDRESS": "127.0.0.1:1"},
    )
    bad = run(
        "watch",
        "--timeout",
        "1",
        "--state-dir",
        str(tmp_path),
        env={"NATS_URL": "nats://127.0.0.1:1", "TD_MAX_ATTEMPTS": "three"},
    )

    assert from_settings.returncode == 1 and "127.0.0.1:1" in from_settings.stderr
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1
    assert bad.stderr.startswith("td-pipeline: bad setting: TD_MAX_ATTEMPTS")
