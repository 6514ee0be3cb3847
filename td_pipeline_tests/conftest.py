"""The fixtures tests share (a module keeps its own only where it differs: other stories, a
backend, scope or settings; a module's fixture of the same name overrides these)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from td_pipeline.infrastructure.shared_nats import close_shared_nats_connections
from td_pipeline.sandbox.fleet import LocalFleet
from td_pipeline.sandbox.llm_capacity import LlmCapacity
from td_pipeline.sandbox.nats_server import NatsServer
from td_pipeline.sandbox.planning import PlanningFaults

if TYPE_CHECKING:
    import dagster as dg


@pytest.fixture(autouse=True, scope="session")
def _close_shared_nats_connections() -> Iterator[None]:
    """Tests stop their NATS servers; close the shared connections before pytest reports."""
    yield
    close_shared_nats_connections()


@pytest.fixture
def server() -> Iterator[NatsServer]:
    """A NATS server of the test's own."""
    with NatsServer() as server:
        yield server


@pytest.fixture(scope="module")
def llm_capacity() -> LlmCapacity | None:
    """How the fleet's executor serves its LLM jobs (`sandbox up --llm-slots/--llm-seconds/
    --llm-timeout-seconds`): None, answers at once. A module overrides it to play a GPU
    cluster under load, e.g. `return LlmCapacity(slots=2, service_seconds=0.2)`."""
    return None


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, llm_capacity: LlmCapacity | None
) -> Iterator[LocalFleet]:
    """The local fleet with its default stories and planner, one for a module's tests."""
    with LocalFleet(tmp_path_factory.mktemp("fleet"), llm_capacity=llm_capacity) as fleet:
        yield fleet


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """An empty ephemeral Dagster instance of the test's own."""
    import dagster as dg  # here, not at the top: the fast tier need not import Dagster

    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def faults() -> PlanningFaults:
    """The sandbox Planning service's fault knobs, none set."""
    return PlanningFaults()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest end-to-end files first (`pytest.mark.runs_for(seconds)` on the module), so
    that with `--dist loadfile` the workers finish together instead of one waiting on a long
    file that started last. A stable sort: the rest keep their order."""

    def seconds(item: pytest.Item) -> float:
        marker = item.get_closest_marker("runs_for")
        return float(marker.args[0]) if marker else 0.0

    items.sort(key=seconds, reverse=True)
