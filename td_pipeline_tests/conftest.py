from __future__ import annotations

from collections.abc import Iterator

import pytest

from td_pipeline.infrastructure.shared_nats import close_shared_nats_connections


@pytest.fixture(autouse=True, scope="session")
def _close_shared_nats_connections() -> Iterator[None]:
    """Tests stop their NATS servers; close the shared connections before pytest reports."""
    yield
    close_shared_nats_connections()
