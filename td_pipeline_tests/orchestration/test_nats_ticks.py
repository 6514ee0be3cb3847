"""What every NATS-driven tick does around its fetch: acks first, counts a stalled fetch."""

from __future__ import annotations

import json
from collections.abc import Sequence

import dagster as dg
import pytest

from td_pipeline.infrastructure.jetstream_consumer import ConsumerSpec, Fetched
from td_pipeline.orchestration.nats_ticks import settle_then_fetch, stalled_fetches
from td_pipeline.orchestration.resources import DerivationSettings

CONSUMER = ConsumerSpec("task_derivation", "requests", ("task.derivation.requested",))


class StallingPuller:
    """A puller whose server never ends the pull request (the fetch gave up on its own)."""

    def __init__(self) -> None:
        self.acked: list[str] = []

    def ack(self, replies: Sequence[str]) -> None:
        self.acked.extend(replies)

    def ensure_consumer(self, spec: ConsumerSpec) -> None:
        pass

    def fetch(self, spec: ConsumerSpec, batch: int, timeout_seconds: float) -> Fetched:
        return Fetched([], stalled=True)


class FakeNats:
    def __init__(self, puller: StallingPuller) -> None:
        self._puller = puller

    def puller(self) -> StallingPuller:
        return self._puller


def test_a_stalled_fetch_is_counted_in_the_cursor_and_logged_on_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    puller = StallingPuller()
    cursor = json.dumps({"pending_acks": ["$JS.ACK.a"], "stalled_fetches": 2})
    context = dg.build_sensor_context(cursor=cursor)

    fetch = settle_then_fetch(context, FakeNats(puller), DerivationSettings(), CONSUMER)  # type: ignore[arg-type]

    assert puller.acked == ["$JS.ACK.a"]  # the last tick's runs are acked before the fetch
    assert fetch.messages == [] and stalled_fetches(fetch.cursor([])) == 3
    stalls = [line for line in capsys.readouterr().err.splitlines() if "stalled" in line]
    assert len(stalls) == 1  # the whole warning on one line
    assert "task_derivation/requests" in stalls[0] and "4 s" in stalls[0]


def test_a_cursor_from_before_the_count_reads_as_none_stalled() -> None:
    assert stalled_fetches(json.dumps({"pending_acks": []})) == 0
    assert stalled_fetches(None) == 0
