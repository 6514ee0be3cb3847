"""The default pieces of an end-to-end test: the local fleet and a real dagster-daemon in a
temporary DAGSTER_HOME. Modules that need fault knobs or settings override these."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from td_pipeline.devtools.dagster_processes import DagsterProcesses, prepare_home
from td_pipeline.sandbox.fleet import LocalFleet
from td_pipeline.sandbox.llm_capacity import LlmCapacity


@pytest.fixture
def fleet(tmp_path: Path, llm_capacity: LlmCapacity | None) -> Iterator[LocalFleet]:
    # llm_capacity: td_pipeline_tests/conftest.py's (None: answers at once), or the module's.
    with LocalFleet(tmp_path / "fleet", llm_capacity=llm_capacity) as fleet:
        yield fleet


@pytest.fixture
def dagster(fleet: LocalFleet, tmp_path: Path) -> Iterator[DagsterProcesses]:
    home = prepare_home(tmp_path / "dagster_home")
    with DagsterProcesses(home, fleet.environment(), tmp_path / "logs") as processes:
        yield processes
