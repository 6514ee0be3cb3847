from __future__ import annotations

from collections.abc import Iterator

import pytest

from td_pipeline.infrastructure.shared_nats import close_shared_nats_connections


@pytest.fixture(autouse=True, scope="session")
def _close_shared_nats_connections() -> Iterator[None]:
    """Tests stop their NATS servers; close the shared connections before pytest reports."""
    yield
    close_shared_nats_connections()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest end-to-end files first (`pytest.mark.runs_for(seconds)` on the module), so
    that with `--dist loadfile` the workers finish together instead of one waiting on a long
    file that started last. A stable sort: the rest keep their order."""

    def seconds(item: pytest.Item) -> float:
        marker = item.get_closest_marker("runs_for")
        return float(marker.args[0]) if marker else 0.0

    items.sort(key=seconds, reverse=True)
