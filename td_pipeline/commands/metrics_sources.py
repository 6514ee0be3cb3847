"""What `td-pipeline serve-metrics` reads, as Protocols: the collector (`metrics_collector`) is
tested with fakes; the adapters are `infrastructure.jetstream_monitor` (the derivation stream,
the consumers' lag), `infrastructure.grpc_health` (the peers) and
`orchestration.instance_metrics` (the Dagster instance)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from td_pipeline.infrastructure.jetstream_monitor import ConsumerLag, StreamBatch
from td_pipeline.orchestration.instance_metrics import (
    DaemonHeartbeats,
    LlmAdmission,
    LlmWaiting,
    RunCounts,
)


class StreamSource(Protocol):
    def read(self, after_sequence: int, limit: int) -> StreamBatch: ...


class NatsSource(Protocol):
    def ping(self) -> None: ...

    def consumer_lag(self, stream: str, durable: str) -> ConsumerLag | None: ...


class InstanceSource(Protocol):
    def run_counts(self) -> RunCounts: ...

    def daemon_heartbeats(self, now: datetime) -> DaemonHeartbeats: ...

    def sensor_success_ages(self, now: datetime) -> dict[str, float]: ...

    def llm_waiting(self, now: datetime) -> LlmWaiting: ...

    def fetch_stalls(self) -> dict[str, int]: ...

    def llm_admission(self, now: datetime) -> LlmAdmission: ...


class PeerProbe(Protocol):
    name: str

    def problem(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Durable:
    stream: str
    durable: str
