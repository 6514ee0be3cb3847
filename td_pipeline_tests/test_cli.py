"""`td-pipeline` imports only the module of the subcommand being run: linting an answer loads
neither Dagster, NATS nor gRPC, and a real fleet's commands never load the sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from td_pipeline.cli import SUBCOMMANDS, main
from td_pipeline.sandbox.grpc_server import RunningServer
from td_pipeline.sandbox.planning import serve_planning
from td_pipeline.sandbox.planning_store import PlanningStore

ANSWER = Path(__file__).resolve().parent / "corpus" / "answers" / "01-plain-json.txt"
HEAVY = {"dagster", "nats", "grpc"}

# Runs `td-pipeline ARGS...` in a fresh interpreter, then prints its exit code and every module
# it imported as the last line.
LOADED = """
import json, sys
from td_pipeline.cli import main
try:
    exit_code = main(sys.argv[1:])
except SystemExit as exit:
    exit_code = exit.code
print(json.dumps({"exit": exit_code, "modules": sorted(sys.modules)}))
"""


def loaded_by(*arguments: str) -> tuple[int, set[str]]:
    result = subprocess.run(
        [sys.executable, "-c", LOADED, *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout, result.stderr
    outcome = json.loads(result.stdout.splitlines()[-1])
    return outcome["exit"], set(outcome["modules"])


def packages(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def ours(modules: set[str], package: str) -> set[str]:
    return {name for name in modules if name == package or name.startswith(package + ".")}


def test_check_proposal_loads_neither_dagster_nor_nats_nor_grpc() -> None:
    exit_code, modules = loaded_by("check-proposal", str(ANSWER), "--roles", "DEVELOPER,QA")

    assert exit_code == 0
    assert packages(modules) & HEAVY == set()
    assert ours(modules, "td_pipeline.sandbox") | ours(modules, "td_pipeline.devtools") == set()


@pytest.fixture
def planning() -> Iterator[RunningServer]:
    server = serve_planning(PlanningStore())
    try:
        yield server
    finally:
        server.stop()


def test_a_fleet_command_against_a_real_fleet_loads_no_sandbox(
    planning: RunningServer, tmp_path: Path
) -> None:
    exit_code, modules = loaded_by(
        "tasks",
        "--story",
        "S",
        "--planning-address",
        planning.address,
        "--state-dir",
        str(tmp_path / "none"),
    )

    assert exit_code == 0
    assert ours(modules, "td_pipeline.sandbox") | ours(modules, "td_pipeline.devtools") == set()
    assert "dagster" not in packages(modules)


def test_help_lists_every_subcommand_and_loads_none() -> None:
    exit_code, modules = loaded_by("--help")

    assert exit_code == 0
    assert packages(modules) & HEAVY == set()
    assert {module for module, _ in SUBCOMMANDS.values()} & modules == set()


def test_help_shows_each_subcommands_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["--help"])

    listed = capsys.readouterr().out
    assert exit.value.code == 0
    for name, (_, summary) in SUBCOMMANDS.items():
        assert f"    {name}" in listed and summary in " ".join(listed.split())


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_each_module_registers_its_subcommand(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit:
        main([name, "--help"])

    assert exit.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: td-pipeline {name} ")
