from __future__ import annotations

from collections.abc import Iterator

import pytest

from td_pipeline.sandbox.nats_server import NatsServer


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """One real NATS server with the fleet's streams for the sandbox tests."""
    with NatsServer() as server:
        yield server
