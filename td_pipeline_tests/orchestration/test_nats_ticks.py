"""What every NATS-driven tick does around its fetch: acks first, lets go of what a lost tick
held, counts a stalled fetch."""

from __future__ import annotations

import json
from collections.abc import Sequence

import dagster as dg
import pytest

from td_pipeline.infrastructure.jetstream_consumer import ConsumerSpec, Fetched, PulledMessage
from td_pipeline.orchestration.nats_ticks import (
    TickFetch,
    settle_then_fetch,
    stalled_fetches,
    wait_delay,
)
from td_pipeline.orchestration.resources import DerivationSettings

CONSUMER = ConsumerSpec("task_derivation", "requests", ("task.derivation.requested",))


class StallingPuller:
    """A puller whose server never ends the pull request (the fetch gave up on its own)."""

    def __init__(self) -> None:
        self.acked: list[str] = []
        self.redelivered: list[tuple[str, float]] = []

    def ack(self, replies: Sequence[str]) -> None:
        self.acked.extend(replies)

    def redeliver_later(self, replies: Sequence[str], delay_seconds: float) -> None:
        self.redelivered.extend((reply, delay_seconds) for reply in replies)

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
    context = dg.build_sensor_context(cursor=cursor, instance=dg.DagsterInstance.ephemeral())

    fetch = settle_then_fetch(context, FakeNats(puller), DerivationSettings(), CONSUMER)  # type: ignore[arg-type]

    assert puller.acked == ["$JS.ACK.a"]  # the last tick's runs are acked before the fetch
    assert fetch.messages == [] and stalled_fetches(fetch.cursor([])) == 3
    stalls = [line for line in capsys.readouterr().err.splitlines() if "stalled" in line]
    assert len(stalls) == 1  # the whole warning on one line
    assert "task_derivation/requests" in stalls[0] and "4 s" in stalls[0]


def test_a_cursor_from_before_the_count_reads_as_none_stalled() -> None:
    assert stalled_fetches(json.dumps({"pending_acks": []})) == 0
    assert stalled_fetches(None) == 0


def _message(reply: str, num_delivered: int = 1) -> PulledMessage:
    return PulledMessage(
        "task.derivation.requested", b"{}", reply, "task_derivation", 1, 1, num_delivered
    )


class DeliveringPuller(StallingPuller):
    """A puller whose fetches bring two messages, the second delivered three times already."""

    def fetch(self, spec: ConsumerSpec, batch: int, timeout_seconds: float) -> Fetched:
        return Fetched([_message("$JS.ACK.a"), _message("$JS.ACK.b", 3)], stalled=False)


def test_the_messages_of_a_tick_that_failed_or_was_lost_are_let_go_by_the_next() -> None:
    puller, instance = DeliveringPuller(), dg.DagsterInstance.ephemeral()

    def tick(cursor: str | None) -> TickFetch:
        context = dg.build_sensor_context(cursor=cursor, instance=instance)
        return settle_then_fetch(context, FakeNats(puller), DerivationSettings(), CONSUMER)  # type: ignore[arg-type]

    tick(None)  # fetched, then failed: no cursor
    stored = tick(None).cursor(["$JS.ACK.b"])  # a lost tick's two let go; this one's result...
    # At once the first time (a daemon that died); a message lost before waits, doubling, so
    # that a tick failing again and again does not spend its deliveries in seconds.
    assert puller.redelivered == [("$JS.ACK.a", 0.0), ("$JS.ACK.b", wait_delay(2))]
    assert wait_delay(2) > 0
    tick(stored)  # ...stored: what it handed on is acked, nothing let go
    assert puller.acked == ["$JS.ACK.b"] and len(puller.redelivered) == 2
