"""`td-pipeline demo --once`, as a user runs it: every sample story derived through the real
daemon and webserver, a summary, and no process left behind."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from td_pipeline.sandbox.planning_store import load_sample_stories

pytestmark = [pytest.mark.e2e, pytest.mark.runs_for(45)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose environment or command line mentions `text`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            seen = (proc / "environ").read_bytes() + (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in seen:
            found.append(int(proc.name))
    return found


def test_demo_once_derives_every_sample_story_and_stops_everything(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("td-pipeline")),
            "demo",
            "--once",
            "--port",
            str(free_port()),
            "--state-dir",
            str(tmp_path / "sandbox"),
            "--dagster-home",
            str(tmp_path / "dagster_home"),
        ],
        capture_output=True,
        text=True,
        timeout=400,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    stories = load_sample_stories()
    summary = result.stdout.split("story ", 1)[1]
    for story in stories:
        line = next(row for row in summary.splitlines() if row.startswith(story.story_id + " "))
        outcome, tasks, dependencies = line.split()[1:4]
        assert outcome == "completed" and int(tasks) > 0 and int(dependencies) >= 0, line
    assert f"{len(stories)} of {len(stories)} stories derived" in result.stdout
    assert "Dagster UI: http://127.0.0.1:" in result.stdout
    assert "metrics: http://127.0.0.1:" in result.stdout  # serve-metrics runs beside it
    assert processes_mentioning(str(tmp_path)) == []
